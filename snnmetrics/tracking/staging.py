"""Staging: per-call tensors counted several calls at a time, in buffers made once.

A hooked call of a small layer (an MLP step, say) spends most of its counting time
dispatching a dozen elementwise ops on a few thousand elements, and a larger call spends
much of it allocating (and page-faulting) the temporaries of those ops. A
:class:`Staging` writes each call's tensor (its magnitude, or a difference of two) into
the next slot of a buffer allocated once (one op) and counts every staged call at once,
in place, when the buffer is full or a reader asks (:meth:`Staging.drain`).

Memory stays constant: a buffer holds at most :data:`STAGING_ELEMENTS` elements, and so
does the one scratch buffer that all counts of a thread share; a larger call is counted
at once, on fresh tensors. Values, not references, are staged: a tensor edited in place
after its call is counted as it was during the call.

The spikes a neuron stages are, most of the time, the very input of the next connection
layer, which needs their magnitudes too. A staging made with ``shared=True`` lets the
next staging handed the same values (the same tensor, or a contiguous view of it, not
edited since) *ride* on its newest slot instead of copying them again
(:meth:`Staging.ride`); the rider's count then runs on the host's slots, before the
host's own count, whenever the host drains.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["MAX_STAGED_CALLS", "STAGING_ELEMENTS", "Staging", "float_dtype"]

STAGING_ELEMENTS = 2**18  # per buffer: 1 MiB in float32
MAX_STAGED_CALLS = 32

# count(calls, scratch, ridden) -> for a rider, what it counted for its host (see Staging)
Count = Callable[[Tensor, Tensor | None, Tensor | None], Tensor | None]


class _Newest(threading.local):
    """The newest slot a shared staging filled in this thread, for :meth:`Staging.ride`:
    (the staged tensor, its version then, the staging, the slot's index)."""

    slot: tuple[weakref.ref[Tensor], int, weakref.ref[Staging], int] | None = None


_newest = _Newest()


class _Scratch(threading.local):
    """One scratch buffer per dtype and device in each thread, shared by every count: a
    count is done with its scratch when it returns, and counts never overlap. Shared, it
    stays in the caches, where one buffer per staging would not."""

    buffers: dict[tuple[torch.dtype, torch.device], Tensor]

    def __init__(self) -> None:
        self.buffers = {}

    def like(self, calls: Tensor) -> Tensor:
        key = (calls.dtype, calls.device)
        buffer = self.buffers.get(key)
        if buffer is None or buffer.numel() < calls.numel():
            with torch.inference_mode(False):
                buffer = torch.empty(calls.numel(), dtype=calls.dtype, device=calls.device)
            self.buffers[key] = buffer
        return buffer[: calls.numel()].view(calls.shape)


_scratch = _Scratch()


class Staging:
    """Stages same-layout tensors, one per call, for ``count(calls, scratch, ridden)``.

    ``calls`` holds the staged calls stacked along a new dim 0 (``[calls, *shape]``,
    float32, or float64 for float64 tensors); ``count`` may overwrite it, and ``scratch``
    (a tensor of the same shape and dtype if ``scratch=True``, else ``None``) too, until
    it returns. A call
    of another shape, dtype or device counts what is staged first, then calls
    ``on_layout`` with its tensor (to check it, or move counters to its device).

    A staging with ``shared=True`` lends its newest slot to a staging that :meth:`ride` s
    on it. A rider's count must leave ``calls`` as it is, and may return the nonzero
    elements it saw, per element of a row, summed over the calls and rows (NaN throughout
    if one was NaN); if it rode on every call the host counts, the host's count gets that
    as ``ridden``, else ``None``.
    """

    def __init__(
        self,
        count: Count,
        scratch: bool = False,
        on_layout: Callable[[Tensor], None] | None = None,
        shared: bool = False,
    ) -> None:
        self._count = count
        self._want_scratch = scratch
        self._on_layout = on_layout
        self._shared = shared
        self._layout: tuple[torch.Size, torch.dtype, torch.device] | None = None
        self._buffer: Tensor | None = None
        self._slots: tuple[Tensor, ...] = ()
        self._staged = 0
        # the staging that rides on slots [start, end) of this one, each call so shaped
        self._rider: Staging | None = None
        self._ride_start = self._ride_end = 0
        self._ride_shape = torch.Size()
        self._host: Staging | None = None  # the staging this one last rode on

    def stage_magnitude(self, x: Tensor) -> None:
        """Count ``|x|``, written straight into a slot when staged."""
        values = x.detach()
        dtype = float_dtype(values)
        if values.dtype != dtype:
            values = values.to(dtype)
        slot = self._slot(values)
        if slot is None:
            self._count_now(values.abs())
            return
        torch.abs(values, out=slot)
        self._staged += 1
        if self._shared and not x.is_inference():  # (which keep no version counter)
            _newest.slot = (weakref.ref(x), x._version, weakref.ref(self), self._staged - 1)

    def stage_difference(self, a: Tensor, b: Tensor) -> None:
        """Count ``a - b`` (same shape), written straight into a slot when staged."""
        a, b = a.detach(), b.detach()
        dtype = float_dtype(a)
        if a.dtype != dtype or b.dtype != dtype:
            a, b = a.to(dtype), b.to(dtype)
        slot = self._slot(a)
        if slot is None:
            self._count_now(a - b)
            return
        torch.sub(a, b, out=slot)
        self._staged += 1

    def ride(self, x: Tensor) -> bool:
        """Count ``|x|`` from the newest slot of a shared staging if that slot holds these
        very values (the same tensor or a contiguous view of it, unedited since it was
        staged, in the float dtype :func:`float_dtype` picks); ``False`` otherwise."""
        newest = _newest.slot
        if newest is None:
            return False
        origin, host = newest[0](), newest[2]()
        index = newest[3]
        if (
            origin is None
            or host is None
            or host is self
            or host._staged != index + 1  # drained since, or another call staged after
            or x.dtype != origin.dtype
            or not (x is origin or _same_elements(x, origin))
            or x.is_inference()
            or x._version != newest[1]
        ):
            return False
        if self._host is not None and self._host is not host:
            self._host.drain()  # count what rides elsewhere before switching hosts
        host._carry(self, index, x.shape)
        self._host = host
        return True

    def drain(self) -> None:
        """Count what is staged now, here and on the staging this one rides on."""
        ridden = self._count_rider()
        if self._staged:
            assert self._buffer is not None
            staged, self._staged = self._staged, 0
            calls = self._buffer[:staged]
            self._count(calls, _scratch.like(calls) if self._want_scratch else None, ridden)
        if self._host is not None:
            host, self._host = self._host, None
            host.drain()

    def _carry(self, rider: Staging, index: int, shape: torch.Size) -> None:
        """Let ``rider`` count slot ``index``, viewed as ``shape``, when this drains."""
        if rider is not self._rider or index != self._ride_end or shape != self._ride_shape:
            self._count_rider()  # what an earlier run of rides left
            self._rider, self._ride_start, self._ride_shape = rider, index, shape
        self._ride_end = index + 1

    def _count_rider(self) -> Tensor | None:
        """Run the rider's count; what it returns if it rode on every staged call."""
        rider, self._rider = self._rider, None
        if rider is None:
            return None
        assert self._buffer is not None
        start, end = self._ride_start, self._ride_end
        calls = self._buffer[start:end].view(end - start, *self._ride_shape)
        counted = rider._count(calls, _scratch.like(calls), None)
        return counted if start == 0 and end == self._staged else None

    def _count_now(self, x: Tensor) -> None:
        calls = x.unsqueeze(0)
        self._count(calls, torch.empty_like(calls) if self._want_scratch else None, None)

    def _slot(self, x: Tensor) -> Tensor | None:
        """The next free slot for a tensor like ``x`` (already in its float dtype);
        ``None`` if such are not staged. A full buffer is counted only now, when a slot
        is needed, so that its last call can still be ridden on."""
        layout = (x.shape, x.dtype, x.device)
        if layout != self._layout:
            self.drain()
            if self._on_layout is not None:
                self._on_layout(x)
            self._layout = layout
            self._allocate(min(MAX_STAGED_CALLS, STAGING_ELEMENTS // max(x.numel(), 1)))
        elif self._staged == len(self._slots) and self._slots:
            self.drain()
        return self._slots[self._staged] if self._slots else None

    def _allocate(self, calls: int) -> None:
        self._buffer = None
        self._slots = ()
        if calls == 0:
            return
        assert self._layout is not None
        shape, dtype, device = self._layout
        # normal tensors even if the first call runs in inference mode
        with torch.inference_mode(False):
            self._buffer = torch.empty((calls, *shape), dtype=dtype, device=device)
        self._slots = self._buffer.unbind(0)


def _same_elements(x: Tensor, origin: Tensor) -> bool:
    """Whether ``x`` is a contiguous view of all of ``origin`` (contiguous), as after
    ``flatten``: the same elements in the same order."""
    return (
        x.data_ptr() == origin.data_ptr()
        and x.numel() == origin.numel()
        and x.is_contiguous()
        and origin.is_contiguous()
    )


def float_dtype(x: Tensor) -> torch.dtype:
    """A floating dtype in which every nonzero element of ``x`` stays nonzero."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32
