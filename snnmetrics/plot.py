"""Plots of metric results (matplotlib is imported only when a plot is drawn)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from torch import Tensor

from snnmetrics.results import layer_order

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_firing_rates", "plot_operations"]


def _pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ModuleNotFoundError(
            "plotting needs matplotlib: pip install 'snnmetrics[plot]'"
        ) from error
    return plt


def plot_firing_rates(
    result: Mapping[str, Mapping[str, Tensor]], ax: Axes | None = None
) -> tuple[Figure, Axes]:
    """Box plot of each layer's firing rates over its neurons, means shown as lines.

    Args:
        result: the output of :meth:`snnmetrics.FiringRate.compute` (layer name -> dict
            with ``rates``).
        ax: axes to draw into; a new figure is made if ``None``.

    Returns:
        ``(fig, ax)``, as torchmetrics' ``Metric.plot`` does.
    """
    if not result:
        raise ValueError("there is no layer to plot")
    names = list(result)
    data = [result[name]["rates"].detach().flatten().cpu().numpy() for name in names]
    if ax is None:
        fig, ax = _pyplot().subplots(figsize=(max(6.0, 1.2 * len(names)), 4.5))
    else:
        fig = ax.get_figure()
    ax.boxplot(data, widths=0.5, showmeans=True, meanline=True, patch_artist=True)
    ax.set_xticks(range(1, len(names) + 1), names)
    ax.set_xlabel("layer")
    ax.set_ylabel("firing rate (spikes per sample-step)")
    ax.set_title("Firing rates of each layer's neurons")
    return fig, ax


def plot_operations(report: Mapping[str, Any], ax: Axes | None = None) -> tuple[Figure, Axes]:
    """Bar chart of the operations per sample of each layer, log scale.

    Connection layers show effective and dense synaptic operations; neuron layers
    effective and dense neuron operations.

    Args:
        report: a dict with ``synaptic_operations`` and ``neuron_operations`` sections as
            written by ``snnmetrics profile`` (each ``{"per_layer": {name: {...}}}``, values
            plain numbers).
        ax: axes to draw into; a new figure is made if ``None``.

    Returns:
        ``(fig, ax)``.
    """
    bars: list[tuple[str, float, float]] = [
        (name, figures["synops"], figures["dense"])
        for name, figures in report["synaptic_operations"]["per_layer"].items()
    ] + [
        (name, figures["effective"], figures["dense"])
        for name, figures in report["neuron_operations"]["per_layer"].items()
    ]
    if not bars:
        raise ValueError("there is no layer to plot")
    bars.sort(key=lambda bar: layer_order(bar[0]))
    if ax is None:
        fig, ax = _pyplot().subplots(figsize=(max(6.0, 0.9 * len(bars)), 4.5))
    else:
        fig = ax.get_figure()
    positions = list(range(len(bars)))
    ax.bar([p - 0.2 for p in positions], [b[1] for b in bars], width=0.4, label="effective")
    ax.bar([p + 0.2 for p in positions], [b[2] for b in bars], width=0.4, label="dense")
    ax.set_xticks(positions, [b[0] for b in bars])
    ax.set_yscale("log")
    ax.set_xlabel("layer")
    ax.set_ylabel("operations per sample")
    ax.set_title("Synaptic (connection layers) and neuron operations per layer")
    ax.legend()
    return fig, ax
