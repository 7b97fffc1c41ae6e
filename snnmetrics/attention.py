"""Synaptic operations of ``nn.MultiheadAttention``, counted call by call.

One call counts its query, key, value and output projections as connection layers (each
nonzero input element times the nonzero weights it meets) and, for every head, the two
products of activations: the scaled queries with the keys and the attention weights
with the values (:mod:`snnmetrics.functional.attention`). Each part is an AC or a MAC
part by its own operands; dense counts every pair. The attention weights are recomputed
with the call's masks and without dropout, so a call costs about one more attention
pass, and attention dropout in training is not seen. The ``out_proj`` submodule, which
the layer applies functionally, is part of the count and not counted on its own.

Attention written by hand (``q @ k.transpose(-2, -1)``) is counted by registering the
module that computes it with a :class:`~snnmetrics.connections.ProductRule`.
"""

from __future__ import annotations

import inspect
from typing import Any, cast

from torch import Tensor, nn

from snnmetrics.connections import CallCount, CallRule, register_connection
from snnmetrics.functional.attention import multihead_attention_operations

__all__ = ["MULTIHEAD_ATTENTION"]

_OPTIONS = list(inspect.signature(nn.MultiheadAttention.forward).parameters)[4:]


def _count(
    layer: nn.Module, args: tuple[object, ...], skip_zero_weights: bool, cache: dict[Any, Any]
) -> CallCount | None:
    if len(args) < 3 or not all(isinstance(t, Tensor) for t in args[:3]):
        return None  # the layer rejects the call itself
    query, key, value = cast(tuple[Tensor, Tensor, Tensor], args[:3])
    mha = cast(nn.MultiheadAttention, layer)
    options = dict(zip(_OPTIONS, args[3:], strict=False))
    count = multihead_attention_operations(
        mha, query, key, value, skip_zero_weights, **options
    )
    batch_dim = 0 if mha.batch_first else 1
    samples = query.shape[batch_dim] if query.dim() == 3 else 1
    return CallCount(count.effective, count.in_mac, count.dense, samples)


MULTIHEAD_ATTENTION = CallRule(count=_count, counts_submodules=True, traceable=True)

register_connection(nn.MultiheadAttention, MULTIHEAD_ATTENTION)
