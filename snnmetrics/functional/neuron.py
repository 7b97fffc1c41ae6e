"""Neuron-side figures from counts: membrane updates, neuron operations, sparsity, rates."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "activation_sparsity",
    "bin_edges",
    "firing_rate_statistics",
    "firing_rates",
    "membrane_updates",
    "neuron_operations",
]


def as_counts(name: str, value: Tensor | int) -> Tensor:
    """``value`` as float64 counts, or a ``ValueError`` naming ``name`` if it holds a
    negative or non-finite number."""
    counts = torch.as_tensor(value)
    if counts.is_floating_point() and not bool(torch.isfinite(counts).all()):
        raise ValueError(f"{name} must be finite")
    if bool((counts < 0).any()):
        raise ValueError(f"{name} must be non-negative counts")
    return counts.to(torch.float64)


def _one_count(name: str, value: Tensor | int, least: int) -> Tensor:
    count = as_counts(name, value)
    if count.numel() != 1 or float(count) < least:
        raise ValueError(f"{name} must be one number >= {least}, got {value}")
    return count.reshape(())


def membrane_updates(updates: Tensor, samples: Tensor | int) -> Tensor:
    """Membrane updates per sample: the total of ``updates`` (any shape) over ``samples``
    (NaN for no samples).

    Example:
        >>> import torch
        >>> membrane_updates(torch.tensor([250, 40]), 5)
        tensor(58., dtype=torch.float64)
    """
    return as_counts("updates", updates).sum() / _one_count("samples", samples, 0)


def neuron_operations(
    updates: Tensor, neuron_steps: Tensor, costs: Tensor, samples: Tensor | int
) -> dict[str, Tensor]:
    """Neuron operations per sample from per-layer counts and per-layer op costs.

    Args:
        updates: membrane updates of each layer (neurons whose membrane was updated).
        neuron_steps: neurons x steps of each layer (every membrane, every call).
        costs: operations per membrane update of each layer.
        samples: number of samples.

    Returns:
        float64 tensors ``effective`` (``sum(updates * costs) / samples``) and ``dense``
        (``sum(neuron_steps * costs) / samples``).

    Example:
        >>> import torch
        >>> out = neuron_operations(torch.tensor([250]), torch.tensor([250]), torch.tensor([4.]), 5)
        >>> float(out["effective"]), float(out["dense"])
        (200.0, 200.0)
    """
    cost = as_counts("costs", costs)
    done, every = as_counts("updates", updates), as_counts("neuron_steps", neuron_steps)
    if not done.shape == every.shape == cost.shape:
        raise ValueError(
            "updates, neuron_steps and costs need one entry per layer, got shapes "
            f"{tuple(done.shape)}, {tuple(every.shape)} and {tuple(cost.shape)}"
        )
    n = _one_count("samples", samples, 0)  # NaN figures for none
    return {"effective": (done * cost).sum() / n, "dense": (every * cost).sum() / n}


def activation_sparsity(zeros: Tensor, elements: Tensor) -> Tensor:
    """Fraction of zero activations: ``sum(zeros) / sum(elements)``, in [0, 1] (NaN for
    no elements).

    Example:
        >>> import torch
        >>> activation_sparsity(torch.tensor([240]), torch.tensor([250]))
        tensor(0.9600, dtype=torch.float64)
    """
    zero, total = as_counts("zeros", zeros).sum(), as_counts("elements", elements).sum()
    if float(zero) > float(total):
        raise ValueError(f"zeros ({float(zero):g}) exceed elements ({float(total):g})")
    return zero / total


def firing_rates(spike_counts: Tensor, observations: Tensor | int) -> Tensor:
    """Each neuron's rate: its spikes over the sample-steps it was observed in.

    Args:
        spike_counts: spikes of each neuron, summed over samples and steps (any shape).
        observations: samples x steps, the same for every neuron of the layer.

    Example:
        >>> import torch
        >>> firing_rates(torch.tensor([0, 5, 10]), 10)
        tensor([0.0000, 0.5000, 1.0000], dtype=torch.float64)
    """
    counts = as_counts("spike_counts", spike_counts)
    n = _one_count("observations", observations, 1)
    if bool((counts > n).any()):
        raise ValueError("a neuron has more spikes than sample-steps")
    return counts / n


def bin_edges(bins: int | Sequence[float] | Tensor) -> Tensor:
    """Histogram edges: ``bins`` equal bins on [0, 1], or the given increasing edges."""
    expected = f"bins must be a positive int or a sequence of edges, got {bins!r}"
    if isinstance(bins, (bool, str, bytes)):
        raise TypeError(expected)
    if isinstance(bins, int):
        if bins <= 0:
            raise ValueError(expected)
        return torch.linspace(0.0, 1.0, bins + 1, dtype=torch.float64)
    try:
        edges = torch.as_tensor(bins, dtype=torch.float64).detach().cpu()
    except (TypeError, ValueError, RuntimeError) as error:
        raise TypeError(expected) from error
    if edges.ndim != 1 or edges.numel() < 2:
        raise ValueError("bins given as edges need at least two of them in a 1-D sequence")
    if not bool(torch.isfinite(edges).all()) or not bool((edges[1:] > edges[:-1]).all()):
        raise ValueError("bin edges must be finite and strictly increasing")
    return edges


def _percentile(ordered: Tensor, q: float) -> Tensor:
    # numpy's default ("linear"): interpolate between the two closest ranks
    position = q * (ordered.numel() - 1)
    low = int(position)
    high = min(low + 1, ordered.numel() - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _histogram(values: Tensor, edges: Tensor) -> Tensor:
    # numpy's convention: bins are [a, b) except the last, [a, b]; outside values drop out
    index = torch.searchsorted(edges, values, right=True) - 1
    index[values == edges[-1]] = edges.numel() - 2
    inside = (index >= 0) & (index < edges.numel() - 1)
    return torch.bincount(index[inside], minlength=edges.numel() - 1)


def firing_rate_statistics(
    rates: Tensor, bins: int | Sequence[float] | Tensor = 20
) -> dict[str, Tensor]:
    """Statistics over the neurons of one layer, from each neuron's rate.

    Returns float64 ``rates`` (as given), ``mean``, ``std`` (with Bessel's correction),
    ``min``, ``max``, ``median``, ``q1``, ``q3`` (numpy's default linear percentiles), an
    int64 ``histogram`` and its ``bin_edges`` (see :func:`bin_edges`).

    Example:
        >>> import torch
        >>> stats = firing_rate_statistics(torch.tensor([0.0, 0.125, 0.25, 1.0]), bins=2)
        >>> float(stats["median"]), stats["histogram"].tolist()
        (0.1875, [3, 1])
    """
    values = torch.as_tensor(rates).detach().to(torch.float64)
    flat = values.flatten()
    if flat.numel() == 0:
        raise ValueError("firing-rate statistics need at least one neuron")
    if not bool(torch.isfinite(flat).all()):
        raise ValueError("rates must be finite")
    ordered = flat.sort().values
    edges = bin_edges(bins).to(flat.device)
    return {
        "rates": values,
        "mean": flat.mean(),
        "std": flat.std() if flat.numel() > 1 else flat.new_full((), float("nan")),
        "min": ordered[0],
        "max": ordered[-1],
        "median": _percentile(ordered, 0.5),
        "q1": _percentile(ordered, 0.25),
        "q3": _percentile(ordered, 0.75),
        "histogram": _histogram(flat, edges),
        "bin_edges": edges,
    }
