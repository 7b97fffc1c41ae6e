"""Sparse-code figures (the metrics of sparsey, seed 004) from binary codes and count states.

A *code* is the binary activation pattern of one neuron layer for one row of its output (a
sample at one step): unit ``u`` is active when its output is nonzero. Codes are given as
tensors ``[rows, *units]``; every dimension after the first indexes a unit.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from snnmetrics.connections import ConnectionRule
from snnmetrics.functional.fanout import own_autograd, require_rule

__all__ = [
    "EMPTY",
    "activation_statistics",
    "basis_average",
    "basis_set_size",
    "code_hashes",
    "distinct_count",
    "feature_coverage",
    "hash_weights",
    "match_accuracy",
    "merge_tables",
    "normalized_hamming_distance",
    "num_activations",
    "smallest_distinct",
]

EMPTY = torch.iinfo(torch.int64).max
"""An unused slot of a code table (larger than every hash)."""

_LOW31 = (1 << 31) - 1
_HASH_RANGE = 2.0**62  # hashes lie in [0, 2**62)
_BLOCK = 1 << 21  # units per float64 product: 2**21 weights below 2**31 sum below 2**53


def _rows(codes: Tensor) -> Tensor:
    """``codes`` as ``[rows, units]`` booleans (a 0-d or 1-d tensor is one unit per row)."""
    if not isinstance(codes, Tensor):
        raise TypeError(f"codes must be a tensor, got {type(codes).__name__}")
    codes = codes.detach()
    if codes.is_floating_point() and bool(torch.isnan(codes).any()):
        raise ValueError("codes must not hold NaN")
    rows = codes.shape[0] if codes.ndim else 1
    return codes.reshape(rows, -1) != 0


def num_activations(codes: Tensor) -> Tensor:
    """Active units of each code (int64, one per row).

    Example:
        >>> import torch
        >>> num_activations(torch.tensor([[1, 0, 1], [0, 0, 0]]))
        tensor([2, 0])
    """
    return _rows(codes).sum(1)


def activation_statistics(histogram: Tensor, samples: Tensor | int) -> dict[str, Tensor]:
    """Statistics of active units per code from ``histogram[k]`` = codes with ``k`` active.

    With ``n = sum(histogram)`` codes and ``A = sum(k * histogram[k])`` activations in all:
    ``per_sample = A / samples`` (active units per sample, summed over its steps),
    ``per_step = A / n`` (mean active units per code), ``std`` over codes (Bessel's
    correction; NaN for one code), ``min`` and ``max`` active units of a code, and the
    ``histogram`` itself (int64).

    Example:
        >>> import torch
        >>> stats = activation_statistics(torch.tensor([1, 0, 3]), samples=2)
        >>> float(stats["per_sample"]), float(stats["per_step"]), int(stats["min"])
        (3.0, 1.5, 0)
    """
    counts = torch.as_tensor(histogram).detach()
    if counts.ndim != 1 or counts.numel() == 0 or bool((counts < 0).any()):
        raise ValueError("histogram must be a non-empty 1-d tensor of non-negative counts")
    n_samples = float(torch.as_tensor(samples))
    if not n_samples > 0:
        raise ValueError(f"samples must be positive, got {n_samples}")
    h = counts.to(torch.float64)
    codes = h.sum()
    if float(codes) == 0:
        raise ValueError("activation statistics need at least one code")
    k = torch.arange(h.numel(), dtype=torch.float64, device=h.device)
    total = (k * h).sum()
    mean = total / codes
    spread = ((k - mean) ** 2 * h).sum()
    seen = k[h > 0]
    return {
        "per_sample": total / n_samples,
        "per_step": mean,
        "std": (spread / (codes - 1)).sqrt() if float(codes) > 1 else h.new_full((), math.nan),
        "min": seen.min(),
        "max": seen.max(),
        "histogram": counts.to(torch.int64),
    }


# --- distinct codes -------------------------------------------------------------------


def hash_weights(units: int, seed: int = 0x5EED) -> Tensor:
    """Random weights that :func:`code_hashes` sums per code: int64 ``[units, 2]`` in
    ``[0, 2**31)``, the same on every machine and process for one ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 1 << 31, (units, 2), generator=generator, dtype=torch.int64)


