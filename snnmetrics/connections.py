"""Registry of connection layers: how each layer type maps inputs to synapses.

A connection layer is a module whose weights connect presynaptic input elements to
postsynaptic outputs (``nn.Linear``, ``nn.Conv1d/2d/3d``, ...). For each layer type the
registry holds one :class:`ConnectionRule` that says

* how many leading input dimensions are *rows* (batch, time) rather than features,
* how to run the layer with a substitute weight, which is all that is needed to derive
  the exact per-input-element fanout by automatic differentiation.

Adding a layer type is one :func:`register_connection` call; nothing else changes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import torch
from torch import Tensor, nn

__all__ = [
    "ConnectionRule",
    "connection_rule",
    "register_connection",
]


@dataclass(frozen=True)
class ConnectionRule:
    """How synaptic operations of one layer type are counted.

    Attributes:
        feature_dims: number of trailing input dimensions that index one presynaptic
            element of a sample (1 for ``Linear``, ``N + 1`` for ``ConvNd``). Every
            dimension before them is a row dimension (batch, time) summed over.
        apply: ``apply(layer, x, weight)`` runs the layer on ``x`` with ``weight`` in
            place of its own, without bias. It must be linear in ``x``; the gradient of
            the sum of its output with respect to ``x`` is then the fanout of every
            input element.
        weight: returns the tensor whose nonzero pattern defines the synapses.
    """

    feature_dims: Callable[[nn.Module], int]
    apply: Callable[[nn.Module, Tensor, Tensor], Tensor]
    weight: Callable[[nn.Module], Tensor] = lambda layer: cast(Tensor, layer.weight)


_RULES: dict[type[nn.Module], ConnectionRule] = {}


def register_connection(layer_type: type[nn.Module], rule: ConnectionRule) -> None:
    """Register (or replace) the counting rule of a connection layer type.

    Subclasses of ``layer_type`` use the rule too unless they have their own.
    """
    if not (isinstance(layer_type, type) and issubclass(layer_type, nn.Module)):
        raise TypeError(f"layer_type must be an nn.Module subclass, got {layer_type!r}")
    if not isinstance(rule, ConnectionRule):
        raise TypeError(f"rule must be a ConnectionRule, got {type(rule).__name__}")
    _RULES[layer_type] = rule


def connection_rule(layer: nn.Module) -> ConnectionRule | None:
    """The rule for ``layer`` (nearest registered base class), or ``None``."""
    for cls in type(layer).__mro__:
        rule = _RULES.get(cls)
        if rule is not None:
            return rule
    return None


def _apply_linear(layer: nn.Module, x: Tensor, weight: Tensor) -> Tensor:
    return torch.nn.functional.linear(x, weight)


def _apply_conv(layer: nn.Module, x: Tensor, weight: Tensor) -> Tensor:
    # _conv_forward honours padding modes ("reflect", "circular", ...) and "same".
    return layer._conv_forward(x, weight, None)  # type: ignore[operator]


def _conv_feature_dims(layer: nn.Module) -> int:
    return cast(Tensor, layer.weight).ndim - 1  # channels + spatial dims


register_connection(nn.Linear, ConnectionRule(feature_dims=lambda layer: 1, apply=_apply_linear))
for _conv in (nn.Conv1d, nn.Conv2d, nn.Conv3d):
    register_connection(_conv, ConnectionRule(feature_dims=_conv_feature_dims, apply=_apply_conv))
