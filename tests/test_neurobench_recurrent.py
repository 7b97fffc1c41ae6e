"""Recurrent cells and layers against NeuroBench 2.3.0's own recurrent-cell rules.

Cells: NeuroBench's ``SynapticOperations`` and ours watch the same forward passes of models
that step ``RNNCell``/``LSTMCell``/``GRUCell`` (zeroed weights, spike and graded inputs,
calls with and without a state, unequal batches). Full layers, which NeuroBench rejects: a
loop of explicit cells with the layer's weights, each call counted by NeuroBench's
``single_layer_MACs``, is the reference. NeuroBench fails on a ``GRUCell`` without bias and
on a ``GRUCell`` or an ``LSTMCell`` with bias called without a state, so those cases are
left to test_recurrent.py.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.optional

pytest.importorskip(
    "neurobench", reason="neurobench not installed: pip install --no-deps neurobench==2.3.0"
)

import torch  # noqa: E402
from neurobench.metrics.utils.layers import single_layer_MACs  # noqa: E402
from neurobench.metrics.workload import SynapticOperations as NBSynapticOperations  # noqa: E402
from neurobench.models import TorchModel  # noqa: E402
from torch import nn  # noqa: E402

from snnmetrics import SynapticOperations  # noqa: E402

pytestmark = [pytest.mark.optional, pytest.mark.filterwarnings("ignore:LSTM with projections")]


class Stepper(nn.Module):
    """Steps a cell over dim 1 of ``[B, T, F]``; the first step optionally without state."""

    def __init__(self, cell: nn.Module, first_without_state: bool) -> None:
        super().__init__()
        self.cell = cell
        self.readout = nn.Linear(cell.hidden_size, 2)
        self.first_without_state = first_without_state

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, hidden = x.shape[0], self.cell.hidden_size
        lstm = isinstance(self.cell, nn.LSTMCell)
        state = None
        if not self.first_without_state:
            zeros = torch.zeros(batch, hidden)
            state = (zeros, zeros.clone()) if lstm else zeros
        for t in range(x.shape[1]):
            state = self.cell(x[:, t]) if state is None else self.cell(x[:, t], state)
        return self.readout(state[0] if lstm else state)


def sparse(module: nn.Module, seed: int, keep: float = 0.7) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.mul_((torch.rand(p.shape, generator=gen) < keep).float())
    return module


def batches(features: int, seed: int, sizes=(3, 5, 2), steps: int = 4):
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i, size in enumerate(sizes):
        if i % 2 == 0:  # spikes, some signed
            x = (torch.rand(size, steps, features, generator=gen) < 0.4).float()
            x[0, 0, 0] = -1.0
        else:  # graded
            x = torch.randint(0, 4, (size, steps, features), generator=gen).float()
        out.append(x)
    return out


CELLS = {
    "rnn": lambda: nn.RNNCell(6, 5),
    "rnn-relu-no-bias": lambda: nn.RNNCell(6, 5, bias=False, nonlinearity="relu"),
    "lstm": lambda: nn.LSTMCell(6, 5),
    "lstm-no-bias": lambda: nn.LSTMCell(6, 5, bias=False),
    "gru": lambda: nn.GRUCell(6, 5),
}


@pytest.mark.parametrize("first_without_state", [False, True])
@pytest.mark.parametrize("name", sorted(CELLS))
def test_cells_equal_neurobench(name, first_without_state):
    if name in ("gru", "lstm") and first_without_state:
        pytest.skip(f"NeuroBench 2.3.0 fails on {name} (with bias) called without a state")
    torch.manual_seed(1)
    net = sparse(Stepper(CELLS[name](), first_without_state), seed=2)
    model = TorchModel(net)
    model.register_hooks()
    theirs = NBSynapticOperations()
    ours = SynapticOperations(net)
    samples = 0
    # NeuroBench counts only the first sample of a call without a state: batches of one
    sizes = (1, 1, 1, 1) if first_without_state else (3, 5, 2)
    for x in batches(6, seed=3, sizes=sizes):
        preds = model(x)
        theirs(model, preds, (x, torch.zeros(len(x))))
        model.reset_hooks()
        ours.update()
        samples += len(x)
    model.cleanup_hooks()
    ours.detach()
    result = {key: float(value) for key, value in ours.compute().items()}
    assert theirs.AC > 0 and theirs.MAC > 0
    assert round(result["effective_acs"] * samples) == theirs.AC
    assert round(result["effective_macs"] * samples) == theirs.MAC
    assert round(result["dense"] * samples) == theirs.total_synops
    cell_figures = ours.compute_per_layer()["cell"]
    assert float(cell_figures["dense"]) < result["dense"]  # the readout counts too


@pytest.mark.parametrize("cell", [nn.RNNCell(4, 3), nn.LSTMCell(4, 3, bias=False)])
def test_neurobench_counts_first_sample_of_a_stateless_call(cell):
    # NeuroBench indexes the input tensor as if it were an (input, state) tuple; we count
    # every sample, so its figure is ours for the first sample alone
    x = (torch.rand(3, 4, generator=torch.Generator().manual_seed(8)) < 0.5).float()
    theirs, _ = single_layer_MACs(x, cell)
    with SynapticOperations(cell) as ours:
        cell(x[:1])
        ours.update()
        assert float(ours.compute()["synops"]) == theirs


def test_lstm_dense_depends_on_the_state_as_in_neurobench():
    # quirk: NeuroBench binarises (h, c) in its dense pass, so sparser states, fewer ops
    torch.manual_seed(4)
    cell = nn.LSTMCell(4, 3)
    x = torch.ones(2, 4)
    for state in [(torch.zeros(2, 3), torch.zeros(2, 3)), (torch.ones(2, 3), torch.ones(2, 3))]:
        dense, _ = single_layer_MACs((x, state), cell, total=True)
        with SynapticOperations(cell) as ours:
            cell(x, state)
            ours.update()
            assert float(ours.compute()["dense"]) * 2 == dense


# ----------------------------------------------------------------------------- full layers


class ProjectedCell(nn.LSTMCell):
    """An LSTMCell whose weight_hh reads a projected state: NeuroBench's rule, which only
    uses the weights and the call's tensors, counts its gates; it is never run."""

    def __init__(self, input_size: int, hidden_size: int, proj_size: int) -> None:
        super().__init__(input_size, hidden_size)
        self.weight_hh = nn.Parameter(torch.zeros(4 * hidden_size, proj_size))


