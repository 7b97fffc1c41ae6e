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
  spikes of each step of the window. The spikes of calls that run one step are staged (a
  copy into a bounded buffer) and read as blocks of steps, a few ops per block instead of
  a dozen per call; a sink notes every call when it happens, so that a window too long or
  of other samples fails at its call.
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
from snnmetrics.functional.exact import FLOAT32_EXACT
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


# the calls of a neuron with one step per call are staged, their spikes copied into one
# buffer of at most this many elements and steps, and read as a block
STAGED_ELEMENTS = 2**18
MAX_STAGED_STEPS = 32


class SpikeSink(Protocol):
    def check(self, steps: int, samples: int, neurons: torch.Size) -> None:
        """Raise if a call of ``steps`` steps of ``samples`` samples of ``neurons`` cannot
        join the window (before any sink notes the call)."""

    def note(self, steps: int, samples: int, neurons: torch.Size, time_major: bool) -> None:
        """Count a call in the window, at the call (host bookkeeping only)."""

    def absorb(self, fired: Tensor) -> None:
        """Take the next noted steps: ``[steps, samples, *neurons]``, floating, 1 where
        the output is nonzero, 0 where it is zero, NaN where it is NaN (shared:
        read-only)."""

    def clear(self) -> None:
        """Forget the current window."""


class SpikeTap(Tap):
    """Reads every call of a neuron as nonzero flags ``[steps, samples, *neurons]`` and
    feeds them to its sinks.

    A nonzero output is a spike; a NaN reading stays NaN, for the subscribers to refuse
    it. The call's batch size for the window is its samples: the
    rows over the steps the rule reports. A sink notes each call when it happens; the
    spikes of calls of one step are staged (copied into a bounded buffer) and reach the
    sinks as a block of steps when the buffer is full, when a call of another layout or of
    several steps comes, or when a subscriber reads or changes its sinks (:meth:`drain`).
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__(module)
        self.rule = require_neuron_rule(module)
        self.sinks: list[SpikeSink] = []
        self._buffer: Tensor | None = None  # [slots, samples, *neurons]
        self._staged = 0
        self._layout: tuple[torch.Size, torch.dtype, torch.device] | None = None
        self._add_hook(module.register_forward_hook, self._hook)

    def _hook(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        spikes = self.rule.read_spikes(module, output)
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
        time_major = True if steps == 1 else _time_major(module, steps)
        neurons = spikes.shape[1:]
        for sink in self.sinks:
            sink.check(steps, samples, neurons)
        for sink in self.sinks:
            sink.note(steps, samples, neurons, time_major)
        if steps == 1:
            self._stage(spikes)
            return
        self.drain()
        if time_major:
            self._feed(spikes.reshape(steps, samples, *neurons))
        else:
            self._feed(spikes.reshape(samples, steps, *neurons).transpose(0, 1))

    def _stage(self, spikes: Tensor) -> None:
        layout = (spikes.shape, spikes.dtype, spikes.device)
        if layout != self._layout:
            self.drain()
            slots = min(MAX_STAGED_STEPS, STAGED_ELEMENTS // max(spikes.numel(), 1))
            self._buffer = None
            if slots:
                with torch.inference_mode(False):  # a normal tensor even in inference mode
                    self._buffer = torch.empty(
                        (slots, *spikes.shape), dtype=spikes.dtype, device=spikes.device
                    )
            self._layout = layout
        elif self._buffer is not None and self._staged == self._buffer.shape[0]:
            self.drain()
        if self._buffer is None:  # too large to stage: read at once
            self._feed(spikes.unsqueeze(0))
            return
        self._buffer[self._staged].copy_(spikes)  # values: later edits are not seen
        self._staged += 1

    def drain(self) -> None:
        """Feed the staged calls to the sinks. Run it before a sink is read, cleared or
        added, so that every sink's window holds exactly the calls it noted."""
        if not self._staged:
            return
        assert self._buffer is not None
        block, self._staged = self._buffer[: self._staged], 0
        self._feed(block)

    def _feed(self, block: Tensor) -> None:
        # arithmetic only: x != 0 is several times slower on the CPU, and drops NaN
        dtype = torch.float64 if block.dtype == torch.float64 else torch.float32
        fired = block.to(dtype, copy=True).abs_().clamp_(max=1).ceil_()
        for sink in self.sinks:
            sink.absorb(fired)


