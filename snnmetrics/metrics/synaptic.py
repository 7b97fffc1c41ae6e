"""Synaptic operations: hooked (:class:`SynapticOperations`) and the 0.0.1 API (:class:`SynOps`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics import Metric

from snnmetrics.connections import CallRule, connection_rule
from snnmetrics.functional.synops import (
    as_fanout,
    check_sample_time,
    per_sample_result,
    synops_per_neuron,
)
from snnmetrics.metrics.base import HookedMetric, add_per_layer, read_taps
from snnmetrics.metrics.lazy import LazyShapes
from snnmetrics.tracking.call import acquire_connection_tap
from snnmetrics.tracking.connection import WIDTH, ConnectionTotals

__all__ = [
    "ConnectionLayers",
    "SynOps",
    "SynapticOperations",
    "check_finite_synops",
    "connection_layers",
]

_KEYS = ("synops", "effective_acs", "effective_macs", "dense")


class SynapticOperations(HookedMetric):
    """Synaptic operations per sample of every connection layer of a model.

    Hooks every registered connection layer (``nn.Linear``, ``nn.Conv1d/2d/3d``,
    ``nn.ConvTranspose1d/2d/3d``, the recurrent ``nn.Linear`` inside snnTorch
    ``RLeaky``/``RSynaptic``, ``nn.RNNCell/LSTMCell/GRUCell`` and ``nn.RNN/LSTM/GRU``, and
    types added with :func:`snnmetrics.connections.register_connection`). For each layer
    call:

    * *effective* operations are the (nonzero input element, nonzero weight) pairs that
      reach an output; with ``skip_zero_weights=False`` every structural connection
      counts, zero weights too (the sinabs / spikingjelly convention);
    * they are ACs if every input value of the call is in {-1, 0, 1}, else MACs;
    * *dense* operations are all weight taps that read a real (not padded) input.

    Bias, pooling and normalisation are not synaptic operations. Recurrent cells add
    NeuroBench's gate products (see :mod:`snnmetrics.recurrent`). Figures are totals over
    timesteps divided by the number of samples, equal to NeuroBench 2.3.0's
    ``SynapticOperations`` (``Effective_ACs``, ``Effective_MACs``, ``Dense``).

    The number of samples of ``update()`` is dim 0 of the first input the hooks saw (a
    full recurrent layer's own batch dimension). A model fed ``[T, B, ...]`` at once
    (spikingjelly's multi-step mode, ``SeqToANNContainer``, sinabs' squeezed layers)
    shows ``T`` or ``T * B`` there: pass ``update(batch_size=B)``.

    Counting costs one elementwise pass over each layer input and no re-run of the layer:
    the exact fanout of every input element is derived once per input shape and weight
    version (see :func:`snnmetrics.functional.fanout`). Weight changes that autograd
    tracks (an optimiser step, ``weight[...] = 0`` under ``torch.no_grad()``) are followed
    from the next call; an edit through ``weight.data`` is not seen by autograd, and is
    followed from the next ``update()`` (the calls of one window use the zero pattern of
    its first call). Under ``torch.compile`` the zero pattern is read at ``update()``.

    ``nn.MultiheadAttention`` counts its projections and the products of each head
    (:mod:`snnmetrics.attention`); attention written with ``@`` is counted by registering
    its module with a :class:`~snnmetrics.connections.ProductRule`. Calls with an empty
    batch are not calls; NaN inputs make ``compute()`` raise until ``reset()``.

    ``compute()`` returns float64 tensors: ``synops`` (= ``effective_acs`` +
    ``effective_macs``), ``effective_acs``, ``effective_macs``, ``dense``.

    Example:
        >>> import torch, snntorch as snn
        >>> from snnmetrics import SynapticOperations
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 3, bias=False),
        ...                           snn.Leaky(beta=0.9, init_hidden=True))
        >>> with SynapticOperations(net) as synops:
        ...     for t in range(5):
        ...         _ = net(torch.ones(2, 4))
        ...     synops.update()
        ...     result = synops.compute()
        >>> float(result["effective_acs"]), float(result["dense"])  # 5 steps x 4 inputs x 3
        (60.0, 60.0)
    """

    higher_is_better = False  # fewer operations cost less
    _unit = "operations per sample"
    effective_acs: Tensor
    effective_macs: Tensor
    dense: Tensor
    nonfinite: Tensor
    _transient = ("_connections",)

    def __init__(self, model: nn.Module, skip_zero_weights: bool = True, **kwargs: Any) -> None:
        """Hook every connection layer of ``model``.

        Args:
            model: the network to watch (the inner module of a DDP/DataParallel wrapper).
            skip_zero_weights: count only synapses with a nonzero weight (NeuroBench's
                convention); ``False`` counts every structural connection, zero weights
                too (the sinabs / spikingjelly convention).
            **kwargs: torchmetrics ``Metric`` options (``sync_on_compute``, ``process_group``, ...).

        Raises:
            ValueError: if ``model`` has no connection layer.
        """
        super().__init__(model, **kwargs)
        self.skip_zero_weights = bool(skip_zero_weights)
        self._attach()
        n = len(self.layer_names)
        for name, dtype, shape in (
            ("effective_acs", torch.float64, (n,)),
            ("effective_macs", torch.float64, (n,)),
            ("dense", torch.int64, (n,)),
            ("nonfinite", torch.int64, ()),  # NaN readings, which make the figures undefined
        ):
            zeros = torch.zeros(shape, dtype=dtype)
            self.add_state(name, zeros, dist_reduce_fx="sum", persistent=True)

    def _attach(self) -> None:
        self._connections = ConnectionLayers(self.model, self.skip_zero_weights)
        self.layer_names = self._connections.names
        self._subscribe(self._connections.taps)

    def _options(self) -> tuple[Any, ...]:
        return (self.skip_zero_weights,)

    def _fold(self) -> None:
        self._connections.fold(self.effective_acs, self.effective_macs, self.dense, self.nonfinite)

    def _skip(self) -> None:
        self._connections.skip()

    def compute(self) -> dict[str, Tensor]:
        """Synaptic operations per sample, summed over layers and timesteps.

        Returns:
            float64 tensors ``synops`` (= ``effective_acs`` + ``effective_macs``),
            ``effective_acs``, ``effective_macs`` and ``dense`` (NaN before any update).
        """
        return {key: value.sum() for key, value in self._per_layer().items()}

    def compute_per_layer(self) -> dict[str, dict[str, Tensor]]:
        """The figures of :meth:`compute`, for each layer name."""
        with self._synced():
            per_layer = self._per_layer()
        return {
            name: {key: per_layer[key][i] for key in _KEYS}
            for i, name in enumerate(self.layer_names)
        }

    def _per_layer(self) -> dict[str, Tensor]:
        samples = self._samples()
        check_finite_synops(self.nonfinite)
        acs, macs = self.effective_acs / samples, self.effective_macs / samples
        return {
            "synops": acs + macs,
            "effective_acs": acs,
            "effective_macs": macs,
            "dense": self.dense.to(torch.float64) / samples,
        }


class ConnectionLayers:
    """The connection layers of a model as one metric reads them.

    Finds every registered connection layer (a ``ValueError`` if there is none), holds
    their shared taps (see :func:`~snnmetrics.tracking.call.acquire_connection_tap`) and
    the totals the metric last read, and folds what the taps counted since then into
    per-layer count tensors: the one place where a tap's counts become effective ACs,
    effective MACs and dense operations.

    Args:
        model: the (unwrapped) model.
        skip_zero_weights: count only synapses with a nonzero weight (else every
            structural connection, which makes the taps count those too).
    """

    _snapshots: list[ConnectionTotals]
    _counts: Tensor  # the snapshots' counts, stacked

    def __init__(self, model: nn.Module, skip_zero_weights: bool) -> None:
        layers = connection_layers(model)
        if not layers:
            raise ValueError(
                f"{type(model).__name__} has no connection layer to count (nn.Linear, "
                "nn.Conv1d/2d/3d, a recurrent cell or a type registered with "
                "register_connection)"
            )
        self.names = [name for name, _ in layers]
        self.taps = [acquire_connection_tap(module) for _, module in layers]
        for tap in self.taps:
            tap.want_structural |= not skip_zero_weights
        # position of [everything, in MAC calls] in ConnectionTotals.counts
        self._first = 0 if skip_zero_weights else 2
        self.skip()

    def fold(self, acs: Tensor, macs: Tensor, dense: Tensor, nonfinite: Tensor) -> None:
        """Add each layer's counts since the last fold to ``acs[i]``, ``macs[i]``,
        ``dense[i]``, and the NaN readings of all layers to ``nonfinite``."""
        device = acs.device
        now, counts = read_taps(self.taps, WIDTH, device)
        delta = counts - self._counts.to(device)
        everything, in_mac_calls = delta[:, self._first], delta[:, self._first + 1]
        acs += everything - in_mac_calls
        macs += in_mac_calls
        nonfinite += delta[:, 4].sum().to(nonfinite.dtype)
        changes = [n.dense - b.dense for n, b in zip(now, self._snapshots, strict=True)]
        add_per_layer(dense, [change if isinstance(change, int) else 0 for change in changes])
        for i, change in enumerate(changes):
            if isinstance(change, Tensor):  # a layer whose dense count depends on the data
                dense[i] += change.to(device, torch.int64)
        self._snapshots, self._counts = now, counts

    def skip(self) -> None:
        """Mark everything counted so far as read, without folding it."""
        self._snapshots, self._counts = read_taps(self.taps, WIDTH)


def connection_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every registered connection layer of ``model``, but those
    inside a layer whose rule counts its submodules (``nn.MultiheadAttention``)."""
    layers: list[tuple[str, nn.Module]] = []
    covered: list[str] = []
    for name, module in model.named_modules():
        if any(name.startswith(f"{outer}.") for outer in covered):
            continue
        rule = connection_rule(module)
        if rule is None:
            continue
        layers.append((name, module))
        if isinstance(rule, CallRule) and rule.counts_submodules:
            covered.append(name)
    return layers


