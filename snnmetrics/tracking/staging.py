"""Staging: per-call tensors counted several calls at a time, in buffers made once.

A hooked call of a small layer (an MLP step, say) spends most of its counting time
dispatching a dozen elementwise ops on a few thousand elements, and a larger call spends
much of it allocating (and page-faulting) the temporaries of those ops. A
:class:`Staging` writes each call's tensor (its magnitude, or a difference of two) into
the next slot of a buffer allocated once (one op) and counts every staged call at once,
in place, when the buffer is full or a reader asks (:meth:`Staging.drain`).

Memory stays constant: a buffer (and its scratch twin, for counts that need one) holds
at most :data:`STAGING_ELEMENTS` elements; a larger call is counted at once, on fresh
tensors. Values, not references, are staged: a tensor edited in place after its call is
counted as it was during the call.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["MAX_STAGED_CALLS", "STAGING_ELEMENTS", "Staging", "float_dtype"]

STAGING_ELEMENTS = 2**18  # per buffer: 1 MiB in float32
MAX_STAGED_CALLS = 32

Count = Callable[[Tensor, Tensor | None], None]


class Staging:
    """Stages same-layout tensors, one per call, for ``count(calls, scratch)``.

    ``calls`` holds the staged calls stacked along a new dim 0 (``[calls, *shape]``,
    float32, or float64 for float64 tensors); ``count`` may overwrite it, and ``scratch``
    (a tensor of the same shape and dtype if ``scratch=True``, else ``None``) too. A call
    of another shape, dtype or device counts what is staged first, then calls
    ``on_layout`` with its tensor (to check it, or move counters to its device).
    """

    def __init__(
        self,
        count: Count,
        scratch: bool = False,
        on_layout: Callable[[Tensor], None] | None = None,
    ) -> None:
        self._count = count
        self._want_scratch = scratch
        self._on_layout = on_layout
        self._layout: tuple[torch.Size, torch.dtype, torch.device] | None = None
        self._buffer: Tensor | None = None
        self._scratch: Tensor | None = None
        self._slots: tuple[Tensor, ...] = ()
        self._staged = 0

    def stage_magnitude(self, x: Tensor) -> None:
        """Count ``|x|``, written straight into a slot when staged."""
        x = x.detach()
        dtype = float_dtype(x)
        if x.dtype != dtype:
            x = x.to(dtype)
        slot = self._slot(x)
        if slot is None:
            self._count_now(x.abs())
            return
        torch.abs(x, out=slot)
        self._commit()

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
        self._commit()

    def drain(self) -> None:
        """Count what is staged now."""
        if self._staged:
            assert self._buffer is not None
            staged, self._staged = self._staged, 0
            scratch = self._scratch[:staged] if self._scratch is not None else None
            self._count(self._buffer[:staged], scratch)

    def _count_now(self, x: Tensor) -> None:
        calls = x.unsqueeze(0)
        self._count(calls, torch.empty_like(calls) if self._want_scratch else None)

    def _slot(self, x: Tensor) -> Tensor | None:
        """The next free slot for a tensor like ``x`` (already in its float dtype);
        ``None`` if such are not staged."""
        layout = (x.shape, x.dtype, x.device)
        if layout != self._layout:
            self.drain()
            if self._on_layout is not None:
                self._on_layout(x)
            self._layout = layout
            self._allocate(min(MAX_STAGED_CALLS, STAGING_ELEMENTS // max(x.numel(), 1)))
        return self._slots[self._staged] if self._slots else None

    def _allocate(self, calls: int) -> None:
        self._buffer = self._scratch = None
        self._slots = ()
        if calls == 0:
            return
        assert self._layout is not None
        shape, dtype, device = self._layout
        # normal tensors even if the first call runs in inference mode
        with torch.inference_mode(False):
            self._buffer = torch.empty((calls, *shape), dtype=dtype, device=device)
            if self._want_scratch:
                self._scratch = torch.empty_like(self._buffer)
        self._slots = self._buffer.unbind(0)

    def _commit(self) -> None:
        self._staged += 1
        if self._staged == len(self._slots):
            self.drain()


def float_dtype(x: Tensor) -> torch.dtype:
    """A floating dtype in which every nonzero element of ``x`` stays nonzero."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32
