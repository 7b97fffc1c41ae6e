"""Synaptic operations of products inside attention: of an activation and a weight (the
projections) and of two activations (queries with keys, attention weights with values).

For a product ``a @ b`` of two activations (``torch.matmul`` semantics, batch dimensions
broadcast), the *effective* operations are the pairs of nonzero operands that meet on the
contracted dimension, ``sum_batch sum_k nnz(a[..., :, k]) * nnz(b[..., k, :])``, the
*dense* ones all pairs, ``batch * n * k * m``, and the product is a MAC if either operand
holds a value outside {-1, 0, 1} (an AC otherwise). A NaN operand makes the effective
count NaN, so that it is counted apart as a non-finite reading.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from snnmetrics.functional.exact import FLOAT32_EXACT

__all__ = [
    "ProductCount",
    "linear_operations",
    "multihead_attention_operations",
    "product_operations",
]

_F64 = torch.float64


class ProductCount(NamedTuple):
    """Synaptic operations of one product: ``effective`` (0-d float64), ``in_mac``
    (the part of ``effective`` done as MACs) and ``dense`` (an ``int``)."""

    effective: Tensor
    in_mac: Tensor
    dense: int

    def __add__(self, other: object) -> ProductCount:
        if not isinstance(other, ProductCount):
            return NotImplemented
        return ProductCount(
            self.effective + other.effective, self.in_mac + other.in_mac, self.dense + other.dense
        )


def _nonzero_and_mac(x: Tensor) -> tuple[Tensor, Tensor]:
    """``x``'s elements as 1.0 where nonzero, 0.0 where zero (NaN stays), and 1.0 if one
    is outside {-1, 0, 1}, else 0.0 (NaN with NaN), both from one ``|x|``."""
    magnitude = x.detach().abs()
    nonzero = magnitude.clamp(max=1).ceil_()
    # in place: each fresh temporary of a large operand costs as much as a pass over it
    mac = magnitude.sub_(nonzero).abs_().amax().clamp_(max=1).ceil_().to(_F64)
    return nonzero, mac


def _summed(nonzero: Tensor, dim: int) -> Tensor:
    """The 0/1 ``nonzero`` summed over ``dim``, as float64: summed in float32 while that
    is exact (at most 2**24 terms), several times faster than a float64 sum on the CPU."""
    if nonzero.shape[dim] > FLOAT32_EXACT:
        return nonzero.sum(dim, dtype=_F64)
    return nonzero.sum(dim).to(_F64)


def product_operations(a: Tensor, b: Tensor) -> ProductCount:
    """Synaptic operations of ``a @ b``, a product of two activations (module docstring).

    Example:
        >>> import torch
        >>> q = torch.tensor([[1.0, 0.0], [1.0, 1.0]])  # 2 x 2
        >>> k = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]])  # 2 x 3
        >>> count = product_operations(q, k)  # column 0 of q (2) meets row 0 of k (2), ...
        >>> float(count.effective), float(count.in_mac), count.dense
        (6.0, 0.0, 12)
    """
    left = a if a.ndim > 1 else a.unsqueeze(0)
    right = b if b.ndim > 1 else b.unsqueeze(-1)
    left_nonzero, left_mac = _nonzero_and_mac(left)
    right_nonzero, right_mac = _nonzero_and_mac(right)
    columns = _summed(left_nonzero, -2)  # [..., k]: nonzeros of each column of a
    rows = _summed(right_nonzero, -1)  # [..., k]: nonzeros of each row of b
    effective = (columns * rows).sum()  # NaN if an operand has NaN
    batch = math.prod(torch.broadcast_shapes(left.shape[:-2], right.shape[:-2]))
    dense = batch * left.shape[-2] * left.shape[-1] * right.shape[-1]
    return ProductCount(effective, effective * torch.maximum(left_mac, right_mac), dense)


def linear_operations(x: Tensor, weight: Tensor, skip_zero_weights: bool = True) -> ProductCount:
    """Synaptic operations of ``F.linear(x, weight)``: each nonzero input element times the
    nonzero weights of its column (every weight with ``skip_zero_weights=False``); an AC
    product if ``x`` is in {-1, 0, 1}.

    Example:
        >>> import torch
        >>> w = torch.tensor([[1.0, 0.0], [2.0, 3.0], [0.0, 1.0]])  # 2 -> 3
        >>> count = linear_operations(torch.tensor([[1.0, 1.0], [0.0, 1.0]]), w)
        >>> float(count.effective), count.dense  # 2 + 2 for row 0, 2 for row 1
        (6.0, 12)
    """
    return _linear_from(_input_counts(x), weight, skip_zero_weights)


def _input_counts(x: Tensor) -> tuple[Tensor, Tensor, int]:
    """What :func:`linear_operations` reads of its input: the nonzeros of each input
    feature summed over the rows (float64; NaN stays), the AC/MAC flag, and the rows."""
    rows = x.reshape(-1, x.shape[-1])
    nonzero, mac = _nonzero_and_mac(rows)
    return _summed(nonzero, 0), mac, rows.shape[0]


def _linear_from(
    counts: tuple[Tensor, Tensor, int], weight: Tensor, skip_zero_weights: bool
) -> ProductCount:
    """:func:`linear_operations` from what :func:`_input_counts` read of the input."""
    per_feature, mac, rows = counts
    fanout = (
        (weight.detach() != 0).sum(0, dtype=_F64)
        if skip_zero_weights
        else torch.full((weight.shape[1],), weight.shape[0], dtype=_F64, device=weight.device)
    )
    effective = per_feature @ fanout  # NaN if the input has NaN
    return ProductCount(effective, effective * mac, rows * weight.numel())


def multihead_attention_operations(
    mha: nn.MultiheadAttention,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    skip_zero_weights: bool = True,
    **options: Any,
) -> ProductCount:
    """Synaptic operations of one call ``mha(query, key, value, **options)``.

    The sum of the query, key and value projections and the output projection
    (:func:`linear_operations`) and of the two products of each head
    (:func:`product_operations`): the scaled queries with the keys, and the attention
    weights with the values. The attention weights are those of torch's own
    ``F.multi_head_attention_forward`` with the call's masks, without dropout (dropout
    in training is not seen). The count recomputes the projections and the attention
    weights, which costs about as much as the call itself.
    """
    # self-attention passes one tensor as query, key and value: it is read once
    given = (query, key, value)
    sources = [next(i for i, t in enumerate(given) if t is x) for x in given]
    batched = query.dim() == 3
    if mha.batch_first and batched:
        query, key, value = (t.transpose(0, 1) for t in (query, key, value))
    if not batched:
        query, key, value = (t.unsqueeze(1) for t in (query, key, value))
    query, key, value = query.detach(), key.detach(), value.detach()
    length, batch, embed = query.shape
    heads, head_dim = mha.num_heads, mha.head_dim
    if mha._qkv_same_embed_dim:
        weights = cast(Tensor, mha.in_proj_weight).detach().chunk(3)
    else:
        weights = tuple(
            cast(Tensor, getattr(mha, f"{name}_proj_weight")).detach() for name in "qkv"
        )
    biases = (None,) * 3 if mha.in_proj_bias is None else mha.in_proj_bias.detach().chunk(3)
    inputs = (query, key, value)
    read: dict[int, tuple[Tensor, Tensor, int]] = {}
    for source, x in zip(sources, inputs, strict=True):
        if source not in read:
            read[source] = _input_counts(x)
    projections = [
        _linear_from(read[source], w, skip_zero_weights)
        for source, w in zip(sources, weights, strict=True)
    ]
    count = projections[0] + projections[1] + projections[2]
    q, k, v = (F.linear(x, w, b) for x, w, b in zip(inputs, weights, biases, strict=True))
    if mha.bias_k is not None and mha.bias_v is not None:
        k = torch.cat([k, mha.bias_k.detach().expand(1, batch, embed)])
        v = torch.cat([v, mha.bias_v.detach().expand(1, batch, embed)])
    q = q.reshape(length, batch * heads, head_dim).transpose(0, 1)
    k = k.reshape(k.shape[0], batch * heads, head_dim).transpose(0, 1)
    v = v.reshape(v.shape[0], batch * heads, head_dim).transpose(0, 1)
    if mha.add_zero_attn:
        k = torch.cat([k, k.new_zeros(batch * heads, 1, head_dim)], dim=1)
        v = torch.cat([v, v.new_zeros(batch * heads, 1, head_dim)], dim=1)
    scaled = q * math.sqrt(1.0 / head_dim)  # as torch scales them
    count = count + product_operations(scaled, k.transpose(-2, -1))
    attention = _attention_weights(scaled, k, mha, batch, options)
    count = count + product_operations(attention, v)
    merged = (attention @ v).transpose(0, 1).reshape(length * batch, embed)
    return count + linear_operations(merged, mha.out_proj.weight, skip_zero_weights)


def _float_mask(mask: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    """An attention mask as torch's attention adds it: a boolean mask as ``-inf`` where
    ``True`` (not attended), a float mask as it is."""
    if mask is None or mask.dtype != torch.bool:
        return mask
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(mask, -math.inf)


def _attention_weights(
    scaled: Tensor, key: Tensor, mha: nn.MultiheadAttention, batch: int, options: dict[str, Any]
) -> Tensor:
    """The attention weights ``[batch * heads, length, source]`` of a call, as
    ``F.multi_head_attention_forward`` computes them without dropout, from its scaled
    queries and its keys (with ``bias_k`` and the zero key appended, as the layer does):
    the masks (``attn_mask`` 2-d or 3-d, ``key_padding_mask``; boolean or float) padded
    for each appended key and added to the scores before the softmax."""
    appended = (mha.bias_k is not None) + mha.add_zero_attn
    mask = _float_mask(options.get("attn_mask"), scaled.dtype)
    padding = _float_mask(options.get("key_padding_mask"), scaled.dtype)
    if mask is not None:
        mask = F.pad(mask, (0, appended)) if appended else mask
        mask = mask if mask.dim() == 3 else mask.unsqueeze(0)
    if padding is not None:
        padding = F.pad(padding, (0, appended)) if appended else padding
        heads, source = mha.num_heads, padding.shape[-1]
        padding = padding.view(batch, 1, 1, source).expand(-1, heads, -1, -1)
        padding = padding.reshape(batch * heads, 1, source)
        mask = padding if mask is None else mask + padding
    if mask is None:
        return torch.bmm(scaled, key.transpose(-2, -1)).softmax(-1)
    return torch.baddbmm(mask, scaled, key.transpose(-2, -1)).softmax(-1)
