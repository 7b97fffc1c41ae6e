"""Registry of connection layers: how the synaptic operations of each layer type are counted.

A connection layer is a module whose weights connect presynaptic input elements to
postsynaptic outputs (``nn.Linear``, ``nn.Conv1d/2d/3d``, ``nn.ConvTranspose1d/2d/3d``,
recurrent cells, attention, ...). For each layer type the registry holds one rule, of one
of three kinds:

* a :class:`ConnectionRule` for layers that are linear in their input. It says how many
  leading input dimensions are *rows* (batch, time) rather than features, and how to run
  the layer with a substitute weight, which is all that is needed to derive the exact
  per-input-element fanout by automatic differentiation. Counting a call is then one
  elementwise pass over the input.
* a :class:`CallRule` for layers whose count depends on more than the nonzero pattern of
  one input, such as recurrent cells, whose NeuroBench count includes gate products that
  depend on the hidden state. Its function counts one call from the call's arguments.
* a :class:`ProductRule` for modules that multiply two activations in their forward
  (attention): every such product is counted as the module runs.

Adding a layer type is one :func:`register_connection` call; nothing else changes. The
recurrent cells and layers of ``torch.nn`` are registered by :mod:`snnmetrics.recurrent`,
``nn.MultiheadAttention`` by :mod:`snnmetrics.attention`.
Entries for layers of optional frameworks (spikingjelly, norse) are registered the first
time a rule is looked up after the user imported that framework, so importing snnmetrics
never imports one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

import torch
from torch import Tensor, nn

from snnmetrics.registry import TypeRegistry

__all__ = [
    "CallCount",
    "CallRule",
    "ConnectionRule",
    "ProductRule",
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


class CallCount(NamedTuple):
    """The synaptic operations of one layer call, as a :class:`CallRule` counts them.

    Attributes:
        effective: operations of the call (0-d float64 tensor on the input's device).
        in_mac_calls: the part of ``effective`` done in MAC calls (a call whose input
            holds a value outside {-1, 0, 1}); the rest are ACs.
        dense: operations the call would do with every input and weight nonzero: a host
            ``int`` when it depends on shapes only, else a 0-d tensor.
        samples: the number of samples the call carries (its batch size).
    """

    effective: Tensor
    in_mac_calls: Tensor
    dense: Tensor | int
    samples: int


@dataclass(frozen=True)
class CallRule:
    """Counts the synaptic operations of one layer type call by call.

    For layers that a fanout map cannot describe (recurrent cells and layers). The count
    runs in a forward pre-hook, so it must use device tensor operations only: no
    ``.item()``, no ``.cpu()`` and no Python branching on tensor values.

    Attributes:
        count: ``count(layer, args, skip_zero_weights, cache)`` returns the
            :class:`CallCount` of the call ``layer(*args)`` (keyword arguments are bound
            to positions first), or ``None`` if the layer will reject ``args`` anyway.
            With ``skip_zero_weights=False`` every weight counts as nonzero. ``cache`` is
            a dict the tap keeps for the layer and empties at every update: a rule may
            keep what it derives from the weights there (keyed by their version), so
            that weight edits autograd does not see are followed once per update, as a
            :class:`ConnectionRule`'s fanout is.
    """

    count: Callable[[nn.Module, tuple[object, ...], bool, dict[Any, Any]], CallCount | None]
    counts_submodules: bool = False
    """Whether ``count`` includes what the layer's submodules do (``nn.MultiheadAttention``
    applies its ``out_proj`` functionally): they are then not counted on their own."""
    traceable: bool = False
    """Whether ``torch.compile`` may trace ``count`` into the model's graph: it then gets
    an empty ``cache`` at every call and must give ``dense`` as an ``int``. Otherwise the
    count runs eagerly, at a graph break."""


@dataclass(frozen=True)
class ProductRule:
    """Counts the products of two activations computed inside a module's ``forward``.

    For modules that multiply activations with each other, such as a spiking
    self-attention written with ``@``: while the module runs, every ``a @ b``,
    ``torch.matmul``, ``torch.mm``, ``torch.bmm``, ``torch.baddbmm`` and ``torch.addmm``
    (the product part) and ``F.scaled_dot_product_attention`` (its two products) whose
    operands are not parameters is counted with
    :func:`~snnmetrics.functional.attention.product_operations`. Products with a
    parameter (or a view of one) are left to the layers that own it, which are counted on
    their own, as are the module's submodules (a product module nested inside another
    is counted by the inner one). ``torch.einsum`` and products computed in a
    TorchScript or C++ function the module calls are not seen.

    Attributes:
        samples: ``samples(module, args, kwargs)`` returns the batch size of a call;
            ``None``: dim 0 of its first tensor argument.
    """

    samples: Callable[[nn.Module, tuple[Any, ...], dict[str, Any]], int] | None = None


Rule = ConnectionRule | CallRule | ProductRule

REGISTRY: TypeRegistry[Rule] = TypeRegistry()


def register_connection(layer_type: type[nn.Module], rule: Rule) -> None:
    """Register (or replace) the counting rule of a connection layer type.

    Subclasses of ``layer_type`` use the rule too unless they have their own.
    """
    if not isinstance(rule, (ConnectionRule, CallRule, ProductRule)):
        raise TypeError(
            f"rule must be a ConnectionRule, CallRule or ProductRule, got {type(rule).__name__}"
        )
    REGISTRY.register(layer_type, rule)


def connection_rule(layer: nn.Module) -> Rule | None:
    """The rule for ``layer`` (nearest registered base class), or ``None``."""
    return REGISTRY.lookup(layer)


def _apply_linear(layer: nn.Module, x: Tensor, weight: Tensor) -> Tensor:
    return torch.nn.functional.linear(x, weight)


def _apply_conv(layer: nn.Module, x: Tensor, weight: Tensor) -> Tensor:
    # _conv_forward honours padding modes ("reflect", "circular", ...) and "same".
    return layer._conv_forward(x, weight, None)  # type: ignore[operator]


_CONV_TRANSPOSE = {
    1: torch.nn.functional.conv_transpose1d,
    2: torch.nn.functional.conv_transpose2d,
    3: torch.nn.functional.conv_transpose3d,
}


def _apply_conv_transpose(layer: nn.Module, x: Tensor, weight: Tensor) -> Tensor:
    # The module's own output_padding; a call with output_size= is counted as if it used it.
    conv = cast(nn.modules.conv._ConvTransposeNd, layer)
    return _CONV_TRANSPOSE[weight.ndim - 2](
        x,
        weight,
        None,
        conv.stride,
        cast(tuple[int, ...], conv.padding),
        conv.output_padding,
        conv.groups,
        conv.dilation,
    )


def _conv_feature_dims(layer: nn.Module) -> int:
    return cast(Tensor, layer.weight).ndim - 1  # channels + spatial dims


_LINEAR = ConnectionRule(feature_dims=lambda layer: 1, apply=_apply_linear)

register_connection(nn.Linear, _LINEAR)
for _conv in (nn.Conv1d, nn.Conv2d, nn.Conv3d):
    register_connection(_conv, ConnectionRule(feature_dims=_conv_feature_dims, apply=_apply_conv))
for _transposed in (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d):
    register_connection(
        _transposed, ConnectionRule(feature_dims=_conv_feature_dims, apply=_apply_conv_transpose)
    )


# ----------------------------------------------------------------------------- frameworks


# norse's LILinearCell integrates input_weights @ x: a Linear with that weight
_INPUT_WEIGHTS_LINEAR = ConnectionRule(
    feature_dims=lambda layer: 1,
    apply=_apply_linear,
    weight=lambda layer: cast(Tensor, layer.input_weights),
)

# framework module -> registers its entries (a user's own entry for a type is kept);
# each runs once, when its module is first seen imported.
# spikingjelly's other layers subclass torch's Linear/ConvNd/ConvTransposeNd and are
# covered; DropConnectLinear holds a Linear's weight without subclassing nn.Linear and is
# counted as that Linear (its per-sample dropped weights in training are not seen).
REGISTRY.add_frameworks(
    {
        "spikingjelly.activation_based.layer": lambda module: REGISTRY.register_from(
            module, "DropConnectLinear", _LINEAR
        ),
        "norse.torch.module.snn": lambda module: REGISTRY.register_from(
            module, "SNNRecurrentCell", _recurrent.NORSE_RECURRENT_CELL
        ),
        "norse.torch.module.leaky_integrator": lambda module: REGISTRY.register_from(
            module, "LILinearCell", _INPUT_WEIGHTS_LINEAR
        ),
    }
)

# Register the recurrent cells and layers of torch.nn (and hold norse's rule) and
# nn.MultiheadAttention (CallRules); imported last because they build on the types above.
from snnmetrics import attention as _attention  # noqa: E402, F401
from snnmetrics import recurrent as _recurrent  # noqa: E402
