"""Sparse-code metrics after sparsey (seed 004), for any spiking or binary-activation network.

Each metric watches neuron layers through a shared :class:`~snnmetrics.tracking.code.CodeTap`
and reads each call's *codes*: the binary activation pattern (nonzero = active) of every row
of the layer's output, i.e. of one sample at one step. Results are per layer name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from snnmetrics.connections import ConnectionRule, connection_rule
from snnmetrics.functional.sparsey import (
    EMPTY,
    activation_statistics,
    distinct_count,
    match_accuracy,
    merge_tables,
    smallest_distinct,
)
from snnmetrics.metrics.base import HookedMetric
from snnmetrics.metrics.lazy import LazyShapes
from snnmetrics.neurons import find_neurons
from snnmetrics.plot import plot_fields
from snnmetrics.tracking.code import CodeSink, CodeTap, CodeTotals, InputTap
from snnmetrics.tracking.hub import Tap, acquire

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "BasisAverage",
    "BasisSetSize",
    "BasisSetSizeIncrease",
    "CodeMetric",
    "FeatureCoverage",
    "MatchAccuracy",
    "NumActivations",
]


def _code_layers(model: nn.Module, layers: Sequence[str] | None) -> list[tuple[str, nn.Module]]:
    """The neuron layers to watch: ``layers`` by name, or every spiking neuron."""
    found = {name: (module, rule) for name, module, rule in find_neurons(model)}
    if layers is None:
        return [(name, module) for name, (module, rule) in found.items() if rule.spiking]
    if isinstance(layers, str) or not all(isinstance(name, str) for name in layers):
        raise TypeError(f"layers must be a sequence of layer names, got {layers!r}")
    unknown = [name for name in layers if name not in found]
    if unknown or len(set(layers)) != len(layers):
        raise ValueError(
            f"layers must name distinct neuron layers of the model ({sorted(found)}), "
            f"got {list(layers)}"
        )
    return [(name, found[name][0]) for name in layers]


def _feeding_layer(
    model: nn.Module, neuron: str, sources: Mapping[str, str]
) -> tuple[str, nn.Module]:
    """The connection layer whose outputs ``neuron`` receives: ``sources[neuron]``, or the
    nearest connection layer before it in ``model.named_modules()`` order."""
    if neuron in sources:
        name = sources[neuron]
        try:
            module = model.get_submodule(name)
        except AttributeError:
            raise ValueError(f"sources: {name!r} is not a module of the model") from None
        if not isinstance(connection_rule(module), ConnectionRule):
            raise ValueError(f"sources: {name!r} is not a connection layer with a fanout map")
        return name, module
    inside = tuple(f"{name}." for name, _, _ in find_neurons(model) if name)
    before: tuple[str, nn.Module] | None = None
    for name, module in model.named_modules():
        if name == neuron:
            break
        if name.startswith(inside) or connection_rule(module) is None:
            continue
        before = (name, module)
    if before is None or not isinstance(connection_rule(before[1]), ConnectionRule):
        raise ValueError(
            f"neuron layer {neuron!r} has no connection layer with a fanout map (Linear, ConvNd, "
            "...) right before it: pass sources={layer: input layer} or leave it out of layers="
        )
    return before


class CodeMetric(LazyShapes, HookedMetric):
    """Base of the sparse-code metrics.

    Watches the neuron layers named in ``layers`` (default: every spiking neuron, see
    :func:`snnmetrics.neurons.find_neurons`; name ``nn.ReLU`` layers there to watch them)
    and keeps the states of each layer. ``best_key`` names the per-layer figure that
    :func:`snnmetrics.get_comparison` judges results by (``None``: the figure itself), and
    ``higher_is_better`` says which way, as in sparsey.
    """

    best_key: str | None = None
    _lazy: list[str]
    _transient = ("_code_taps", "_sinks", "_snapshots")
    nonfinite: Tensor

    def __init__(self, model: nn.Module, layers: Sequence[str] | None = None, **kwargs: Any):
        """Hook the neuron layers to watch.

        Args:
            model: the network to watch (the inner module of a DDP/DataParallel wrapper).
            layers: names of the neuron layers to watch (default: every spiking neuron).
            **kwargs: torchmetrics ``Metric`` options (``sync_on_compute``, ``process_group``, ...).

        Raises:
            ValueError: if a name in ``layers`` is not a neuron layer, or there is none.
        """
        super().__init__(model, **kwargs)
        self._layers = None if layers is None else layers
        self._lazy = []
        self.add_state("nonfinite", torch.zeros((), dtype=torch.int64), "sum", persistent=True)
        self._attach()
        self._add_states()

    def _attach(self) -> None:
        chosen = _code_layers(self.model, self._layers)
        if not chosen:
            raise ValueError(
                f"{type(self.model).__name__} has no spiking neuron to watch (snnTorch neurons, "
                "or a type registered with snnmetrics.register_neuron; name others in layers=)"
            )
        self.layer_names = [name for name, _ in chosen]
        self._code_taps = [acquire(module, CodeTap) for _, module in chosen]
        self._sinks: list[CodeSink] = []
        try:
            extra = self._track()
        except BaseException:
            self._taps = list(self._code_taps)
            self.detach()
            raise
        self._subscribe([*self._code_taps, *extra])
        self._snapshots = [tap.totals() for tap in self._code_taps]

    def _track(self) -> list[Tap]:
        """Ask the taps for what this metric needs; return any further taps it holds."""
        return []

    def _add_states(self) -> None:
        """Add the states of the metric (once its taps are known)."""

    def _add_count(self, name: str, shape: tuple[int, ...], dtype: torch.dtype) -> None:
        self.add_state(name, torch.zeros(shape, dtype=dtype), "sum", persistent=True)

    def _add_lazy(self, name: str) -> None:
        """An int64 count state shaped by the first data (synced like FiringRate's)."""
        self._add_count(name, (0,), torch.int64)
        self._lazy.append(name)

    def _grow(self, name: str, shape: tuple[int, ...]) -> Tensor:
        """The lazy state ``name``, given ``shape`` on first use."""
        state: Tensor = getattr(self, name)
        if state.numel() == 0:
            with torch.inference_mode(False):
                state = torch.zeros(shape, dtype=torch.int64, device=self.nonfinite.device)
            setattr(self, name, state)
        return state

    def _fold(self) -> None:
        device = self.nonfinite.device
        for i, tap in enumerate(self._code_taps):
            now, before = tap.totals(), self._snapshots[i]
            self._snapshots[i] = now
            self.nonfinite += (now.counts[0] - before.counts[0].to(now.counts.device)).to(
                device, torch.int64
            )
            sink = tap.drain(self._sinks[i]) if self._sinks else None
            self._fold_layer(i, now, before, sink)

    def _fold_layer(self, i: int, now: CodeTotals, before: CodeTotals, sink: CodeSink | None):
        raise NotImplementedError

    def _skip(self) -> None:
        self._snapshots = [tap.totals() for tap in self._code_taps]
        for tap, sink in zip(self._code_taps, self._sinks, strict=False):
            tap.drain(sink)

    def _check_finite(self) -> None:
        if int(self.nonfinite) > 0:
            raise ValueError(
                f"{type(self).__name__}: a watched layer produced NaN outputs; its codes are "
                "undefined"
            )

    def detach(self) -> None:
        for tap, sink in zip(self._code_taps, self._sinks, strict=False):
            tap.remove_sink(sink)
        self._sinks = []
        super().detach()


def _difference(now: Tensor | None, before: Tensor | None) -> Tensor | None:
    if now is None:
        return None
    return now if before is None else now - before.to(now.device)


class NumActivations(CodeMetric):
    """Active units per code of each layer: their mean and their distribution.

    For each layer, with ``histogram[k]`` the codes (sample-steps) with exactly ``k`` of
    its ``N`` units active (``k = 0..N``) and ``A = sum(k * histogram[k])``: ``per_sample``
    ``= A / samples`` (activations per sample, summed over steps), ``per_step`` ``= A /
    codes`` (the mean over codes), ``std`` (over codes, Bessel's correction), ``min``,
    ``max`` and the int64 ``histogram``. The state is the histogram (``N + 1`` counts per
    layer), whatever the number of batches and steps. Layers that never ran are left out.

    Example:
        >>> import torch, snntorch as snn
        >>> from snnmetrics import NumActivations
        >>> net = torch.nn.Sequential(torch.nn.Identity(),
        ...                           snn.Leaky(beta=0.0, threshold=0.5, init_hidden=True))
        >>> with NumActivations(net) as metric:
        ...     _ = net(torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 0.0]]))
        ...     metric.update()
        ...     layer = metric.compute()["1"]
        >>> float(layer["per_step"]), layer["histogram"].tolist()
        (1.5, [0, 1, 1, 0])
    """

    higher_is_better = False
    best_key = "per_sample"

    def _track(self) -> list[Tap]:
        for tap in self._code_taps:
            tap.track_activity()
        return []

    def _add_states(self) -> None:
        for i in range(len(self._code_taps)):
            self._add_lazy(f"histogram_{i}")

    def _fold_layer(self, i: int, now: CodeTotals, before: CodeTotals, sink: CodeSink | None):
        counts = _difference(now.histogram, before.histogram)
        if counts is not None:
            self._grow(f"histogram_{i}", tuple(counts.shape)).add_(
                counts.to(self.nonfinite.device, torch.int64)
            )

    def compute(self) -> dict[str, dict[str, Tensor]]:
        """Active units per code of each layer that ran.

        Returns:
            per layer name a dict of ``per_sample``, ``per_step``, ``std``, ``min``, ``max``
            and ``histogram`` (empty before any update).
        """
        samples = self._samples()
        self._check_finite()
        result = {}
        for i, name in enumerate(self.layer_names):
            histogram = getattr(self, f"histogram_{i}")
            if int(histogram.sum()) > 0:
                result[name] = activation_statistics(histogram, samples)
        return result


class BasisSetSize(CodeMetric):
    """How many distinct codes each layer has produced: its basis set size.

    Each code is hashed on the device to 62 bits (:func:`~snnmetrics.functional.code_hashes`);
    the state of a layer is the table of the ``capacity`` smallest distinct hashes seen
    (``capacity`` int64 values, whatever the number of batches). While fewer than
    ``capacity`` distinct codes were seen the size is exact (up to a hash collision, about
    ``n**2 / 2**63`` for ``n`` codes); beyond, the table is a KMV sketch and the size is the
    estimate ``(K - 1) / U_K`` (``U_K``: the largest kept hash as a fraction of the hash
    range), unbiased, with a relative standard error of at most ``1 / sqrt(capacity - 2)``
    (1.6 % for the default 4096). :meth:`exact` says which layers are still exact.

    Tables merge exactly: across DDP ranks (and in ``merge_state``) they are united and
    cut to the ``capacity`` smallest hashes, which is the table one process would have
    kept for all the data, so the synced size equals the single-process size in both
    regimes. ``compute()`` returns float64 sizes per layer name (layers that never ran
    are left out).

    Example:
        >>> import torch, snntorch as snn
        >>> from snnmetrics import BasisSetSize
        >>> net = torch.nn.Sequential(torch.nn.Identity(),
        ...                           snn.Leaky(beta=0.0, threshold=0.5, init_hidden=True))
        >>> with BasisSetSize(net) as metric:
        ...     _ = net(torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]))
        ...     metric.update()
        ...     float(metric.compute()["1"])
        2.0
    """

    higher_is_better = False
    tables: Tensor
    codes: Tensor

    def __init__(
        self,
        model: nn.Module,
        capacity: int = 4096,
        layers: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        """Hook the neuron layers to watch.

        Args:
            model: the network to watch (the inner module of a DDP/DataParallel wrapper).
            capacity: distinct code hashes kept per layer (exact below it, a KMV sketch
                beyond).
            layers: names of the neuron layers to watch (default: every spiking neuron).
            **kwargs: torchmetrics ``Metric`` options (``sync_on_compute``, ``process_group``, ...).
        """
        if isinstance(capacity, bool) or not isinstance(capacity, int):
            raise TypeError(f"capacity must be an int >= 3, got {capacity!r}")
        if capacity < 3:
            raise ValueError(f"capacity must be an int >= 3, got {capacity}")
        self.capacity = capacity
        super().__init__(model, layers=layers, **kwargs)

    def _track(self) -> list[Tap]:
        for tap in self._code_taps:
            tap.track_codes(self.capacity)
        self._sinks = [tap.add_sink() for tap in self._code_taps]
        return []

    def _add_states(self) -> None:
        empty = torch.full((len(self._code_taps), self.capacity), EMPTY, dtype=torch.int64)
        self.add_state("tables", empty, dist_reduce_fx=merge_tables, persistent=True)
        self._add_count("codes", (len(self._code_taps),), torch.int64)

    def _fold_layer(self, i: int, now: CodeTotals, before: CodeTotals, sink: CodeSink | None):
        self.codes[i] += now.rows - before.rows
        if sink is not None and sink.table is not None:
            both = torch.cat([self.tables[i], sink.table.to(self.tables.device)])
            self.tables[i] = smallest_distinct(both, self.capacity)

    def _sizes(self) -> dict[str, Tensor]:
        self._check_finite()
        sizes = distinct_count(self.tables)
        return {name: sizes[i] for i, name in enumerate(self.layer_names) if int(self.codes[i])}

    def compute(self) -> dict[str, Tensor]:
        """Distinct codes of each layer that ran.

        Returns:
            per layer name a float64 size (empty before any update).
        """
        return self._sizes()

    def exact(self) -> dict[str, bool]:
        """Per layer, whether its size is exact (fewer than ``capacity`` distinct codes)."""
        with self._synced():
            filled = (self.tables != EMPTY).sum(-1)
            names = self.layer_names
            return {name: bool(filled[i] < self.capacity) for i, name in enumerate(names)}


class BasisSetSizeIncrease(BasisSetSize):
    """Distinct codes of each layer that are new since the previous ``compute()``.

    ``increase = size - previous``, where ``size`` is the :class:`BasisSetSize` of all
    data since the last ``reset()`` and ``previous`` the size that the previous
    ``compute()`` returned (0 after a reset, so the first ``compute()`` counts every code
    as new). Since the set of codes only grows, this is exactly the number of codes not
    seen before while the table is exact; beyond, it is the difference of two estimates,
    which is never negative. ``compute()`` itself moves ``previous`` on; calling it again
    without an ``update()`` returns the cached figure. ``previous`` is a state (kept in
    checkpoints, max-reduced): under DDP every rank computes together and stores the same
    global size, so the next synced ``compute()`` reports what all ranks added since.

    Example:
        >>> import torch, snntorch as snn
        >>> from snnmetrics import BasisSetSizeIncrease
        >>> net = torch.nn.Sequential(torch.nn.Identity(),
        ...                           snn.Leaky(beta=0.0, threshold=0.5, init_hidden=True))
        >>> with BasisSetSizeIncrease(net) as metric:
        ...     _ = net(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
        ...     metric.update()
        ...     first = float(metric.compute()["1"])
        ...     _ = net(torch.tensor([[1.0, 0.0], [1.0, 1.0]]))
        ...     metric.update()
        ...     first, float(metric.compute()["1"])
        (2.0, 1.0)
    """

    previous: Tensor

    def _add_states(self) -> None:
        super()._add_states()
        zeros = torch.zeros(len(self._code_taps), dtype=torch.float64)
        self.add_state("previous", zeros, dist_reduce_fx="max", persistent=True)

    def compute(self) -> dict[str, Tensor]:
        """Distinct codes of each layer new since the previous ``compute()``.

        Returns:
            per layer name a float64 count (empty before any update).
        """
        sizes = self._sizes()
        result = {}
        previous = self.previous.clone()
        for i, name in enumerate(self.layer_names):
            if name in sizes:
                result[name] = sizes[name] - self.previous[i]
                previous[i] = sizes[name]
        self.previous = previous
        if self._is_synced and self._cache is not None:
            # compute() runs on synced states that are swapped back afterwards: keep it
            self._cache["previous"] = previous.clone()
        return result


class _FieldMetric(CodeMetric):
    """A code metric that pairs each neuron layer with the connection layer feeding it.

    The feeding layer of a neuron layer is ``sources[name]`` if given, else the nearest
    connection layer (``nn.Linear``, ``nn.ConvNd``, ... with a
    :class:`~snnmetrics.connections.ConnectionRule`) before it in ``model.named_modules()``
    order, outside any neuron. Every call of the neuron layer must follow a call of that
    layer whose output has the spikes' shape (activations in between, such as
    normalisation, are allowed if they keep the shape).
    """

    higher_is_better = True
    _average = False
    _coverage = False

    def __init__(
        self,
        model: nn.Module,
        layers: Sequence[str] | None = None,
        sources: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        """Hook the neuron layers to watch and the layers feeding them.

        Args:
            model: the network to watch (the inner module of a DDP/DataParallel wrapper).
            layers: names of the neuron layers to watch (default: every spiking neuron).
            sources: neuron layer name -> the name of the connection layer whose outputs
                it receives (default: the nearest connection layer before it).
            **kwargs: torchmetrics ``Metric`` options (``sync_on_compute``, ``process_group``, ...).
        """
        if sources is not None and (
            not isinstance(sources, Mapping)
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in sources.items())
        ):
            raise TypeError(f"sources must map neuron layer names to layer names, got {sources!r}")
        self._sources = dict(sources or {})
        super().__init__(model, layers=layers, **kwargs)

    def _track(self) -> list[Tap]:
        unknown = set(self._sources) - set(self.layer_names)
        if unknown:
            raise ValueError(f"sources names layers that are not watched: {sorted(unknown)}")
        pairs = [_feeding_layer(self.model, name, self._sources) for name in self.layer_names]
        for name, tap, (_, source) in zip(self.layer_names, self._code_taps, pairs, strict=True):
            paired = tap.paired_source()
            if paired is not None and paired is not source:
                raise ValueError(
                    f"layer {name!r} is paired with another input layer by a metric still "
                    f"attached; sources={{{name!r}: ...}} must agree with it"
                )
        self.source_names = [source_name for source_name, _ in pairs]
        inputs: dict[int, InputTap] = {}
        for tap, (_, source) in zip(self._code_taps, pairs, strict=True):
            if id(source) not in inputs:
                inputs[id(source)] = acquire(source, InputTap)
            tap.track_fields(inputs[id(source)], self._average, self._coverage)
        return list(inputs.values())


class BasisAverage(_FieldMetric):
    """The average input that drives each unit: its spike-triggered average (STA).

    The input of a layer is the input of the connection layer feeding it (see
    ``sources``), so for a stack the STA of each layer is over the codes of the layer
    below. For each weight tap ``w`` of that connection layer, joining input element ``i``
    to unit ``n`` (for ``nn.Linear``, ``w = (n, i)``), over all codes ``a`` and their
    inputs ``x``:

    ``sums[w] = sum_codes sum_{(n, i) joined by w} a_n * x_i``,
    ``counts[w] = sum_codes sum_{(n, i) joined by w} a_n`` and
    ``average[w] = sums[w] / counts[w]`` (NaN where no unit of ``w`` was ever active).

    For ``nn.Linear`` ``average[n, i]`` is the mean of input ``i`` over the codes in which
    unit ``n`` is active; for a convolution the units of one output channel share their
    weights, so ``average[c, j, *k]`` is the mean, over every active unit of channel ``c``
    (each code, each position), of the input at channel ``j`` and offset ``k`` of its
    receptive field (padding excluded). Zero weights do not change the field. States are
    float64 sums and counts shaped like the weight, whatever the number of batches.
    ``compute()`` returns per layer name a dict of ``average``, ``sums`` and ``counts``
    (``metric.source_names`` lists the feeding layers).

    Example:
        >>> import torch, snntorch as snn
        >>> from snnmetrics import BasisAverage
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 1, bias=False),
        ...                           snn.Leaky(beta=0.0, threshold=0.5, init_hidden=True))
        >>> with torch.no_grad():
        ...     _ = net[0].weight.fill_(1.0)
        >>> with BasisAverage(net) as metric:
        ...     _ = net(torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]]))
        ...     metric.update()
        ...     metric.compute()["1"]["average"].tolist()  # rows 0 and 2 fire
        [[1.0, 0.5]]
    """

    best_key = "average"
    _average = True

    def _add_states(self) -> None:
        for i, tap in enumerate(self._code_taps):
            source = tap.source
            assert source is not None
            layer = source.module_ref()
            assert layer is not None
            shape = tuple(source.rule.weight(layer).shape)
            self._add_count(f"sums_{i}", shape, torch.float64)
            self._add_count(f"counts_{i}", shape, torch.float64)

    def _fold_layer(self, i: int, now: CodeTotals, before: CodeTotals, sink: CodeSink | None):
        sums, counts = _difference(now.sums, before.sums), _difference(now.pairs, before.pairs)
        if sums is not None and counts is not None:
            getattr(self, f"sums_{i}").add_(sums.to(self.nonfinite.device))
            getattr(self, f"counts_{i}").add_(counts.to(self.nonfinite.device))

    def compute(self) -> dict[str, dict[str, Tensor]]:
        """The spike-triggered average input of each watched layer.

        Returns:
            per layer name a dict of ``average`` (shaped like the feeding layer's weight;
            NaN where no unit of a weight tap was ever active), ``sums`` and ``counts``.
        """
        self._check_finite()
        result = {}
        for i, name in enumerate(self.layer_names):
            sums, counts = getattr(self, f"sums_{i}"), getattr(self, f"counts_{i}")
            result[name] = {"average": sums / counts, "sums": sums, "counts": counts}
        return result

    def plot(self, val: Any = None, ax: Axes | None = None) -> tuple[Figure, Axes]:
        """One image per layer of its average input per weight tap (rows: units, columns:
        the rest of the weight); ``(fig, ax)`` with ``ax`` the first layer's axes.

        Args:
            val: a result of :meth:`compute`; computed now if ``None``.
            ax: axes for the first layer; a new figure is made if ``None``.
        """
        if isinstance(val, (list, tuple)):
            raise ValueError("BasisAverage results are maps per weight: plot one result at a time")
        result = self.compute() if val is None else val
        averages = {name: figures["average"] for name, figures in result.items()}
        return plot_fields(averages, ax=ax, layer_types=self.layer_types())


class FeatureCoverage(_FieldMetric):
    """Fraction of input elements in the receptive field of at least one active unit.

    The input of a layer is the input of the connection layer feeding it (see
    ``sources``); unit ``n`` *sees* input element ``i`` if a nonzero weight joins them
    (derived from the layer's connectivity by autograd, honouring stride, padding,
    dilation and groups). For a code ``a`` over ``I`` input elements,
    ``covered(a) = |{i : a_n = 1 and n sees i for some unit n}|``, and per layer

    ``coverage = sum_codes covered(a) / sum_codes I``,

    the mean over codes (sample-steps) of the covered fraction. States are two float64
    counts per layer. ``compute()`` returns float64 per layer name (layers that never ran
    are left out).

    Example:
        >>> import torch, snntorch as snn
        >>> from snnmetrics import FeatureCoverage
        >>> net = torch.nn.Sequential(torch.nn.Conv1d(1, 1, 3, padding=1, bias=False),
        ...                           snn.Leaky(beta=0.0, threshold=0.5, init_hidden=True))
        >>> with torch.no_grad():
        ...     _ = net[0].weight.fill_(1.0)
        >>> with FeatureCoverage(net) as metric:
        ...     _ = net(torch.tensor([[[1.0, 0.0, 0.0, 0.0, 0.0, 0.0]]]))  # units 0, 1 fire
        ...     metric.update()
        ...     float(metric.compute()["1"])  # they see inputs 0, 1, 2 of 6
        0.5
    """

    _coverage = True
    covered: Tensor
    elements: Tensor

    def _add_states(self) -> None:
        self._add_count("covered", (len(self._code_taps),), torch.float64)
        self._add_count("elements", (len(self._code_taps),), torch.float64)

    def _fold_layer(self, i: int, now: CodeTotals, before: CodeTotals, sink: CodeSink | None):
        counts = now.counts - before.counts.to(now.counts.device)
        self.covered[i] += counts[1].to(self.covered.device)
        self.elements[i] += counts[2].to(self.elements.device)

    def compute(self) -> dict[str, Tensor]:
        """The covered fraction of input elements of each layer that ran.

        Returns:
            per layer name a float64 fraction (empty before any update).
        """
        self._check_finite()
        return {
            name: self.covered[i] / self.elements[i]
            for i, name in enumerate(self.layer_names)
            if float(self.elements[i]) > 0
        }


class MatchAccuracy(CodeMetric):
    """How stable each layer's code is for repeated or labelled inputs.

    Inputs carry a *key* (an input's index for repeated inputs, or its label):
    ``update(keys, store=...)`` after each batch gives the key of every sample. The code
    of a sample is the set of units active at any step of the batch (the OR of its rows
    over the calls since the last update). Presentations with ``store=True`` (default:
    while ``model.training``, as in sparsey) make the stored codes; the others are
    *selected* codes, compared with the stored code of their key:

    * stored code of key ``k``: ``c_k[u] = 1`` iff unit ``u`` was active in more than half
      of the key's store presentations (its only code when stored once);
    * normalised Hamming distance of a selected code ``a``: ``d = |c_k XOR a| / N`` for a
      layer of ``N`` units;
    * ``accuracy = 1 - mean(d)`` over the selected codes whose key has a stored code (the
      others are not compared).

    The states are per key and unit the store and match presentations in which the unit
    was active, and per key the number of presentations (int64, ``2 * num_keys * (N + 1)``
    per layer), so the figure does not depend on the order of the presentations, their
    split into batches or ranks. ``compute()`` returns float64 per layer name (layers with
    nothing compared are left out).

    Example:
        >>> import torch, snntorch as snn
        >>> from snnmetrics import MatchAccuracy
        >>> net = torch.nn.Sequential(torch.nn.Identity(),
        ...                           snn.Leaky(beta=0.0, threshold=0.5, init_hidden=True))
        >>> with MatchAccuracy(net, num_keys=2) as metric:
        ...     _ = net(torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]]))
        ...     metric.update(torch.tensor([0, 1]), store=True)
        ...     _ = net(torch.tensor([[1.0, 0.0, 0.0, 1.0]]))
        ...     metric.update(torch.tensor([0]), store=False)
        ...     float(metric.compute()["1"])  # 2 of 4 units differ from key 0's code
        0.5
    """

    higher_is_better = True
    stored_count: Tensor
    matched_count: Tensor

    def __init__(
        self,
        model: nn.Module,
        num_keys: int,
        layers: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        """Hook the neuron layers to watch.

        Args:
            model: the network to watch (the inner module of a DDP/DataParallel wrapper).
            num_keys: the number of keys (inputs or labels) codes are stored for.
            layers: names of the neuron layers to watch (default: every spiking neuron).
            **kwargs: torchmetrics ``Metric`` options (``sync_on_compute``, ``process_group``, ...).
        """
        if isinstance(num_keys, bool) or not isinstance(num_keys, int):
            raise TypeError(f"num_keys must be a positive int, got {num_keys!r}")
        if num_keys <= 0:
            raise ValueError(f"num_keys must be a positive int, got {num_keys}")
        self.num_keys = num_keys
        self._keys: Tensor | None = None
        self._store = False
        super().__init__(model, layers=layers, **kwargs)

    def _track(self) -> list[Tap]:
        for tap in self._code_taps:
            tap.track_union()
        self._sinks = [tap.add_sink() for tap in self._code_taps]
        return []

    def _add_states(self) -> None:
        for i in range(len(self._code_taps)):
            self._add_lazy(f"stored_{i}")
            self._add_lazy(f"matched_{i}")
        self._add_count("stored_count", (len(self._code_taps), self.num_keys), torch.int64)
        self._add_count("matched_count", (len(self._code_taps), self.num_keys), torch.int64)

    def update(  # type: ignore[override]
        self, keys: Tensor | Sequence[int], store: bool | None = None, batch_size: int | None = None
    ) -> None:
        """Fold the codes since the last update, one per sample of the batch.

        Args:
            keys: the key of each sample (ints in ``[0, num_keys)``), one per row of the
                watched layers' calls.
            store: record these codes as stored codes (``True``) or compare them with
                the stored ones (``False``); default ``model.training``.
            batch_size: as for every hooked metric.
        """
        keys = torch.as_tensor(keys)
        if keys.is_floating_point() or keys.dtype == torch.bool or keys.ndim != 1:
            raise TypeError(f"keys must be a 1-d tensor of ints, got {keys.dtype} {keys.ndim}-d")
        if keys.numel() and (int(keys.min()) < 0 or int(keys.max()) >= self.num_keys):
            raise ValueError(f"keys must lie in [0, num_keys={self.num_keys})")
        for name, tap, sink in zip(self.layer_names, self._code_taps, self._sinks, strict=True):
            rows = tap.union_rows(sink)
            if rows is not None and rows != keys.numel():
                raise ValueError(
                    f"keys: {keys.numel()} keys for layer {name!r}, whose calls since the last "
                    "update carried a different number of rows: update after each batch with "
                    "one key per sample"
                )
        self._keys = keys.to(self.stored_count.device, torch.int64)
        self._store = self.model.training if store is None else bool(store)
        super().update(batch_size)

    def _fold_layer(self, i: int, now: CodeTotals, before: CodeTotals, sink: CodeSink | None):
        if sink is None or sink.union is None:
            return  # the layer did not run in this window
        keys = self._keys
        assert keys is not None  # and update() checked that they match the rows
        kind = "stored" if self._store else "matched"
        union = sink.union.to(keys.device, torch.int64)
        self._grow(f"{kind}_{i}", (self.num_keys, union.shape[1])).index_add_(0, keys, union)
        getattr(self, f"{kind}_count")[i].index_add_(0, keys, torch.ones_like(keys))

    def compute(self) -> dict[str, Tensor]:
        """How closely selected codes match the stored code of their key.

        Returns:
            per layer name a float64 accuracy, ``1 - mean normalised Hamming distance``
            (empty before any update).

        Raises:
            ValueError: if updates were made but no code was compared.
        """
        self._check_finite()
        result = {}
        for i, name in enumerate(self.layer_names):
            stored, matched = getattr(self, f"stored_{i}"), getattr(self, f"matched_{i}")
            counts = self.stored_count[i], self.matched_count[i]
            if stored.numel() and matched.numel() and int(counts[1][counts[0] > 0].sum()):
                result[name] = match_accuracy(stored, counts[0], matched, counts[1])
        if not result and int(self.samples) > 0:  # before any update: nothing to report
            raise ValueError(
                "MatchAccuracy compared no code: update with store=True to store codes, then "
                "with store=False (or in eval mode) for codes of the same keys"
            )
        return result
