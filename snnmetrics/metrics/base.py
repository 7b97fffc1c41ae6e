"""Base class of metrics that watch a model through shared hooks."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Protocol, TypeVar

import torch
from torch import Tensor, nn
from torchmetrics import Metric

from snnmetrics.tracking.hub import Tap, Window, release

__all__ = ["HookedMetric", "add_per_layer", "check_batch_size", "read_taps", "unwrap_model"]


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module whose submodules get hooked (the inner module of DDP/DataParallel)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        return model.module
    return model


def add_per_layer(state: Tensor, values: Sequence[int]) -> None:
    """``state[i] += values[i]`` for host integers: one op on the CPU; elsewhere one scalar
    op per nonzero value, since copying the values to the device would wait for it."""
    if state.device.type == "cpu":
        state += torch.tensor(values, dtype=state.dtype)
        return
    for i, value in enumerate(values):
        if value:
            state[i] += value


class _Totals(Protocol):
    @property
    def counts(self) -> Tensor: ...


T = TypeVar("T", bound=_Totals)
T_co = TypeVar("T_co", bound=_Totals, covariant=True)


class _TotalsTap(Protocol[T_co]):
    def totals(self) -> T_co: ...


def read_taps(
    taps: Sequence[_TotalsTap[T]], width: int, device: torch.device | None = None
) -> tuple[list[T], Tensor]:
    """Every tap's totals, and their count vectors (``width`` each) stacked on ``device``
    (default: the first's)."""
    totals = [tap.totals() for tap in taps]
    if not totals:
        return totals, torch.zeros((0, width), dtype=torch.float64, device=device)
    target = device or totals[0].counts.device
    return totals, torch.stack([each.counts.to(target) for each in totals])


def check_batch_size(batch_size: Any) -> int:
    integral_tensor = isinstance(batch_size, Tensor) and not batch_size.is_floating_point()
    if integral_tensor and batch_size.numel() == 1:
        batch_size = int(batch_size)
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral):
        raise TypeError(f"batch_size must be a positive int or None, got {batch_size!r}")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be a positive int or None, got {batch_size}")
    return int(batch_size)


class HookedMetric(Metric):
    """A metric fed by hooks on a model rather than by ``update`` arguments.

    The model runs as usual (stepped by the caller, or looping over time inside its own
    ``forward``); the hooks count what passes. ``update(batch_size=None)`` then folds
    everything counted since the previous ``update`` into the metric state, as one window
    of ``batch_size`` samples (default: dim 0 of the first input the hooks saw in the
    window). The model is never registered as a submodule, so a metric attribute of a
    LightningModule adds nothing to its ``state_dict()`` or ``parameters()``.
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better: bool | None = None
    samples: Tensor
    _watched: nn.Module

    def __init__(self, model: nn.Module, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # plain attribute, not a submodule (see class docstring)
        object.__setattr__(self, "_watched", unwrap_model(model))
        self._window = Window()
        self._taps: list[Tap] = []
        self._calls_at_update = 0
        self.add_state(
            "samples", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum", persistent=True
        )

    @property
    def model(self) -> nn.Module:
        """The watched module (the inner module if a DDP/DataParallel wrapper was given)."""
        return self._watched

    def _subscribe(self, taps: Sequence[Tap]) -> None:
        self._taps = list(taps)
        for tap in self._taps:
            tap.watch(self._window)
        self._calls_at_update = self._call_count()

    def _call_count(self) -> int:
        return sum(tap.calls for tap in self._taps)

    def update(self, batch_size: int | None = None) -> None:
        """Fold what the hooks counted since the last update into the state.

        Args:
            batch_size: samples in this window; default dim 0 of the first hooked input.
        """
        if not self._taps:
            raise RuntimeError(f"{type(self).__name__} is detached from its model")
        if batch_size is not None:
            batch_size = check_batch_size(batch_size)
        calls = self._call_count()
        if calls == self._calls_at_update:
            raise ValueError(
                f"{type(self).__name__}.update() saw no forward pass of the watched model "
                "since the last update(); run the model first"
            )
        seen = self._window.batch_size
        samples = batch_size if batch_size is not None else seen
        assert samples is not None  # any hooked call sets it
        self.samples.add_(samples)  # in place: a Module attribute assignment is slow
        self._fold()
        self._open_window()

    def discard_pending(self) -> None:
        """Forget what the hooks counted since the last ``update()``.

        Use it to leave forward passes out of the figures, e.g. those of a validation
        loop that runs between two training updates.
        """
        self._open_window()
        self._skip()

    def _open_window(self) -> None:
        self._window.batch_size = None
        self._window.first_call.clear()
        for tap in self._taps:
            tap.watch(self._window)
        self._calls_at_update = self._call_count()

    def _fold(self) -> None:
        """Add what the taps counted since the last fold to the states."""
        raise NotImplementedError

    def _skip(self) -> None:
        """Mark what the taps counted so far as read, without adding it to the states."""
        raise NotImplementedError

    def _samples(self) -> Tensor:
        """The number of samples as float64, or a ``ValueError`` if there are none."""
        if int(self.samples) <= 0:
            raise ValueError(
                f"{type(self).__name__} has no samples: run the model and call update() first"
            )
        return self.samples.to(torch.float64)

    def _synced(self) -> Any:
        """A context in which the states hold all ranks' data, as during ``compute()``.

        For result methods besides ``compute()`` (``compute_per_layer()``).
        """
        return self.sync_context(
            dist_sync_fn=self.dist_sync_fn,
            should_sync=self._to_sync,
            should_unsync=self._should_unsync,
        )

    def detach(self) -> None:
        """Remove this metric's hooks (a hook shared with other metrics stays for them)."""
        for tap in self._taps:
            release(tap)
        self._taps = []

    def __enter__(self) -> HookedMetric:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.detach()
