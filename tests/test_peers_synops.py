"""`SynapticOperations(skip_zero_weights=False)` against sinabs and spikingjelly counters.

Both peers count structural synapses (zero weights too), so ours runs with
``skip_zero_weights=False``. Each test builds a model on which the definitions coincide and
converts units explicitly:

* sinabs' ``SNNAnalyzer`` gives, per Conv2d/Linear, ``sum(input * fanout map)`` summed
  over time and averaged over the batch, i.e. per sample (ours); the input is weighted by
  its value, so its neurons emit single spikes (``SingleSpike``), where a count equals a
  nonzero. ``sinabs.hooks`` gives the same per *timestep* and sample: ours / T.
  ``get_layer_statistics`` multiplies a layer after ``AvgPool2d(k)`` by k², the spikes a
  pooled value stands for; that equals ours when no pooling window holds two spikes.
* spikingjelly's ``SynOpCounter`` gives the total over the forward pass of spike-driven
  (input in {0, 1}) operations and nothing for other inputs: ours (ACs) x samples.

The peers are installed with ``pip install --no-deps`` (sinabs 3.1.3 also needs
``nir``, ``nirtorch``, ``pbr`` and ``h5py``; spikingjelly 2.0.0 needs ``loguru``).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from snnmetrics import SynapticOperations
from snnmetrics.connections import connection_rule

pytestmark = [
    pytest.mark.optional,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]

B, T = 3, 4


@pytest.fixture(scope="module")
def spikingjelly():
    pytest.importorskip(
        "spikingjelly.activation_based.op_counter",
        reason="spikingjelly not installed: pip install --no-deps spikingjelly==2.0.0 loguru",
    )
    from types import SimpleNamespace

    from spikingjelly.activation_based import functional, layer, neuron

    return SimpleNamespace(functional=functional, layer=layer, neuron=neuron)


def drive(net: nn.Module, seed: int, zero_fraction: float = 0.3) -> None:
    """Zero some weights (structural counts keep them) and scale the rest to drive spikes."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
                keep = (torch.rand(module.weight.shape, generator=gen) >= zero_fraction).float()
                module.weight.mul_(3.0 * keep)


def spikes(shape: tuple[int, ...], seed: int, p: float = 0.3) -> torch.Tensor:
    return (torch.rand(shape, generator=torch.Generator().manual_seed(seed)) < p).float()


def per_layer_synops(metric: SynapticOperations) -> dict[str, float]:
    return {name: float(layer["synops"]) for name, layer in metric.compute_per_layer().items()}


# ----------------------------------------------------------------------------- sinabs


