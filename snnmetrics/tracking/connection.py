"""The tap on connection layers: nonzero-input counts, AC/MAC split, dense taps."""

from __future__ import annotations

import inspect
import math
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from snnmetrics.functional.exact import FLOAT32_EXACT, FLOAT64_EXACT
from snnmetrics.functional.fanout import fanout_map, require_rule
from snnmetrics.tracking.hub import Tap
from snnmetrics.tracking.staging import Staging

__all__ = ["WIDTH", "ConnectionTap", "ConnectionTotals", "first_parameter"]

WIDTH = 5  # entries of ConnectionTotals.counts

# Pending per-element counts are float32 (the fast path) and each call adds at most its
# number of rows to an element, so folding before FLOAT32_EXACT rows keeps every count
# exact; float64 pending counts (float64 input, or a single call of more rows) hold
# FLOAT64_EXACT.


class _TracedPending(NamedTuple):
    """What traced calls of one feature shape counted since the last fold: float64
    ``counts`` ``[all, in MAC calls]`` per feature (``[2, *feature shape]``) and ``rows``
    ``[1]``."""

    counts: Tensor
    rows: Tensor


class ConnectionTotals(NamedTuple):
    """Cumulative counts of one connection layer since its tap was created.

    ``counts`` is a float64 vector on the input's device:
    ``[effective, effective in MAC calls, structural, structural in MAC calls, non-finite]``,
    where *effective* pairs need a nonzero weight and *structural* ones any weight; the
    last entry counts NaN readings (input features of a call), which the others leave out. ``dense``
    counts every tap that reads a real input: a host ``int``, or a 0-d tensor for a layer
    whose dense count depends on the data (see :class:`snnmetrics.tracking.call.CallTap`).
    """

    counts: Tensor
    dense: int | Tensor


def first_parameter(module: nn.Module) -> str:
    """The name of the first parameter of ``module.forward`` (``input`` for torch's
    layers): where a keyword call passes the input."""
    return next(iter(inspect.signature(module.forward).parameters), "input")


