"""Neuron workload: membrane updates, neuron operations, activation sparsity."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from snnmetrics.functional.neuron import (
    activation_sparsity,
    membrane_updates,
    neuron_operations,
)
from snnmetrics.metrics.base import HookedMetric, add_per_layer, read_taps, unwrap_model
from snnmetrics.neurons import Costs, NeuronRule, find_neurons, neuron_cost
from snnmetrics.tracking.hub import Window, acquire
from snnmetrics.tracking.neuron import NeuronTap, NeuronTotals

__all__ = [
    "ActivationSparsity",
    "MembraneUpdates",
    "NeuronLayers",
    "NeuronMetric",
    "NeuronOperations",
    "membrane_update_counts",
    "operation_costs",
    "watches_membrane",
]


class NeuronReading(NamedTuple):
    """What the watched neuron layers counted between two reads (see
    :meth:`NeuronLayers.read`), one entry per layer."""

    now: list[NeuronTotals]
    before: list[NeuronTotals]
    counts: Tensor  # [layers, 3] float64: now - before of NeuronTotals.counts
    # [layers] float64: the neurons each layer's first call of the window did not change
    # (0 for a layer without one); None if no layer has one
    first: Tensor | None

    def changes(self, field: str) -> list[int]:
        """``now - before`` of one integer field of :class:`NeuronTotals` per layer."""
        pairs = zip(self.now, self.before, strict=True)
        return [getattr(now, field) - getattr(before, field) for now, before in pairs]


class NeuronLayers:
    """Neuron layers as one metric reads them: their shared taps and the totals it last read.

    Args:
        layers: ``(qualified name, module)`` of each neuron layer to watch.
    """

    _snapshots: list[NeuronTotals]
    _counts: Tensor  # the snapshots' counts, stacked

    def __init__(self, layers: Sequence[tuple[str, nn.Module]]) -> None:
        self.names = [name for name, _ in layers]
        self.taps = [acquire(module, NeuronTap) for _, module in layers]
        self.skip()

    def read(self, window: Window, device: torch.device) -> NeuronReading:
        """Every layer's totals now and at the last read, the counts in between (on
        ``device``) and what its first call of ``window`` recorded; then mark them read."""
        now, counts = read_taps(self.taps, 3, device)
        before, self._snapshots = self._snapshots, now
        delta = counts - self._counts.to(device)
        self._counts = counts
        # first_call is cleared when the metric opens its next window
        firsts = [window.first_call.get(tap) for tap in self.taps]
        first = None
        if any(value is not None for value in firsts):
            zero = torch.zeros((), dtype=torch.float64, device=device)
            first = torch.stack(
                [zero if value is None else value.to(device, torch.float64) for value in firsts]
            )
        return NeuronReading(now, before, delta, first)

    def skip(self) -> None:
        """Mark everything counted so far as read, without folding it."""
        self._snapshots, self._counts = read_taps(self.taps, 3)


def watches_membrane(name: str, rule: NeuronRule, metric: str) -> bool:
    """Whether a metric of membrane updates watches a neuron: every spiking one, which
    must then have membrane readers (a ``TypeError`` naming the layer otherwise)."""
    if rule.spiking and not rule.has_membrane:
        raise TypeError(
            f"layer {name!r} is a neuron registered without membrane readers: "
            f"{metric} needs NeuronRule(membrane_before=..., membrane_after=...)"
        )
    return rule.spiking


def membrane_update_counts(reading: NeuronReading) -> Tensor:
    """Membrane updates (int64, one per layer) between two reads.

    Every neuron counts at the window's first call (``reading.first`` holds the neurons
    that did not change then), and afterwards the neurons whose membrane changed.
    """
    changed = reading.counts[:, 1]
    if reading.first is not None:  # this window's first call counts every neuron
        changed = changed + reading.first
    return changed.nan_to_num(0).to(torch.int64)


def operation_costs(model: nn.Module, costs: Costs | None = None) -> dict[str, float]:
    """Operations per membrane update of each spiking neuron with a membrane, by layer name.

    ``costs`` overrides the registered costs (see :func:`snnmetrics.neurons.neuron_cost`);
    an unknown cost raises a ``ValueError`` naming the neuron type.
    """
    return {
        name: neuron_cost(module, costs)
        for name, module, rule in find_neurons(model)
        if rule.spiking and rule.has_membrane
    }


class NeuronMetric(HookedMetric):
    """Base of the metrics that watch neurons (see :mod:`snnmetrics.neurons`).

    Subclasses say which neurons they watch (:meth:`_watches`), what the shared taps must
    count for them (:meth:`_track`) and how one layer's counts since the last update go
    into the states (:meth:`_fold_layers`).
    """

    _what = "spiking neuron"
    _transient = ("_neurons",)
    nonfinite: Tensor

    def __init__(self, model: nn.Module, **kwargs: Any) -> None:
        """Hook the neurons of ``model`` that this metric watches.

        Args:
            model: the network to watch (the inner module of a DDP/DataParallel wrapper).
            **kwargs: torchmetrics ``Metric`` options (``sync_on_compute``, ``process_group``, ...).

        Raises:
            ValueError: if ``model`` has no such neuron.
        """
        super().__init__(model, **kwargs)
        self._attach()
        self._add_count("nonfinite", ())

    def _attach(self) -> None:
        layers = [(n, m) for n, m, rule in find_neurons(self.model) if self._watches(n, rule)]
        if not layers:
            raise ValueError(
                f"{type(self.model).__name__} has no {self._what} to watch (snnTorch neurons, "
                "or a type registered with snnmetrics.register_neuron)"
            )
        self._neurons = NeuronLayers(layers)
        self.layer_names = self._neurons.names
        self._track(self._neurons.taps)
        self._subscribe(self._neurons.taps)

    def _add_count(self, name: str, shape: tuple[int, ...]) -> None:
        """Register an int64 count state, summed across ranks and kept in checkpoints."""
        zeros = torch.zeros(shape, dtype=torch.int64)
        self.add_state(name, zeros, dist_reduce_fx="sum", persistent=True)

    def _watches(self, name: str, rule: NeuronRule) -> bool:
        return rule.spiking

    def _track(self, taps: Sequence[NeuronTap]) -> None:
        """Ask the taps for what this metric needs beyond nonzero outputs."""

    def _fold(self) -> None:
        reading = self._neurons.read(self._window, self.nonfinite.device)
        self.nonfinite.add_(reading.counts[:, 2].sum().to(torch.int64))
        self._fold_layers(reading)

    def _skip(self) -> None:
        self._neurons.skip()

    def _fold_layers(self, reading: NeuronReading) -> None:
        """Add every layer's counts since the last update."""
        raise NotImplementedError

    def _check_finite(self) -> None:
        if int(self.nonfinite) > 0:
            raise ValueError(
                f"{type(self).__name__}: a watched neuron produced NaN spikes or membranes; "
                "its figures are undefined"
            )


