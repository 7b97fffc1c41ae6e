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

import itertools
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

__all__ = ["LOCK", "Tap", "Window", "acquire", "release"]

S = TypeVar("S")  # a tap's totals


_serials = itertools.count()


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
    """Base class of the per-module hook objects (see module docstring)."""

    def __init__(self, module: nn.Module) -> None:
        self.module_ref = weakref.ref(module)
        self.serial = next(_serials)  # never reused, unlike id()
        self.subscribers = 0
        self.calls = 0
        # a subclass's last totals, kept until its next call: every subscriber that
        # updates after one forward pass reads the same snapshot
        self._snapshot: Any = None
        self._awaiting: list[Window] = []
        self._handles: list[RemovableHandle] = []

    def _snapshot_of(self, read: Callable[[], S]) -> S:
        """The totals ``read()`` gives, read again only after the next call (or after
        ``self._snapshot`` is cleared): every reader between two calls shares them."""
        if self._snapshot is None:
            self._snapshot = read()
        snapshot: S = self._snapshot
        return snapshot

    def watch(self, window: Window) -> None:
        """Record the batch size of this tap's next call into ``window`` (if still unset)."""
        if window not in self._awaiting:
            self._awaiting.append(window)

    def _note_call(self, batch_size: int) -> Sequence[Window]:
        """Count a call; return the windows for which it is this tap's first call."""
        self.calls += 1
        self._snapshot = None
        if not self._awaiting:
            return ()
        firsts, self._awaiting = self._awaiting, []
        for window in firsts:
            if window.batch_size is None:
                window.batch_size = batch_size
        return firsts

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._awaiting.clear()

    def _add_hook(self, register: Callable[..., RemovableHandle], hook: Callable[..., Any],
                  **options: Any) -> None:
        """Register ``hook`` with ``register`` (a module's ``register_forward_hook`` or
        ``register_forward_pre_hook``), to be removed by :meth:`close`."""
        self._handles.append(register(_Hook(hook), **options))


# Every hook call and every read of the taps by a metric holds this lock, so that threads
# running one model at once (nn.DataParallel replicas, a thread pool) count exactly.
LOCK = threading.RLock()

_graph_task_id = torch._C._current_graph_task_id  # -1 unless autograd runs a backward pass


class _Hook:
    """A tap's hook as its module holds it.

    It counts nothing while autograd runs a backward pass: a forward that activation
    checkpointing recomputes then was counted when it first ran. It holds :data:`LOCK`
    (not under ``torch.compile``, which traces the hook into the graph). A copy of the
    module (``deepcopy``, pickle) gets :func:`_stale_hook` instead, which counts nothing.
    """

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def __call__(self, module: nn.Module, *args: Any) -> None:
        if torch.compiler.is_compiling():
            self.fn(module, *args)
        elif _graph_task_id() == -1:
            with LOCK:
                self.fn(module, *args)

    def __deepcopy__(self, memo: dict[int, Any]) -> _Hook:
        return _Hook(_stale_hook)

    def __reduce__(self) -> tuple[Any, ...]:
        return _Hook, (_stale_hook,)


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
