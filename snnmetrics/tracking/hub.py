"""Shared hooks: one tap per (module, kind), however many metrics watch the module.

A :class:`Tap` owns the single forward hook that a family of metrics needs on one module.
On every call it folds the module's input/output into *cumulative* device counters; a
metric never receives tensors from a hook. Each subscribing metric keeps a snapshot of the
counters it last read, so a hook costs the same whether one metric or ten watch the module,
and metrics may call ``update()`` at different times.

Taps also record the batch size of the first call after a subscriber's last update
(:class:`Window`), which is how ``update(batch_size=None)`` learns the number of samples.
A tap may also leave in the window what only that first call knows (``Window.first_call``):
a neuron's first step in a window counts every neuron, whatever its membrane did, and
which call is first depends on when each subscriber last updated.

A tap belongs to its module and to the metrics that subscribe to it, never to a copy.
Copying or pickling the module (``deepcopy(model)``, ``torch.save(model)``) copies
none of its taps: the copy's hooks count nothing and remove themselves at its first call
(:func:`_stale_hook`). A copy of a metric subscribes to the taps anew.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

__all__ = ["LOCK", "Tap", "Window", "acquire", "reading", "release"]

S = TypeVar("S")  # a tap's totals


_serials = itertools.count()
_scopes = itertools.count(1)


class _Reading(threading.local):
    """The read scope this thread has open (0: none), see :func:`reading`."""

    scope = 0


_reading = _Reading()


@contextlib.contextmanager
def reading() -> Iterator[None]:
    """A scope in which each tap reads its traced call record from the device once, not
    at every use: a metric's ``update()`` reads it once instead of at each of some seven
    uses (a host sync each, on a GPU). Its caller holds :data:`LOCK` and runs no forward
    pass; a compiled forward pass in another thread meanwhile (traced hooks take no
    lock) is read by the next scope, as one that ran just after this one would be."""
    outer = _reading.scope
    _reading.scope = next(_scopes)
    try:
        yield
    finally:
        _reading.scope = outer


class Window:
    """What one subscriber has seen since its last ``update()``.

    ``batch_size`` is the batch size of the first hooked call; ``first_call`` maps a tap to
    what it recorded at its own first call of the window (a device tensor, say). The
    subscriber reads ``first_call`` when it folds the window; opening the next window
    clears it.
    """

    __slots__ = ("batch_size", "first_call")

    def __init__(self) -> None:
        self.batch_size: int | None = None
        self.first_call: dict[Tap, Any] = {}


class Tap:
    """Base class of the per-module hook objects (see module docstring).

    Under ``torch.compile`` a tap's hooks are traced into the model's graph when the tap
    has a traced variant of them (``traced=`` of :meth:`_add_hook`): they then keep their
    counts, its calls and what a window needs of its first call in device tensors made
    once (no host read, no Python state that changes from call to call), which the eager
    reads (:meth:`resolve`, the subclass's totals) fold in. Hooks without one run eagerly
    at a graph break.
    """

    def __init__(self, module: nn.Module) -> None:
        self.module_ref = weakref.ref(module)
        self.serial = next(_serials)  # never reused, unlike id()
        self.subscribers = 0
        self._calls = 0
        # traced calls, float64: [calls, batch size of the first call since armed, armed,
        # what that first call left for its windows (see _trace_call)]
        self._trace: Tensor | None = None
        self._trace_read: tuple[int, list[float]] = (0, [])  # (read scope, its host copy)
        # a subclass's last totals and the calls then: every subscriber that updates after
        # one forward pass reads the same snapshot
        self._snapshot: Any = None
        self._snapshot_calls = -1
        self._awaiting: list[Window] = []
        self._handles: list[RemovableHandle] = []

    @property
    def traced(self) -> bool:
        """Whether ``torch.compile`` traced a call of this tap's hooks."""
        return self._trace is not None

    @property
    def calls(self) -> int:
        """The calls this tap counted (eager and traced)."""
        record = self._trace_record()
        return self._calls + (0 if record is None else int(record[0]))

    def _trace_record(self) -> list[float] | None:
        """The traced call record on the host (``None`` before a traced call): read from
        the device once per read scope (see :func:`reading`), else at every use."""
        if self._trace is None:
            return None
        scope = _reading.scope
        if scope and self._trace_read[0] == scope:
            return self._trace_read[1]
        record: list[float] = self._trace.tolist()
        if scope:
            self._trace_read = (scope, record)
        return record

    def _snapshot_of(self, read: Callable[[], S]) -> S:
        """The totals ``read()`` gives, read again only after the next call (or after
        ``self._snapshot`` is cleared): every reader between two calls shares them."""
        calls = self.calls
        if self._snapshot is None or calls != self._snapshot_calls:
            self._snapshot = read()
            self._snapshot_calls = calls
        snapshot: S = self._snapshot
        return snapshot

    def watch(self, window: Window) -> None:
        """Record the batch size of this tap's next call into ``window`` (if still unset)."""
        self.resolve()
        if window not in self._awaiting:
            self._awaiting.append(window)
        record = self._trace_record()
        if record is not None and record[2] == 0:
            assert self._trace is not None
            self._trace[2] = 1  # the next traced call is a first call again
            record[2] = 1.0

    def resolve(self) -> None:
        """Give the windows awaiting this tap's next call what a traced first call left."""
        record = self._trace_record()
        if record is None or not self._awaiting or record[2] != 0:
            return
        assert self._trace is not None
        firsts, self._awaiting = self._awaiting, []
        for window in firsts:
            if window.batch_size is None:
                window.batch_size = int(record[1])
            self._traced_first_call(window, self._trace[3].clone())

    def _traced_first_call(self, window: Window, recorded: Tensor) -> None:
        """Leave in ``window`` what a traced first call recorded (see :class:`Window`)."""

    def _note_call(self, batch_size: int) -> Sequence[Window]:
        """Count a call; return the windows for which it is this tap's first call."""
        self._calls += 1  # (which also makes the next read take new totals)
        if not self._awaiting:
            return ()
        firsts, self._awaiting = self._awaiting, []
        for window in firsts:
            if window.batch_size is None:
                window.batch_size = batch_size
        return firsts

    def _trace_call(
        self, batch_size: int, device: torch.device, first_call: Tensor | None = None
    ) -> None:
        """:meth:`_note_call` for traced code: count a call on the device, and if it is
        the first of the awaiting windows keep its batch size and ``first_call`` (a
        float64 scalar, see :meth:`_traced_first_call`)."""
        trace = self._trace
        if trace is None:  # every window awaits the first call ever
            trace = torch.tensor([0.0, 0.0, 1.0, 0.0], dtype=torch.float64, device=device)
            self._trace = trace
        elif trace.device != device:  # the model moved
            trace = trace.to(device)
            self._trace = trace
        armed = trace[2:3] > 0
        trace[1:2].copy_(torch.where(armed, float(batch_size), trace[1:2]))
        if first_call is not None:
            trace[3:4].copy_(torch.where(armed, first_call.to(torch.float64), trace[3:4]))
        trace[2:3].zero_()
        trace[0:1].add_(1)

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._awaiting.clear()

    def _add_hook(
        self,
        register: Callable[..., RemovableHandle],
        hook: Callable[..., Any],
        traced: Callable[..., Any] | None = None,
        **options: Any,
    ) -> None:
        """Register ``hook`` with ``register`` (a module's ``register_forward_hook`` or
        ``register_forward_pre_hook``), to be removed by :meth:`close`; ``traced`` is its
        variant for ``torch.compile`` to trace (see class docstring)."""
        self._handles.append(register(_Hook(hook, traced), **options))


# Every hook call and every read of the taps by a metric holds this lock, so that threads
# running one model at once (nn.DataParallel replicas, a thread pool) count exactly.
LOCK = threading.RLock()

_graph_task_id = torch._C._current_graph_task_id  # -1 unless autograd runs a backward pass
_is_compiling = torch.compiler.is_compiling
_acquire, _release = LOCK.acquire, LOCK.release
_function_modes = torch._C._len_torch_function_stack
_no_torch_function = torch._C.DisableTorchFunction


class _Hook:
    """A tap's hook as its module holds it.

    It counts nothing while autograd runs a backward pass: a forward that activation
    checkpointing recomputes then was counted when it first ran. It holds :data:`LOCK`.
    Its own tensor operations bypass torch function modes (a ``ProductRule``'s, which
    would otherwise see, and pay Python dispatch for, every counting operation of the
    layers inside its module).
    Under ``torch.compile`` it runs the tap's traced variant, or the eager hook at a
    graph break. A copy of the module (``deepcopy``, pickle) gets :func:`_stale_hook`
    instead, which counts nothing.
    """

    __slots__ = ("fn", "traced")

    def __init__(self, fn: Callable[..., Any], traced: Callable[..., Any] | None = None) -> None:
        self.fn = fn
        self.traced = traced

    def __call__(self, module: nn.Module, *args: Any) -> None:
        if _is_compiling():
            if self.traced is not None:
                self.traced(module, *args)
            else:
                _run_eagerly(self.fn, module, *args)
        elif _graph_task_id() == -1:
            _acquire()  # (not `with LOCK`: the hot path, and twice as fast)
            try:
                if _function_modes():
                    with _no_torch_function():
                        self.fn(module, *args)
                else:
                    self.fn(module, *args)
            finally:
                _release()

    def __deepcopy__(self, memo: dict[int, Any]) -> _Hook:
        return _Hook(_stale_hook)

    def __reduce__(self) -> tuple[Any, ...]:
        return _Hook, (_stale_hook,)


@torch.compiler.disable
def _run_eagerly(fn: Callable[..., Any], module: nn.Module, *args: Any) -> None:
    """An eager hook inside a compiled model (a graph break)."""
    if _graph_task_id() == -1:
        with LOCK:
            fn(module, *args)


def _stale_hook(module: nn.Module, *args: Any, **kwargs: Any) -> None:
    """The hooks of a copied module that came from taps: they remove themselves at the
    copy's first call (safe while hooks run: torch iterates over a copy of them)."""
    for hooks in (module._forward_pre_hooks, module._forward_hooks):
        stale = [key for key, hook in hooks.items() if getattr(hook, "fn", None) is _stale_hook]
        for key in stale:
            del hooks[key]
            module._forward_pre_hooks_with_kwargs.pop(key, None)
            module._forward_hooks_with_kwargs.pop(key, None)
            module._forward_hooks_always_called.pop(key, None)


T = TypeVar("T", bound=Tap)

# module -> {tap class -> tap}; weak so that a dropped model releases its taps.
_TAPS: weakref.WeakKeyDictionary[nn.Module, dict[type[Tap], Tap]] = weakref.WeakKeyDictionary()


def acquire(module: nn.Module, kind: type[T], factory: Callable[[nn.Module], T] | None = None) -> T:
    """The tap of ``kind`` on ``module``, created (and hooked) on first use."""
    taps = _TAPS.setdefault(module, {})
    tap = taps.get(kind)
    if tap is None:
        tap = (factory or kind)(module)
        taps[kind] = tap
    tap.subscribers += 1
    return tap  # type: ignore[return-value]


def release(tap: Tap) -> None:
    """Drop one subscription; the hook is removed with the last one."""
    tap.subscribers -= 1
    if tap.subscribers > 0:
        return
    tap.close()
    module = tap.module_ref()
    if module is not None:
        taps: dict[type[Tap], Any] = _TAPS.get(module, {})
        if taps.get(type(tap)) is tap:
            del taps[type(tap)]
        if not taps:
            _TAPS.pop(module, None)
