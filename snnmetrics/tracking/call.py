"""The tap on layers counted call by call (:class:`~snnmetrics.connections.CallRule`)."""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import Tensor, nn

from snnmetrics.connections import CallRule, ConnectionRule, connection_rule
from snnmetrics.tracking.connection import ConnectionTap, ConnectionTotals
from snnmetrics.tracking.hub import Tap, acquire

__all__ = ["CallTap", "acquire_connection_tap"]


class CallTap(Tap):
    """Counts the synaptic operations of every call of a layer with a :class:`CallRule`.

    Exposes the same :meth:`totals` as :class:`ConnectionTap`, so a metric reads both
    alike. Each call adds its counts to cumulative device counters; the dense count is
    kept on the host while the rule gives it as an ``int`` and on the device once a call
    gives a tensor (NeuroBench's LSTM rule, whose dense count depends on the state).
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__(module)
        rule = connection_rule(module)
        if not isinstance(rule, CallRule):
            raise TypeError(f"{type(module).__name__} has no CallRule")
        self.rule = rule
        self.want_structural = False
        self._counts: Tensor | None = None  # [effective, in MAC calls, structural, in MAC]
        self._dense = 0
        self._dense_device: Tensor | None = None
        self._signature: inspect.Signature | None = None
        self._cache: dict[Any, Any] = {}  # the rule's, emptied at every update
        self._add_hook(module.register_forward_pre_hook, self._hook, with_kwargs=True)

    def _hook(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if kwargs:  # e.g. cell(x, hx=state): the rule reads positions
            if self._signature is None:
                self._signature = inspect.signature(module.forward)
            args = tuple(self._signature.bind(*args, **kwargs).arguments.values())
        count = self.rule.count(module, args, True, self._cache)
        if count is None:
            return  # the layer rejects this input itself
        self._note_call(count.samples)
        device = count.effective.device
        if self._counts is None or self._counts.device != device:
            with torch.inference_mode(False):  # a normal tensor even in inference mode
                old = self._counts
                self._counts = torch.zeros(4, dtype=torch.float64, device=device)
                if old is not None:  # the model moved
                    self._counts += old.to(device)
        self._counts[0:2] += torch.stack((count.effective, count.in_mac_calls))
        if self.want_structural:
            structural = self.rule.count(module, args, False, self._cache)
            assert structural is not None
            self._counts[2:4] += torch.stack((structural.effective, structural.in_mac_calls))
        if isinstance(count.dense, Tensor):
            dense = count.dense.detach().to(torch.float64)
            if self._dense_device is None:
                with torch.inference_mode(False):
                    self._dense_device = torch.zeros((), dtype=torch.float64, device=device)
            self._dense_device += dense.to(self._dense_device.device)
        else:
            self._dense += count.dense

    def totals(self) -> ConnectionTotals:
        """The cumulative totals (a copy, safe to keep as a snapshot); starts a new window."""
        self._cache.clear()
        counts = torch.zeros(4, dtype=torch.float64) if self._counts is None else self._counts
        if self._dense_device is None:
            return ConnectionTotals(counts.clone(), self._dense)
        return ConnectionTotals(counts.clone(), self._dense_device + self._dense)


_TAP_KINDS: dict[type, type[ConnectionTap] | type[CallTap]] = {
    ConnectionRule: ConnectionTap,
    CallRule: CallTap,
}


def acquire_connection_tap(module: nn.Module) -> ConnectionTap | CallTap:
    """The tap that counts ``module`` by its rule's kind (see :func:`acquire`)."""
    rule = connection_rule(module)
    if rule is None:
        raise TypeError(f"{type(module).__name__} is not a registered connection layer")
    return acquire(module, _TAP_KINDS[type(rule)])
