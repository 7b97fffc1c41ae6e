"""States whose shape comes from the first data, kept syncable across ranks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor
from torchmetrics import Metric

__all__ = ["LazyShapes", "adopt_shapes", "agree_on_shapes"]

_MAX_DIMS = 8


def agree_on_shapes(metric: Metric, names: Sequence[str], group: Any) -> None:
    """Give each lazily shaped state (empty until its first data) one shape on every rank.

    A rank that saw no data gets the shape the others found (zeros), so that it syncs
    like them. If ranks found different shapes, every rank raises a ``ValueError`` (none
    is left waiting in the sync). One ``all_reduce`` for all the states.
    """
    states: list[Tensor] = [getattr(metric, name) for name in names]
    rows = []
    for name, state in zip(names, states, strict=True):
        if state.ndim > _MAX_DIMS:
            raise ValueError(f"state {name} has more than {_MAX_DIMS} dimensions")
        shape = list(state.shape) if state.numel() else []
        marker = state.ndim + 1 if state.numel() else 0
        rows.append([marker, *shape, *[0] * (_MAX_DIMS - len(shape))])
    most = torch.tensor(rows, dtype=torch.int64, device=states[0].device)
    # the largest and (as -max of -x) the smallest shape among ranks that have one
    least = torch.where(most[:, :1] > 0, most, torch.iinfo(torch.int64).max)
    both = torch.cat([most, -least])
    dist.all_reduce(both, dist.ReduceOp.MAX, group=group)
    for name, state, high, low in zip(
        names, states, both[: len(names)].tolist(), (-both[len(names) :]).tolist(), strict=True
    ):
        if high[0] == 0:
            continue  # no rank saw data
        if high != low:
            here = tuple(state.shape) if state.numel() else "no data"
            raise ValueError(f"ranks saw different shapes for state {name} ({here} on this rank)")
        if state.numel() == 0:
            setattr(metric, name, state.new_zeros(tuple(high[1 : high[0]])))


def adopt_shapes(metric: Metric, names: Sequence[str], incoming: dict[str, Any]) -> dict[str, Any]:
    """Before merging ``incoming`` into ``metric``, give an empty lazy state the other's shape."""
    incoming = dict(incoming)
    for name in names:
        mine, theirs = getattr(metric, name), incoming[name]
        if theirs.numel() == 0 and mine.numel():
            incoming[name] = torch.zeros_like(mine)
        elif mine.numel() == 0 and theirs.numel():
            setattr(metric, name, torch.zeros_like(theirs, device=mine.device))
    return incoming


class LazyShapes(Metric):
    """Mixin for metrics whose states named in ``_lazy`` are empty until their first data.

    A rank (or a merged metric) that saw no data takes the shape the others found, so that
    ``sync()`` and ``merge_state()`` combine like states; ranks that found different shapes
    all raise a ``ValueError`` instead of waiting in the sync.
    """

    _lazy: Sequence[str] = ()

    def _reduce_states(self, incoming_state: dict[str, Any]) -> None:
        super()._reduce_states(adopt_shapes(self, self._lazy, incoming_state))

    def _sync_dist(self, dist_sync_fn: Any = None, process_group: Any | None = None) -> None:
        if self._lazy:
            agree_on_shapes(self, self._lazy, process_group or self.process_group)
        kwargs = {} if dist_sync_fn is None else {"dist_sync_fn": dist_sync_fn}
        super()._sync_dist(process_group=process_group, **kwargs)