class _MembraneMetric(NeuronMetric):
    """Membrane updates per layer: every neuron at a window's first step, then changed ones."""

    higher_is_better = False  # fewer updates cost less
    _unit = "per sample"
    updates: Tensor
    neuron_steps: Tensor

    def __init__(self, model: nn.Module, **kwargs: Any) -> None:
        """Hook every spiking neuron of ``model``, membrane included.

        Args:
            model: the network to watch (the inner module of a DDP/DataParallel wrapper).
            **kwargs: torchmetrics ``Metric`` options (``sync_on_compute``, ``process_group``, ...).

        Raises:
            ValueError: if ``model`` has no spiking neuron.
            TypeError: if a spiking neuron has no membrane readers.
        """
        super().__init__(model, **kwargs)
        self._add_count("updates", (len(self.layer_names),))
        self._add_count("neuron_steps", (len(self.layer_names),))

    def _watches(self, name: str, rule: NeuronRule) -> bool:
        return watches_membrane(name, rule, type(self).__name__)

    def _track(self, taps: Sequence[NeuronTap]) -> None:
        for tap in taps:
            tap.track_membrane()

    def _fold_layers(self, reading: NeuronReading) -> None:
        self.updates.add_(membrane_update_counts(reading))
        add_per_layer(self.neuron_steps, reading.changes("neuron_steps"))


