"""Spike-train statistics and per-step activity from streamed sums.

A neuron's spike train in one sample is the steps at which its output is nonzero. The
statistics here are computed from sums that can be streamed and added across ranks:

* the Fano factor from, per neuron, ``n`` spike trains (samples), the sum of their spike
  counts ``s1`` and of the squared counts ``s2``: with the population variance
  ``var = s2 / n - (s1 / n) ** 2`` and the mean ``s1 / n``,
  ``F = var / mean = (n * s2 - s1 ** 2) / (n * s1)``;
* the coefficient of variation of the inter-spike intervals (in steps, pooled over
  samples, never spanning two samples) from their number ``m``, sum ``i1`` and sum of
  squares ``i2``: ``CV = std / mean = sqrt(m * i2 - i1 ** 2) / i1`` (standard deviation
  with ddof 0).

These are Elephant's ``statistics.fanofactor`` of the neuron's spike trains and
``statistics.cv`` of its pooled ``statistics.isi``, except that the CV here is NaN with
fewer than 2 intervals (Elephant gives 0 for one interval).
"""

from __future__ import annotations

import torch
from torch import Tensor

from snnmetrics.functional.neuron import as_counts

__all__ = ["cv_isi", "fano_factor", "spike_train_statistics", "step_rates"]


def fano_factor(count_sum: Tensor, count_square_sum: Tensor, trains: Tensor | int) -> Tensor:
    """Fano factor of each neuron's spike count over ``trains`` spike trains (samples).

    Args:
        count_sum: per neuron, the sum over samples of its spike count.
        count_square_sum: per neuron, the sum over samples of its squared spike count.
        trains: the number of samples (a number, or one per neuron).

    Returns:
        float64, the shape of ``count_sum``: the population variance of the counts over
        their mean; NaN where the mean is 0 (or there is no sample).

    Example:
        >>> import torch
        >>> # counts over 4 samples: neuron 0 -> 1, 3, 2, 2; neuron 1 -> 0, 0, 0, 0
        >>> fano_factor(torch.tensor([8, 0]), torch.tensor([18, 0]), 4)
        tensor([0.2500,    nan], dtype=torch.float64)
    """
    s1, s2 = as_counts("count_sum", count_sum), as_counts("count_square_sum", count_square_sum)
    if s1.shape != s2.shape:
        raise ValueError(
            f"count_sum and count_square_sum must have one shape, got {tuple(s1.shape)} "
            f"and {tuple(s2.shape)}"
        )
    n = as_counts("trains", trains).to(s1.device)
    variance_times_n2 = (n * s2 - s1 * s1).clamp_(min=0)  # n^2 var; exact for exact sums
    return torch.where(s1 > 0, variance_times_n2 / (n * s1), torch.nan)


def cv_isi(interval_sum: Tensor, interval_square_sum: Tensor, intervals: Tensor) -> Tensor:
    """Coefficient of variation of each neuron's inter-spike intervals.

    Args:
        interval_sum: per neuron, the sum of its intervals (in steps).
        interval_square_sum: per neuron, the sum of its squared intervals.
        intervals: per neuron, the number of intervals.

    Returns:
        float64, the shape of ``intervals``: standard deviation (ddof 0) over mean of the
        intervals; NaN where there are fewer than 2.

    Example:
        >>> import torch
        >>> # intervals: neuron 0 -> 2, 2, 2; neuron 1 -> 1, 3; neuron 2 -> 4
        >>> cv_isi(torch.tensor([6, 4, 4]), torch.tensor([12, 10, 16]), torch.tensor([3, 2, 1]))
        tensor([0.0000, 0.5000,    nan], dtype=torch.float64)
    """
    i1 = as_counts("interval_sum", interval_sum)
    i2 = as_counts("interval_square_sum", interval_square_sum)
    m = as_counts("intervals", intervals)
    if not i1.shape == i2.shape == m.shape:
        raise ValueError(
            "interval_sum, interval_square_sum and intervals must have one shape, got "
            f"{tuple(i1.shape)}, {tuple(i2.shape)} and {tuple(m.shape)}"
        )
    spread = (m * i2 - i1 * i1).clamp_(min=0).sqrt_()  # m * std
    return torch.where(m >= 2, spread / i1, torch.nan)


def spike_train_statistics(
    count_sum: Tensor,
    count_square_sum: Tensor,
    trains: Tensor | int,
    interval_sum: Tensor,
    interval_square_sum: Tensor,
    intervals: Tensor,
) -> dict[str, Tensor]:
    """:func:`fano_factor` and :func:`cv_isi` of one layer's neurons, and their means.

    Returns:
        ``fano_factor`` and ``cv_isi`` (float64, per neuron), ``mean_fano_factor`` and
        ``mean_cv_isi``: the means over the neurons where each is not NaN (NaN if it is
        NaN for every neuron).

    Example:
        >>> import torch
        >>> out = spike_train_statistics(torch.tensor([8, 0]), torch.tensor([18, 0]), 4,
        ...                              torch.tensor([6, 4]), torch.tensor([12, 10]),
        ...                              torch.tensor([3, 2]))
        >>> float(out["mean_fano_factor"]), float(out["mean_cv_isi"])
        (0.25, 0.25)
    """
    fano = fano_factor(count_sum, count_square_sum, trains)
    cv = cv_isi(interval_sum, interval_square_sum, intervals)
    return {
        "fano_factor": fano,
        "cv_isi": cv,
        "mean_fano_factor": fano.nanmean(),
        "mean_cv_isi": cv.nanmean(),
    }


def step_rates(spikes: Tensor, observations: Tensor) -> Tensor:
    """Fraction of a layer's neurons firing at each step, averaged over samples.

    Args:
        spikes: per step, the nonzero outputs of the layer summed over samples.
        observations: per step, the neurons times the samples that ran the step.

    Returns:
        float64, ``spikes / observations``; NaN at steps no sample reached.

    Example:
        >>> import torch
        >>> step_rates(torch.tensor([3, 6, 0]), torch.tensor([12, 12, 0]))
        tensor([0.2500, 0.5000,    nan], dtype=torch.float64)
    """
    fired, seen = as_counts("spikes", spikes), as_counts("observations", observations)
    if fired.shape != seen.shape:
        raise ValueError(
            f"spikes and observations must have one shape, got {tuple(fired.shape)} and "
            f"{tuple(seen.shape)}"
        )
    if bool((fired > seen).any()):
        raise ValueError("spikes cannot exceed observations (neurons x samples) at a step")
    return torch.where(seen > 0, fired / seen, torch.nan)