def sinabs_net(sinabs, *, pool: bool = False) -> nn.Sequential:
    from sinabs.activation import SingleSpike

    def iaf():
        return sinabs.layers.IAFSqueeze(batch_size=B, spike_fn=SingleSpike)

    torch.manual_seed(0)
    head = [nn.AvgPool2d(2)] if pool else []
    size = 4 if pool else 8
    net = nn.Sequential(
        *head,
        nn.Conv2d(2, 4, 3, stride=2, padding=1, bias=False),
        iaf(),
        nn.Conv2d(4, 4, 3, padding=1, groups=2),  # bias: counted by neither
        iaf(),
        nn.Flatten(),
        nn.Linear(4 * (size // 2) ** 2, 5),
        iaf(),
    )
    drive(net, seed=1)
    return net


def analyzer_synops(analyzer) -> dict[str, float]:
    """SNNAnalyzer's per-sample synops of each layer (with its AvgPool2d scaling)."""
    stats = analyzer.get_layer_statistics()["parameter"]
    return {name: float(layer["synops"]) for name, layer in stats.items()}


def reset_sinabs(sinabs, net: nn.Module) -> None:
    for module in net.modules():
        if isinstance(module, sinabs.layers.StatefulLayer):
            module.reset_states()


def test_sinabs_analyzer_equals_ours(sinabs):
    net = sinabs_net(sinabs)
    x = spikes((B * T, 2, 8, 8), seed=2)  # squeezed [B*T, ...], sample-major
    analyzer = sinabs.SNNAnalyzer(net)
    net(x)
    theirs = analyzer_synops(analyzer)
    model_total = float(analyzer.get_model_statistics()["synops"])
    reset_sinabs(sinabs, net)
    with SynapticOperations(net, skip_zero_weights=False) as ours:
        net(x)
        ours.update(batch_size=B)  # dim 0 is B*T
        got = per_layer_synops(ours)
        total = float(ours.compute()["synops"])
    assert set(got) == set(theirs) == {"0", "2", "5"}
    assert all(value > 0 for value in theirs.values())
    for name in theirs:  # sinabs sums in float32
        assert got[name] == pytest.approx(theirs[name], rel=1e-6)
    assert total == pytest.approx(model_total, rel=1e-6)
    # zero weights: sinabs counts them, our default (NeuroBench's) does not
    reset_sinabs(sinabs, net)
    with SynapticOperations(net) as effective:
        net(x)
        effective.update(batch_size=B)
        assert float(effective.compute()["synops"]) < total


def test_sinabs_hooks_count_per_timestep(sinabs):
    from sinabs.hooks import register_synops_hooks

    net = sinabs_net(sinabs)
    x = spikes((B * T, 2, 8, 8), seed=3)
    register_synops_hooks(net)
    net(x)
    theirs = net.hook_data["synops_per_timestep"]  # keyed by index in the Sequential
    reset_sinabs(sinabs, net)
    with SynapticOperations(net, skip_zero_weights=False) as ours:
        net(x)
        ours.update(batch_size=B)
        got = per_layer_synops(ours)
    for index, value in theirs.items():
        assert got[str(index)] == pytest.approx(float(value) * T, rel=1e-6)


def test_sinabs_avgpool_scaling_equals_ours_with_one_spike_per_window(sinabs):
    net = sinabs_net(sinabs, pool=True)
    x = torch.zeros(B * T, 2, 8, 8)
    gen = torch.Generator().manual_seed(4)
    # at most one spike per 2x2 window: a pooled value of 1/4 stands for one spike
    corner = torch.randint(0, 2, (B * T, 2, 4, 4, 2), generator=gen)
    fire = torch.rand(B * T, 2, 4, 4, generator=gen) < 0.5
    for i, j in ((0, 0), (0, 1), (1, 0), (1, 1)):
        at = fire & (corner[..., 0] == i) & (corner[..., 1] == j)
        x[:, :, i::2, j::2] = at.float()
    analyzer = sinabs.SNNAnalyzer(net)
    net(x)
    theirs = analyzer_synops(analyzer)
    reset_sinabs(sinabs, net)
    with SynapticOperations(net, skip_zero_weights=False) as ours:
        net(x)
        ours.update(batch_size=B)
        got = per_layer_synops(ours)
        macs = float(ours.compute()["effective_macs"])
    assert got["1"] == pytest.approx(theirs["1"], rel=1e-6)  # the conv after the pooling
    assert macs == pytest.approx(got["1"])  # pooled values of 1/4: MAC calls for us


# ----------------------------------------------------------------------------- spikingjelly


def spikingjelly_net(sj, container: bool = True) -> nn.Sequential:
    layer, neuron = sj.layer, sj.neuron
    torch.manual_seed(5)
    conv = nn.Conv2d(2, 4, 3, stride=2, padding=1, bias=False)
    if container:  # [T, B, ...] flattened to [T*B, ...] around torch layers
        head = layer.SeqToANNContainer(conv, nn.BatchNorm2d(4))
    else:  # spikingjelly's own layer wrappers, which step in either mode
        head = nn.Sequential(
            layer.Conv2d(2, 4, 3, stride=2, padding=1, bias=False, step_mode="m"),
            layer.BatchNorm2d(4, step_mode="m"),
        )
    net = nn.Sequential(
        head,
        neuron.IFNode(step_mode="m"),
        layer.ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1, step_mode="m"),
        neuron.IFNode(step_mode="m"),
        layer.Conv2d(2, 3, 3, padding=1, groups=1, step_mode="m"),
        neuron.IFNode(step_mode="m"),
        layer.Flatten(step_mode="m"),
        layer.Linear(3 * 8 * 8, 5, step_mode="m"),
        neuron.IFNode(step_mode="m"),
    )
    drive(net, seed=6)
    return net.eval()


def spikingjelly_total(sj, net: nn.Module, x: torch.Tensor) -> int:
    from spikingjelly.activation_based.op_counter import DispatchCounterMode, SynOpCounter

    counter = SynOpCounter()
    with torch.no_grad(), DispatchCounterMode([counter]):
        net(x)
    sj.functional.reset_net(net)
    return int(counter.get_total())


def test_spikingjelly_op_counter_equals_ours(spikingjelly):
    sj = spikingjelly
    net = spikingjelly_net(sj)
    x = spikes((T, B, 2, 8, 8), seed=7)  # multi-step: [T, B, ...]
    theirs = spikingjelly_total(sj, net, x)
    with SynapticOperations(net, skip_zero_weights=False) as ours, torch.no_grad():
        net(x)
        ours.update(batch_size=B)  # dim 0 of the first input is T*B (SeqToANNContainer)
        result = {key: float(value) for key, value in ours.compute().items()}
    sj.functional.reset_net(net)
    assert theirs > 0 and result["effective_macs"] == 0  # every input is a spike
    assert result["effective_acs"] * B == theirs
    # graded input: spikingjelly counts nothing for the first layer, we count MACs
    graded = x * 2.0
    theirs = spikingjelly_total(sj, net, graded)
    with SynapticOperations(net, skip_zero_weights=False) as ours, torch.no_grad():
        net(graded)
        ours.update(batch_size=B)
        result = {key: float(value) for key, value in ours.compute().items()}
    sj.functional.reset_net(net)
    assert result["effective_macs"] > 0
    assert result["effective_acs"] * B == theirs


def test_spikingjelly_multi_step_equals_single_step(spikingjelly):
    # NeuroBench-style counting: a [T, B] call with batch_size=B is T single steps of B
    sj = spikingjelly
    net = spikingjelly_net(sj, container=False)
    x = spikes((T, B, 2, 8, 8), seed=8)
    with SynapticOperations(net) as multi, torch.no_grad():
        net(x)
        multi.update(batch_size=B)
        expected = {key: float(value) for key, value in multi.compute().items()}
    sj.functional.reset_net(net)
    sj.functional.set_step_mode(net, "s")
    with SynapticOperations(net) as single, torch.no_grad():
        for t in range(T):
            net(x[t])
        single.update()  # dim 0 is B
        got = {key: float(value) for key, value in single.compute().items()}
    assert got == pytest.approx(expected, rel=1e-12)


def test_spikingjelly_drop_connect_linear_counts_as_linear(spikingjelly):
    # in training it drops weights per sample; the count reads the layer's stored weight
    drop_connect = spikingjelly.layer.DropConnectLinear(6, 4, p=0.5, bias=False)
    assert connection_rule(drop_connect) is not None  # registered on first look-up
    with torch.no_grad():
        drop_connect.weight.copy_(torch.randn(4, 6) * (torch.rand(4, 6) > 0.4))
    x = spikes((B, 6), seed=9, p=0.5)
    with SynapticOperations(drop_connect) as ours:
        drop_connect(x)
        ours.update()
        result = float(ours.compute()["effective_acs"])
    pairs = int(((x != 0).double() @ (drop_connect.weight != 0).double().T).sum())
    assert result * B == pairs