class ConnectionTap(Tap):
    """Counts, per call, the nonzero inputs of a connection layer.

    The hot path never multiplies by the fanout: it stages ``|x|``, or rides on the slot
    where the neuron that produced ``x`` staged it (see
    :mod:`~snnmetrics.tracking.staging`), and the staged calls add their per-element
    nonzero counts (summed over rows) to a pending buffer, once for every call and once
    more for calls whose input is not in {-1, 0, 1} (MAC calls). The buffers are folded
    into the totals with the fanout map (one dot product) on :meth:`flush`, which runs when a
    subscriber updates and before the weights or the input shape change, so the fanout
    in use is always the one of the weights that saw those inputs.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__(module)
        self.rule = require_rule(module)
        self.n_features = self.rule.feature_dims(module)
        self.want_structural = False
        self._counts: Tensor | None = None
        self._dense = 0
        # A segment is a run of calls with one weight version and one input layout (row
        # dims, feature shape, dtype); its pending counts are folded with its fanout.
        self._key: tuple[object, ...] | None = None
        self._feature_shape = torch.Size()
        self._row_dims: tuple[int, ...] = ()
        self._sum_dtype: torch.dtype | None = None
        self._row_limit = FLOAT32_EXACT
        self._dense_per_row = 0
        self._pending_rows = 0
        self._pending_all: Tensor | None = None
        self._pending_mac: Tensor | None = None
        self._staging = Staging(self._count, scratch=True)
        self._effective_fanout: Tensor | None = None  # of the weights since the last flush
        # (feature shape, zero pattern, effective fanout) of the last derivation on the CPU
        self._fanout_cache: tuple[torch.Size, Tensor, Tensor] | None = None
        self._structural_fanout: Tensor | None = None  # this segment's, on the device
        # per feature shape: structural fanout (on the CPU) and dense taps per row
        self._structural: dict[torch.Size, tuple[Tensor, int]] = {}
        self._input_name = first_parameter(module)
        # made in traced code, one per (feature shape, device)
        self._traced: dict[tuple[torch.Size, torch.device], _TracedPending] = {}
        self._add_hook(
            module.register_forward_pre_hook, self._hook, self._traced_hook, with_kwargs=True
        )

    def _call(
        self, module: nn.Module, args: tuple[object, ...], kwargs: dict[str, Any]
    ) -> tuple[Tensor, int, int] | None:
        """A call's input, its number of row dims and of rows; ``None`` for a call that
        counts nothing (the layer rejects it, or an empty batch: no call)."""
        x = args[0] if args else kwargs.get(self._input_name)
        if not isinstance(x, Tensor):
            raise TypeError(
                f"{type(module).__name__} must be called with its input tensor first (or as "
                f"{self._input_name}=) to be counted"
            )
        n_rows = x.ndim - self.n_features
        if n_rows < 0:
            return None
        rows = x.shape[0] if n_rows == 1 else math.prod(x.shape[:n_rows])
        return None if rows == 0 else (x, n_rows, rows)

    def _hook(self, module: nn.Module, args: tuple[object, ...], kwargs: dict[str, Any]) -> None:
        call = self._call(module, args, kwargs)
        if call is None:
            return
        x, n_rows, rows = call
        self._note_call(x.shape[0] if n_rows else 1)
        weight = self.rule.weight(module)
        huge = rows > FLOAT32_EXACT  # such a call is summed in float64
        key = (n_rows, x.shape[n_rows:], x.dtype, huge, weight._version, weight.data_ptr())
        if key != self._key:
            self._start_segment(module, x, n_rows, key)
        if self._pending_rows + rows > self._row_limit:
            self.flush()
        if self._effective_fanout is None:  # first call since the last flush
            self._effective_fanout = self._current_effective_fanout(module, self._feature_shape)
        self._pending_rows += rows
        self._dense += rows * self._dense_per_row
        if not self._staging.ride(x):  # a neuron just staged these spikes: share them
            self._staging.stage_magnitude(x)

    def _count(self, a: Tensor, scratch: Tensor | None, _: Tensor | None = None) -> Tensor:
        """Add the nonzero inputs of staged calls (``|x|``, ``[calls, *rows, *features]``)
        to the pending counts: to all of them, and to the MAC ones for calls not in
        {-1, 0, 1}. Leaves ``a`` as it is (a neuron's count may read it next), uses
        ``scratch``, and returns the nonzero inputs per feature (NaN throughout if one was
        NaN), which a neuron whose spikes these are need not count again."""
        assert scratch is not None
        nonzero = torch.sign(a, out=scratch)
        if self._row_dims:
            per_call = nonzero.sum(self._row_dims, dtype=self._sum_dtype).flatten(1)
        else:  # a copy: the scratch is overwritten next
            per_call = nonzero.flatten(1).to(self._sum_dtype, copy=True)
        # each call's largest distance of |x| from {0, 1}: zero iff it is an AC call, NaN if
        # the call has NaN
        distance = torch.sub(a, nonzero, out=scratch).abs_().flatten(1).amax(1)
        is_mac = distance.clamp_(max=1).ceil_().to(per_call.dtype)
        assert self._pending_all is not None and self._pending_mac is not None
        nonzero_per_feature = per_call.sum(0)
        self._pending_all.add_(nonzero_per_feature)
        self._pending_mac.addmv_(per_call.T, is_mac)
        return nonzero_per_feature.add_(is_mac.sum(), alpha=0)  # NaN stays

    def _traced_hook(
        self, module: nn.Module, args: tuple[object, ...], kwargs: dict[str, Any]
    ) -> None:
        """The hook as ``torch.compile`` traces it: the call's nonzero inputs per feature,
        all and in a MAC call, go to device buffers made once per feature shape, folded
        with the fanout of the weights at the next read."""
        call = self._call(module, args, kwargs)
        if call is None:
            return
        x, n_rows, rows = call
        key = (x.shape[n_rows:], x.device)
        pending = self._traced.get(key)
        if pending is None:
            pending = _TracedPending(
                torch.zeros((2, *key[0]), dtype=torch.float64, device=x.device),
                torch.zeros(1, dtype=torch.float64, device=x.device),
            )
            self._traced[key] = pending
        self._trace_call(x.shape[0] if n_rows else 1, x.device)
        magnitude = x.detach().abs()
        nonzero = magnitude.clamp(max=1).ceil()  # 0/1, NaN stays
        distance = (magnitude - nonzero).abs()  # zero throughout iff an AC call
        # summed in float32 while exact (a feature's count is at most the rows)
        exact = torch.float32 if rows <= FLOAT32_EXACT else torch.float64
        if n_rows:
            # both reduced over the rows, in the feature layout: inductor fuses the two
            # into one pass over the input (flattened and stacked, they made the compiled
            # 3x3 conv SNN of the zoo 1.13x slower)
            rows_dims = tuple(range(n_rows))
            per_feature = nonzero.sum(rows_dims, dtype=exact)
            distance = distance.amax(rows_dims)
        else:
            per_feature = nonzero.to(exact)
        mac = distance.amax().clamp(max=1).ceil().to(exact)
        pending.counts[0].add_(per_feature)
        pending.counts[1].add_(per_feature * mac)
        pending.rows.add_(rows)

    def _structural_map(
        self, module: nn.Module, feature_shape: torch.Size
    ) -> tuple[Tensor, int]:
        """The structural fanout (on the CPU) and dense taps per row of a feature shape."""
        if feature_shape not in self._structural:
            structural = fanout_map(module, self.rule, feature_shape, False, device="cpu")
            self._structural[feature_shape] = (structural.flatten(), int(structural.sum()))
        return self._structural[feature_shape]

    def _current_effective_fanout(self, module: nn.Module, feature_shape: torch.Size) -> Tensor:
        """The effective fanout of the weights as they are now. Derived again only if
        their zero pattern changed; the patterns are compared on the host, so only for
        weights on the CPU (elsewhere it is derived every time, without a sync)."""
        weight = self.rule.weight(module).detach()
        if weight.device.type != "cpu":
            return fanout_map(module, self.rule, feature_shape, True).flatten()
        mask = weight != 0
        cached = self._fanout_cache
        if cached is not None and cached[0] == feature_shape and torch.equal(cached[1], mask):
            return cached[2]
        fanout = fanout_map(module, self.rule, feature_shape, True).flatten()
        self._fanout_cache = (feature_shape, mask, fanout)
        return fanout

    def _start_segment(
        self, module: nn.Module, x: Tensor, n_rows: int, key: tuple[object, ...]
    ) -> None:
        """Fold what was counted under the old weights or layout, then start anew."""
        self.flush()
        feature_shape = x.shape[n_rows:]
        wide = x.dtype == torch.float64 or math.prod(x.shape[:n_rows]) > FLOAT32_EXACT
        self._sum_dtype = torch.float64 if wide else torch.float32
        self._row_limit = FLOAT64_EXACT if wide else FLOAT32_EXACT
        # counters must be normal tensors even if the first call runs in inference mode
        with torch.inference_mode(False):
            if self._counts is None:
                self._counts = torch.zeros(WIDTH, dtype=torch.float64, device=x.device)
            elif self._counts.device != x.device:  # the model moved
                self._counts = self._counts.to(x.device)
            structural_cpu, self._dense_per_row = self._structural_map(module, feature_shape)
            self._structural_fanout = (
                structural_cpu.to(x.device) if self.want_structural else None
            )
            self._pending_all = torch.zeros(
                feature_shape.numel(), dtype=self._sum_dtype, device=x.device
            )
            self._pending_mac = torch.zeros_like(self._pending_all)
        self._row_dims = tuple(range(1, n_rows + 1))  # dim 0 of the staged calls is the call
        self._feature_shape = feature_shape
        self._key = key

    def flush(self) -> None:
        """Fold the pending nonzero counts into the cumulative totals.

        The effective fanout in use was derived at the first call after the previous
        flush. Every tracked weight change (its version counter moves) flushes first, and
        so does every update, so weights edited in a way autograd does not track
        (``weight.data[...] = 0``) between two updates are followed too.
        """
        self._flush_traced()
        self._staging.drain()
        effective, self._effective_fanout = self._effective_fanout, None
        if self._pending_rows == 0:
            return
        assert effective is not None
        assert self._pending_all is not None and self._pending_mac is not None
        pending = torch.stack((self._pending_all, self._pending_mac)).to(torch.float64)
        if self.want_structural and self._structural_fanout is None:
            self._structural_fanout = self._structural[self._feature_shape][0].to(pending.device)
        self._add_pending(pending, effective, self._structural_fanout)
        self._pending_all.zero_()
        self._pending_mac.zero_()
        self._pending_rows = 0

    def _flush_traced(self) -> None:
        """Fold what traced calls counted, with the fanout of the weights as they are now."""
        module = self.module_ref()
        if module is None:
            return
        for (feature_shape, device), traced in self._traced.items():
            rows = int(traced.rows)
            if rows == 0:
                continue  # no traced call of this layout since the last fold
            structural_map, dense_per_row = self._structural_map(module, feature_shape)
            with torch.inference_mode(False):
                if self._counts is None:
                    self._counts = torch.zeros(WIDTH, dtype=torch.float64, device=device)
                effective = self._current_effective_fanout(module, feature_shape)
                structural = structural_map if self.want_structural else None
                counts = traced.counts.reshape(2, -1).to(self._counts.device)
                self._add_pending(counts, effective, structural)
            self._dense += rows * dense_per_row
            traced.counts.zero_()
            traced.rows.zero_()

    def _add_pending(self, pending: Tensor, effective: Tensor, structural: Tensor | None) -> None:
        """Add pending nonzero inputs per feature (float64 ``[all, in MAC calls]``) to the
        totals, with the effective (and structural) fanout; NaN counted apart."""
        assert self._counts is not None
        nan = torch.isnan(pending)
        self._counts[4] += nan.any(0).sum()  # NaN inputs are counted apart, not as operations
        pending = pending.masked_fill(nan, 0)
        self._counts[0:2] += pending @ effective.to(pending.device)
        if structural is not None:
            self._counts[2:4] += pending @ structural.to(pending.device)

    def totals(self) -> ConnectionTotals:
        """Flush, then return the cumulative totals: a copy, safe to keep as a snapshot,
        and shared by every reader until the next call (so read-only)."""
        return self._snapshot_of(self._read_totals)

    def _read_totals(self) -> ConnectionTotals:
        self.flush()
        counts = self._counts
        return ConnectionTotals(
            counts.clone() if counts is not None else torch.zeros(WIDTH, dtype=torch.float64),
            self._dense,
        )