def _running_max(x: Tensor) -> Tensor:
    """Each row of ``x`` (in place) as the maximum of it and the rows before it, in
    log2(rows) elementwise steps (``cummax`` along dim 0 scans far slower on the CPU)."""
    shift = 1
    while shift < x.shape[0]:
        x[shift:] = torch.maximum(x[shift:], x[:-shift])
        shift *= 2
    return x


class TrainWindow(NamedTuple):
    """One layer's spike trains of one window, summed over its samples.

    ``sums`` is int64 ``[5, *neurons]``: per neuron the sum over samples of the spike
    count and of its square, then the sum of the inter-spike intervals (in steps), of
    their squares, and their number. ``samples`` counts the spike trains; ``nan`` the
    samples x neurons with a NaN reading (a 0-d tensor; their figures count as 0).
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
        self.steps = 0  # steps of the current window, noted at the calls
        self._absorbed = 0  # of them, those in the buffers
        self._samples = 0
        self._neurons = torch.Size()
        # float64, exact: spikes of each sample and neuron, the step of its last spike
        # (-1: none yet), and per neuron the sum, squared sum and number of intervals
        self._counts: Tensor | None = None  # [samples, neurons]
        self._last: Tensor | None = None  # [samples, neurons]
        self._intervals: Tensor | None = None  # [3, neurons]

    def check(self, steps: int, samples: int, neurons: torch.Size) -> None:
        if self.steps and (samples, neurons) != (self._samples, self._neurons):
            raise ValueError(
                f"layer {self.name!r} was called with {samples} samples of {tuple(neurons)} "
                f"neurons after {self._samples} samples of {tuple(self._neurons)} neurons in "
                "the same window: every call between two update()s must carry the same "
                "samples"
            )

    def note(self, steps: int, samples: int, neurons: torch.Size, time_major: bool) -> None:
        if self.steps == 0:
            self._samples, self._neurons = samples, neurons
        self.steps += steps

    def absorb(self, fired: Tensor) -> None:
        steps, samples = fired.shape[:2]
        width = self._neurons.numel()
        if self._absorbed == 0:
            self._open(samples, width, fired.device)
        assert self._counts is not None and self._last is not None
        assert self._intervals is not None
        start, end = self._absorbed, self._absorbed + steps
        # float32 while every sum below is an integer under 2**24 (exact), else float64
        wide = fired.dtype == torch.float64 or steps * samples * end * end > FLOAT32_EXACT
        dtype = torch.float64 if wide else torch.float32
        flags = fired.reshape(steps, samples * width).to(dtype)
        after = torch.arange(start + 1, end + 1, dtype=dtype, device=fired.device).unsqueeze(1)
        # row 0: the step of each train's last spike so far (-1: none); then the step of
        # each spike (-1 elsewhere). Their running maximum: the last spike up to each row
        marks = torch.empty((steps + 1, flags.shape[1]), dtype=dtype, device=fired.device)
        marks[0] = self._last.view(-1)
        torch.mul(flags, after, out=marks[1:]).sub_(1)
        latest = _running_max(marks)
        before = latest[:-1]
        valid = flags * (before + 1).clamp_(max=1)  # a spike after an earlier one
        gaps = (after - 1 - before).mul_(valid).view(-1, width)
        self._intervals[0].add_(gaps.sum(0))
        self._intervals[1].add_((gaps * gaps).sum(0))
        self._intervals[2].add_(valid.view(-1, width).sum(0))
        self._last.view(-1).copy_(latest[-1])
        self._counts += flags.view(steps, samples, width).sum(0)
        self._absorbed += steps

    def _open(self, samples: int, width: int, device: torch.device) -> None:
        counts = self._counts
        if counts is None or counts.shape != (samples, width) or counts.device != device:
            self._counts = _zeros((samples, width), torch.float64, device)
            self._last = _zeros((samples, width), torch.float64, device)
            self._intervals = _zeros((3, width), torch.float64, device)
        else:
            assert self._intervals is not None
            counts.zero_()
            self._intervals.zero_()
        assert self._last is not None
        self._last.fill_(-1)

    def take(self) -> TrainWindow | None:
        """The current window (``None`` if the layer did not run in it); opens the next.
        Drain the tap first."""
        if self.steps == 0:
            return None
        assert self._absorbed == self.steps, "the tap was not drained"
        assert self._counts is not None and self._intervals is not None
        self.steps = self._absorbed = 0
        nan = torch.isnan(self._counts)
        counts = self._counts.masked_fill(nan, 0)
        sums = torch.cat(
            [counts.sum(0, keepdim=True), (counts * counts).sum(0, keepdim=True), self._intervals]
        )
        sums = sums.nan_to_num_(0).to(torch.int64).view(5, *self._neurons)
        return TrainWindow(sums, counts.shape[0], nan.sum())

    def clear(self) -> None:
        self.steps = self._absorbed = 0


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
        self.steps = 0  # steps of the current window, noted at the calls
        self._absorbed = 0  # of them, those in the buffers
        self._spikes: Tensor | None = None  # float64 [max_steps], NaN after a NaN reading
        self._observations = [0] * max_steps

    def check(self, steps: int, samples: int, neurons: torch.Size) -> None:
        _check_room(self.name, self.steps, steps, self.max_steps)

    def note(self, steps: int, samples: int, neurons: torch.Size, time_major: bool) -> None:
        if self.steps == 0:
            self._observations = [0] * self.max_steps
        per_step = samples * neurons.numel()
        for t in range(self.steps, self.steps + steps):
            self._observations[t] += per_step
        self.steps += steps
        self.layout.note(steps, time_major)

    def absorb(self, fired: Tensor) -> None:
        steps = fired.shape[0]
        if self._absorbed == 0:
            if self._spikes is None or self._spikes.device != fired.device:
                self._spikes = _zeros((self.max_steps,), torch.float64, fired.device)
            else:
                self._spikes.zero_()
        assert self._spikes is not None
        start = self._absorbed
        self._spikes[start : start + steps].add_(
            fired.reshape(steps, -1).sum(1, dtype=torch.float64)
        )
        self._absorbed += steps

    def take(self) -> tuple[Tensor, list[int], Tensor] | None:
        """``(spikes per step, observations per step, NaN readings)`` of the current
        window (``None`` if the layer did not run), int64 tensors and a list; opens the
        next. Drain the tap first."""
        if self.steps == 0:
            return None
        assert self._absorbed == self.steps, "the tap was not drained"
        assert self._spikes is not None
        self.steps = self._absorbed = 0
        nan = torch.isnan(self._spikes)
        spikes = self._spikes.masked_fill(nan, 0).to(torch.int64)
        return spikes, self._observations, nan.sum()

    def clear(self) -> None:
        self.steps = self._absorbed = 0


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
        self._ops[self.steps : self.steps + steps].add_(per_step)
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
        values = x if x.is_floating_point() else x.to(fanout.dtype)
        flags = torch.abs(values).clamp_(max=1).ceil_()  # 1 where nonzero, NaN where NaN
        ops = flags.reshape(rows.numel(), -1).to(fanout.dtype) @ fanout
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
        wide = x.dtype == torch.float64 or self._dense[features] > FLOAT32_EXACT
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
