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
    result: Mapping[str, Mapping[str, Tensor]],
    ax: Axes | None = None,
    layer_types: Mapping[str, str] | None = None,
) -> tuple[Figure, Axes]:
    """Box plot of each layer's firing rates over its neurons, means shown as dashed lines.

    Args:
        result: the output of :meth:`snnmetrics.FiringRate.compute` (layer name -> dict
            with ``rates``).
        ax: axes to draw into; a new figure is made if ``None``.
        layer_types: layer name -> type name (``"Leaky"``), shown under each name.

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
    boxes = ax.boxplot(data, widths=0.5, showmeans=True, meanline=True, patch_artist=True)
    ax.set_xticks(range(1, len(names) + 1), _tick_labels(names, layer_types))
    ax.set_xlabel("layer")
    ax.set_ylabel("firing rate (spikes per sample-step)")
    ax.set_title("Firing rates of each layer's neurons")
    ax.legend(
        [boxes["medians"][0], boxes["means"][0]],
        ["median", "mean"],
        loc="upper right",
    )
    return fig, ax


def _tick_labels(names: list[str], layer_types: Mapping[str, str] | None) -> list[str]:
    if not layer_types:
        return names
    return [f"{name}\n{layer_types[name]}" if name in layer_types else name for name in names]


def plot_operations(
    report: Mapping[str, Any],
    ax: Axes | None = None,
    layer_types: Mapping[str, str] | None = None,
) -> tuple[Figure, Axes]:
    """Bar chart of the operations per sample of each layer, log scale.

    Connection layers show effective and dense synaptic operations (blue); neuron layers
    effective and dense neuron operations (orange). Either section may be missing (an ANN
    has no neuron layer).

    Args:
        report: a dict with ``synaptic_operations`` and/or ``neuron_operations`` sections
            as written by ``snnmetrics profile`` (each ``{"per_layer": {name: {...}}}``,
            values plain numbers).
        ax: axes to draw into; a new figure is made if ``None``.
        layer_types: layer name -> type name (``"Linear"``), shown under each name.

    Returns:
        ``(fig, ax)``.
    """
    synaptic = report.get("synaptic_operations", {}).get("per_layer", {})
    neuron = report.get("neuron_operations", {}).get("per_layer", {})
    bars: list[tuple[str, float, float, str]] = [
        (name, figures["synops"], figures["dense"], "synaptic")
        for name, figures in synaptic.items()
    ] + [
        (name, figures["effective"], figures["dense"], "neuron") for name, figures in neuron.items()
    ]
    if not bars:
        raise ValueError("there is no layer to plot")
    bars.sort(key=lambda bar: layer_order(bar[0]))
    if ax is None:
        fig, ax = _pyplot().subplots(figsize=(max(6.0, 0.9 * len(bars)), 4.5))
    else:
        fig = ax.get_figure()
    for kind, colour in (("synaptic", "tab:blue"), ("neuron", "tab:orange")):
        where = [i for i, bar in enumerate(bars) if bar[3] == kind]
        if not where:
            continue
        effective = [bars[i][1] for i in where]
        dense = [bars[i][2] for i in where]
        ax.bar(
            [i - 0.2 for i in where],
            effective,
            width=0.4,
            color=colour,
            label=f"{kind} ops, effective",
        )
        ax.bar(
            [i + 0.2 for i in where],
            dense,
            width=0.4,
            color=colour,
            alpha=0.4,
            label=f"{kind} ops, dense",
        )
    ax.set_xticks(range(len(bars)), _tick_labels([bar[0] for bar in bars], layer_types))
    ax.set_yscale("log")
    ax.set_xlabel("layer")
    ax.set_ylabel("operations per sample")
    ax.set_title("Synaptic operations (connection layers) and neuron operations per layer")
    ax.legend()
    return fig, ax
