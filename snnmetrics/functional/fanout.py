"""Exact per-input-element fanout of connection layers."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn

from snnmetrics.connections import ConnectionRule, connection_rule

__all__ = ["fanout", "fanout_map", "own_autograd", "require_rule"]


@contextlib.contextmanager
def own_autograd() -> Iterator[None]:
    """Autograd for a derivation of our own inside a hook, in any mode the model runs in:
    grad enabled, out of inference mode, and with tensors saved as they are rather than
    through the caller's saved-tensor hooks (activation checkpointing's, which would take
    the derivation for part of the checkpointed forward)."""
    with (
        torch.inference_mode(False),
        torch.enable_grad(),
        torch.autograd.graph.saved_tensors_hooks(_same, _same),
    ):
        yield


def _same(x: Tensor) -> Tensor:
    return x


def require_rule(layer: nn.Module) -> ConnectionRule:
    """The connection rule of ``layer``; a ``TypeError`` naming the type if it has none."""
    rule = connection_rule(layer)
    if rule is None:
        raise TypeError(
            f"{type(layer).__name__} is not a registered connection layer; register it with "
            "snnmetrics.connections.register_connection(LayerType, ConnectionRule(...))"
        )
    if not isinstance(rule, ConnectionRule):
        raise TypeError(
            f"{type(layer).__name__} is counted call by call (its operations depend on its "
            "state), so it has no fanout map"
        )
    return rule


def fanout_map(
    layer: nn.Module,
    rule: ConnectionRule,
    feature_shape: torch.Size,
    skip_zero_weights: bool,
    device: torch.device | str | None = None,
) -> Tensor:
    """Fanout of every presynaptic element of one sample, as float64.

    The map is computed on ``device`` (default: the weight's device). The structural map
    (``skip_zero_weights=False``) depends on shapes only, never on weight values.

    Element ``i`` of the result is the number of (weight, output) pairs that read input
    element ``i``: the gradient of ``sum(layer(x; mask))`` with respect to ``x``, where
    ``mask`` is the nonzero pattern of the weight (or all ones). Padded positions are not
    input elements, so taps that read padding are never counted; padding modes that copy
    real inputs ("reflect", "circular") count those reads on the elements copied.
    """
    weight = rule.weight(layer).detach()
    device = weight.device if device is None else torch.device(device)
    if skip_zero_weights:
        mask = (weight != 0).to(device)
    else:
        mask = torch.ones(weight.shape, dtype=torch.bool, device=device)
    with own_autograd():
        x = torch.ones((1, *feature_shape), dtype=torch.float64, device=device)
        x.requires_grad_(True)
        out = rule.apply(layer, x, mask.to(torch.float64))
        (grad,) = torch.autograd.grad(out.sum(), x)
    return grad[0].detach()


def fanout(
    layer: nn.Module, input_shape: Sequence[int], *, skip_zero_weights: bool = False
) -> Tensor:
    """Structural fanout map of a connection layer for inputs of ``input_shape``.

    Args:
        layer: a registered connection layer with a fanout map (``nn.Linear``,
            ``nn.Conv1d/2d/3d``, ``nn.ConvTranspose1d/2d/3d``, ...; not a recurrent cell).
        input_shape: the shape of the layer's input, with or without leading batch/time
            dimensions (for a ``Conv2d``: ``(C, H, W)`` or ``(B, C, H, W)``).
        skip_zero_weights: count only synapses whose weight is nonzero (NeuroBench's
            effective count) instead of every structural connection.

    Returns:
        An int64 tensor with the shape of one sample's features (``(in_features,)`` for
        ``Linear``, ``(C, *spatial)`` for ``ConvNd``): how many synaptic operations one
        nonzero value at each input position causes. Stride, padding (including
        ``"same"``/``"valid"`` and non-zero padding modes), dilation and groups are honoured.

    Example:
        >>> import torch
        >>> from snnmetrics.functional import fanout
        >>> conv = torch.nn.Conv1d(1, 1, kernel_size=3, padding=1)
        >>> fanout(conv, (1, 5))
        tensor([[2, 3, 3, 3, 2]])
    """
    rule = require_rule(layer)
    n_features = rule.feature_dims(layer)
    shape = tuple(int(s) for s in input_shape)
    if len(shape) < n_features or any(s <= 0 for s in shape):
        raise ValueError(
            f"input_shape must hold at least {n_features} positive sizes for "
            f"{type(layer).__name__}, got {tuple(input_shape)}"
        )
    feature_shape = torch.Size(shape[len(shape) - n_features :])
    return fanout_map(layer, rule, feature_shape, skip_zero_weights).round().to(torch.int64)
