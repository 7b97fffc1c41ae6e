"""A drop-in for NeuroBench 2.3.0's ``Benchmark``, computed with snnmetrics' streaming metrics.

An evaluation script written for NeuroBench runs unchanged once its import changes::

    from snnmetrics import Benchmark        # was: from neurobench.benchmarks import Benchmark

``run()`` returns NeuroBench's results dict (same keys, nested keys and values); memory stays
constant in the number of batches and timesteps, and under ``torch.distributed`` every rank
returns the figures of the whole data set. How each figure is reproduced, and where
NeuroBench's own conventions are kept on purpose, is written next to each metric below and
in ``docs/coming-from-neurobench.md``.
"""

from __future__ import annotations

import csv
import json
import os
import pathlib
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import Any, Literal

import snntorch as snn
import torch
import torch.distributed as dist
from snntorch import utils as snn_utils
from torch import Tensor, nn
from torch.utils.data import DistributedSampler
from torchmetrics import Metric
from tqdm import tqdm

from snnmetrics import metrics as _metrics
from snnmetrics.functional.static import connection_sparsity, footprint, parameter_count
from snnmetrics.metrics import (
    ActivationSparsity,
    HookedMetric,
    MembraneUpdates,
    NeuronOperations,
    SynapticOperations,
)
from snnmetrics.metrics.base import unwrap_model

__all__ = ["Benchmark"]

Processor = Callable[[Any], Any]
MetricSpec = str | type | partial[Any]

# NeuroBench's static metrics, by class name, as functions of the network
_STATIC: dict[str, Callable[[nn.Module], int | float]] = {
    "Footprint": footprint,
    "ConnectionSparsity": connection_sparsity,
    "ParameterCount": parameter_count,
}
# our metrics that cannot run from a model alone
_NOT_BY_NAME = {"MatchAccuracy": "it needs the key of every sample in update()"}
# one ActivationSparsity per run serves both of NeuroBench's sparsity figures
_SPARSITY = partial(ActivationSparsity, by_layer=True)
# every metric of a run computes this rank's figures; the run syncs them itself at the end
_LOCAL: dict[str, Any] = {"sync_on_compute": False, "compute_with_cache": False}


def _neurobench_class_name(name: str) -> str:
    """The class a NeuroBench metric string names (NeuroBench 2.3.0's rule): snake_case
    to CamelCase, and ``"sMAPE"``, ``"r2"``, ``"mse"`` upper-cased."""
    if name in ("sMAPE", "r2", "mse"):
        return name.upper()
    return "".join(word.title() for word in name.split("_"))


def _normalise(name: str) -> str:
    return name.replace("_", "").lower()


def _our_metrics() -> dict[str, type[HookedMetric]]:
    """Our hooked metric classes by normalised name (base classes left out)."""
    found = {}
    for name in _metrics.__all__:
        value = getattr(_metrics, name)
        if (
            isinstance(value, type)
            and issubclass(value, HookedMetric)
            and not name.endswith("Metric")
        ):
            found[_normalise(name)] = value
    return found


# ----------------------------------------------------------------------------- metrics


