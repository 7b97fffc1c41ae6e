"""Taps that count synaptic operations as they happen rather than from a fanout map: of
layers counted call by call (:class:`~snnmetrics.connections.CallRule`), and of the
products of activations inside a module (:class:`~snnmetrics.connections.ProductRule`)."""

from __future__ import annotations

import contextlib
import inspect
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from snnmetrics.connections import (
    CallCount,
    CallRule,
    ConnectionRule,
    ProductRule,
    connection_rule,
)
from snnmetrics.functional.attention import ProductCount, product_operations
from snnmetrics.tracking.connection import WIDTH, ConnectionTap, ConnectionTotals
from snnmetrics.tracking.hub import LOCK, Tap, acquire

__all__ = ["CallTap", "ProductTap", "acquire_connection_tap"]


RuleKind = TypeVar("RuleKind", CallRule, ProductRule)


def _rule(module: nn.Module, kind: type[RuleKind]) -> RuleKind:
    """The rule ``module`` is registered with, if it is a ``kind``; else a ``TypeError``."""
    rule = connection_rule(module)
    if not isinstance(rule, kind):
        raise TypeError(f"{type(module).__name__} has no {kind.__name__}")
    return rule


class _CountingTap(Tap):
    """Adds counts of synaptic operations to cumulative device counters, as
    :class:`ConnectionTap` keeps them, so that a metric reads both alike (:meth:`totals`).

    The dense count is kept on the host while counts give it as an ``int`` and on the
    device once one gives a tensor (NeuroBench's LSTM rule, whose dense count depends on
    the state).
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__(module)
        self.want_structural = False
        self._counts: Tensor | None = None  # as ConnectionTotals.counts
        self._dense = 0
        self._dense_device: Tensor | None = None
        # traced counts since the last read: float64 [effective, in MAC, structural,
        # structural in MAC, dense]
        self._traced_counts: Tensor | None = None

    def _add(self, count: CallCount | ProductCount, structural: CallCount | ProductCount) -> None:
        """Add one count, and the same with every weight nonzero (``structural``); a NaN
        count (NaN input) goes to the non-finite entry instead."""
        device = count.effective.device
        self._counts_on(device)
        assert self._counts is not None
        both = torch.stack((count.effective, count[1], structural.effective, structural[1]))
        nan = torch.isnan(both)
        self._counts[4] += nan[:2].any()
        self._counts[:4] += both.masked_fill_(nan, 0)
        dense = count.dense
        if isinstance(dense, Tensor):
            if self._dense_device is None:
                with torch.inference_mode(False):
                    self._dense_device = torch.zeros((), dtype=torch.float64, device=device)
            self._dense_device += dense.detach().to(self._dense_device.device, torch.float64)
        else:
            self._dense += dense

    def _counts_on(self, device: torch.device) -> None:
        """Make the totals on ``device`` (a normal tensor even in inference mode)."""
        if self._counts is None or self._counts.device != device:
            with torch.inference_mode(False):
                old = self._counts
                self._counts = torch.zeros(WIDTH, dtype=torch.float64, device=device)
                if old is not None:  # the model moved
                    self._counts += old.to(device)

    def _traced_add(
        self, count: CallCount | ProductCount, structural: CallCount | ProductCount
    ) -> None:
        """:meth:`_add` for traced code (``dense`` an ``int``)."""
        traced = self._traced_counts
        device = count.effective.device
        if traced is None:  # (made in the graph; a model that moves is folded at a read)
            traced = torch.zeros(WIDTH, dtype=torch.float64, device=device)
            self._traced_counts = traced
        dense = torch.full((), float(count.dense), dtype=torch.float64, device=device)
        values = torch.stack((count[0], count[1], structural[0], structural[1], dense))
        traced.add_(values.to(traced.device))

    def _flush_traced(self) -> None:
        """Fold the traced counts into the totals, NaN counted apart."""
        traced = self._traced_counts
        if traced is None:
            return
        values = traced.clone()
        traced.zero_()
        self._counts_on(values.device)
        assert self._counts is not None
        nan = torch.isnan(values[:4])
        self._counts[4] += nan[:2].any()
        self._counts[:4] += values[:4].masked_fill(nan, 0)
        self._dense += int(values[4])

    def totals(self) -> ConnectionTotals:
        """The cumulative totals (a copy, safe to keep as a snapshot)."""
        self._flush_traced()
        counts = torch.zeros(WIDTH, dtype=torch.float64) if self._counts is None else self._counts
        if self._dense_device is None:
            return ConnectionTotals(counts.clone(), self._dense)
        return ConnectionTotals(counts.clone(), self._dense_device + self._dense)


class CallTap(_CountingTap):
    """Counts the synaptic operations of every call of a layer with a :class:`CallRule`."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__(module)
        self.rule = _rule(module, CallRule)
        self._signature: inspect.Signature | None = None
        with contextlib.suppress(TypeError, ValueError):  # (a forward without a signature)
            self._signature = inspect.signature(module.forward)
        variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        # the parameters by position and their defaults, for binding keyword calls in
        # plain Python that torch.compile traces (Signature.bind breaks the graph)
        self._parameters: tuple[tuple[str, ...], dict[str, Any]] | None = None
        if self._signature is not None and all(
            p.kind not in variadic for p in self._signature.parameters.values()
        ):
            self._parameters = (
                tuple(self._signature.parameters),
                {
                    name: p.default
                    for name, p in self._signature.parameters.items()
                    if p.default is not inspect.Parameter.empty
                },
            )
        self._cache: dict[Any, Any] = {}  # the rule's, emptied at every update
        traced = self._traced_hook if self.rule.traceable else None
        self._add_hook(module.register_forward_pre_hook, self._hook, traced, with_kwargs=True)

    def _positional(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        """The call's arguments by position, defaults filled in (e.g. ``cell(x, hx=state)``:
        the rule reads positions)."""
        if not kwargs:
            return args
        if self._parameters is not None:
            names, defaults = self._parameters
            rest = names[len(args) :]
            if (
                len(args) <= len(names)
                and all(name in rest for name in kwargs)
                and all(name in kwargs or name in defaults for name in rest)
            ):
                return args + tuple(kwargs.get(name, defaults.get(name)) for name in rest)
        if self._signature is None:
            module = self.module_ref()
            raise TypeError(
                f"{type(module).__name__} was called with keyword arguments, and its "
                "forward has no signature to place them by: call it with positional "
                "arguments to be counted"
            )
        bound = self._signature.bind(*args, **kwargs)  # (a TypeError if the call is wrong)
        bound.apply_defaults()
        return tuple(bound.arguments.values())

    def _count(
        self,
        module: nn.Module,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        cache: dict[Any, Any],
    ) -> tuple[CallCount, CallCount] | None:
        """The call's count and its count with every weight nonzero (the same count
        unless a subscriber wants structural counts); ``None`` for no call (the layer
        rejects this input itself, or an empty batch)."""
        args = self._positional(args, kwargs)
        count = self.rule.count(module, args, True, cache)
        if count is None or count.samples == 0:
            return None
        if not self.want_structural:
            return count, count
        return count, self.rule.count(module, args, False, cache) or count

    def _hook(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        counts = self._count(module, args, kwargs, self._cache)
        if counts is not None:
            self._note_call(counts[0].samples)
            self._add(*counts)

    def _traced_hook(
        self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        """:meth:`_hook` as ``torch.compile`` traces it, for a traceable rule (which
        gets no cache there)."""
        counts = self._count(module, args, kwargs, {})
        if counts is not None:
            self._trace_call(counts[0].samples, counts[0].effective.device)
            self._traced_add(*counts)

    def totals(self) -> ConnectionTotals:
        """The cumulative totals; empties the rule's cache (a new window starts)."""
        self._cache.clear()
        return super().totals()


# --- products of activations --------------------------------------------------------------


class _Active(threading.local):
    """The product taps whose module runs now in this thread, innermost last."""

    def __init__(self) -> None:
        self.taps: list[ProductTap] = []


_active = _Active()
_traced_active: list[ProductTap] = []  # the same while torch.compile traces


def _is_activation(x: object) -> bool:
    """Whether ``x`` is a tensor but not a parameter or a view of one."""
    weight = isinstance(x, nn.Parameter) or isinstance(getattr(x, "_base", None), nn.Parameter)
    return isinstance(x, Tensor) and not weight


def _pair(first: int, second: int) -> Callable[..., list[tuple[Any, Any]]]:
    def operands(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[tuple[Any, Any]]:
        return [(args[first], args[second])]

    return operands


def _attention_operands(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[tuple[Any, Any]]:
    """The two products of ``F.scaled_dot_product_attention``: the scaled queries with the
    keys, and the attention weights (recomputed, without dropout) with the values."""
    names = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale")
    given = {**dict(zip(names, args, strict=False)), **kwargs}
    query, key, value = given["query"], given["key"], given["value"]
    if kwargs.get("enable_gqa") and key.shape[-3] != query.shape[-3]:
        repeat = query.shape[-3] // key.shape[-3]
        key, value = key.repeat_interleave(repeat, -3), value.repeat_interleave(repeat, -3)
    scale = given.get("scale") or query.shape[-1] ** -0.5
    scores = (query * scale) @ key.transpose(-2, -1)
    mask = given.get("attn_mask")
    if given.get("is_causal"):
        mask = torch.ones(scores.shape[-2:], dtype=torch.bool, device=scores.device).tril()
    if mask is not None and mask.dtype == torch.bool:
        scores = scores.masked_fill(~mask, float("-inf"))
    elif mask is not None:
        scores = scores + mask
    return [(query * scale, key.transpose(-2, -1)), (scores.softmax(-1), value)]


# torch function -> the operand pairs of the products it computes
_PRODUCTS: dict[Any, Callable[..., list[tuple[Any, Any]]]] = {
    **dict.fromkeys(
        (torch.matmul, Tensor.matmul, Tensor.__matmul__, torch.mm, Tensor.mm, torch.bmm,
         Tensor.bmm),
        _pair(0, 1),
    ),
    Tensor.__rmatmul__: _pair(1, 0),
    **dict.fromkeys((torch.baddbmm, Tensor.baddbmm, torch.addmm, Tensor.addmm), _pair(1, 2)),
    F.scaled_dot_product_attention: _attention_operands,
}


class _ProductMode(TorchFunctionMode):
    """Passes every torch function on, and counts the products of activations among
    them for the innermost running product tap."""

    def __init__(self, tap: ProductTap) -> None:
        super().__init__()
        self.tap = tap

    def __torch_function__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> Any:
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        operands = _PRODUCTS.get(func)
        if operands is None:
            return result
        if torch.compiler.is_compiling():
            if _traced_active and _traced_active[-1] is self.tap:
                for a, b in operands(args, kwargs):
                    if _is_activation(a) and _is_activation(b):
                        count = product_operations(a, b)
                        self.tap._traced_add(count, count)
        elif _active.taps and _active.taps[-1] is self.tap:
            with torch.no_grad(), LOCK:
                for a, b in operands(args, kwargs):
                    if _is_activation(a) and _is_activation(b):
                        count = product_operations(a, b)
                        self.tap._add(count, count)
        return result


class ProductTap(_CountingTap):
    """Counts the products of activations computed while a module with a
    :class:`ProductRule` runs (a torch function mode between its pre- and post-hook)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__(module)
        self.rule = _rule(module, ProductRule)
        self._modes: dict[int, list[_ProductMode]] = {}  # entered, by thread
        self._traced_modes: list[_ProductMode] = []
        self._add_hook(
            module.register_forward_pre_hook, self._enter, self._traced_enter, with_kwargs=True
        )
        self._add_hook(
            module.register_forward_hook,
            self._leave,
            self._traced_leave,
            with_kwargs=True,
            always_call=True,
        )

    def _samples(
        self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[int, torch.device]:
        """The batch size of a call, and the device of its first tensor argument."""
        first = next((x for x in (*args, *kwargs.values()) if isinstance(x, Tensor)), None)
        device = torch.device("cpu") if first is None else first.device
        if self.rule.samples is not None:
            return self.rule.samples(module, args, kwargs), device
        return (first.shape[0] if first is not None and first.ndim else 1), device

    def _enter(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        samples, _ = self._samples(module, args, kwargs)
        mode = _ProductMode(self)
        mode.__enter__()
        self._modes.setdefault(threading.get_ident(), []).append(mode)
        _active.taps.append(self)
        if samples:
            self._note_call(samples)

    def _leave(self, module: nn.Module, *_: Any) -> None:
        modes = self._modes.get(threading.get_ident())
        if modes:  # (not if the forward began while the tap was made)
            modes.pop().__exit__(None, None, None)
            _active.taps.pop()

    def _traced_enter(
        self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        samples, device = self._samples(module, args, kwargs)
        mode = _ProductMode(self)
        mode.__enter__()
        self._traced_modes.append(mode)
        _traced_active.append(self)
        if samples:
            self._trace_call(samples, device)

    def _traced_leave(self, module: nn.Module, *_: Any) -> None:
        if self._traced_modes:
            self._traced_modes.pop().__exit__(None, None, None)
            _traced_active.pop()


_TAP_KINDS: dict[type, type[ConnectionTap] | type[CallTap] | type[ProductTap]] = {
    ConnectionRule: ConnectionTap,
    CallRule: CallTap,
    ProductRule: ProductTap,
}


def acquire_connection_tap(module: nn.Module) -> ConnectionTap | CallTap | ProductTap:
    """The tap that counts ``module`` by its rule's kind (see :func:`acquire`)."""
    rule = connection_rule(module)
    if rule is None:
        raise TypeError(f"{type(module).__name__} is not a registered connection layer")
    return acquire(module, _TAP_KINDS[type(rule)])