class MembraneUpdates(_MembraneMetric):
    """Membrane updates per sample of every spiking neuron of a model.

    At the first step of a sample every neuron counts; at every later step the neurons
    whose membrane changed (all of them if the state starts afresh). The first step is the
    first call of each neuron after an ``update()``, so update once per batch, as NeuroBench
    2.3.0's ``MembraneUpdates`` does (it resets its hooks per batch); the figures equal its
    figures, and neurons with ``init_hidden=False`` are counted too.

    ``compute()`` returns a float64 tensor; ``compute_per_layer()`` one per layer name.

    Example:
        >>> import torch, snntorch as snn
        >>> from snnmetrics import MembraneUpdates
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 3, bias=False),
        ...                           snn.Leaky(beta=0.9, init_hidden=True))
        >>> with MembraneUpdates(net) as metric:
        ...     for t in range(5):
        ...         _ = net(torch.zeros(2, 4))
        ...     metric.update()
        ...     float(metric.compute())  # the membrane stays 0: 3 neurons at the first step only
        3.0
    """

    def compute(self) -> Tensor:
        """Membrane updates per sample, summed over layers and timesteps.

        Returns:
            a float64 tensor (NaN before any update).
        """
        self._check_finite()
        return membrane_updates(self.updates, self._samples())

    def compute_per_layer(self) -> dict[str, Tensor]:
        """Membrane updates per sample of each layer (synced across ranks)."""
        with self._synced():
            self._check_finite()
            samples = self._samples()
            return {
                name: membrane_updates(self.updates[i], samples)
                for i, name in enumerate(self.layer_names)
            }


class NeuronOperations(_MembraneMetric):
    """Neuron operations per sample: membrane updates times each neuron type's op cost.

    ``effective`` counts the operations of the membrane updates (see
    :class:`MembraneUpdates`), ``dense`` those of updating every neuron at every step.
    Costs per update come from :data:`snnmetrics.neurons.SNNTORCH_COSTS` (NeuroBench
    2.3.0's table for ``Leaky``, ``Synaptic``, ``Lapicque``, ``Alpha``, extended to no
    reset and to ``RLeaky``/``RSynaptic``; the derivation is in :mod:`snnmetrics.neurons`)
    or the neuron's registered rule. ``costs`` overrides them: it maps a neuron type (class
    or name) to a number or to a dict reset mechanism -> number, e.g.
    ``{"Leaky": {"subtract": 5}}``. The costs in use, per layer name, are ``metric.costs``.

    ``compute()`` returns float64 tensors ``effective`` and ``dense``; ``compute_per_layer()``
    the same per layer name.

    Example:
        >>> import torch, snntorch as snn
        >>> from snnmetrics import NeuronOperations
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 3),
        ...                           snn.Leaky(beta=0.9, init_hidden=True))
        >>> with NeuronOperations(net) as ops:
        ...     for t in range(5):
        ...         _ = net(torch.ones(2, 4))
        ...     ops.update()
        ...     float(ops.compute()["dense"])  # 3 neurons x 5 steps x 4 operations
        60.0
    """

    def __init__(self, model: nn.Module, costs: Costs | None = None, **kwargs: Any) -> None:
        """Hook every spiking neuron of ``model``, membrane included.

        Args:
            model: the network to watch (the inner module of a DDP/DataParallel wrapper).
            costs: operations per membrane update by neuron type (class or name): a
                number, or a dict reset mechanism -> number; overrides the registered
                costs.
            **kwargs: torchmetrics ``Metric`` options (``sync_on_compute``, ``process_group``, ...).

        Raises:
            ValueError: if a neuron's cost is unknown, or ``model`` has no spiking neuron.
        """
        # resolve every cost first: an unknown one must fail before any hook is added
        known = operation_costs(unwrap_model(model), costs)
        super().__init__(model, **kwargs)
        self.costs: dict[str, float] = {name: known[name] for name in self.layer_names}

    def _cost_vector(self) -> Tensor:
        costs = list(self.costs.values())
        return torch.tensor(costs, dtype=torch.float64, device=self.updates.device)

    def compute(self) -> dict[str, Tensor]:
        """Neuron operations per sample, summed over layers and timesteps.

        Returns:
            float64 tensors ``effective`` (membrane updates x cost) and ``dense`` (every
            neuron at every step x cost); NaN before any update.
        """
        self._check_finite()
        samples = self._samples()
        return neuron_operations(self.updates, self.neuron_steps, self._cost_vector(), samples)

    def compute_per_layer(self) -> dict[str, dict[str, Tensor]]:
        """The figures of :meth:`compute`, for each layer name (synced across ranks)."""
        with self._synced():
            self._check_finite()
            samples, cost = self._samples(), self._cost_vector()
            return {
                name: neuron_operations(
                    self.updates[i : i + 1], self.neuron_steps[i : i + 1], cost[i : i + 1], samples
                )
                for i, name in enumerate(self.layer_names)
            }


