"""Recurrent cells and full recurrent layers in `SynapticOperations`.

Cells: NeuroBench's published unit-test values and small cases counted by hand (the
comparison with NeuroBench itself is in test_neurobench_recurrent.py). Full layers: a loop
of explicit cells carrying the state, with the layer's weights copied in, counted cell by
cell, gives the reference for every timestep, layer and direction.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from snnmetrics import SynapticOperations, register_connection
from snnmetrics.functional import fanout
from snnmetrics.recurrent import gru_cell_rule, gru_rule, lstm_cell_rule, lstm_rule

CELLS = {nn.RNN: nn.RNNCell, nn.GRU: nn.GRUCell, nn.LSTM: nn.LSTMCell}


def figures(metric: SynapticOperations) -> dict[str, float]:
    return {key: float(value) for key, value in metric.compute().items()}


def count_calls(module: nn.Module, calls, batch_size=None, **kwargs) -> dict[str, float]:
    """Run ``calls`` (callables) with a SynapticOperations on ``module``; its figures."""
    with SynapticOperations(module, **kwargs) as metric:
        for call in calls:
            call()
        metric.update(batch_size)
        return figures(metric)


# ----------------------------------------------------------------------------- cells by hand


@pytest.mark.parametrize(
    ("cell", "state", "expected"),
    [
        # NeuroBench's tests/test_metrics.py: input and state all ones, one graded value
        (nn.LSTMCell(25, 5), lambda: (torch.ones(1, 5), torch.ones(1, 5)), 615),
        (nn.RNNCell(25, 5), lambda: torch.ones(1, 5), 150),
        (nn.GRUCell(25, 5), lambda: torch.ones(1, 5), 465),
    ],
)
def test_neurobench_unit_values(cell, state, expected):
    x = torch.ones(1, 25)
    x[0, 0] = 4.0  # a MAC call
    result = count_calls(cell, [lambda: cell(x, state())])
    assert result == {
        "synops": expected,
        "effective_acs": 0.0,
        "effective_macs": expected,
        "dense": expected,
    }


def test_rnn_cell_by_hand():
    cell = nn.RNNCell(3, 2)
    with torch.no_grad():
        cell.weight_ih.copy_(torch.tensor([[1.0, 0.0, 2.0], [0.0, 0.0, 3.0]]))
        cell.weight_hh.copy_(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    x, h = torch.tensor([[1.0, 0.0, -1.0]]), torch.tensor([[0.5, 1.0]])
    # W_ih: row 0 reads inputs 0 and 2, row 1 input 2 -> 3; W_hh: row 0 reads h0 -> 1
    result = count_calls(cell, [lambda: cell(x, h)])
    assert result["effective_acs"] == 4  # the input is in {-1, 0, 1}: the state is not asked
    assert result["dense"] == 2 * 3 + 2 * 2
    # without a state: no state terms, in the dense count either
    result = count_calls(cell, [lambda: cell(x)])
    assert (result["effective_acs"], result["dense"]) == (3, 6)
    # skip_zero_weights=False: every weight is a synapse; bias never counts
    result = count_calls(cell, [lambda: cell(x, h)], skip_zero_weights=False)
    assert result["effective_acs"] == 2 * 2 + 2 * 2


def small_lstm() -> nn.LSTMCell:
    cell = nn.LSTMCell(1, 1)  # gates i, f, g, o: one unit each
    with torch.no_grad():
        cell.weight_ih.copy_(torch.tensor([[1.0], [0.0], [1.0], [1.0]]))
        cell.weight_hh.fill_(1.0)
        cell.bias_ih.zero_()
        cell.bias_hh.zero_()
    return cell


def test_lstm_cell_by_hand():
    cell = small_lstm()
    x, h, c = torch.ones(1, 1), torch.zeros(1, 1), torch.full((1, 1), 2.0)
    # products: W_ih x = (1, 0, 1, 1), W_hh h = 0 -> 3; active gates i, g, o (f is not);
    # cell update: i*g -> 1 (f*c: f inactive); output: o * update -> 1; total 5
    result = count_calls(cell, [lambda: cell(x, (h, c))])
    assert result["effective_acs"] == 5
    # NeuroBench's dense: input and weights all ones, (h, c) binarised to (0, 1):
    # products 4 + 0, every gate active, update i*g + f*c = 2, output 1 -> 7
    assert result["dense"] == 7
    # with ones for the state too: products 4 + 4, update 2, output 1 -> 11
    register_connection(nn.LSTMCell, lstm_cell_rule(neurobench_quirks=False))
    try:
        assert count_calls(cell, [lambda: cell(x, (h, c))])["dense"] == 11
    finally:
        register_connection(nn.LSTMCell, lstm_cell_rule())


def test_gru_cell_by_hand():
    cell = nn.GRUCell(1, 1)  # gates r, z, n
    with torch.no_grad():
        cell.weight_ih.copy_(torch.tensor([[1.0], [1.0], [0.0]]))
        cell.weight_hh.copy_(torch.tensor([[0.0], [0.0], [1.0]]))
        cell.bias_ih.zero_()
        cell.bias_hh.zero_()
    x, h = torch.ones(1, 1), torch.ones(1, 1)
    # products (1, 1, 0) + (0, 0, 1) -> 3; r active and W_hn h nonzero -> r*(W_hn h) 1;
    # z counts exactly 1, so NeuroBench's (1 - z) is zero: (1 - z)*n 0; z*h -> 1; total 5
    result = count_calls(cell, [lambda: cell(x, h)])
    assert result["effective_acs"] == 5
    # dense, all ones: products 3 * 2, r*(...) 1, (1 - z)*n 1 (z counts 4), z*h 1 -> 9
    assert result["dense"] == 9


def test_gru_new_gate_bias_quirk_by_hand():
    cell = nn.GRUCell(1, 2)  # bias_ih: r0 r1 z0 z1 n0 n1
    with torch.no_grad():
        for p in cell.parameters():
            p.zero_()
        cell.bias_ih[2] = 1.0  # z0
    x, h = torch.ones(1, 1), torch.ones(1, 2)
    # no products; z counts (1, 0): z*h -> 1 (unit 0). NeuroBench's new gate adds element 2
    # of bias_ih (z0 = 1) to both units, so both are active and (1 - z)*n counts unit 1
    # (unit 0's z counts exactly 1): 2 in all. Each unit's own b_in is 0: 1 in all.
    assert count_calls(cell, [lambda: cell(x, h)])["effective_acs"] == 2
    register_connection(nn.GRUCell, gru_cell_rule(neurobench_quirks=False))
    try:
        assert count_calls(cell, [lambda: cell(x, h)])["effective_acs"] == 1
    finally:
        register_connection(nn.GRUCell, gru_cell_rule())


def test_unbatched_cell_is_one_sample():
    torch.manual_seed(0)
    cell = nn.GRUCell(4, 3)
    x, h = (torch.rand(4) < 0.5).float(), torch.randn(3)
    unbatched = count_calls(cell, [lambda: cell(x, h)])
    batched = count_calls(cell, [lambda: cell(x[None], h[None])])
    assert unbatched == batched


def test_state_as_keyword_is_counted():
    torch.manual_seed(1)
    cell = nn.LSTMCell(4, 3)
    x, state = torch.randn(2, 4), (torch.randn(2, 3), torch.randn(2, 3))
    positional = count_calls(cell, [lambda: cell(x, state)])
    keyword = count_calls(cell, [lambda: cell(x, hx=state)])
    assert keyword == positional
    assert positional["dense"] > count_calls(cell, [lambda: cell(x)])["dense"]


def test_cells_under_inference_mode_and_two_metrics():
    torch.manual_seed(2)
    cell = nn.RNNCell(5, 4)
    x, h = (torch.rand(3, 5) < 0.5).float(), torch.randn(3, 4)
    expected = count_calls(cell, [lambda: cell(x, h)])
    with SynapticOperations(cell) as first, SynapticOperations(cell) as second:
        with torch.inference_mode():
            cell(x, h)
        first.update()
        with torch.inference_mode():
            cell(x, h)
        second.update()  # both calls: two steps of the same 3 samples
        first.update()
        assert figures(first) == expected
        assert figures(second) == {key: 2 * value for key, value in expected.items()}


def test_weight_edits_are_followed():
    cell = nn.RNNCell(3, 2, bias=False)  # default init: no zero weight
    x = torch.ones(1, 3)  # no state: the input products alone, 3 x 2
    with SynapticOperations(cell) as metric:
        cell(x)
        metric.update()  # 6
        cell.weight_ih.data.zero_()  # autograd does not see it: followed from the next update
        cell(x)
        metric.update()  # 0
        cell(x)  # 0
        with torch.no_grad():
            cell.weight_ih.fill_(1.0)  # a tracked edit: followed at once
        cell(x)  # 6
        metric.update()
        assert float(metric.compute()["effective_acs"]) == (6 + 0 + 6) / 3


def test_nan_input_raises():
    cell = nn.GRUCell(2, 2)
    x = torch.tensor([[float("nan"), 1.0]])
    with SynapticOperations(cell) as metric:
        cell(x, torch.zeros(1, 2))
        metric.update()
        with pytest.raises(ValueError, match="NaN"):
            metric.compute()


def test_recurrent_layers_have_no_fanout_map():
    with pytest.raises(TypeError, match="call by call"):
        fanout(nn.LSTMCell(3, 2), (3,))
    with pytest.raises(TypeError, match="call by call"):
        fanout(nn.GRU(3, 2), (5, 3))


def test_quirks_option_is_checked():
    with pytest.raises(TypeError, match="neurobench_quirks"):
        lstm_cell_rule("ones")
    with pytest.raises(TypeError, match="neurobench_quirks"):
        gru_rule(None)


# ----------------------------------------------------------------------------- full layers


def explicit_cells(layer: nn.RNNBase) -> nn.ModuleDict:
    """One cell per (layer, direction), with the layer's weights."""
    cells = nn.ModuleDict()
    directions = 2 if layer.bidirectional else 1
    for index in range(layer.num_layers):
        for direction in range(directions):
            suffix = f"_l{index}" + ("_reverse" if direction else "")
            size = layer.input_size if index == 0 else layer.hidden_size * directions
            kwargs = {"nonlinearity": layer.nonlinearity} if isinstance(layer, nn.RNN) else {}
            cell = CELLS[type(layer)](size, layer.hidden_size, bias=layer.bias, **kwargs)
            with torch.no_grad():
                for name, _ in cell.named_parameters():
                    getattr(cell, name).copy_(getattr(layer, name + suffix))
            cells[suffix[1:]] = cell
    return cells


