"""A small mixed snnTorch model, its data, and every hooked metric: shared by the tests of
distribution, checkpoints and collections."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import snntorch as snn
import torch
from snntorch import surrogate
from torch import nn

import snnmetrics as sm

BATCH_SIZES = (4, 1, 6, 3, 2)
STEPS = 4

FACTORIES: dict[str, Callable[[nn.Module], sm.HookedMetric]] = {
    "synops": sm.SynapticOperations,
    "synops_all_weights": lambda net: sm.SynapticOperations(net, skip_zero_weights=False),
    "neuron_ops": sm.NeuronOperations,
    "membrane": sm.MembraneUpdates,
    "sparsity": sm.ActivationSparsity,
    "sparsity_by_layer": lambda net: sm.ActivationSparsity(net, by_layer=True),
    "firing": lambda net: sm.FiringRate(net, bins=7),
    "energy": sm.Energy,
    "energy_memory": lambda net: sm.Energy(
        net, table="horowitz45nm_int8", memory=sm.MemoryModel(), steps_per_inference=STEPS
    ),
}


CODE_FACTORIES: dict[str, Callable[[nn.Module], sm.HookedMetric]] = {
    "num_activations": sm.NumActivations,
    "basis_set_size": lambda net: sm.BasisSetSize(net, capacity=16),
    "basis_set_size_increase": lambda net: sm.BasisSetSizeIncrease(net, capacity=16),
    "basis_average": sm.BasisAverage,
    "feature_coverage": sm.FeatureCoverage,
    "match_accuracy": lambda net: sm.MatchAccuracy(net, num_keys=3),
}
"""The sparse-code metrics on :func:`build_net` (fold them with :func:`fold`)."""

ALL_FACTORIES = {**FACTORIES, **CODE_FACTORIES}


def atan_spike_grad(x: torch.Tensor) -> torch.Tensor:
    """snnTorch's arctan surrogate as a module-level function: a neuron using it pickles
    (snnTorch's default is a local function, which does not)."""
    return surrogate.ATan.apply(x, 2.0)


def build_net(picklable: bool = False) -> nn.Sequential:
    """Conv1d, Linear (some zero weights), RLeaky, ReLU and Synaptic: every kind of layer.

    ``picklable=True`` gives the neurons :func:`atan_spike_grad`, so that the model pickles.
    """
    torch.manual_seed(3)
    grad: dict[str, Any] = {"spike_grad": atan_spike_grad} if picklable else {}
    net = nn.Sequential(
        nn.Conv1d(2, 3, 3, stride=2, padding=1), snn.Leaky(beta=0.8, init_hidden=True, **grad),
        nn.Flatten(), nn.Linear(3 * 4, 6),
        snn.RLeaky(beta=0.7, linear_features=6, init_hidden=True, **grad),
        nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4),
        snn.Synaptic(alpha=0.6, beta=0.8, init_hidden=True, reset_mechanism="zero", **grad),
    )
    with torch.no_grad():
        net[3].weight[:, ::4] = 0.0
        for module in net:
            if isinstance(module, nn.Linear):
                module.weight.mul_(3.0)
    return net


def gsc_snn() -> nn.Sequential:
    """NeuroBench's GSC SNN (``examples/gsc/SNN.py``): 20-256-256-256-35, Leaky(0.9)."""

    def leaky(**kwargs: Any) -> snn.Leaky:
        return snn.Leaky(beta=0.9, init_hidden=True, **kwargs)

    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(20, 256),
        leaky(),
        nn.Linear(256, 256),
        leaky(),
        nn.Linear(256, 256),
        leaky(),
        nn.Linear(256, 35),
        leaky(output=True),
    )


def make_batch(index: int) -> torch.Tensor:
    """Batch ``index`` of spikes ``[B, STEPS, 2, 8]``; batch 3 is graded (MAC calls)."""
    gen = torch.Generator().manual_seed(50 + index)
    x = (torch.rand(BATCH_SIZES[index], STEPS, 2, 8, generator=gen) < 0.5).float()
    return x * 3.0 if index == 3 else x


def run_batch(net: nn.Module, index: int) -> None:
    """Run batch ``index`` step by step from fresh neuron states (no metric update)."""
    x = make_batch(index)
    for module in net.modules():
        if isinstance(module, snn.SpikingNeuron):
            module.reset_mem()
    with torch.no_grad():
        for t in range(x.shape[1]):
            net(x[:, t])


def match_keys(index: int, num_keys: int = 3) -> torch.Tensor:
    """The key of each sample of batch ``index`` for ``MatchAccuracy``."""
    return torch.arange(BATCH_SIZES[index]) % num_keys


def fold(metric: Any, index: int) -> None:
    """``metric.update()`` after batch ``index`` (``metric`` may also be a collection or
    tracker). A ``MatchAccuracy`` gets :func:`match_keys` and stores the codes of its first
    window since a reset (or its creation), then compares the others with them."""
    if isinstance(metric, sm.MatchAccuracy):
        metric.update(match_keys(index, metric.num_keys), store=int(metric.samples) == 0)
    else:
        metric.update()


def feed(net: nn.Module, metrics: list[Any], indices: list[int]) -> None:
    """Run the batches ``indices`` step by step, updating ``metrics`` after each."""
    for index in indices:
        run_batch(net, index)
        for metric in metrics:
            fold(metric, index)


def run_metrics(names: list[str], indices: list[int]) -> dict[str, sm.HookedMetric]:
    net = build_net()
    metrics = {name: ALL_FACTORIES[name](net) for name in names}
    feed(net, list(metrics.values()), indices)
    return metrics


def figures(metric: sm.HookedMetric) -> dict[str, Any]:
    """``compute()`` and, where the metric has it, ``compute_per_layer()``."""
    per_layer = getattr(metric, "compute_per_layer", None)
    return {"total": metric.compute(), "per_layer": per_layer() if per_layer else None}


def assert_equal(got: Any, expected: Any, where: str = "") -> None:
    """Exact equality of nested dicts of tensors (NaN where the other has NaN)."""
    if isinstance(expected, dict):
        assert set(got) == set(expected), where
        for key in expected:
            assert_equal(got[key], expected[key], f"{where}/{key}")
    elif isinstance(expected, torch.Tensor):
        torch.testing.assert_close(got, expected, rtol=0, atol=0, equal_nan=True, msg=where)
    else:
        assert got == expected, where


SYNCING = ("item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__", "__index__")


@contextlib.contextmanager
def host_reads(monkeypatch: Any) -> Iterator[list[str]]:
    """A CPU stand-in for CUDA's sync debug mode: the names of the tensor methods that
    made a tensor a Python value or a host copy while the block ran."""
    seen: list[str] = []
    for name in SYNCING:
        original = getattr(torch.Tensor, name)

        def spy(self: torch.Tensor, *args: Any, _name: str = name, _original: Any = original,
                **kwargs: Any) -> Any:
            seen.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, spy)
    try:
        yield seen
    finally:
        monkeypatch.undo()

