"""The tap on neurons: nonzero outputs, spikes per neuron, membrane updates."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from snnmetrics.functional.exact import FLOAT32_EXACT
from snnmetrics.neurons import require_neuron_rule
from snnmetrics.tracking.hub import Tap, Window
from snnmetrics.tracking.staging import Staging, float_dtype

__all__ = ["NeuronTap", "NeuronTotals"]


class NeuronTotals(NamedTuple):
    """Cumulative counts of one neuron layer since its tap was created.

    ``counts`` is a float64 vector on the output's device: ``[nonzero outputs, changed
    membranes, non-finite readings]``; ``per_neuron`` the nonzero outputs of each neuron
    (float64, the neuron shape) since :meth:`NeuronTap.track_per_neuron`, else ``None``.
    ``rows`` sums dim 0 of the outputs (samples x steps), ``outputs`` counts output
    elements and ``neuron_steps`` membrane elements, over all calls.
    """

    counts: Tensor
    per_neuron: Tensor | None
    rows: int
    outputs: int
    neuron_steps: int


def _indicate_nonzero(magnitude: Tensor) -> Tensor:
    """``|x|`` (floating, overwritten) as 1 where ``x`` is nonzero, 0 where zero, NaN
    where NaN."""
    # arithmetic only: x != 0 is several times slower on the CPU, and it and sign drop NaN
    return magnitude.clamp_(max=1).ceil_()


def _count_changed(difference: Tensor) -> Tensor:
    """How many elements of ``difference`` (floating, overwritten) are nonzero, as a 0-d
    tensor; NaN if one is NaN."""
    changed = _indicate_nonzero(difference.abs_())
    return changed.sum(dtype=_sum_dtype(changed))


def _sum_dtype(x: Tensor) -> torch.dtype | None:
    """A dtype that sums the 0/1 entries of ``x`` (floating) exactly."""
    return torch.float64 if x.numel() > FLOAT32_EXACT else None


_F64 = torch.float64


def _changed(after: Tensor, before: Tensor) -> Tensor:
    """How many elements differ between ``after`` and ``before``, as a 0-d float64 tensor;
    NaN if one is NaN."""
    difference = (after - before).to(float_dtype(after)).abs()
    return _indicate_nonzero(difference).sum(dtype=_sum_dtype(difference)).to(_F64)


class _TracedNeuron(NamedTuple):
    """What traced calls counted since the last fold: float64 ``counts`` ``[nonzero
    outputs, changed membranes]``, int64 ``ints`` ``[rows, outputs, neuron steps]``, and
    float64 ``per_neuron`` nonzero outputs (the neuron shape) while a subscriber wants
    them."""

    counts: Tensor
    ints: Tensor
    per_neuron: Tensor | None


class NeuronTap(Tap):
    """Counts, per call of a neuron, its nonzero outputs and its updated membranes.

    Every call adds its nonzero outputs (per neuron once a subscriber asks for it) and, once
    a subscriber tracks the membrane, the number of neurons whose membrane changed to
    pending device buffers. A call whose membrane starts from a fresh state (none, or of
    another shape) counts every neuron. The first call of a subscriber's window counts
    every neuron too; the tap leaves the difference (neurons minus changed ones) in that
    window's ``first_call``. NaN readings are kept out of the counts and counted apart when
    the buffers are folded into the totals (:meth:`flush`).

    A neuron whose rule has ``steps`` may run several timesteps per call: the call's rows
    are its samples x steps, its batch size (for the window) is dim 0 of its first input,
    and its membranes are compared step by step when the rule reads the membrane after
    every step. If only the membrane after the call can be read, every neuron counts at
    every step of the call (an upper bound; a warning says so once).
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__(module)
        self.rule = require_neuron_rule(module)
        self._membrane = False
        self._per_neuron_wanted = False
        # membrane before the call, by thread (threads may run the neuron at once)
        self._before: dict[int, Tensor | None] = {}
        self._counts: Tensor | None = None  # [nonzero, changed, non-finite]
        self._pending: Tensor | None = None  # [nonzero, changed] since the last flush
        self._pending_nonzero: Tensor | None = None  # views of its entries, set with it
        self._pending_changed: Tensor | None = None
        self._per_neuron: Tensor | None = None
        self._pending_per_neuron: Tensor | None = None
        self._rows = 0
        self._outputs = 0
        self._neuron_steps = 0
        self._warned = False
        self._dirty = False  # whether a call counted anything since the last flush
        self._spikes = Staging(self._count_spikes, on_layout=self._check_spikes, shared=True)
        self._differences = Staging(self._count_differences)
        # made in traced code, one per (neuron shape, device, per-neuron counts wanted)
        self._traced: dict[tuple[torch.Size, torch.device, bool], _TracedNeuron] = {}
        self._traced_before: Tensor | None = None
        if self.rule.steps is None:
            self._add_hook(
                module.register_forward_hook, self._hook, self._traced_hook, with_kwargs=True
            )
        else:
            self._add_hook(
                module.register_forward_hook,
                self._steps_hook,
                self._traced_steps_hook,
                with_kwargs=True,
            )

    def track_membrane(self) -> None:
        """Start counting membrane updates (hooks the call's start as well)."""
        if self._membrane:
            return
        if not self.rule.has_membrane:
            raise TypeError(f"{type(self.module_ref()).__name__} has no membrane to track")
        module = self.module_ref()
        assert module is not None
        self._add_hook(
            module.register_forward_pre_hook,
            self._pre_hook,
            self._traced_pre_hook,
            with_kwargs=True,
        )
        self._membrane = True

    def track_per_neuron(self) -> None:
        """Start counting nonzero outputs per neuron."""
        self._spikes.drain()  # what was staged before counts in the total only
        self._per_neuron_wanted = True
        self._snapshot = None

    def _pre_hook(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        assert self.rule.membrane_before is not None
        self._before[threading.get_ident()] = self.rule.membrane_before(module, args, kwargs)

    # --- traced by torch.compile -----------------------------------------------------------

    def _traced_pre_hook(
        self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        assert self.rule.membrane_before is not None
        self._traced_before = self.rule.membrane_before(module, args, kwargs)

    def _traced_hook(
        self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any
    ) -> None:
        """:meth:`_hook` as ``torch.compile`` traces it (see :class:`Tap`)."""
        spikes = self.rule.read_spikes(module, output)
        before, self._traced_before = self._traced_before, None
        rows = spikes.shape[0] if spikes.ndim else 1
        if rows == 0:
            return  # an empty batch: no call
        changed: Tensor | None = None
        correction: Tensor | None = None
        neuron_steps = 0
        if self._membrane:
            after = self.rule.read_membrane(module, output)
            neuron_steps = after.numel()
            if before is None or before.shape != after.shape:  # a fresh state: all change
                changed = torch.full((), float(neuron_steps), dtype=_F64, device=after.device)
                correction = torch.zeros((), dtype=_F64, device=after.device)
            else:
                changed = _changed(after.detach(), before.detach())
                correction = neuron_steps - changed
        self._trace_call(rows, spikes.device, correction)
        self._traced_add(spikes, changed, neuron_steps)

    def _traced_steps_hook(
        self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any
    ) -> None:
        """:meth:`_steps_hook` as ``torch.compile`` traces it."""
        spikes = self.rule.read_spikes(module, output)
        before, self._traced_before = self._traced_before, None
        first_input = args[0] if args else next(iter(kwargs.values()), None)
        batch = (
            first_input.shape[0]
            if isinstance(first_input, Tensor) and first_input.ndim
            else spikes.shape[0]
        )
        if batch == 0 or spikes.numel() == 0:
            return  # an empty batch: no call
        changed: Tensor | None = None
        correction: Tensor | None = None
        outputs = spikes.numel()
        if self._membrane:
            assert self.rule.steps is not None
            steps = self.rule.steps(module, output)
            states, neurons = self._step_membranes(module, output, steps, outputs)
            correction = torch.zeros((), dtype=_F64, device=spikes.device)
            if states is None:  # only the end is visible: every neuron-step
                changed = torch.full((), float(outputs), dtype=_F64, device=spikes.device)
            else:
                changed = _changed(states[1:], states[:-1])
                if before is None or before.numel() != neurons:  # fresh: all at the first step
                    changed = changed + neurons
                else:
                    start = _changed(states[0], before.detach().reshape(neurons))
                    changed = changed + start
                    correction = neurons - start
        self._trace_call(batch, spikes.device, correction)
        self._traced_add(spikes, changed, outputs if self._membrane else 0)

    def _traced_add(self, spikes: Tensor, changed: Tensor | None, neuron_steps: int) -> None:
        """Add a traced call's counts to the traced buffers (made in the graph, for each
        neuron shape, device and whether subscribers want counts per neuron)."""
        key = (spikes.shape[1:], spikes.device, self._per_neuron_wanted)
        state = self._traced.get(key)
        if state is None:
            per_neuron = None
            if self._per_neuron_wanted:
                per_neuron = torch.zeros(key[0], dtype=_F64, device=spikes.device)
            state = _TracedNeuron(
                torch.zeros(2, dtype=_F64, device=spikes.device),
                torch.zeros(3, dtype=torch.int64, device=spikes.device),
                per_neuron,
            )
            self._traced[key] = state
        nonzero = _indicate_nonzero(spikes.detach().abs())
        zero = torch.zeros((), dtype=_F64, device=spikes.device)
        if state.per_neuron is not None:  # summed from it when folded
            per_neuron = nonzero.sum(0, dtype=_sum_dtype(nonzero)) if nonzero.ndim > 1 else nonzero
            state.per_neuron.add_(per_neuron)
            total = zero
        else:
            total = nonzero.sum(dtype=_sum_dtype(nonzero)).to(_F64)
        state.counts.add_(torch.stack((total, zero if changed is None else changed)))
        rows = spikes.shape[0] if spikes.ndim else 1
        state.ints.add_(
            torch.tensor([rows, spikes.numel(), neuron_steps], device=spikes.device)
        )

    def _traced_first_call(self, window: Window, recorded: Tensor) -> None:
        if self._membrane:
            window.first_call[self] = recorded

    def _flush_traced(self) -> None:
        """Move what traced calls counted into the pending buffers, which :meth:`flush`
        folds into the totals (NaN counted apart)."""
        for (shape, device, _), state in self._traced.items():
            rows, outputs, neuron_steps = state.ints.tolist()
            if rows == 0:
                continue  # no traced call of this layout since the last fold
            state.ints.zero_()  # first: making the buffers below may flush
            self._rows += rows
            self._outputs += outputs
            self._neuron_steps += neuron_steps
            with torch.inference_mode(False):  # the eager buffers, made or moved if needed
                self._check_spikes(torch.empty((1, *shape), device=device))
            assert self._pending is not None
            self._pending += state.counts
            state.counts.zero_()
            if state.per_neuron is not None:
                self._add_per_neuron(state.per_neuron)
                state.per_neuron.zero_()
            self._dirty = True

    def _hook(
        self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any
    ) -> None:
        """One step per call (the rule has no ``steps``)."""
        spikes = self.rule.read_spikes(module, output)
        if spikes.ndim and spikes.shape[0] == 0:
            self._before.pop(threading.get_ident(), None)
            return  # an empty batch: no call
        firsts = self._note_call(spikes.shape[0] if spikes.ndim else 1)
        self._stage_spikes(spikes)
        if self._membrane:
            self._count_membrane(module, output, firsts)

    def _steps_hook(
        self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any
    ) -> None:
        """A call that may run several steps (the rule has ``steps``)."""
        spikes = self.rule.read_spikes(module, output)
        first = args[0] if args else next(iter(kwargs.values()), None)
        batch = first.shape[0] if isinstance(first, Tensor) and first.ndim else spikes.shape[0]
        if batch == 0 or spikes.numel() == 0:
            self._before.pop(threading.get_ident(), None)
            return  # an empty batch: no call
        firsts = self._note_call(batch)
        self._stage_spikes(spikes)
        if self._membrane:
            assert self.rule.steps is not None
            steps = self.rule.steps(module, output)
            self._count_step_membranes(module, output, firsts, steps, spikes.numel())

    def _stage_spikes(self, spikes: Tensor) -> None:
        self._rows += spikes.shape[0] if spikes.ndim else 1
        self._outputs += spikes.numel()
        self._spikes.stage_magnitude(spikes)
        self._dirty = True  # set after staging: a first call's staging may flush

    def _count_spikes(
        self, magnitudes: Tensor, _: Tensor | None = None, ridden: Tensor | None = None
    ) -> None:
        """Add the nonzero outputs of staged calls (``|spikes|``, ``[calls, *spikes]``) to
        the pending counts: per neuron once a subscriber asks for it, else in total.
        ``ridden`` may hold them per neuron already: a connection layer that every staged
        call fed has counted them (see :class:`~snnmetrics.tracking.staging.Staging`)."""
        assert self._pending_nonzero is not None
        shape = magnitudes.shape[2:]
        if ridden is not None and magnitudes.ndim > 1 and ridden.numel() == shape.numel():
            per_neuron = ridden.view(shape)
        elif self._per_neuron_wanted:
            nonzero = _indicate_nonzero(magnitudes)
            per_neuron = nonzero.sum((0, 1) if nonzero.ndim > 1 else 0, dtype=_sum_dtype(nonzero))
        else:
            nonzero = _indicate_nonzero(magnitudes)
            self._pending_nonzero.add_(nonzero.sum(dtype=_sum_dtype(nonzero)))
            return
        if not self._per_neuron_wanted:
            self._pending_nonzero.add_(per_neuron.sum())
            return
        self._add_per_neuron(per_neuron)

    def _add_per_neuron(self, per_neuron: Tensor) -> None:
        """Add nonzero outputs per neuron to the pending buffer (made at the first)."""
        buffer = self._pending_per_neuron
        if buffer is None:
            with torch.inference_mode(False):
                buffer = torch.zeros(
                    per_neuron.shape, dtype=torch.float64, device=per_neuron.device
                )
                self._per_neuron = torch.zeros_like(buffer)
            self._pending_per_neuron = buffer
        buffer += per_neuron

    def _check_spikes(self, spikes: Tensor) -> None:
        """Ready the pending buffers for spikes shaped like ``spikes`` (a new layout)."""
        buffer = self._pending_per_neuron
        if self._per_neuron_wanted and buffer is not None and buffer.shape != spikes.shape[1:]:
            raise ValueError(
                f"{type(self.module_ref()).__name__} was called with {tuple(spikes.shape[1:])} "
                f"neurons per sample after {tuple(buffer.shape)}: firing rates need the same "
                "neurons in every call of a layer"
            )
        self._pending_on(spikes.device)

    def _count_differences(
        self, calls: Tensor, _: Tensor | None = None, __: Tensor | None = None
    ) -> None:
        """Add the changed membranes of staged calls (``[calls, *membrane]``, each the
        membrane after the call minus before it) to the pending counts."""
        assert self._pending_changed is not None
        self._pending_changed.add_(_count_changed(calls))

    def _count_membrane(self, module: nn.Module, output: Any, firsts: Sequence[Window]) -> None:
        assert self._pending_changed is not None
        before = self._before.pop(threading.get_ident(), None)
        after = self.rule.read_membrane(module, output)
        neurons = after.numel()
        self._neuron_steps += neurons
        if before is None or before.shape != after.shape:
            self._pending_changed.add_(neurons)
            return
        if not firsts:
            self._differences.stage_difference(after, before)
            return
        # the window needs this call's own count: count it now
        difference = after.detach() - before.detach()
        changed = _count_changed(difference.to(float_dtype(difference)))
        self._pending_changed.add_(changed)
        correction = neurons - changed
        for window in firsts:
            window.first_call[self] = correction

    def _count_step_membranes(
        self, module: nn.Module, output: Any, firsts: Sequence[Window], steps: int, outputs: int
    ) -> None:
        """Membrane updates of a call of ``steps`` steps with ``outputs`` neuron-steps."""
        assert self._pending_changed is not None
        before = self._before.pop(threading.get_ident(), None)
        states, neurons = self._step_membranes(module, output, steps, outputs)
        self._neuron_steps += outputs
        if states is None:
            self._pending_changed.add_(outputs)  # only the end is visible: every neuron-step
            self._warn_upper_bound(module, steps)
            return
        states = states.to(float_dtype(states))
        # steps after the first: the neurons whose membrane differs from the step before
        later = _count_changed(states[1:] - states[:-1])
        if before is None or before.numel() != neurons:
            self._pending_changed.add_(later).add_(neurons)  # fresh: all at the first step
            return
        changed = _count_changed(states[0] - before.detach().reshape(neurons).to(states.dtype))
        self._pending_changed.add_(later).add_(changed)
        if firsts:
            correction = neurons - changed
            for window in firsts:
                window.first_call[self] = correction

    def _step_membranes(
        self, module: nn.Module, output: Any, steps: int, outputs: int
    ) -> tuple[Tensor | None, int]:
        """The membrane of every step of a call, ``[steps, neurons]`` (``None`` if only the
        state after the call is kept), and the neurons x samples of one step."""
        after = self.rule.read_membrane(module, output)
        neurons = outputs // max(steps, 1)
        if after.numel() == outputs:
            return after.detach().reshape(steps, neurons), neurons
        if after.numel() != neurons:
            raise ValueError(
                f"the membrane of {type(module).__name__} has {after.numel()} elements; "
                f"a call of {steps} steps with {outputs} outputs needs one per output (each "
                f"step's) or {neurons} (the state after the call)"
            )
        return None, neurons

    def _warn_upper_bound(self, module: nn.Module, steps: int) -> None:
        if self._warned:
            return
        self._warned = True
        warnings.warn(
            f"{type(module).__name__} ran {steps} steps in one call and keeps only its membrane "
            "after the call, so membrane updates count every neuron at every step of such "
            "calls (an upper bound, equal to the dense count). Keep the membrane of every "
            "step for the exact count: store_v_seq=True (spikingjelly), record_states=True "
            "(sinabs, norse).",
            stacklevel=2,
        )

    def _pending_on(self, device: torch.device) -> None:
        """Make the pending buffers on ``device`` if they are elsewhere (the model moved)."""
        if self._pending is not None and self._pending.device == device:
            return
        self.flush()
        # counters must be normal tensors even if the first call runs in inference mode
        with torch.inference_mode(False):
            counts = torch.zeros(3, dtype=torch.float64, device=device)
            if self._counts is not None:
                counts += self._counts.to(device)
            self._counts = counts
            if self._per_neuron is not None:
                self._per_neuron = self._per_neuron.to(device)
                self._pending_per_neuron = torch.zeros_like(self._per_neuron)
            self._pending = torch.zeros(2, dtype=torch.float64, device=device)
            self._pending_nonzero, self._pending_changed = self._pending[0], self._pending[1]

    def flush(self) -> None:
        """Fold the pending buffers into the cumulative totals, NaN counted apart."""
        self._flush_traced()
        if not self._dirty:
            return  # nothing counted since the last flush
        self._dirty = False
        self._spikes.drain()
        self._differences.drain()
        counts, pending = self._counts, self._pending
        if counts is None or pending is None:
            return
        buffer = self._pending_per_neuron
        if buffer is not None:
            nan = torch.isnan(buffer)
            counts[2] += nan.sum()
            clean = buffer.masked_fill_(nan, 0)
            pending[0].add_(clean.sum())
            assert self._per_neuron is not None
            self._per_neuron += clean
            clean.zero_()
        nan = torch.isnan(pending)
        counts[2] += nan.sum()
        counts[:2] += pending.masked_fill_(nan, 0)
        pending.zero_()

    def totals(self) -> NeuronTotals:
        """Flush, then return the cumulative totals: copies, safe to keep as a snapshot,
        and shared by every reader until the next call (so read-only)."""
        return self._snapshot_of(self._read_totals)

    def _read_totals(self) -> NeuronTotals:
        self.flush()
        counts, per_neuron = self._counts, self._per_neuron
        return NeuronTotals(
            counts.clone() if counts is not None else torch.zeros(3, dtype=torch.float64),
            per_neuron.clone() if per_neuron is not None else None,
            self._rows,
            self._outputs,
            self._neuron_steps,
        )