def run_explicit(layer: nn.RNNBase, cells: nn.ModuleDict, x: torch.Tensor, hx=None) -> None:
    """The layer as a loop of cells that always receive the state: [T, B, F] input."""
    directions = 2 if layer.bidirectional else 1
    steps, batch = x.shape[:2]
    lstm = isinstance(layer, nn.LSTM)
    if hx is None:
        zeros = torch.zeros(layer.num_layers * directions, batch, layer.hidden_size)
        hx = (zeros, zeros.clone()) if lstm else zeros
    inputs = x
    for index in range(layer.num_layers):
        outputs = []
        for direction in range(directions):
            cell = cells[f"l{index}" + ("_reverse" if direction else "")]
            k = index * directions + direction
            state = (hx[0][k], hx[1][k]) if lstm else hx[k]
            out = [None] * steps
            order = range(steps - 1, -1, -1) if direction else range(steps)
            for t in order:
                state = cell(inputs[t], state)
                out[t] = state[0] if lstm else state
            outputs.append(torch.stack(out))
        inputs = torch.cat(outputs, -1)


def sparse_weights(layer: nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in layer.parameters():
            p.mul_((torch.rand(p.shape, generator=gen) > 0.3).float())


LAYERS = {
    "rnn-tanh": lambda: nn.RNN(4, 3),
    "rnn-relu-2-layers-bidirectional": lambda: nn.RNN(
        4, 3, num_layers=2, nonlinearity="relu", bidirectional=True
    ),
    "gru-2-layers": lambda: nn.GRU(4, 3, num_layers=2),
    "gru-bidirectional-no-bias": lambda: nn.GRU(4, 3, bidirectional=True, bias=False),
    "lstm": lambda: nn.LSTM(4, 3),
    "lstm-3-layers-bidirectional": lambda: nn.LSTM(4, 3, num_layers=3, bidirectional=True),
}


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_full_layer_equals_loop_of_cells(name, batch_first):
    torch.manual_seed(3)
    layer = LAYERS[name]()
    sparse_weights(layer, seed=4)
    layer.batch_first = batch_first
    gen = torch.Generator().manual_seed(5)
    x = (torch.rand(6, 2, 4, generator=gen) < 0.5).float()  # [T, B, F] spikes
    x[2, 1, 0] = 3.0  # one graded step: that step of the first layer is a MAC call
    cells = explicit_cells(layer)
    expected = count_calls(cells, [lambda: run_explicit(layer, cells, x)], batch_size=2)
    # a full layer reports its own batch size: no batch_size needed
    got = count_calls(layer, [lambda: layer(x.transpose(0, 1) if batch_first else x)])
    assert got == pytest.approx(expected, rel=1e-12)
    assert expected["effective_acs"] > 0 and expected["effective_macs"] > 0


def test_full_layer_with_initial_state_and_zero_weights_off():
    torch.manual_seed(6)
    layer = nn.LSTM(3, 4, num_layers=2)
    sparse_weights(layer, seed=7)
    x = torch.randn(5, 3, 3)
    hx = (torch.randn(2, 3, 4), torch.randn(2, 3, 4))
    cells = explicit_cells(layer)
    for skip in (True, False):
        expected = count_calls(
            cells, [lambda: run_explicit(layer, cells, x, hx)], 3, skip_zero_weights=skip
        )
        got = count_calls(layer, [lambda: layer(x, hx)], skip_zero_weights=skip)
        assert got == pytest.approx(expected, rel=1e-12)


def test_unbatched_layer_is_one_sample():
    torch.manual_seed(8)
    layer = nn.GRU(3, 2, num_layers=2)
    x = torch.randn(4, 3)
    unbatched = count_calls(layer, [lambda: layer(x)])
    batched = count_calls(layer, [lambda: layer(x[:, None])])
    assert unbatched == batched


@pytest.mark.filterwarnings("ignore:LSTM with projections")
def test_lstm_projection_by_hand():
    torch.manual_seed(9)
    layer = nn.LSTM(1, 2, proj_size=1)  # default init: no zero weight
    x = torch.ones(1, 1, 1)
    result = count_calls(layer, [lambda: layer(x)])
    # gate products 8 * 1 (zero state: 0), every gate active, update i*g 2 (c is zero),
    # output 2; projection: 2 nonzero unprojected outputs x 1 weight each -> 14 ACs
    assert result["effective_acs"] == 14
    # dense, NeuroBench's binarised (zero) state: 8 + 2 + 2, projection 2 * 1 -> 14
    assert result["dense"] == 14
    register_connection(nn.LSTM, lstm_rule(neurobench_quirks=False))
    try:
        # ones: products 8 * (1 + 1), update 2 * 2, output 2, projection 2 -> 24
        assert count_calls(layer, [lambda: layer(x)])["dense"] == 24
    finally:
        register_connection(nn.LSTM, lstm_rule())


def test_packed_sequence_is_rejected():
    layer = nn.GRU(2, 2)
    packed = pack_padded_sequence(torch.randn(3, 2, 2), [3, 2])
    with SynapticOperations(layer), pytest.raises(TypeError, match="PackedSequence"):
        layer(packed)