def _mix31(x: Tensor) -> Tensor:
    # a bijection of [0, 2**31) (xor-shifts and an odd multiplier); products stay < 2**58
    x = x ^ (x >> 16)
    x = (x * 0x45D9F3B) & _LOW31
    x = x ^ (x >> 16)
    x = (x * 0x45D9F3B) & _LOW31
    return x ^ (x >> 16)


def code_hashes(codes: Tensor, weights: Tensor | None = None) -> Tensor:
    """A 62-bit hash of each row's binary code: int64 in ``[0, 2**62)``.

    Two sums of random 31-bit weights over the active units, each mod ``2**31`` (exact
    float64 products, so the same on any device), are mixed by a bijection into one value.
    Two different codes collide with probability ``2**-62``: among ``n`` distinct codes
    the chance of any collision is about ``n**2 / 2**63``.

    Args:
        codes: ``[rows, *units]``, nonzero = active.
        weights: :func:`hash_weights` of the number of units (float64 or int64, on the
            codes' device); made here if ``None``.

    Example:
        >>> import torch
        >>> h = code_hashes(torch.tensor([[1, 0, 1], [1, 0, 1], [0, 1, 0]]))
        >>> bool(h[0] == h[1]), bool(h[0] == h[2])
        (True, False)
    """
    bits = codes.reshape(codes.shape[0] if codes.ndim else 1, -1)
    if bits.dtype != torch.bool:
        bits = bits != 0
    units = bits.shape[1]
    if weights is None:
        weights = hash_weights(units)
    weights = weights.to(bits.device, torch.float64)
    if weights.shape != (units, 2):
        raise ValueError(f"weights must have shape ({units}, 2), got {tuple(weights.shape)}")
    sums = torch.zeros(bits.shape[0], 2, dtype=torch.int64, device=bits.device)
    for start in range(0, units, _BLOCK):
        part = bits[:, start : start + _BLOCK].to(torch.float64) @ weights[start : start + _BLOCK]
        sums = (sums + part.to(torch.int64)) & _LOW31
    high = _mix31(sums[:, 0] ^ (sums[:, 1] >> 7))
    low = _mix31(sums[:, 1] ^ high)
    return (high << 31) | low


def smallest_distinct(values: Tensor, capacity: int) -> Tensor:
    """The ``capacity`` smallest distinct values along the last dim, ascending, padded
    with :data:`EMPTY` (a code table; batched over leading dims).

    Example:
        >>> import torch
        >>> smallest_distinct(torch.tensor([5, 3, 5, 9, 3]), 4).tolist()[:3]
        [3, 5, 9]
    """
    ordered = values.sort(dim=-1).values
    repeated = torch.zeros_like(ordered, dtype=torch.bool)
    repeated[..., 1:] = ordered[..., 1:] == ordered[..., :-1]
    ordered = ordered.masked_fill(repeated, EMPTY).sort(dim=-1).values
    short = capacity - ordered.shape[-1]
    if short > 0:
        ordered = torch.cat([ordered, ordered.new_full((*ordered.shape[:-1], short), EMPTY)], -1)
    return ordered[..., :capacity]


def merge_tables(stacked: Tensor) -> Tensor:
    """Union of code tables stacked on dim 0 (``[tables, ..., capacity]``), truncated to
    the ``capacity`` smallest: the table one process would have kept for all the data.
    This is the cross-rank reduction of the table states."""
    capacity = stacked.shape[-1]
    return smallest_distinct(stacked.movedim(0, -2).flatten(-2), capacity)


def distinct_count(table: Tensor) -> Tensor:
    """Distinct codes of a table of the ``K`` smallest hashes (float64, over the last dim).

    Exact while the table has a free slot (fewer than ``K`` distinct codes, up to hash
    collisions). A full table is a KMV sketch: with ``h`` its largest hash, the estimate is
    ``(K - 1) / U`` where ``U = (h + 1) / 2**62`` is ``h`` as a fraction of the hash range;
    it is unbiased with a relative standard error of at most ``1 / sqrt(K - 2)`` (Beyer et
    al., "On synopses for distinct-value estimation under multiset operations", 2007).

    Example:
        >>> import torch
        >>> float(distinct_count(torch.tensor([4, 17, EMPTY, EMPTY])))
        2.0
    """
    capacity = table.shape[-1]
    filled = (table != EMPTY).sum(-1)
    largest = table[..., -1].to(torch.float64)
    estimate = (capacity - 1) * _HASH_RANGE / (largest + 1)
    return torch.where(filled < capacity, filled.to(torch.float64), estimate)


