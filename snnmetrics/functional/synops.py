"""Synaptic operations from activations and a fanout (the snnmetrics 0.0.1 formulation)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["as_fanout", "synops", "synops_per_neuron"]


def as_fanout(fanout: float | Tensor) -> Tensor:
    """Validate a fanout (a number or a per-neuron tensor) and return it as float64."""
    if isinstance(fanout, bool) or not isinstance(fanout, (int, float, Tensor)):
        raise TypeError(f"fanout must be a number or a tensor, got {type(fanout).__name__}")
    value = torch.as_tensor(fanout, dtype=torch.float64).detach()
    if not bool(torch.isfinite(value).all()) or bool((value < 0).any()):
        raise ValueError("fanout must be finite and non-negative")
    return value


def synops_per_neuron(activations: Tensor, fanout: float | Tensor) -> Tensor:
    """Synaptic operations caused by each neuron, summed over the batch.

    Args:
        activations: spike counts (summed over time) of shape ``(B, C)`` or ``(B, C, H, W)``;
            finite and non-negative.
        fanout: outgoing synapses per neuron: a number, or a tensor of shape
            ``activations.shape[1:]`` (see :func:`snnmetrics.functional.fanout` for convs).

    Returns:
        float64 tensor of shape ``activations.shape[1:]``: ``sum_b activations[b] * fanout``.

    Example:
        >>> import torch
        >>> synops_per_neuron(torch.tensor([[1., 0.], [2., 1.]]), 10.0)
        tensor([30., 10.], dtype=torch.float64)
    """
    fan = as_fanout(fanout)
    if not isinstance(activations, Tensor):
        raise TypeError(f"activations must be a tensor, got {type(activations).__name__}")
    if activations.ndim not in (2, 4):
        raise ValueError(
            f"activations must have shape (B, C) or (B, C, H, W), got {tuple(activations.shape)}"
        )
    if fan.ndim and fan.shape != activations.shape[1:]:
        raise ValueError(
            f"fanout of shape {tuple(fan.shape)} does not match activations of shape "
            f"{tuple(activations.shape)}: expected fanout shape {tuple(activations.shape[1:])}"
        )
    counts = activations.detach().to(torch.float64)
    if not bool(torch.isfinite(counts).all()):
        raise ValueError("activations must be finite (found NaN or inf)")
    if bool((counts < 0).any()):
        raise ValueError("activations must be non-negative spike counts")
    return counts.sum(0) * fan.to(counts.device)


def synops(
    activations: Tensor, fanout: float | Tensor, sample_time: float | None = None
) -> dict[str, Tensor]:
    """Per-sample synaptic operations of one batch (the batch value of ``SynOps``).

    Returns ``synops_per_neuron`` (per-neuron map, per sample), ``synops`` (their sum) and,
    if ``sample_time`` (seconds per sample) is given, ``synops/s``.

    Example:
        >>> import torch
        >>> out = synops(torch.tensor([[1., 0.], [2., 1.]]), 10.0, sample_time=0.5)
        >>> float(out["synops"]), float(out["synops/s"])
        (20.0, 40.0)
    """
    return per_sample_result(
        synops_per_neuron(activations, fanout), activations.shape[0], sample_time
    )


def check_sample_time(sample_time: float | None) -> float | None:
    if sample_time is None:
        return None
    if isinstance(sample_time, bool) or not isinstance(sample_time, (int, float)):
        raise TypeError(
            f"sample_time must be a positive number of seconds or None, got {sample_time!r}"
        )
    if not (math.isfinite(sample_time) and sample_time > 0):
        raise ValueError(f"sample_time must be a positive number of seconds, got {sample_time}")
    return float(sample_time)


def per_sample_result(
    per_neuron: Tensor, samples: int | Tensor, sample_time: float | None
) -> dict[str, Tensor]:
    """The result dict of ``SynOps`` from per-neuron synaptic operations over ``samples``
    samples (NaN figures for none)."""
    total = per_neuron.sum() / samples
    result = {"synops_per_neuron": per_neuron / samples, "synops": total}
    sample_time = check_sample_time(sample_time)
    if sample_time is not None:
        result["synops/s"] = total / sample_time
    return result
