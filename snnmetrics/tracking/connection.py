"""The tap on connection layers: nonzero-input counts, AC/MAC split, dense taps."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from snnmetrics.functional.fanout import fanout_map, require_rule
from snnmetrics.tracking.hub import Tap

__all__ = ["ConnectionTap", "ConnectionTotals"]


class ConnectionTotals(NamedTuple):
    """Cumulative counts of one connection layer since its tap was created.

    ``counts`` is a float64 vector on the input's device:
    ``[effective, effective in MAC calls, structural, structural in MAC calls]``, where
    *effective* pairs need a nonzero weight and *structural* ones any weight. ``dense``
    counts every tap that reads a real input.
    """

    counts: Tensor
    dense: int


class ConnectionTap(Tap):
    """Counts, per call, the nonzero inputs of a connection layer.

    The hot path never multiplies by the fanout: it adds each call's per-element nonzero
    counts (summed over rows) to a pending buffer, once for every call and once more for
    calls whose input is not in {-1, 0, 1} (MAC calls). The buffers are folded into the
    totals with the fanout map (one dot product) on :meth:`flush`, which runs when a
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
        self._feature_shape: torch.Size | None = None
        self._weight_key: tuple[int, int, int] | None = None
        self._pending: Tensor | None = None  # [2, *features]: all calls, MAC calls
        self._effective_fanout: Tensor | None = None
        # per feature shape: structural fanout (on the CPU) and dense taps per row
        self._structural: dict[torch.Size, tuple[Tensor, int]] = {}
        self._structural_fanout: Tensor | None = None  # the current shape's, on the device
        self._handles.append(module.register_forward_pre_hook(self._hook))

    def _hook(self, module: nn.Module, args: tuple[object, ...]) -> None:
        if not args or not isinstance(args[0], Tensor):
            raise TypeError(
                f"{type(module).__name__} must be called with its input tensor as the first "
                "positional argument to be counted"
            )
        x = args[0]
        n_rows = x.ndim - self.n_features
        if n_rows < 0:
            return  # the layer itself rejects this input
        weight = self.rule.weight(module)
        key = (id(weight), weight.data_ptr(), weight._version)
        feature_shape = x.shape[n_rows:]
        if key != self._weight_key or feature_shape != self._feature_shape:
            self._start_segment(module, x, feature_shape, key)
        self._note_call(x.shape[0] if n_rows else 1)
        self._dense += math.prod(x.shape[:n_rows]) * self._structural[feature_shape][1]

        a = x.detach().abs()
        nonzero = a.clamp(max=1).ceil_()  # 1 where x != 0; NaN stays NaN
        # half precision counts only to 2048 exactly: sum those in float32
        exact = None if x.dtype in (torch.float32, torch.float64) else torch.float32
        per_element = nonzero.sum(tuple(range(n_rows)), dtype=exact) if n_rows else nonzero
        low, high = torch.aminmax(a.sub_(nonzero))  # all zero iff every |x| is 0 or 1
        pending = self._pending
        assert pending is not None
        pending[0].add_(per_element)
        pending[1].addcmul_(per_element, (high - low).sign())

    def _start_segment(
        self, module: nn.Module, x: Tensor, feature_shape: torch.Size, key: tuple[int, int, int]
    ) -> None:
        """Fold what was counted under the old weights/shape, then cache the new fanout."""
        self.flush()
        if self._counts is None:
            self._counts = torch.zeros(4, dtype=torch.float64, device=x.device)
        elif self._counts.device != x.device:  # the model moved
            self._counts = self._counts.to(x.device)
        if feature_shape not in self._structural:
            structural = fanout_map(module, self.rule, feature_shape, False, device="cpu")
            self._structural[feature_shape] = (structural.flatten(), int(structural.sum()))
        self._structural_fanout = None
        self._effective_fanout = fanout_map(module, self.rule, feature_shape, True).flatten()
        self._pending = torch.zeros(
            (2, *feature_shape), dtype=torch.float64, device=self._counts.device
        )
        self._feature_shape = feature_shape
        self._weight_key = key

    def flush(self) -> None:
        """Fold the pending nonzero counts into the cumulative totals."""
        pending, counts = self._pending, self._counts
        if pending is None or counts is None or self._feature_shape is None:
            return
        flat = pending.flatten(1)
        assert self._effective_fanout is not None
        counts[0:2] += flat @ self._effective_fanout
        if self.want_structural:
            if self._structural_fanout is None:
                cpu_map = self._structural[self._feature_shape][0]
                self._structural_fanout = cpu_map.to(flat.device)
            counts[2:4] += flat @ self._structural_fanout
        pending.zero_()

    def totals(self) -> ConnectionTotals:
        """Flush, then return the cumulative totals (a copy, safe to keep as a snapshot)."""
        self.flush()
        if self._counts is None:
            return ConnectionTotals(torch.zeros(4, dtype=torch.float64), self._dense)
        return ConnectionTotals(self._counts.clone(), self._dense)
