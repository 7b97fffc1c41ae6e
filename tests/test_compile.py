"""Metrics of a ``torch.compile``d model: figures equal to its eager twin, hooks traced into
the graph (no graph break) for the five counting metrics, and a clear error for a metric
attached after the model's first compiled call."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import pytest
import snntorch as snn
import torch
from torch import nn

import snnmetrics as sm
from snnmetrics.examples import reset_neurons
from tests.test_execution import SpikingSelfAttention
from tests.workloads import ALL_FACTORIES, STEPS, assert_equal, build_net, figures, fold, make_batch

torch._dynamo = pytest.importorskip("torch._dynamo")

FIVE = {
    "synops": sm.SynapticOperations,
    "neuron_ops": sm.NeuronOperations,
    "membrane": sm.MembraneUpdates,
    "sparsity": lambda net: sm.ActivationSparsity(net, by_layer=True),
    "firing": sm.FiringRate,
    "energy": sm.Energy,
}


@pytest.fixture(autouse=True)
def fresh_dynamo():
    """Compiled code is cached per code object, not per model: start each test afresh."""
    torch._dynamo.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # inductor's notes on CPU
        yield
    torch._dynamo.reset()


def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(12, 32), snn.Leaky(beta=0.9, init_hidden=True),
        nn.Linear(32, 32), snn.Leaky(beta=0.9, init_hidden=True),
        nn.Linear(32, 5), snn.Leaky(beta=0.9, init_hidden=True),
    )


def conv() -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), snn.Leaky(beta=0.9, init_hidden=True), nn.MaxPool2d(2),
        nn.Conv2d(4, 8, 3, padding=1), snn.Leaky(beta=0.9, init_hidden=True),
        nn.Flatten(), nn.Linear(8 * 4 * 4, 5), snn.Leaky(beta=0.9, init_hidden=True),
    )
    with torch.no_grad():
        net[3].weight[:, :2] = 0.0  # zero weights: the effective fanout matters
    return net


def _run(
    make: Callable[[], nn.Module],
    factories: dict[str, Callable[[nn.Module], sm.HookedMetric]],
    shape: tuple[int, ...],
    compiled: bool,
    backend: str = "inductor",
) -> tuple[dict[str, object], nn.Module]:
    net = make()
    metrics = {name: factory(net) for name, factory in factories.items()}
    model = torch.compile(net, backend=backend) if compiled else net
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for batch, size in enumerate((4, 3, 4)):  # graded input in batch 1: MAC calls
            x = (torch.rand(5, size, *shape, generator=gen) < 0.4).float() * (1 + batch % 2)
            reset_neurons(net)
            for t in range(x.shape[0]):
                model(x[t])
            for metric in metrics.values():
                metric.update()
    return {name: figures(metric) for name, metric in metrics.items()}, net


@pytest.mark.parametrize(("make", "shape"), [(mlp, (12,)), (conv, (2, 8, 8))], ids=["mlp", "conv"])
def test_compiled_figures_equal_eager_and_hooks_compile_into_the_graph(make, shape):
    eager, _ = _run(make, FIVE, shape, compiled=False)
    torch._dynamo.reset()
    compiled, net = _run(make, FIVE, shape, compiled=True)
    assert_equal(compiled, eager)
    explained = torch._dynamo.explain(net)(torch.zeros(4, *shape))
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1


def test_every_metric_family_compiled_equals_eager():
    """Taps without a traced variant (recurrent cells, sparse-code taps) run eagerly at a
    graph break: the figures stay exact. (Dynamo's tracing is what matters here, so the
    graphs run without inductor, which the test above covers.)"""

    def run(compiled: bool) -> dict[str, object]:
        net = build_net()
        metrics = {name: factory(net) for name, factory in ALL_FACTORIES.items()}
        model = torch.compile(net, backend="aot_eager") if compiled else net
        with torch.no_grad():
            for index in (0, 3):
                x = make_batch(index)
                reset_neurons(net)
                for t in range(STEPS):
                    model(x[:, t])
                for metric in metrics.values():
                    fold(metric, index)
        return {name: figures(metric) for name, metric in metrics.items()}

    eager = run(compiled=False)
    torch._dynamo.reset()
    assert_equal(run(compiled=True), eager)


def _assert_attention_compiles_as_eager(
    make: Callable[[], nn.Module], factories: dict[str, Callable[[nn.Module], sm.HookedMetric]]
) -> None:
    """Figures of the compiled attention model (tokens [5, 8] per step) equal eager ones,
    and its hooks trace into one graph."""
    eager, _ = _run(make, factories, (5, 8), compiled=False)
    torch._dynamo.reset()
    compiled, net = _run(make, factories, (5, 8), compiled=True, backend="aot_eager")
    assert_equal(compiled, eager)
    explained = torch._dynamo.explain(net)(torch.zeros(3, 5, 8))
    assert explained.graph_break_count == 0, explained.break_reasons


def test_attention_written_with_matmul_compiled_equals_eager():
    def make() -> nn.Module:
        torch.manual_seed(8)
        return nn.Sequential(SpikingSelfAttention())

    factories = {"synops": sm.SynapticOperations, "firing": sm.FiringRate}
    _assert_attention_compiles_as_eager(make, factories)


class SpikingMHA(nn.Module):
    """``nn.MultiheadAttention`` on spikes ``[batch, tokens, dim]``, called with keywords
    and masks; ``separate`` gives it keys and values of another width (their own
    projections), ``bias_k``/``bias_v``, a zero key, sequence-first layout and a key
    padding mask."""

    def __init__(self, separate: bool, dim: int = 8, heads: int = 2) -> None:
        super().__init__()
        self.separate = separate
        self.lif = snn.Leaky(beta=0.5, init_hidden=True, threshold=0.3)
        if separate:
            self.memory = nn.Linear(dim, 6)
            self.attention = nn.MultiheadAttention(
                dim, heads, kdim=6, vdim=6, add_bias_kv=True, add_zero_attn=True
            )
            weights = (self.attention.q_proj_weight, self.attention.k_proj_weight)
        else:
            self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)
            weights = (self.attention.in_proj_weight,)
        with torch.no_grad():
            weights[-1][:3] = 0.0  # zero weights: effective != structural

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spikes = self.lif(x)
        tokens = x.shape[1]
        mask = torch.ones(tokens, tokens, dtype=torch.bool).triu(1)
        if not self.separate:
            return self.attention(spikes, spikes, spikes, attn_mask=mask, need_weights=False)[0]
        query, memory = spikes.transpose(0, 1), self.memory(spikes).transpose(0, 1)
        padding = torch.zeros(x.shape[0], tokens, dtype=torch.bool)
        padding[:, -1] = True
        return self.attention(query, memory, memory, key_padding_mask=padding)[0]


@pytest.mark.parametrize("separate", [False, True], ids=["self", "separate_kv"])
def test_multihead_attention_compiled_equals_eager_without_a_graph_break(separate):
    def make() -> nn.Module:
        torch.manual_seed(3)
        return nn.Sequential(SpikingMHA(separate))

    factories = {
        "synops": sm.SynapticOperations,
        "synops_all_weights": lambda net: sm.SynapticOperations(net, skip_zero_weights=False),
        "energy": sm.Energy,
    }
    _assert_attention_compiles_as_eager(make, factories)


def test_a_metric_attached_after_the_first_compiled_call_raises_what_to_do():
    net = mlp()
    model = torch.compile(net, backend="aot_eager")
    with torch.no_grad():
        for _ in range(2):  # compiled without hooks, for neurons whose state has its shape
            model(torch.ones(2, 12))
    late = sm.SynapticOperations(net)
    with torch.no_grad():
        model(torch.ones(2, 12))
    with pytest.raises(ValueError, match=r"torch._dynamo.reset\(\)"):
        late.update()
    torch._dynamo.reset()  # as the message says: the next call compiles with the hooks
    with torch.no_grad():
        model(torch.ones(2, 12))
    late.update()
    assert float(late.compute()["dense"]) == 12 * 32 + 32 * 32 + 32 * 5


def test_a_metric_on_new_layers_of_a_compiled_model_raises_what_to_do():
    net = mlp()
    synops = sm.SynapticOperations(net)  # hooks the Linear layers before compiling
    model = torch.compile(net, backend="aot_eager")
    with torch.no_grad():
        for _ in range(2):
            model(torch.ones(2, 12))
    synops.update()
    energy = sm.Energy(net)  # also watches the neurons, whose hooks the graph lacks
    with torch.no_grad():
        model(torch.ones(2, 12))
    synops.update()  # its own layers ran compiled with their hooks
    with pytest.raises(ValueError, match=r"layers \['1', '3', '5'\] never ran"):
        energy.update()


def test_an_update_reads_each_traced_call_record_once_and_never_a_stale_one():
    """Within a read scope (an update holds one) a tap reads its traced call record from
    the device once, not at every use (each read is a host sync on a GPU); outside one,
    every read is fresh."""
    from snnmetrics.tracking.hub import reading

    net = mlp()
    synops = sm.SynapticOperations(net)
    model = torch.compile(net, backend="aot_eager")
    tap = synops._connections.taps[0]
    with torch.no_grad():
        model(torch.ones(2, 12))
        model(torch.ones(2, 12))
    assert tap.traced and tap.calls == 2
    with torch.no_grad():
        model(torch.ones(2, 12))
    assert tap.calls == 3  # read afresh outside a scope
    with reading():
        assert tap.calls == 3
        with torch.no_grad():
            model(torch.ones(2, 12))  # (which no real scope lets happen)
        assert tap.calls == 3  # the record read at the scope's first use
    assert tap.calls == 4
    synops.update()  # one window of 4 steps of 2 samples
    assert float(synops.compute()["dense"]) == 4 * (12 * 32 + 32 * 32 + 32 * 5)