def reference(layer: nn.RNNBase, x: torch.Tensor) -> dict[str, int]:
    """Totals over a loop of cells (NeuroBench's rule per call); ``x`` is [T, B, F]."""
    totals = {"acs": 0, "macs": 0, "dense": 0}
    directions = 2 if layer.bidirectional else 1
    steps, batch = x.shape[:2]
    lstm = isinstance(layer, nn.LSTM)
    proj = getattr(layer, "proj_size", 0)
    out_size = proj or layer.hidden_size
    inputs = x
    for index in range(layer.num_layers):
        outputs = []
        for direction in range(directions):
            suffix = f"_l{index}" + ("_reverse" if direction else "")
            size = inputs.shape[-1]
            if proj:
                cell = ProjectedCell(size, layer.hidden_size, proj)
            elif lstm:
                cell = nn.LSTMCell(size, layer.hidden_size, bias=layer.bias)
            elif isinstance(layer, nn.GRU):
                cell = nn.GRUCell(size, layer.hidden_size, bias=layer.bias)
            else:
                cell = nn.RNNCell(size, layer.hidden_size, layer.bias, layer.nonlinearity)
            with torch.no_grad():
                for name, _ in cell.named_parameters():
                    getattr(cell, name).copy_(getattr(layer, name + suffix))
            h = torch.zeros(batch, out_size)
            c = torch.zeros(batch, layer.hidden_size)
            out = [None] * steps
            for t in range(steps - 1, -1, -1) if direction else range(steps):
                args = (inputs[t], (h, c)) if lstm else (inputs[t], h)
                effective, spiking = single_layer_MACs(args, cell)
                totals["acs" if spiking else "macs"] += effective
                totals["dense"] += single_layer_MACs(args, cell, total=True)[0]
                with torch.no_grad():
                    if proj:
                        gates = inputs[t] @ cell.weight_ih.T + cell.bias_ih
                        gates = gates + h @ cell.weight_hh.T + cell.bias_hh
                        i, f, g, o = gates.chunk(4, 1)
                        c = f.sigmoid() * c + i.sigmoid() * g.tanh()
                        unprojected = o.sigmoid() * c.tanh()
                        w_hr = getattr(layer, "weight_hr" + suffix)
                        h = unprojected @ w_hr.T
                        # the projection: pairs (nonzero unprojected output, nonzero weight)
                        pairs = int(((unprojected != 0).double() @ (w_hr != 0).double().T).sum())
                        totals["acs" if spiking else "macs"] += pairs
                        totals["dense"] += batch * w_hr.numel()
                    elif lstm:
                        h, c = cell(inputs[t], (h, c))
                    else:
                        h = cell(inputs[t], h)
                out[t] = h
            outputs.append(torch.stack(out))
        inputs = torch.cat(outputs, -1)
    return totals


LAYERS = {
    "rnn-relu-bidirectional": lambda: nn.RNN(4, 3, nonlinearity="relu", bidirectional=True),
    "rnn-2-layers-no-bias": lambda: nn.RNN(4, 3, num_layers=2, bias=False),
    "gru-2-layers-bidirectional": lambda: nn.GRU(4, 3, num_layers=2, bidirectional=True),
    "lstm-2-layers": lambda: nn.LSTM(4, 3, num_layers=2),
    "lstm-no-bias-bidirectional": lambda: nn.LSTM(4, 3, bias=False, bidirectional=True),
    "lstm-projected-2-layers-bidirectional": lambda: nn.LSTM(
        4, 3, num_layers=2, proj_size=2, bidirectional=True
    ),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_full_layers_equal_neurobench_cell_loop(name):
    torch.manual_seed(5)
    layer = sparse(LAYERS[name](), seed=6)
    gen = torch.Generator().manual_seed(7)
    x = (torch.rand(5, 3, 4, generator=gen) < 0.5).float()
    x[1, 2, 3] = 2.0  # one MAC step in the first layer
    expected = reference(layer, x)
    with SynapticOperations(layer) as ours:
        layer(x)
        ours.update()
        result = {key: float(value) * 3 for key, value in ours.compute().items()}
    assert expected["acs"] > 0 and expected["macs"] > 0
    assert result["effective_acs"] == pytest.approx(expected["acs"], rel=1e-12)
    assert result["effective_macs"] == pytest.approx(expected["macs"], rel=1e-12)
    assert result["dense"] == pytest.approx(expected["dense"], rel=1e-12)
