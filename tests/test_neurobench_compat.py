"""snnmetrics against NeuroBench 2.3.0 on the same models and data.

Synaptic operations are compared on random snnTorch models (Linear/Conv1d/Conv2d with
stride, padding, dilation, groups and "same"; Leaky/Synaptic/RLeaky neurons; zeroed
weights; spike and graded inputs; batches of unequal size). Sizes are kept small enough
that NeuroBench's float32 sums of each call are exact, so its integer totals are compared
exactly and its per-sample figures to 1e-12.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.optional

pytest.importorskip(
    "neurobench", reason="neurobench not installed: pip install --no-deps neurobench==2.3.0"
)

import snntorch as snn  # noqa: E402
import torch  # noqa: E402
from neurobench.benchmarks import Benchmark  # noqa: E402
from neurobench.metrics.static import (  # noqa: E402
    ConnectionSparsity,
    Footprint,
    ParameterCount,
)
from neurobench.metrics.workload import SynapticOperations as NBSynapticOperations  # noqa: E402
from neurobench.models import SNNTorchModel, TorchModel  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from snnmetrics import SynapticOperations  # noqa: E402
from snnmetrics.functional import (  # noqa: E402
    connection_sparsity,
    footprint,
    parameter_count,
)

CONNECTIONS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


# ----------------------------------------------------------------------------- models


def _leaky(**kwargs) -> snn.Leaky:
    return snn.Leaky(beta=0.5, init_hidden=True, **kwargs)


def linear_net() -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(12, 10),
        _leaky(),
        nn.Linear(10, 8, bias=False),
        snn.Synaptic(alpha=0.6, beta=0.5, init_hidden=True),
        nn.Linear(8, 4),
        _leaky(output=True),
    )


def conv2d_net() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, stride=2, padding=1),
        _leaky(),
        nn.Conv2d(4, 6, 3, padding="same", dilation=2, groups=2),
        _leaky(graded_spikes_factor=0.5),  # graded spikes: the next layer does MACs
        nn.Flatten(),
        nn.Linear(6 * 4 * 4, 5),
        _leaky(output=True),
    )


def conv1d_rleaky_net(reset: str) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv1d(3, 6, 5, stride=2, padding=2, groups=3),
        _leaky(),
        nn.Conv1d(6, 4, 3, dilation=2, padding=2, padding_mode="reflect"),
        _leaky(),
        nn.Flatten(),
        nn.Linear(4 * 6, 10),
        snn.RLeaky(beta=0.5, linear_features=10, reset_mechanism=reset, init_hidden=True),
        nn.Linear(10, 3),
        _leaky(output=True),
    )


MODELS = {
    "linear": (linear_net, (12,)),
    "conv2d": (conv2d_net, (2, 8, 8)),
    "conv1d-rleaky-subtract": (lambda: conv1d_rleaky_net("subtract"), (3, 12)),
    "conv1d-rleaky-zero": (lambda: conv1d_rleaky_net("zero"), (3, 12)),
}


def build(name: str, seed: int) -> tuple[nn.Module, tuple[int, ...]]:
    factory, shape = MODELS[name]
    torch.manual_seed(seed)
    net = factory()
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, CONNECTIONS):
                keep = (torch.rand_like(module.weight) > 0.3).float()
                sign = torch.where(torch.rand_like(module.weight) < 0.2, -1.0, 1.0)
                module.weight.copy_(module.weight.abs() * sign * keep * 3.0)  # drive spikes
    return net, shape


def make_batches(shape, seed: int, sizes=(3, 5, 2), steps: int = 4) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    batches = []
    for i, size in enumerate(sizes):
        full = (size, steps, *shape)
        if i % 2 == 0:  # spikes
            batches.append((torch.rand(full, generator=gen) < 0.4).float())
        else:  # graded: event counts and signed spikes mixed in
            batches.append(torch.randint(-1, 4, full, generator=gen).float())
    return batches


def run_both(net: nn.Module, batches, skip_zero_weights: bool = True):
    """Run NeuroBench's SynapticOperations and ours on the same forward passes."""
    model = SNNTorchModel(net)
    model.register_hooks()
    theirs = NBSynapticOperations()
    ours = SynapticOperations(net, skip_zero_weights=skip_zero_weights)
    for x in batches:
        preds = model(x)
        theirs(model, preds, (x, torch.zeros(len(x))))
        model.reset_hooks()
        ours.update()
    model.cleanup_hooks()
    ours.detach()
    return theirs, ours


def assert_equal_synops(theirs, ours, samples: int) -> None:
    result = {key: float(value) for key, value in ours.compute().items()}
    expected = theirs.compute()
    assert result["effective_acs"] == pytest.approx(expected["Effective_ACs"], rel=1e-12)
    assert result["effective_macs"] == pytest.approx(expected["Effective_MACs"], rel=1e-12)
    assert result["dense"] == pytest.approx(expected["Dense"], rel=1e-12)
    # the integer totals, exactly
    assert round(result["effective_acs"] * samples) == theirs.AC
    assert round(result["effective_macs"] * samples) == theirs.MAC
    assert round(result["dense"] * samples) == theirs.total_synops


# ----------------------------------------------------------------------------- synops


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_synaptic_operations_equal_neurobench(name, seed):
    net, shape = build(name, seed)
    batches = make_batches(shape, seed + 100)
    theirs, ours = run_both(net, batches)
    assert theirs.AC > 0 and theirs.MAC > 0  # both kinds appear
    # every layer, the recurrent one included, sees some spikes
    assert all(float(layer["synops"]) > 0 for layer in ours.compute_per_layer().values())
    assert_equal_synops(theirs, ours, sum(len(x) for x in batches))


