"""Base class of metrics that watch a model through shared hooks."""

from __future__ import annotations

import copy
import hashlib
import numbers
import warnings
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import torch
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.utilities.exceptions import TorchMetricsUserError

from snnmetrics.plot import plot_result
from snnmetrics.tracking.hub import LOCK, Tap, Window, reading, release

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

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


def warn_unseen_parts(model: nn.Module, metric: str) -> None:
    """Warn, naming them, about the parts of ``model`` that hooks cannot see into:
    TorchScript submodules run their layers without calling their Python hooks."""
    scripted: list[str] = []
    for name, module in model.named_modules():
        inside = any(name.startswith(f"{outer}.") for outer in scripted)
        if isinstance(module, torch.jit.ScriptModule) and not inside:
            scripted.append(name or "(the model)")
    if scripted:
        warnings.warn(
            f"{metric} cannot see inside the TorchScript module(s) {', '.join(scripted)}: "
            "their layers are not counted (watch the model before scripting it, or compile "
            "it with torch.compile instead)",
            stacklevel=3,
        )


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

    The torchmetrics contract holds as for any metric:

    * ``reset()`` forgets everything, forward passes not yet folded included;
    * calling the metric (``forward``) folds the pending forward passes as one batch and
      returns that batch's figures; if they cannot be computed the error is raised and
      the accumulated state is kept;
    * ``compute()`` before any ``update()`` gives NaN figures (layers that never ran are
      left out of per-layer results), with torchmetrics' warning;
    * in a ``MetricCollection``, metrics share a compute group only if they watch the same
      layers with the same counting options;
    * ``clone()`` and ``copy.deepcopy(metric)`` watch the same model with a copy of the
      state and a window of their own, opened at the copy (forward passes pending in the
      original are not in the copy); a metric copied together with its model
      (``deepcopy`` of a module holding both, the model first) watches the copied model;
    * a pickled metric keeps its state and carries its model along: unpickled, it watches
      the unpickled model (forward passes that were pending are not kept).
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better: bool | None = None
    samples: Tensor
    watch_id: Tensor
    layer_names: list[str]
    _watched: nn.Module
    # attributes bound to taps, rebuilt by _attach() when a metric is unpickled
    _transient: tuple[str, ...] = ()
    _unit = ""  # of the figures, for plots

    def __init__(self, model: nn.Module, **kwargs: Any) -> None:
        """Watch ``model`` (subclasses hook it in ``_attach``).

        Args:
            model: the network to watch (the inner module of a DDP/DataParallel wrapper).
            **kwargs: torchmetrics ``Metric`` options (``sync_on_compute``, ``process_group``, ...).
        """
        super().__init__(**kwargs)
        # plain attribute, not a submodule (see class docstring)
        object.__setattr__(self, "_watched", unwrap_model(model))
        warn_unseen_parts(self._watched, type(self).__name__)
        self._open_fresh()
        self._forwarding = False
        self.add_state(
            "samples", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum", persistent=True
        )

    @property
    def model(self) -> nn.Module:
        """The watched module (the inner module if a DDP/DataParallel wrapper was given)."""
        return self._watched

    def _attach(self) -> None:
        """Acquire the taps on :attr:`model` this metric reads, and subscribe to them."""
        raise NotImplementedError

    def _options(self) -> tuple[Any, ...]:
        """The options that change what the taps count for this metric (its states)."""
        return ()

    def _open_fresh(self) -> None:
        self._window = Window()
        self._taps: list[Tap] = []
        self._calls_at_update = 0

    def _subscribe(self, taps: Sequence[Tap]) -> None:
        self._taps = list(taps)
        for tap in self._taps:
            tap.watch(self._window)
        self._calls_at_update = self._call_count()
        self._set_watch_id()

    def _set_watch_id(self) -> None:
        """A state that differs between metrics that watch different layers or count
        differently: torchmetrics merges the compute groups of a ``MetricCollection``
        only for metrics whose states are all equal, and then updates one of them."""
        key = (type(self).__qualname__, [tap.serial for tap in self._taps], self._options())
        # bytes of a digest: small numbers, which torch.allclose never takes for equal
        digest = hashlib.blake2b(repr(key).encode(), digest_size=8).digest()
        value = torch.tensor(list(digest), dtype=torch.int64)
        if "watch_id" in self._defaults:
            self._defaults["watch_id"] = value
            self.watch_id = value.to(self.samples.device)
        else:
            self.add_state("watch_id", value, dist_reduce_fx="max", persistent=False)

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
        with LOCK, reading():  # no hook counts in another thread meanwhile
            self._update(batch_size)

    def _update(self, batch_size: int | None) -> None:
        for tap in self._taps:
            tap.resolve()  # what traced first calls left for the window
        calls = self._call_count()
        self._check_compiled_hooks()
        if calls == self._calls_at_update:
            raise ValueError(
                f"{type(self).__name__}.update() saw no forward pass of the watched model "
                "since the last update(); run the model first (a model compiled before the "
                "metric was attached runs without its hooks: attach metrics before the first "
                "compiled call, or call torch._dynamo.reset() after attaching)"
            )
        seen = self._window.batch_size
        samples = batch_size if batch_size is not None else seen
        assert samples is not None  # any hooked call sets it
        self.samples.add_(samples)  # in place: a Module attribute assignment is slow
        self._fold()
        self._open_window()

    def _check_compiled_hooks(self) -> None:
        """A ``ValueError`` if some watched layers never ran while others ran compiled:
        ``torch.compile`` does not see hooks added after the model's first compiled call,
        so those layers would silently count nothing."""
        if not any(tap.traced for tap in self._taps):
            return
        never = [tap.module_ref() for tap in self._taps if tap.calls == 0]
        if never:
            names = {id(module): name for name, module in self.model.named_modules()}
            unseen = sorted({names.get(id(module), "?") for module in never})
            raise ValueError(
                f"{type(self).__name__}: layers {unseen} never ran while the rest of the model "
                "ran compiled; torch.compile does not run hooks added after a model's first "
                "compiled call: attach metrics before compiling, or call torch._dynamo.reset() "
                "after attaching them (a layer the model never calls cannot be watched either)"
            )

    def discard_pending(self) -> None:
        """Forget what the hooks counted since the last ``update()``.

        Use it to leave forward passes out of the figures, e.g. those of a validation
        loop that runs between two training updates. ``reset()`` does it too.
        """
        with LOCK, reading():
            self._open_window()
            self._skip()

    def reset(self) -> None:
        """Reset the state, and forget the forward passes not yet folded."""
        super().reset()
        if self._taps and not self._forwarding:
            self.discard_pending()

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Fold the pending forward passes as one batch (as :meth:`update`, with the same
        arguments) and return that batch's figures.

        If the batch's figures cannot be computed, the error is raised and the state
        keeps everything accumulated before (and the batch itself if it was folded).
        """
        if self._is_synced:
            raise TorchMetricsUserError(
                "The Metric shouldn't be synced when performing ``forward``. HINT: Did you "
                "forget to call ``unsync`` ?."
            )
        accumulated, update_count = self._copy_state_dict(), self._update_count
        compute_on_cpu = self.compute_on_cpu
        self._forwarding = True  # the reset below keeps the pending forward passes
        try:
            self.reset()
        finally:
            self._forwarding = False
        self._to_sync, self._should_unsync = self.dist_sync_on_step, False
        self.compute_on_cpu, self._enable_grad = False, True
        folded = False
        try:
            self.update(*args, **kwargs)
            folded = True
            self._forward_cache = self.compute()
        finally:
            if folded:
                self._update_count = update_count + 1
                with torch.no_grad():
                    self._reduce_states(accumulated)
            else:
                for name, value in accumulated.items():
                    setattr(self, name, value)
                self._update_count = update_count
            self._is_synced, self._should_unsync = False, True
            self._to_sync, self._computed = self.sync_on_compute, None
            self._enable_grad, self.compute_on_cpu = False, compute_on_cpu
        return self._forward_cache

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
        """The number of samples as float64 (0 before any update: figures are NaN)."""
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

    def plot(self, val: Any = None, ax: Axes | None = None) -> tuple[Figure, Axes]:
        """Draw the figures, with each layer's type under its name (needs matplotlib).

        Args:
            val: ``None`` for per-layer bars of the figures now; a result of
                ``compute()`` or ``compute_per_layer()`` for its bars; a list of results
                (one per epoch, say) for one line per figure over the list.
            ax: axes to draw into; a new figure is made if ``None``.

        Returns:
            ``(fig, ax)``, as torchmetrics' ``Metric.plot``.
        """
        if val is None:
            per_layer = getattr(self, "compute_per_layer", None)
            val = per_layer() if per_layer is not None else self.compute()
        return plot_result(
            val, ax=ax, layer_types=self.layer_types(), title=type(self).__name__, ylabel=self._unit
        )

    def layer_types(self) -> dict[str, str]:
        """The type name of each watched layer, by layer name (``{"0": "Linear"}``)."""
        return {name: type(self.model.get_submodule(name)).__name__ for name in self.layer_names}

    def detach(self) -> None:
        """Remove this metric's hooks (a hook shared with other metrics stays for them)."""
        with LOCK:
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

    # --- copies ------------------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        """The state to pickle: everything but what is bound to the taps."""
        state = super().__getstate__()
        for name in ("_window", "_taps", "_calls_at_update", *self._transient):
            state.pop(name, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore a pickled metric and attach it to its (unpickled) model."""
        super().__setstate__(state)
        self._open_fresh()
        with LOCK:
            self._attach()

    def __deepcopy__(self, memo: dict[int, Any]) -> HookedMetric:
        """A copy with its own state and window, watching the same model, or the copy of
        the model if the same ``deepcopy`` copied it first."""
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        state = self.__getstate__()
        model = state.pop("_watched")
        state = copy.deepcopy(state, memo)
        state["_watched"] = memo.get(id(model), model)
        new.__setstate__(state)
        return new