class ActivationSparsity(NeuronMetric):
    """Fraction of zero activations over every activation output of a model.

    Counts the outputs of spiking neurons (their spikes), ``nn.ReLU`` and ``nn.Sigmoid``
    (and types registered with :func:`snnmetrics.register_neuron`), over all samples and
    steps: ``zeros / elements``. ``compute()`` returns a float64 tensor in [0, 1]; with
    ``by_layer=True`` a dict layer name -> tensor (layers that never ran are left out).
    NeuroBench 2.3.0's ``ActivationSparsity`` and ``ActivationSparsityByLayer`` give the
    same figures (its global figure averages batches weighted by their size, which is the
    same when every batch runs the same number of steps).

    Example:
        >>> import torch
        >>> from snnmetrics import ActivationSparsity
        >>> net = torch.nn.Sequential(torch.nn.Identity(), torch.nn.ReLU())
        >>> with ActivationSparsity(net) as sparsity:
        ...     _ = net(torch.tensor([[-1.0, 2.0, -3.0, 4.0]]))
        ...     sparsity.update()
        ...     float(sparsity.compute())
        0.5
    """

    _what = "activation (neuron, nn.ReLU, nn.Sigmoid)"
    higher_is_better = True  # sparser activity costs less
    _unit = "fraction of zero activations"
    zeros: Tensor
    elements: Tensor

    def __init__(self, model: nn.Module, by_layer: bool = False, **kwargs: Any) -> None:
        """Hook every activation of ``model``: spiking neurons, ``nn.ReLU``, ``nn.Sigmoid``.

        Args:
            model: the network to watch (the inner module of a DDP/DataParallel wrapper).
            by_layer: ``compute()`` gives the per-layer dict of :meth:`compute_per_layer`.
            **kwargs: torchmetrics ``Metric`` options (``sync_on_compute``, ``process_group``, ...).

        Raises:
            ValueError: if ``model`` has no activation.
        """
        super().__init__(model, **kwargs)
        self.by_layer = bool(by_layer)
        self._add_count("zeros", (len(self.layer_names),))
        self._add_count("elements", (len(self.layer_names),))

    def _watches(self, name: str, rule: NeuronRule) -> bool:
        return True

    def _fold_layers(self, reading: NeuronReading) -> None:
        elements = reading.changes("outputs")
        add_per_layer(self.elements, elements)
        add_per_layer(self.zeros, elements)
        self.zeros.sub_(reading.counts[:, 0].to(torch.int64))

    def compute(self) -> Tensor | dict[str, Tensor]:
        """The fraction of zero activations over the watched layers.

        Returns:
            a float64 tensor in [0, 1] (NaN before any update), or with ``by_layer=True``
            the dict of :meth:`compute_per_layer`.
        """
        if self.by_layer:
            return self._per_layer()
        self._check_finite()
        return activation_sparsity(self.zeros, self.elements)

    def compute_per_layer(self) -> dict[str, Tensor]:
        """Each layer's fraction of zero activations, by layer name (synced across ranks;
        layers that never ran are left out)."""
        with self._synced():
            return self._per_layer()

    def _per_layer(self) -> dict[str, Tensor]:
        self._check_finite()
        return {
            name: activation_sparsity(self.zeros[i], self.elements[i])
            for i, name in enumerate(self.layer_names)
            if int(self.elements[i]) > 0
        }