class _BatchAverage(Metric):
    """NeuroBench's average of a per-batch figure: ``sum_b value_b * n_b / N``.

    ``n_b`` is the batch size and ``N`` the data set's length, as in NeuroBench's
    ``WorkloadMetricManager``; each term is added in float64 in the order NeuroBench adds
    it, so a single process gives its bits. With ``length=None`` (a loader without a sized
    data set) ``N`` is the number of samples seen.
    """

    full_state_update = False
    weighted: Tensor
    samples: Tensor

    def __init__(self, length: int | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.length = length
        self.add_state("weighted", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("samples", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, value: Tensor, batch_size: int) -> None:
        term = value.to(self.weighted.device, torch.float64) * batch_size
        self.weighted += term / self.length if self.length is not None else term
        self.samples += batch_size

    def compute(self) -> Tensor:
        if self.length is not None:
            return self.weighted
        return self.weighted / self.samples


class _R2Sums(Metric):
    """NeuroBench's ``R2``: the mean over the first two output columns of
    ``1 - SSE / SST``, from float64 sums (NeuroBench computes in float32)."""

    full_state_update = False
    squared_errors: Tensor
    label_sums: Tensor
    label_squares: Tensor
    count: Tensor

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for name in ("squared_errors", "label_sums", "label_squares"):
            self.add_state(name, torch.zeros(2, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, preds: Tensor, labels: Tensor) -> None:
        if preds.ndim != 2 or preds.shape[1] < 2:
            raise ValueError(
                "R2: NeuroBench's R2 takes predictions and labels of shape [batch, 2] (it "
                f"scores the first two columns), got {tuple(preds.shape)}"
            )
        p = preds[:, :2].to(self.count.device, torch.float64)
        y = labels[:, :2].to(self.count.device, torch.float64)
        self.squared_errors += ((y - p) ** 2).sum(0)
        self.label_sums += y.sum(0)
        self.label_squares += (y * y).sum(0)
        self.count += y.shape[0]

    def compute(self) -> Tensor:
        total = self.label_squares - self.label_sums**2 / self.count
        return (1 - self.squared_errors / total).mean()


class _Samples(Metric):
    """Samples seen by a run, summed over ranks."""

    full_state_update = False
    samples: Tensor

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("samples", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, batch_size: int) -> None:
        self.samples += batch_size

    def compute(self) -> Tensor:
        return self.samples


# ----------------------------------------------------------------------------- one run


class _Run:
    """The metrics of one ``run()``: hooked metrics shared by kind, each updated once a
    batch, and how to read every metric at the end.

    Metrics are created with ``sync_on_compute=False`` so that per-batch (verbose) figures
    are this rank's; :meth:`readings` syncs each metric once, in creation order (the same
    on every rank), and reads it inside that sync.
    """

    def __init__(self, net: nn.Module, device: torch.device, length: int | None) -> None:
        self.net, self.device, self.length = net, device, length
        self.hooked: dict[Any, HookedMetric] = {}
        # by id(): a torchmetrics Metric hashes its state values
        self.readers: dict[int, tuple[Metric, Callable[[Any], Any]]] = {}
        self.samples = self.own(_Samples(**_LOCAL))

    def own(self, metric: Any, reader: Callable[[Any], Any] | None = None) -> Any:
        """Move ``metric`` to the run's device; read it with ``reader`` (default
        ``compute()``) at the end."""
        metric.to(self.device)
        self.readers[id(metric)] = (metric, reader or (lambda m: m.compute()))
        return metric

    def hook(self, factory: Callable[..., HookedMetric]) -> HookedMetric:
        """The run's hooked metric made by ``factory(net)``, created on first request."""
        if factory not in self.hooked:
            metric = factory(self.net, **_LOCAL)
            self.hooked[factory] = self.own(metric)
        return self.hooked[factory]

    def detach(self) -> None:
        for metric in self.hooked.values():
            metric.detach()

    def read(self, metric: Metric) -> Any:
        """``metric``'s reading with the states of all ranks."""
        with warnings.catch_warnings():
            # a rank that saw no batch computes from the others' states
            warnings.filterwarnings("ignore", message=".*was called before the ``update``")
            with metric.sync_context():
                return self.readers[id(metric)][1](metric)

    def readings(self) -> dict[int, Any]:
        """Every metric's reading with the states of all ranks, by ``id(metric)``."""
        return {key: self.read(metric) for key, (metric, _) in self.readers.items()}

    def local_readings(self) -> dict[int, Any]:
        """Every metric's reading on this rank alone (the per-batch figures of verbose)."""
        return {key: reader(metric) for key, (metric, reader) in self.readers.items()}


class _Workload:
    """One requested workload figure: fed after each batch, read from the run's metrics."""

    def update(self, preds: Any, labels: Any, batch_size: int) -> None:
        """Take one batch (after the run's hooked metrics folded it)."""

    def result(self, readings: Mapping[int, Any]) -> Any:
        raise NotImplementedError


class _Hooked(_Workload):
    """A figure of a hooked metric, converted by ``convert`` from its ``compute()``."""

    def __init__(
        self, run: _Run, factory: Callable[..., HookedMetric], convert: Callable[[Any], Any]
    ) -> None:
        self.metric = run.hook(factory)
        self.convert = convert

    def result(self, readings: Mapping[int, Any]) -> Any:
        return self.convert(readings[id(self.metric)])


def _check_shapes(name: str, preds: Any, labels: Any) -> None:
    if labels is None:
        raise ValueError(f"{name} needs labels: the dataloader must give (inputs, labels)")
    if not isinstance(preds, Tensor) or not isinstance(labels, Tensor):
        raise TypeError(
            f"{name} needs tensors of predictions and labels, got {type(preds).__name__} "
            f"and {type(labels).__name__}"
        )
    if preds.shape != labels.shape:
        raise ValueError(
            f"{name}: predictions and labels must have the same shape, got "
            f"{tuple(preds.shape)} and {tuple(labels.shape)} (postprocessors turn the "
            "model's output into predictions, e.g. ChooseMaxCount)"
        )


def _accuracy(preds: Tensor, labels: Tensor) -> Tensor:
    return torch.eq(preds, labels).float().mean()


def _mse(preds: Tensor, labels: Tensor) -> Tensor:
    return torch.mean((preds - labels) ** 2)


def _smape(preds: Tensor, labels: Tensor) -> Tensor:
    ratio = torch.abs(preds - labels) / (torch.abs(preds) + torch.abs(labels))
    return torch.nan_to_num(200 * torch.mean(ratio), nan=200.0)


class _Task(_Workload):
    """A per-batch task figure averaged as NeuroBench does (see :class:`_BatchAverage`)."""

    def __init__(self, run: _Run, name: str, value: Callable[[Tensor, Tensor], Tensor]) -> None:
        self.name, self.value = name, value
        self.average = run.own(_BatchAverage(run.length, **_LOCAL))

    def update(self, preds: Any, labels: Any, batch_size: int) -> None:
        _check_shapes(self.name, preds, labels)
        self.average.update(self.value(preds, labels), batch_size)

    def result(self, readings: Mapping[int, Any]) -> float:
        return float(readings[id(self.average)])


class _R2(_Workload):
    def __init__(self, run: _Run) -> None:
        self.sums = run.own(_R2Sums(**_LOCAL))

    def update(self, preds: Any, labels: Any, batch_size: int) -> None:
        _check_shapes("R2", preds, labels)
        self.sums.update(preds, labels)

    def result(self, readings: Mapping[int, Any]) -> float:
        return float(readings[id(self.sums)])


class _ActivationSparsity(_Workload):
    """NeuroBench's ``ActivationSparsity``: each batch's fraction of zero activations (over
    all layers and steps), averaged over batches as a task figure."""

    def __init__(self, run: _Run) -> None:
        self.metric: ActivationSparsity = run.hook(_SPARSITY)  # type: ignore[assignment]
        self.average = run.own(_BatchAverage(run.length, **_LOCAL))
        self.before = self._totals()

    def _totals(self) -> Tensor:
        return torch.stack([self.metric.zeros.sum(), self.metric.elements.sum()])

    def update(self, preds: Any, labels: Any, batch_size: int) -> None:
        now = self._totals()
        zeros, elements = (now - self.before).to(torch.float64)
        self.before = now
        value = torch.where(elements > 0, zeros / elements.clamp(min=1), 0.0)
        self.average.update(value, batch_size)

    def result(self, readings: Mapping[int, Any]) -> float:
        return float(readings[id(self.average)])


def _layer_counts(metric: ActivationSparsity) -> dict[str, tuple[int, int]]:
    """Zero and total activations per NeuroBench layer name: the name of the layer in its
    parent module (layers of the same name, in different parents, add up as in NeuroBench).
    Read with the states of all ranks; ``compute()`` last, for its checks."""
    counts: dict[str, tuple[int, int]] = {}
    zeros, elements = metric.zeros.tolist(), metric.elements.tolist()
    for name, zero, total in zip(metric.layer_names, zeros, elements, strict=True):
        if total:
            key = name.rsplit(".", 1)[-1]
            before = counts.get(key, (0, 0))
            counts[key] = (before[0] + zero, before[1] + total)
    metric.compute()
    return counts


class _SparsityByLayer(_Workload):
    """NeuroBench's ``ActivationSparsityByLayer``: zeros / activations of each layer over
    all the data, keyed by the layer's name in its parent module."""

    def __init__(self, run: _Run) -> None:
        self.metric = run.hook(_SPARSITY)
        run.own(self.metric, _layer_counts)

    def result(self, readings: Mapping[int, Any]) -> dict[str, float]:
        counts = readings[id(self.metric)]
        return {name: zeros / total for name, (zeros, total) in counts.items()}


def _synops(result: Mapping[str, Tensor]) -> dict[str, float]:
    return {
        "Effective_MACs": float(result["effective_macs"]),
        "Effective_ACs": float(result["effective_acs"]),
        "Dense": float(result["dense"]),
    }


def _neuron_ops(result: Mapping[str, Tensor]) -> dict[str, float]:
    return {
        "Effective Neuron Ops": float(result["effective"]),
        "Neuron Dense Ops": float(result["dense"]),
    }


def _plain(value: Any) -> Any:
    """A metric result as JSON-ready Python values: a one-element tensor becomes a number,
    a larger one a (nested) list."""
    if isinstance(value, Tensor):
        return value.item() if value.numel() == 1 and value.ndim == 0 else value.tolist()
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


# NeuroBench's workload metrics, by class name
_WORKLOAD: dict[str, Callable[[_Run], _Workload]] = {
    "ClassificationAccuracy": lambda run: _Task(run, "ClassificationAccuracy", _accuracy),
    "MSE": lambda run: _Task(run, "MSE", _mse),
    "SMAPE": lambda run: _Task(run, "SMAPE", _smape),
    "R2": _R2,
    "ActivationSparsity": _ActivationSparsity,
    "ActivationSparsityByLayer": _SparsityByLayer,
    "SynapticOperations": lambda run: _Hooked(run, SynapticOperations, _synops),
    "MembraneUpdates": lambda run: _Hooked(run, MembraneUpdates, float),
    "NeuronOperations": lambda run: _Hooked(run, NeuronOperations, _neuron_ops),
}


def _ours(factory: Callable[..., HookedMetric]) -> Callable[[_Run], _Workload]:
    return lambda run: _Hooked(run, factory, _plain)


# ----------------------------------------------------------------------------- naming


def _resolve_static(item: Any) -> tuple[str, Callable[[nn.Module], int | float]]:
    if isinstance(item, str):
        for name in (_neurobench_class_name(item), item):
            if name in _STATIC:
                return item, _STATIC[name]
        where = " (a workload metric: list it second)" if _is_workload_name(item) else ""
        raise ValueError(
            f"metric_list[0]: unknown static metric {item!r}{where}; known: {sorted(_STATIC)}"
        )
    if isinstance(item, type):
        if item.__name__ in _STATIC:
            return item.__name__, _STATIC[item.__name__]
        raise ValueError(
            f"metric_list[0]: unknown static metric class {item.__name__}; NeuroBench's are "
            f"matched by class name: {sorted(_STATIC)}"
        )
    raise TypeError(f"metric_list[0]: expected metric names or classes, got {item!r}")


def _is_workload_name(name: str) -> bool:
    return _neurobench_class_name(name) in _WORKLOAD or name in _WORKLOAD


def _resolve_workload(item: Any) -> tuple[str, Callable[[_Run], _Workload]]:
    ours = sorted(cls.__name__ for cls in _our_metrics().values())
    known = f"NeuroBench's {sorted(_WORKLOAD)} or ours {ours}"
    if isinstance(item, str):
        for name in (_neurobench_class_name(item), item):
            if name in _WORKLOAD:
                return item, _WORKLOAD[name]
        if item in _STATIC or _neurobench_class_name(item) in _STATIC:
            raise ValueError(
                f"metric_list[1]: {item!r} is a static metric: list it in metric_list[0]"
            )
        cls = _our_metrics().get(_normalise(item))
        if cls is None:
            raise ValueError(f"metric_list[1]: unknown workload metric {item!r}; known: {known}")
        return item, _ours(_by_name(cls))
    factory = item.func if isinstance(item, partial) else item
    if isinstance(factory, type) and issubclass(factory, HookedMetric):
        return factory.__name__, _ours(_by_name(item))
    if isinstance(item, type):
        if item.__name__ in _WORKLOAD:
            return item.__name__, _WORKLOAD[item.__name__]
        if item.__name__ == "CocoMap":
            raise ValueError("metric_list[1]: CocoMap (Prophesee's COCO mAP) is not supported")
        raise ValueError(
            f"metric_list[1]: unknown workload metric class {item.__name__} (NeuroBench's "
            f"classes are matched by name; custom NeuroBench metrics are not run); known: "
            f"{known}"
        )
    raise TypeError(
        "metric_list[1]: expected metric names, NeuroBench metric classes, snnmetrics metric "
        f"classes or functools.partial of one, got {item!r}"
    )


def _by_name(factory: Any) -> Any:
    cls = factory.func if isinstance(factory, partial) else factory
    if cls.__name__ in _NOT_BY_NAME:
        raise ValueError(
            f"metric_list[1]: {cls.__name__} cannot run in a Benchmark: "
            f"{_NOT_BY_NAME[cls.__name__]}"
        )
    return factory


# ----------------------------------------------------------------------------- models


def _snntorch_forward(net: nn.Module, batch: Tensor) -> Tensor:
    """NeuroBench's ``SNNTorchModel``: reset the neurons, run ``batch[:, t]`` for each
    step ``t``, and stack the output spikes to ``[batch, steps, ...]``."""
    reset = getattr(net, "reset", None)
    if callable(reset):
        reset()
    else:
        snn_utils.reset(net)
    spikes = []
    for step in range(batch.shape[1]):
        out = net(batch[:, step, ...])
        spikes.append(out[0] if isinstance(out, (tuple, list)) else out)
    return torch.stack(spikes).transpose(0, 1)


def _resolve_model(model: Any) -> tuple[nn.Module, Callable[[Any], Any]]:
    """The network (for static figures, hooks and devices) and how a batch runs."""
    net_of = getattr(model, "__net__", None)
    if not isinstance(model, nn.Module) and callable(net_of) and callable(model):
        net = net_of()
        if not isinstance(net, nn.Module):
            raise TypeError(f"model.__net__() must return an nn.Module, got {type(net).__name__}")
        return net, model
    if not isinstance(model, nn.Module):
        raise TypeError(
            "model must be an nn.Module or a NeuroBench model wrapper (an object with "
            f"__net__() and __call__(batch)), got {type(model).__name__}"
        )
    net = unwrap_model(model)  # run the inner module: DDP's forward would sync buffers
    net.eval()
    if any(isinstance(module, snn.SpikingNeuron) for module in net.modules()):
        return net, partial(_snntorch_forward, net)
    return net, net


def _device_of(net: nn.Module) -> torch.device:
    for tensor in (*net.parameters(), *net.buffers()):
        return tensor.device
    return torch.device("cpu")


# ----------------------------------------------------------------------------- data


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _distributed_sampler(loader: Any) -> DistributedSampler[Any] | None:
    batch_sampler = getattr(loader, "batch_sampler", None)
    for sampler in (getattr(loader, "sampler", None), getattr(batch_sampler, "sampler", None)):
        if isinstance(sampler, DistributedSampler):
            return sampler
    return None


def _dataset_length(loader: Any) -> int | None:
    """NeuroBench's ``N``: ``len(loader.dataset)``. Under torch.distributed, the length of
    the data set a ``DistributedSampler`` shards, or else the sum over ranks of each rank's
    ``len(loader.dataset)`` (each rank's loader holds its own shard). ``None`` for a loader
    without a sized data set."""
    try:
        length: int | None = len(loader.dataset)
    except (AttributeError, TypeError):
        length = None
    if not _distributed():
        return length
    shared = _distributed_sampler(loader) is not None
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, (length, shared))
    if any(each is None for each, _ in gathered):
        return None
    return length if all(flag for _, flag in gathered) else sum(each for each, _ in gathered)


def _real_samples(loader: Any) -> int | None:
    """Samples of this rank's shard that are not padding: a ``DistributedSampler``
    without ``drop_last`` repeats the first samples to give every rank as many; the
    repeats come last in a rank's shard and are left out, so that each sample counts once."""
    sampler = _distributed_sampler(loader)
    if sampler is None or sampler.drop_last:
        return None
    return len(range(sampler.rank, len(sampler.dataset), sampler.num_replicas))  # type: ignore[arg-type]


def _head(data: tuple[Any, ...], count: int) -> tuple[Any, ...]:
    return tuple(item[:count] if isinstance(item, (Tensor, list, tuple)) else item for item in data)


def _check_processors(processors: Any, what: str) -> list[Processor]:
    if processors is None:
        return []
    if isinstance(processors, (str, bytes)) or not isinstance(processors, Iterable):
        raise TypeError(f"{what} must be a list of callables, got {type(processors).__name__}")
    processors = list(processors)
    for processor in processors:
        if not callable(processor):
            raise TypeError(
                f"All {what} must be NeuroBench processors or callable functions, got "
                f"{type(processor).__name__}"
            )
    return processors


# ----------------------------------------------------------------------------- Benchmark


class Benchmark:
    """NeuroBench 2.3.0's ``Benchmark``, on snnmetrics' streaming, DDP-ready metrics.

    The constructor, :meth:`run` and :meth:`save_benchmark_results` are NeuroBench's, and
    ``run()`` returns its results dict: the same keys, nested keys and values on the same
    model and data (``SynapticOperations`` -> ``Effective_MACs``, ``Effective_ACs``,
    ``Dense``; ``NeuronOperations`` -> ``Effective Neuron Ops``, ``Neuron Dense Ops``;
    ``ActivationSparsityByLayer`` -> layer name -> sparsity; the others a number).

    Args:
        model: a ``nn.Module`` or a NeuroBench model wrapper (any object with ``__net__()``
            and ``__call__(batch)``, such as ``SNNTorchModel`` or ``TorchModel``). A module
            holding snnTorch neurons runs as NeuroBench's ``SNNTorchModel`` runs it: neurons
            reset before each batch, ``batch[:, t]`` for each step ``t``, the output spikes
            (the first output of a tuple) stacked to ``[batch, steps, ...]``. Any other
            module gets the whole batch, as in ``TorchModel``. Modules are put in eval mode.
        dataloader: yields ``(inputs, labels)`` batches, batch first (a bare tensor is taken
            as inputs without labels, for metrics that need none).
        preprocessors: callables ``(inputs, labels) -> (inputs, labels)``, applied in order.
        postprocessors: callables on the model's output, applied in order (e.g.
            NeuroBench's ``ChooseMaxCount``, or ``lambda spikes: spikes.sum(1).argmax(1)``).
        metric_list: ``[static, workload]``. Static: ``"footprint"``,
            ``"connection_sparsity"``, ``"parameter_count"``. Workload:
            ``"classification_accuracy"``, ``"activation_sparsity"``,
            ``"activation_sparsity_by_layer"``, ``"synaptic_operations"``,
            ``"membrane_updates"``, ``"neuron_operations"``, ``"mse"``, ``"r2"``,
            ``"sMAPE"``, given as these strings (results keyed by the string), as class names,
            or as NeuroBench's metric classes (matched by class name, keyed by it, so
            NeuroBench need not be installed); and ours: a snnmetrics hooked metric class
            (``FiringRate``, ``Energy``, the sparse-code metrics), its name as a string, or a
            ``functools.partial`` of the class with options. Ours are keyed by their class
            name (or the string given) and give ``compute()`` as Python numbers and lists.

    How the figures are formed, as in NeuroBench: ``ClassificationAccuracy``,
    ``ActivationSparsity``, ``MSE`` and ``SMAPE`` are per-batch figures averaged as
    ``sum_b value_b * n_b / len(dataloader.dataset)``; the others are accumulated over
    all batches, per sample where they are counts (synaptic and neuron operations,
    membrane updates). Unlike NeuroBench, a metric that fails raises its error instead of
    reporting ``None`` or ``0.0``, and the model runs under ``torch.no_grad()``.

    Under ``torch.distributed`` every rank returns the figures of the whole data set: with a
    ``DistributedSampler`` the data set it shards (its padding repeats are not counted),
    otherwise the union of each rank's ``dataloader.dataset``. Progress shows on rank 0.

    Example:
        >>> import torch, snntorch as snn
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> from snnmetrics import Benchmark
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 1, bias=False),
        ...                           snn.Leaky(beta=0.5, init_hidden=True, output=True))
        >>> _ = torch.nn.init.ones_(net[0].weight)
        >>> x = torch.ones(5, 3, 2)                      # 5 samples, 3 steps, 2 inputs
        >>> loader = DataLoader(TensorDataset(x, torch.zeros(5)), batch_size=2)
        >>> metrics = [["parameter_count"], ["synaptic_operations"]]
        >>> results = Benchmark(net, loader, [], [], metrics).run(quiet=True)
        >>> results["parameter_count"]
        2
        >>> results["synaptic_operations"]  # per sample: 3 steps x 2 inputs x 1 synapse
        {'Effective_MACs': 0.0, 'Effective_ACs': 6.0, 'Dense': 6.0}
    """

    def __init__(
        self,
        model: Any,
        dataloader: Any,
        preprocessors: Sequence[Processor] | None,
        postprocessors: Sequence[Processor] | None,
        metric_list: Sequence[Sequence[MetricSpec]],
    ) -> None:
        self.model = model
        self.net, self._forward = _resolve_model(model)
        self.dataloader = dataloader
        self.preprocessors = _check_processors(preprocessors, "preprocessors")
        self.postprocessors = _check_processors(postprocessors, "postprocessors")
        if isinstance(metric_list, (str, bytes)) or len(metric_list) != 2:
            raise ValueError(
                f"metric_list must be [static metrics, workload metrics], got {metric_list!r}"
            )
        self.static = dict(_resolve_static(item) for item in metric_list[0])
        self.workload = dict(_resolve_workload(item) for item in metric_list[1])
        self.results: dict[str, Any] | None = None

    def run(
        self,
        quiet: bool = False,
        verbose: bool = False,
        dataloader: Any = None,
        preprocessors: Sequence[Processor] | None = None,
        postprocessors: Sequence[Processor] | None = None,
        device: str | torch.device | None = None,
    ) -> dict[str, Any]:
        """Run the model over the data and return the results dict.

        Args:
            quiet: print nothing and show no progress bar.
            verbose: print the running figures after every batch (this rank's).
            dataloader: use this loader for this run instead of the constructor's.
            preprocessors: replace the preprocessors (from now on, as in NeuroBench).
            postprocessors: replace the postprocessors (from now on).
            device: move the network and each batch's inputs and labels there.
        """
        rank = dist.get_rank() if _distributed() else 0
        show = not quiet and rank == 0
        if show:
            print("Running benchmark")
        self.results = None
        results: dict[str, Any] = {name: measure(self.net) for name, measure in self.static.items()}
        loader = dataloader if dataloader is not None else self.dataloader
        if loader is None:
            raise ValueError("run(): no dataloader, give one here or to the constructor")
        if preprocessors is not None:
            self.preprocessors = _check_processors(preprocessors, "preprocessors")
        if postprocessors is not None:
            self.postprocessors = _check_processors(postprocessors, "postprocessors")
        if device is not None:
            self.net.to(device)
        run = _Run(
            self.net,
            torch.device(device) if device else _device_of(self.net),
            _dataset_length(loader),
        )
        try:
            workloads = {name: make(run) for name, make in self.workload.items()}
            self._batches(run, workloads, loader, device, show, verbose, results)
            if int(run.read(run.samples)) == 0:
                raise ValueError("run(): the dataloader gave no sample")
            readings = run.readings()
        finally:
            run.detach()
        results.update({name: workload.result(readings) for name, workload in workloads.items()})
        self.results = results
        return results

    def _batches(
        self,
        run: _Run,
        workloads: dict[str, _Workload],
        loader: Any,
        device: str | torch.device | None,
        show: bool,
        verbose: bool,
        results: dict[str, Any],
    ) -> None:
        limit = _real_samples(loader)
        seen = 0
        total = len(loader) if hasattr(loader, "__len__") else None
        with torch.no_grad():
            for index, batch in enumerate(tqdm(loader, total=total, disable=not show)):
                data = (batch, None) if isinstance(batch, Tensor) else tuple(batch)
                if device is not None:
                    labels = data[1].to(device) if isinstance(data[1], Tensor) else data[1]
                    data = (data[0].to(device), labels)
                size = data[0].size(0)
                if limit is not None and seen + size > limit:
                    size = limit - seen
                    if size <= 0:
                        continue
                    data = _head(data, size)
                seen += size
                processed: Any = data
                for preprocessor in self.preprocessors:
                    processed = preprocessor(processed)
                preds = self._forward(processed[0])
                for postprocessor in self.postprocessors:
                    preds = postprocessor(preds)
                for metric in run.hooked.values():
                    metric.update(batch_size=size)
                run.samples.update(size)
                for workload in workloads.values():
                    workload.update(preds, data[1] if len(data) > 1 else None, size)
                if verbose and show:
                    local = run.local_readings()
                    running = {name: w.result(local) for name, w in workloads.items()}
                    print(f"\nBatch num {index + 1}/{total}")
                    print({**results, **running})

    def save_benchmark_results(
        self, file_path: str, file_format: Literal["json", "csv", "txt"] = "json"
    ) -> None:
        """Write the results of the last run to ``file_path`` plus the format's extension.

        As NeuroBench: ``"json"`` (indented), ``"csv"`` (a row of keys, a row of values) or
        ``"txt"`` (``key: value`` lines); the folder is created if needed.
        """
        if self.results is None:
            raise ValueError("save_benchmark_results(): no results yet, call run() first")
        file_format = file_format.lower()  # type: ignore[assignment]
        if file_format not in ("json", "csv", "txt"):
            raise ValueError(f"Unsupported file format: {file_format}")
        pathlib.Path(os.path.dirname(file_path)).mkdir(parents=True, exist_ok=True)
        target = f"{file_path}.{file_format}"
        if file_format == "json":
            with open(target, "w") as handle:
                json.dump(self.results, handle, indent=4)
        elif file_format == "csv":
            with open(target, "w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(self.results.keys())
                writer.writerow(self.results.values())
        else:
            with open(target, "w") as handle:
                for key, value in self.results.items():
                    handle.write(f"{key}: {value}\n")
        print(f"Results saved to {target}")
