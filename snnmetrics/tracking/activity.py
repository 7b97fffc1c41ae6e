"""Taps for spike trains and per-step activity: what happens at each step of a window.

The other taps keep cumulative counters that a subscriber reads as differences. Spike
trains and per-step profiles need more than that: *when* within a subscriber's window a
spike or an operation happened, and for spike trains, in which sample. Each subscriber
therefore gives the tap one *sink* per layer, and the hook feeds every sink of the module
(the reading of the call is done once, the sinks' bookkeeping once per sink). A sink holds
the subscriber's current window only, in buffers bounded by the batch (spike trains) or by
``max_steps`` (profiles); the subscriber takes the window from it at ``update()``.

* :class:`SpikeTap` (on a neuron) reads each call's spikes as ``[steps, samples,
  *neurons]`` nonzero flags; a :class:`TrainSink` keeps each sample's spike count and last
  spike step, and sums the inter-spike intervals per neuron; a :class:`RateSink` sums the
  spikes of each step of the window.
* :class:`StepOpsTap` (on a connection layer) counts each call's effective synaptic
  operations (nonzero input element x nonzero weight pairs, the count of
  :class:`~snnmetrics.SynapticOperations`) per row of its input; an :class:`OpsSink` sums
  them per step of the window.

A neuron whose rule has ``steps`` runs several steps per call with its rows flattened in
either order; :func:`register_step_order` says which (spikingjelly and norse: time-major,
sinabs: sample-major). A connection layer does not know its steps: a :class:`StepLayout`,
one per subscriber window, splits its rows by the latest neuron call of the window (one
step per call while neurons run one step per call; else the time dimension of its rows,
the first of ``[T, B, ...]`` or the second of ``[B, T, ...]``, or ``T`` blocks of flattened
rows). Calls before the window's first neuron call wait for it.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

import torch
from torch import Tensor, nn

from snnmetrics.connections import CallRule, ConnectionRule, connection_rule
from snnmetrics.functional.fanout import fanout_map
from snnmetrics.neurons import require_neuron_rule
from snnmetrics.registry import TypeRegistry
from snnmetrics.tracking.hub import Tap

__all__ = [
    "OpsSink",
    "RateSink",
    "SpikeTap",
    "StepLayout",
    "StepOpsTap",
    "TrainSink",
    "TrainWindow",
    "register_step_order",
]

# --------------------------------------------------------------------- row order of a call

_TIME_MAJOR: TypeRegistry[bool] = TypeRegistry()


def register_step_order(layer_type: type[nn.Module], time_major: bool) -> None:
    """Say how a neuron type that runs several steps per call orders its rows.

    Its :class:`~snnmetrics.NeuronRule` ``spikes`` flattens (step, sample) into dim 0:
    ``time_major=True`` if the steps are the outer dimension (``[T, B, ...]``, as
    spikingjelly and norse), ``False`` if the samples are (``[B, T, ...]``, as sinabs).

    Example:
        >>> import torch
        >>> from snnmetrics import NeuronRule, register_neuron
        >>> from snnmetrics.tracking.activity import register_step_order
        >>> class Threshold(torch.nn.Module):  # [T, B, N] -> spikes
        ...     def forward(self, x):
        ...         return (x > 1).float()
        >>> register_neuron(Threshold, NeuronRule(
        ...     spikes=lambda module, output: output.flatten(0, 1),
        ...     steps=lambda module, output: output.shape[0]))
        >>> register_step_order(Threshold, time_major=True)
    """
    _TIME_MAJOR.register(layer_type, bool(time_major))


def _time_major(module: nn.Module, steps: int) -> bool:
    order = _TIME_MAJOR.lookup(module)
    if order is None:
        name = type(module).__name__
        raise TypeError(
            f"{name} ran {steps} steps in one call, and snnmetrics does not know whether its "
            "rows are time-major ([T, B, ...]) or sample-major ([B, T, ...]): call "
            f"snnmetrics.tracking.activity.register_step_order({name}, time_major=...)"
        )
    return order


def _register_spikingjelly(module: object) -> None:
    for name in ("BaseNode", "SimpleBaseNode"):
        _TIME_MAJOR.register_from(module, name, True)


def _register_sinabs(module: object) -> None:
    for name in ("LIF", "ALIF", "ExpLeak"):  # squeezed too: [B * T] rows, sample-major
        _TIME_MAJOR.register_from(module, name, False)


def _register_norse(module: object) -> None:
    for name in ("SNN", "SNNRecurrent", "LI"):
        _TIME_MAJOR.register_from(module, name, True)


_TIME_MAJOR.add_frameworks(
    {
        "spikingjelly.activation_based.neuron": _register_spikingjelly,
        "sinabs.layers": _register_sinabs,
        "norse.torch.module.snn": _register_norse,
        "norse.torch.module.leaky_integrator": _register_norse,
    }
)


def _zeros(shape: Sequence[int], dtype: torch.dtype, device: torch.device) -> Tensor:
    # buffers must be normal tensors even if the first call runs in inference mode
    with torch.inference_mode(False):
        return torch.zeros(tuple(shape), dtype=dtype, device=device)


def _check_room(name: str, done: int, steps: int, max_steps: int) -> None:
    if done + steps > max_steps:
        raise ValueError(
            f"layer {name!r} ran step {done + steps} of a window, but the profile holds "
            f"max_steps={max_steps}: create it with a larger max_steps, or call update() "
            "after the last step of each batch"
        )


# ------------------------------------------------------------------------------- neurons


class SpikeSink(Protocol):
    def absorb(self, fired: Tensor, nan: Tensor | None, time_major: bool) -> None:
        """Take one call's nonzero flags ``[steps, samples, *neurons]`` (bool, shared:
        read-only), its NaN readings (``None`` for non-floating spikes), and its row
        order."""

    def clear(self) -> None:
        """Forget the current window."""


class SpikeTap(Tap):
    """Reads every call of a neuron as nonzero flags ``[steps, samples, *neurons]`` and
    feeds them to its sinks.

    A nonzero output is a spike (NaN too; NaN readings are counted apart, for the
    subscribers to refuse them). The call's batch size for the window is its samples: the
    rows over the steps the rule reports.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__(module)
        self.rule = require_neuron_rule(module)
        self.sinks: list[SpikeSink] = []
        self._add_hook(module.register_forward_hook, self._hook)

    def _hook(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        spikes = self.rule.spikes(module, output)
        if not isinstance(spikes, Tensor):
            raise TypeError(
                f"the spikes of {type(module).__name__} must be a tensor, got "
                f"{type(spikes).__name__}: register a NeuronRule that reads them"
            )
        spikes = spikes.detach()
        if spikes.ndim == 0:
            spikes = spikes.reshape(1)
        steps = 1 if self.rule.steps is None else int(self.rule.steps(module, output))
        rows = spikes.shape[0]
        if steps < 1 or rows % steps:
            raise ValueError(
                f"{type(module).__name__} reported {steps} steps for a call of {rows} rows: "
                "the rows must be steps x samples"
            )
        samples = rows // steps
        self._note_call(samples)
        if rows == 0 or not self.sinks:
            return
        fired = spikes != 0
        nan = torch.isnan(spikes).sum() if spikes.is_floating_point() else None
        time_major = True if steps == 1 else _time_major(module, steps)
        neurons = spikes.shape[1:]
        if time_major:
            fired = fired.reshape(steps, samples, *neurons)
        else:
            fired = fired.reshape(samples, steps, *neurons).transpose(0, 1)
        for sink in self.sinks:
            sink.absorb(fired, nan, time_major)


class TrainWindow(NamedTuple):
    """One layer's spike trains of one window, summed over its samples.

    ``sums`` is int64 ``[5, *neurons]``: per neuron the sum over samples of the spike
    count and of its square, then the sum of the inter-spike intervals (in steps), of
    their squares, and their number. ``samples`` counts the spike trains; ``nan`` the NaN
    readings (a 0-d tensor).
    """

    sums: Tensor
    samples: int
    nan: Tensor


class TrainSink:
    """One subscriber's window of one neuron layer: each sample's spike count and last
    spike step so far (``[samples, neurons]`` each), and the interval sums per neuron.

    Every call of a window must carry the same samples (rows) and neurons.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.steps = 0  # steps of the current window
        self._neurons = torch.Size()
        self._counts: Tensor | None = None  # int32 [samples, neurons]
        self._last: Tensor | None = None  # int32 [samples, neurons], -1: no spike yet
        self._intervals: Tensor | None = None  # int64 [3, neurons]: sum, squares, number
        self._nan: Tensor | None = None

    def absorb(self, fired: Tensor, nan: Tensor | None, time_major: bool) -> None:
        steps, samples = fired.shape[:2]
        neurons = fired.shape[2:]
        width = neurons.numel()
        if self.steps == 0:
            self._open(samples, neurons, fired.device)
        elif self._counts is None or (samples, neurons) != (self._counts.shape[0], self._neurons):
            raise ValueError(
                f"layer {self.name!r} was called with {samples} samples of {tuple(neurons)} "
                f"neurons after {self._shape()} in the same window: every call between two "
                "update()s must carry the same samples"
            )
        assert self._counts is not None and self._last is not None
        assert self._intervals is not None and self._nan is not None
        if nan is not None:
            self._nan += nan
        flags = fired.reshape(steps, samples * width)
        last = self._last.view(-1)
        if steps == 1:
            now = flags[0]
            gaps = self.steps - last  # to the last spike (where there is one)
            valid = now & (last >= 0)
            last.masked_fill_(now, self.steps)
        else:
            position = torch.arange(
                self.steps, self.steps + steps, dtype=torch.int32, device=fired.device
            ).unsqueeze(1)
            marks = torch.where(flags, position, -1)
            # the last spike at or before each step, the window's earlier calls included
            latest = torch.cat([last.unsqueeze(0), marks]).cummax(0).values
            before = latest[:-1]
            gaps = position - before
            valid = flags & (before >= 0)
            last.copy_(latest[-1])
        gaps = gaps.masked_fill_(~valid, 0).view(-1, width).to(torch.int64)
        self._intervals[0] += gaps.sum(0)
        self._intervals[1] += (gaps * gaps).sum(0)
        self._intervals[2] += valid.view(-1, width).sum(0)
        self._counts += flags.view(steps, samples, width).sum(0, dtype=torch.int32)
        self.steps += steps

    def _shape(self) -> str:
        rows = 0 if self._counts is None else self._counts.shape[0]
        return f"{rows} samples of {tuple(self._neurons)} neurons"

    def _open(self, samples: int, neurons: torch.Size, device: torch.device) -> None:
        width = neurons.numel()
        counts = self._counts
        if counts is None or counts.shape != (samples, width) or counts.device != device:
            self._counts = _zeros((samples, width), torch.int32, device)
            self._last = _zeros((samples, width), torch.int32, device)
            self._intervals = _zeros((3, width), torch.int64, device)
            self._nan = _zeros((), torch.int64, device)
        else:
            assert self._last is not None and self._intervals is not None
            assert self._nan is not None
            counts.zero_()
            self._intervals.zero_()
            self._nan.zero_()
        assert self._last is not None
        self._last.fill_(-1)
        self._neurons = neurons

    def take(self) -> TrainWindow | None:
        """The current window (``None`` if the layer did not run in it); opens the next."""
        if self.steps == 0:
            return None
        assert self._counts is not None and self._intervals is not None
        assert self._nan is not None
        self.steps = 0
        counts = self._counts.to(torch.int64)
        sums = torch.cat([counts.sum(0, keepdim=True), (counts * counts).sum(0, keepdim=True)])
        sums = torch.cat([sums, self._intervals]).view(5, *self._neurons)
        return TrainWindow(sums, counts.shape[0], self._nan.clone())

    def clear(self) -> None:
        self.steps = 0


class StepLayout:
    """How one subscriber's window splits connection calls into steps (module docstring).

    Neuron sinks report every neuron call (:meth:`note`); a connection call whose rows
    cannot be split before the window's first neuron call waits until then, or until the
    window is taken (:meth:`settle`: a window without neuron calls runs one step per call).
    """

    def __init__(self) -> None:
        self.steps: int | None = None  # steps of the window's latest neuron call
        self.time_major = True
        self._waiting: list[tuple[OpsSink, Tensor, torch.Size]] = []

    def note(self, steps: int, time_major: bool) -> None:
        self.steps, self.time_major = steps, time_major
        self._settle()

    def place(self, sink: OpsSink, ops: Tensor, rows: torch.Size) -> None:
        """Add a call's operations per row (``rows`` shaped) to ``sink``, by step."""
        if self.steps is None and len(rows) > 0:
            self._waiting.append((sink, ops, rows))
        else:
            sink.add(self.split(sink.name, ops, rows))

    def split(self, name: str, ops: Tensor, rows: torch.Size) -> Tensor:
        """Operations per row -> operations per step of the call (float64)."""
        steps = self.steps or 1
        if steps == 1 or len(rows) == 0:
            return ops.sum(dtype=torch.float64).reshape(1)
        if len(rows) > 1:  # [T, B, ...] or [B, T, ...]
            grid = ops.view(rows).movedim(0 if self.time_major else 1, 0)
            return grid.reshape(grid.shape[0], -1).sum(1, dtype=torch.float64)
        if rows[0] % steps:
            raise ValueError(
                f"layer {name!r} got {rows[0]} rows while its neurons run {steps} steps per "
                "call: its rows cannot be split into steps"
            )
        grid = ops.view(steps, -1) if self.time_major else ops.view(-1, steps).T
        return grid.sum(1, dtype=torch.float64)

    def _settle(self) -> None:
        waiting, self._waiting = self._waiting, []
        for sink, ops, rows in waiting:
            sink.add(self.split(sink.name, ops, rows))

    def settle(self) -> None:
        """Place the calls still waiting (one step each if no neuron ran)."""
        self._settle()

    def clear(self) -> None:
        self.steps = None
        self.time_major = True
        self._waiting = []


class RateSink:
    """One subscriber's window of one neuron layer: its spikes at each step, summed over
    samples and neurons, and how many sample-neurons ran each step."""

    def __init__(self, name: str, max_steps: int, layout: StepLayout) -> None:
        self.name = name
        self.max_steps = max_steps
        self.layout = layout
        self.steps = 0
        self._spikes: Tensor | None = None  # int64 [max_steps]
        self._observations = [0] * max_steps
        self._nan: Tensor | None = None

    def absorb(self, fired: Tensor, nan: Tensor | None, time_major: bool) -> None:
        steps = fired.shape[0]
        _check_room(self.name, self.steps, steps, self.max_steps)
        if self.steps == 0:
            self._open(fired.device)
        assert self._spikes is not None and self._nan is not None
        if nan is not None:
            self._nan += nan
        start = self.steps
        self._spikes[start : start + steps] += fired.reshape(steps, -1).sum(1)
        per_step = fired[0].numel()
        for t in range(start, start + steps):
            self._observations[t] += per_step
        self.steps += steps
        self.layout.note(steps, time_major)

    def _open(self, device: torch.device) -> None:
        if self._spikes is None or self._spikes.device != device:
            self._spikes = _zeros((self.max_steps,), torch.int64, device)
            self._nan = _zeros((), torch.int64, device)
        else:
            assert self._nan is not None
            self._spikes.zero_()
            self._nan.zero_()
        self._observations = [0] * self.max_steps

    def take(self) -> tuple[Tensor, list[int], Tensor] | None:
        """``(spikes per step, observations per step, NaN readings)`` of the current
        window (``None`` if the layer did not run; the sink's buffers, valid until its
        next call); opens the next."""
        if self.steps == 0:
            return None
        assert self._spikes is not None and self._nan is not None
        self.steps = 0
        return self._spikes, self._observations, self._nan

    def clear(self) -> None:
        self.steps = 0


# --------------------------------------------------------------------- connection layers


class OpsSink:
    """One subscriber's window of one connection layer: its operations at each step."""

    def __init__(self, name: str, max_steps: int, layout: StepLayout) -> None:
        self.name = name
        self.max_steps = max_steps
        self.layout = layout
        self.steps = 0
        self._ops: Tensor | None = None  # float64 [max_steps]

    def absorb(self, ops: Tensor, rows: torch.Size) -> None:
        self.layout.place(self, ops, rows)

    def add(self, per_step: Tensor) -> None:
        steps = per_step.shape[0]
        _check_room(self.name, self.steps, steps, self.max_steps)
        if self.steps == 0:
            if self._ops is None or self._ops.device != per_step.device:
                self._ops = _zeros((self.max_steps,), torch.float64, per_step.device)
            else:
                self._ops.zero_()
        assert self._ops is not None
        self._ops[self.steps : self.steps + steps] += per_step
        self.steps += steps

    def take(self) -> Tensor | None:
        """Operations per step of the current window (``None`` if the layer did not
        run; the sink's buffer, valid until its next call); opens the next. Settle the
        layout first."""
        if self.steps == 0:
            return None
        self.steps = 0
        return self._ops

    def clear(self) -> None:
        self.steps = 0


_FLOAT32_EXACT = 2**24


class StepOpsTap(Tap):
    """Counts each call's effective synaptic operations per input row, for its sinks.

    A layer with a :class:`~snnmetrics.connections.ConnectionRule` is counted with its
    exact effective fanout (nonzero weights), derived again when its weights' version or
    (on the CPU) zero pattern changes: a row's operations are its nonzero input elements
    times their fanout. A layer with a :class:`~snnmetrics.connections.CallRule` (a
    recurrent cell) is counted by its rule, one step per call.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__(module)
        rule = connection_rule(module)
        if rule is None:
            raise TypeError(f"{type(module).__name__} is not a registered connection layer")
        self.rule = rule
        self.sinks: list[OpsSink] = []
        self._cache: dict[Any, Any] = {}  # a CallRule's, emptied when a subscriber reads
        self._signature: inspect.Signature | None = None
        self._stale = False  # whether a subscriber read since the fanout was checked
        self._key: tuple[object, ...] | None = None
        self._fanout: Tensor | None = None
        self._mask: Tensor | None = None  # the zero pattern of the fanout's weights (CPU)
        self._dense: dict[torch.Size, int] = {}  # per feature shape: operations of a full row
        if isinstance(rule, ConnectionRule):
            self.n_features = rule.feature_dims(module)
            self._add_hook(module.register_forward_pre_hook, self._hook)
        else:
            self._add_hook(module.register_forward_pre_hook, self._call_hook, with_kwargs=True)

    def mark_read(self) -> None:
        """A subscriber took its window: check the weights again at the next call (edits
        autograd does not track are followed once per update)."""
        self._stale = True
        self._cache.clear()

    def _hook(self, module: nn.Module, args: tuple[object, ...]) -> None:
        if not args or not isinstance(args[0], Tensor):
            raise TypeError(
                f"{type(module).__name__} must be called with its input tensor as the first "
                "positional argument to be counted"
            )
        x = args[0].detach()
        n_rows = x.ndim - self.n_features
        if n_rows < 0:
            return  # the layer itself rejects this input
        rows = x.shape[:n_rows]
        self._note_call(x.shape[0] if n_rows else 1)
        if rows.numel() == 0 or not self.sinks:
            return
        features = x.shape[n_rows:]
        fanout = self._effective_fanout(module, features, x)
        flags = x.to(fanout.dtype, copy=True).abs_().clamp_(max=1).ceil_()  # NaN stays
        ops = flags.reshape(rows.numel(), -1) @ fanout
        for sink in self.sinks:
            sink.absorb(ops, rows)

    def _effective_fanout(self, module: nn.Module, features: torch.Size, x: Tensor) -> Tensor:
        """The effective fanout of one sample's input elements, flat, in a dtype that
        sums a row exactly and keeps every nonzero element of ``x`` nonzero."""
        assert isinstance(self.rule, ConnectionRule)
        weight = self.rule.weight(module)
        if features not in self._dense:
            structural = fanout_map(module, self.rule, features, False, device="cpu")
            self._dense[features] = int(structural.sum())
        wide = x.dtype == torch.float64 or self._dense[features] > _FLOAT32_EXACT
        dtype = torch.float64 if wide else torch.float32
        key = (features, dtype, x.device, weight._version, weight.data_ptr())
        if key == self._key and not self._stale:
            assert self._fanout is not None
            return self._fanout
        self._stale = False
        detached = weight.detach()
        mask = detached != 0 if detached.device.type == "cpu" else None
        reuse = (
            self._key is not None
            and self._key[:3] == key[:3]  # same features, dtype and device
            and mask is not None
            and self._mask is not None
            and torch.equal(mask, self._mask)
        )
        if not reuse:
            fanout = fanout_map(module, self.rule, features, True).flatten()
            self._fanout = fanout.to(x.device, dtype)
        self._key, self._mask = key, mask
        assert self._fanout is not None
        return self._fanout

    def _call_hook(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        assert isinstance(self.rule, CallRule)
        if kwargs:  # e.g. cell(x, hx=state): the rule reads positions
            if self._signature is None:
                self._signature = inspect.signature(module.forward)
            args = tuple(self._signature.bind(*args, **kwargs).arguments.values())
        count = self.rule.count(module, args, True, self._cache)
        if count is None:
            return  # the layer rejects this input itself
        self._note_call(count.samples)
        if not self.sinks:
            return
        ops = count.effective.detach().to(torch.float64).reshape(1)
        for sink in self.sinks:
            sink.absorb(ops, torch.Size())