def basis_set_size(codes: Tensor) -> Tensor:
    """Distinct codes among the rows of ``codes`` (exact, int64).

    Example:
        >>> import torch
        >>> basis_set_size(torch.tensor([[1, 0], [0, 1], [1, 0]]))
        tensor(2)
    """
    bits = _rows(codes)
    return torch.tensor(torch.unique(bits, dim=0).shape[0] if bits.shape[0] else 0)


# --- receptive fields -----------------------------------------------------------------


def receptive_sums(
    layer: nn.Module,
    rule: ConnectionRule,
    inputs: Tensor,
    codes: Tensor,
    average: bool,
    coverage: bool,
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """Spike-triggered input sums and covered input elements of one call.

    ``codes`` has the shape of ``layer(inputs)``. With ``a`` the codes' bits and ``x`` the
    inputs, both sums follow from the layer being linear in its input and its weight:
    ``sums`` is the gradient of ``sum(a * layer(x; W))`` with respect to ``W`` (for each
    weight tap, the inputs it read where its unit was active), ``counts`` the same with
    ``x`` all ones, and the number of covered elements counts the nonzero entries of the
    gradient of ``sum(a * layer(x; mask))`` with respect to ``x``, ``mask`` being the
    nonzero weights. Returns ``(sums, counts, covered)``, float64, ``None`` where not asked.
    """
    weight = rule.weight(layer).detach()
    device = weight.device
    with own_autograd():
        active = (codes.detach() != 0).to(device, torch.float64)
        outputs, wrt = [], []
        if average:
            x = inputs.detach().to(device, torch.float64, copy=True)
            for probe_input in (x, torch.ones_like(x)):
                w = torch.zeros(weight.shape, dtype=torch.float64, device=device)
                w.requires_grad_(True)
                outputs.append(rule.apply(layer, probe_input, w))
                wrt.append(w)
        if coverage:
            probe = torch.zeros(inputs.shape, dtype=torch.float64, device=device)
            probe.requires_grad_(True)
            outputs.append(rule.apply(layer, probe, (weight != 0).to(torch.float64)))
            wrt.append(probe)
        if not wrt:
            return None, None, None
        total = torch.stack([(out * active.reshape(out.shape)).sum() for out in outputs]).sum()
        grads = torch.autograd.grad(total, wrt)
    sums, counts = (grads[0], grads[1]) if average else (None, None)
    covered = (grads[-1] > 0).sum(dtype=torch.float64) if coverage else None
    return sums, counts, covered


def _check_pair(layer: nn.Module, inputs: Tensor, codes: Tensor) -> ConnectionRule:
    rule = require_rule(layer)
    if not isinstance(inputs, Tensor) or not isinstance(codes, Tensor):
        raise TypeError("inputs and codes must be tensors")
    with torch.no_grad():
        empty = inputs.detach()[:0].to(torch.float64)
        shape = rule.apply(layer, empty, rule.weight(layer).detach().to(torch.float64)).shape
    if codes.shape[1:] != shape[1:] or codes.shape[0] != inputs.shape[0]:
        raise ValueError(
            f"codes must have the shape of the layer's output, {(inputs.shape[0], *shape[1:])}, "
            f"got {tuple(codes.shape)}"
        )
    return rule


def basis_average(layer: nn.Module, inputs: Tensor, codes: Tensor) -> dict[str, Tensor]:
    """Spike-triggered average input of each weight tap of ``layer`` (see
    :class:`~snnmetrics.BasisAverage`), for one call ``layer(inputs)`` whose units had
    the ``codes`` (same shape as the output).

    Returns float64 ``sums``, ``counts`` and ``average = sums / counts`` (NaN where no
    unit of the tap was active), all shaped like the layer's weight.

    Example:
        >>> import torch
        >>> fc = torch.nn.Linear(2, 1, bias=False)
        >>> out = basis_average(fc, torch.tensor([[1.0, 3.0], [0.0, 5.0]]), torch.ones(2, 1))
        >>> out["average"].tolist()
        [[0.5, 4.0]]
    """
    rule = _check_pair(layer, inputs, codes)
    sums, counts, _ = receptive_sums(layer, rule, inputs, codes, True, False)
    assert sums is not None and counts is not None
    return {"sums": sums, "counts": counts, "average": sums / counts}


def feature_coverage(layer: nn.Module, inputs: Tensor, codes: Tensor) -> Tensor:
    """Fraction of input elements in the receptive field of an active unit (see
    :class:`~snnmetrics.FeatureCoverage`), over the rows of one call ``layer(inputs)``
    whose units had the ``codes``. Only the shape of ``inputs`` matters.

    Example:
        >>> import torch
        >>> fc = torch.nn.Linear(4, 2, bias=False)
        >>> with torch.no_grad():
        ...     _ = fc.weight.copy_(torch.tensor([[1.0, 1, 0, 0], [0, 0, 1, 1]]))
        >>> float(feature_coverage(fc, torch.zeros(1, 4), torch.tensor([[1.0, 0.0]])))
        0.5
    """
    rule = _check_pair(layer, inputs, codes)
    _, _, covered = receptive_sums(layer, rule, inputs, codes, False, True)
    assert covered is not None
    return covered / max(inputs.numel(), 1)


# --- match accuracy -------------------------------------------------------------------


def normalized_hamming_distance(stored: Tensor, selected: Tensor) -> Tensor:
    """Fraction of units on which two codes differ, row by row (float64).

    Example:
        >>> import torch
        >>> normalized_hamming_distance(torch.tensor([[1, 1, 0, 0]]), torch.tensor([[1, 0, 0, 1]]))
        tensor([0.5000], dtype=torch.float64)
    """
    a, b = _rows(stored), _rows(selected)
    if a.shape != b.shape:
        raise ValueError(f"codes of shapes {tuple(a.shape)} and {tuple(b.shape)} differ")
    return (a ^ b).sum(1, dtype=torch.float64) / max(a.shape[1], 1)


def match_accuracy(
    stored_active: Tensor, stored_count: Tensor, matched_active: Tensor, matched_count: Tensor
) -> Tensor:
    """``1 -`` the mean normalised Hamming distance between stored and selected codes.

    Args:
        stored_active: ``[keys, units]``, per key the store presentations with each unit
            active; the stored code of key ``k`` is ``c_k[u] = 1`` iff ``2 * stored_active[k, u]
            > stored_count[k]`` (active in more than half of them).
        stored_count: ``[keys]`` store presentations per key.
        matched_active: ``[keys, units]``, per key the match presentations with each unit
            active (``A_k[u]``).
        matched_count: ``[keys]`` match presentations per key (``m_k``).

    Over the match presentations ``p`` of keys with a stored code, the summed Hamming
    distance is ``sum_k sum_u (m_k - A_k[u] if c_k[u] else A_k[u])``; the result is one
    minus that sum over ``(units x compared presentations)``.

    Example:
        >>> import torch
        >>> stored = torch.tensor([[1, 1, 0, 0]]); matched = torch.tensor([[2, 1, 0, 1]])
        >>> float(match_accuracy(stored, torch.tensor([1]), matched, torch.tensor([2])))
        0.75
    """
    s_active, s_count = torch.as_tensor(stored_active), torch.as_tensor(stored_count)
    m_active, m_count = torch.as_tensor(matched_active), torch.as_tensor(matched_count)
    if s_active.ndim != 2 or s_active.shape != m_active.shape:
        raise ValueError("stored_active and matched_active must both be [keys, units]")
    if s_count.shape != s_active.shape[:1] or m_count.shape != s_active.shape[:1]:
        raise ValueError("stored_count and matched_count need one entry per key")
    has_code = s_count > 0
    code = (2 * s_active) > s_count[:, None]
    m = m_count[:, None].to(torch.float64)
    a = m_active.to(torch.float64)
    distance = torch.where(code, m - a, a)[has_code].sum()
    compared = m_count[has_code].sum().to(torch.float64)
    if float(compared) == 0:
        raise ValueError("match accuracy needs a match presentation of a key with a stored code")
    return 1 - distance / (compared * s_active.shape[1])