def check_finite_synops(nonfinite: Tensor) -> None:
    """A ``ValueError`` if NaN inputs (``nonfinite`` readings) made the synaptic operation
    counts undefined."""
    if int(nonfinite) > 0:
        raise ValueError(
            "a connection layer received NaN inputs: synaptic operations are undefined "
            "(reset() the metric to count the next windows)"
        )


class SynOps(LazyShapes, Metric):
    """Synaptic operations of one layer from its activations (the snnmetrics 0.0.1 API).

    ``SynOps(fanout=...)`` takes the fanout of the layer's neurons: a number (every neuron
    has the same fanout, e.g. ``out_features`` of the next ``Linear``) or a tensor of shape
    ``(C,)``/``(C, H, W)`` (use :func:`snnmetrics.functional.fanout` for a conv).
    ``update(activations)`` takes spike counts summed over time, shape ``(B, C)`` or
    ``(B, C, H, W)``. ``compute()`` returns, per sample: ``synops_per_neuron`` (the map),
    ``synops`` (its sum) and, with ``sample_time`` (seconds per sample), ``synops/s``
    (``synops / sample_time``; 0.0.1 divided the per-neuron *mean* instead). Calling the
    metric returns the same figures for the batch alone.

    Unlike 0.0.1 the state is one float64 tensor, so it syncs under DDP. With a number as
    fanout the map's shape is taken from the first batch unless ``neuron_shape`` is given;
    ranks that saw no batch adopt the shape of the others when they sync.

    Example:
        >>> import torch
        >>> from snnmetrics import SynOps
        >>> metric = SynOps(fanout=10.0)
        >>> batch = metric(torch.tensor([[1., 0.], [3., 0.]]))
        >>> float(batch["synops"])
        20.0
        >>> _ = metric(torch.tensor([[0., 0.], [0., 1.]]))
        >>> float(metric.compute()["synops"])
        12.5
    """

    is_differentiable = False
    higher_is_better = None
    full_state_update = False
    fanout: Tensor
    synops_sum: Tensor
    samples: Tensor

    def __init__(
        self,
        fanout: float | Tensor,
        sample_time: float | None = None,
        neuron_shape: Sequence[int] | None = None,
        **kwargs: Any,
    ) -> None:
        """A synaptic-operation counter for one layer fed its activations.

        Args:
            fanout: the fanout of each neuron: a number (the same for all) or a tensor of
                the neuron shape, ``(C,)`` or ``(C, H, W)``.
            sample_time: seconds per sample, for ``synops/s``.
            neuron_shape: the neuron shape, to fix the state's shape up front when
                ``fanout`` is a number (else taken from the first batch).
            **kwargs: torchmetrics ``Metric`` options.
        """
        super().__init__(**kwargs)
        fan = as_fanout(fanout)
        self.sample_time = check_sample_time(sample_time)
        self.register_buffer("fanout", fan, persistent=False)
        if fan.ndim:
            shape: tuple[int, ...] | None = tuple(fan.shape)
        elif neuron_shape is not None:
            shape = tuple(int(s) for s in neuron_shape)
        else:
            shape = None  # taken from the first batch
        self._lazy = () if shape is not None else ("synops_sum",)
        default = torch.zeros(shape if shape is not None else (0,), dtype=torch.float64)
        self.add_state("synops_sum", default, dist_reduce_fx="sum", persistent=True)
        samples = torch.zeros((), dtype=torch.int64)
        self.add_state("samples", samples, dist_reduce_fx="sum", persistent=True)

    def update(self, activations: Tensor) -> None:
        per_neuron = synops_per_neuron(activations, self.fanout)
        if self.synops_sum.numel() == 0 and self._lazy:
            self.synops_sum = torch.zeros_like(per_neuron, device=self.synops_sum.device)
        if per_neuron.shape != self.synops_sum.shape:
            raise ValueError(
                f"activations of shape {tuple(activations.shape)} do not match the neuron shape "
                f"{tuple(self.synops_sum.shape)} of earlier batches"
            )
        self.synops_sum += per_neuron.to(self.synops_sum.device)
        self.samples += activations.shape[0]

    def compute(self) -> dict[str, Tensor]:
        """Synaptic operations per sample.

        Returns:
            ``synops_per_neuron`` (the per-neuron map), ``synops`` (its sum) and, with a
            ``sample_time``, ``synops/s``; float64, NaN before any update.
        """
        # before any update: NaN (0 / 0), with torchmetrics' warning
        return per_sample_result(self.synops_sum, self.samples, self.sample_time)