def test_skip_zero_weights_false_equals_neurobench_on_dense_weights():
    # with no zero weights both conventions agree, so NeuroBench is the reference
    torch.manual_seed(3)
    net = conv2d_net()
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, CONNECTIONS):
                module.weight.add_(torch.where(module.weight == 0, 1.0, 0.0))
    batches = make_batches((2, 8, 8), 4)
    theirs, ours = run_both(net, batches, skip_zero_weights=False)
    assert_equal_synops(theirs, ours, sum(len(x) for x in batches))


def test_ann_equals_neurobench():
    torch.manual_seed(5)
    net = nn.Sequential(
        nn.Conv1d(1, 4, 8, stride=4),
        nn.ReLU(),
        nn.MaxPool1d(2),
        nn.Conv1d(4, 4, 3, padding=1, groups=2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 7, 6),
        nn.Sigmoid(),
        nn.Linear(6, 3, bias=False),
    )
    with torch.no_grad():
        net[3].weight[0].zero_()
    model = TorchModel(net)
    model.register_hooks()
    theirs = NBSynapticOperations()
    ours = SynapticOperations(net)
    gen = torch.Generator().manual_seed(6)
    samples = 0
    for size in (4, 1, 3):
        x = torch.randn(size, 1, 60, generator=gen)
        preds = model(x)
        theirs(model, preds, (x, torch.zeros(size)))
        model.reset_hooks()
        ours.update()
        samples += size
    model.cleanup_hooks()
    assert theirs.MAC > 0
    assert_equal_synops(theirs, ours, samples)


def test_benchmark_run_equals_ours():
    net, shape = build("conv2d", 7)
    gen = torch.Generator().manual_seed(8)
    data = torch.randint(0, 3, (10, 3, *shape), generator=gen).float()
    loader = DataLoader(TensorDataset(data, torch.zeros(10)), batch_size=4)  # 4, 4, 2

    benchmark = Benchmark(
        SNNTorchModel(net),
        loader,
        [],
        [],
        [[ParameterCount, Footprint, ConnectionSparsity], [NBSynapticOperations]],
    )
    results = benchmark.run(quiet=True)
    benchmark.workload_metric_manager.cleanup_hooks(benchmark.model)

    ours = SynapticOperations(net)
    for x, _ in loader:
        for module in net.modules():
            if isinstance(module, snn.SpikingNeuron):
                module.reset_mem()
        for t in range(x.shape[1]):
            net(x[:, t])
        ours.update()
    result = {key: float(value) for key, value in ours.compute().items()}
    expected = results["SynapticOperations"]
    assert expected["Effective_MACs"] > 0 and expected["Effective_ACs"] > 0
    assert result["effective_acs"] == pytest.approx(expected["Effective_ACs"], rel=1e-12)
    assert result["effective_macs"] == pytest.approx(expected["Effective_MACs"], rel=1e-12)
    assert result["dense"] == pytest.approx(expected["Dense"], rel=1e-12)
    assert results["ParameterCount"] == parameter_count(net)
    assert results["ConnectionSparsity"] == connection_sparsity(net)


# ----------------------------------------------------------------------------- static


def static_models():
    torch.manual_seed(9)
    lstm_net = nn.Sequential(
        nn.Linear(3, 4),
        nn.LSTMCell(4, 5),
        nn.GRU(2, 3, num_layers=2),
        nn.RNNCell(3, 2, bias=False),
        nn.BatchNorm1d(4),
    )
    models = {name: build(name, 10)[0] for name in MODELS}
    models["recurrent"] = lstm_net
    for net in models.values():
        with torch.no_grad():
            for p in net.parameters():
                p.mul_((torch.rand_like(p) > 0.25).float())
    return models


@pytest.mark.parametrize("name", [*sorted(MODELS), "recurrent"])
def test_static_metrics_equal_neurobench(name):
    net = static_models()[name]
    model = TorchModel(net)
    assert ParameterCount()(model) == parameter_count(net)
    assert Footprint()(model) == footprint(net)
    assert ConnectionSparsity()(model) == connection_sparsity(net)
    if name in MODELS:  # snnTorch state buffers follow the last batch
        for module in net.modules():
            if isinstance(module, snn.SpikingNeuron):
                module.reset_mem()
        net(torch.ones(3, *MODELS[name][1]))
        assert Footprint()(model) == footprint(net)
        assert Footprint()(model) > footprint(net, include_state_buffers=False)


@pytest.mark.parametrize("zeros", [1, 3, 11, 2, 7])
def test_connection_sparsity_rounds_like_neurobench(zeros):
    # 20,000 weights: zeros / 20000 sits on a rounding tie at the 4th decimal
    layer = nn.Linear(200, 100, bias=False)
    with torch.no_grad():
        layer.weight.fill_(1.0)
        layer.weight.view(-1)[:zeros] = 0.0
    net = nn.Sequential(layer)
    assert connection_sparsity(net) == ConnectionSparsity()(TorchModel(net))


def test_footprint_with_a_shared_buffer_equals_neurobench():
    beta = torch.tensor(0.9)
    net = nn.Sequential(
        nn.Linear(3, 3), snn.Leaky(beta=beta), nn.Linear(3, 3), snn.Leaky(beta=beta)
    )
    assert footprint(net) == Footprint()(TorchModel(net))
