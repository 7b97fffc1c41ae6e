"""Plots of metric results (matplotlib is imported only when a plot is drawn)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from snnmetrics.results import layer_order, scalars

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_fields", "plot_firing_rates", "plot_operations", "plot_result"]


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
    fig, ax = figure_for(ax, (max(6.0, 1.2 * len(names)), 4.5))
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
    fig, ax = figure_for(ax, (max(6.0, 0.9 * len(bars)), 4.5))
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


def plot_result(
    val: Any,
    ax: Axes | None = None,
    layer_types: Mapping[str, str] | None = None,
    title: str = "",
    ylabel: str = "",
) -> tuple[Figure, Axes]:
    """Draw a metric result: bars for one result, lines over time for a sequence of them.

    One result (a ``compute()`` or ``compute_per_layer()`` output) gives a group of bars
    per top-level key (each layer, in model order, with its type from ``layer_types``
    under its name), one bar per scalar inside it; values that span more than two
    decades get a log axis. A list or tuple of results (one per epoch, say) gives one
    line per scalar figure over their index, as torchmetrics' ``plot`` does. Tensors of
    more than one element (per-neuron rates, histograms) are left out.

    Returns:
        ``(fig, ax)``.
    """
    if isinstance(val, (list, tuple)):
        fig, ax = _plot_over_time(val, ax)
    else:
        fig, ax = _plot_bars(val, ax, layer_types)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return fig, ax


def figure_for(ax: Axes | None, size: tuple[float, float]) -> tuple[Figure, Axes]:
    """``ax`` and its figure, or a new figure of ``size`` inches and its axes."""
    if ax is None:
        fig, ax = _pyplot().subplots(figsize=size)
        return fig, ax
    figure: Figure = ax.get_figure()  # type: ignore[assignment]
    return figure, ax


def _plot_over_time(results: Sequence[Any], ax: Axes | None) -> tuple[Figure, Axes]:
    series: dict[str, list[float]] = {}
    for step, result in enumerate(results):
        for key, value in scalars("", result).items():
            series.setdefault(key.lstrip("/"), [float("nan")] * step).append(float(value))
    if not series:
        raise ValueError("there is no scalar figure to plot")
    fig, ax = figure_for(ax, (7.0, 4.5))
    for key, values in series.items():
        ax.plot(range(len(values)), values, marker="o", label=key or None)
    ax.set_xlabel("result (epoch, say)")
    ax.set_xticks(range(max(len(values) for values in series.values())))
    if len(series) > 1:
        ax.legend()
    return fig, ax


def _plot_bars(
    result: Any, ax: Axes | None, layer_types: Mapping[str, str] | None
) -> tuple[Figure, Axes]:
    groups = {key: scalars("", value) for key, value in result.items()} if isinstance(
        result, Mapping
    ) else {"": scalars("", result)}
    groups = {name: bars for name, bars in groups.items() if bars}
    if not groups:
        raise ValueError("there is no scalar figure to plot")
    names = sorted(groups, key=layer_order)
    keys = list(dict.fromkeys(key for bars in groups.values() for key in bars))
    fig, ax = figure_for(ax, (max(6.0, 0.3 * len(names) * len(keys) + 2), 4.5))
    width = 0.8 / len(keys)
    heights = []
    for j, key in enumerate(keys):
        row = [float(groups[name].get(key, float("nan"))) for name in names]
        positions = [i - 0.4 + width * (j + 0.5) for i in range(len(names))]
        ax.bar(positions, row, width=width, label=key.lstrip("/") or None)
        heights += row
    positive = [height for height in heights if height > 0]
    if positive and max(positive) > 100 * min(positive):
        ax.set_yscale("log")
    ax.set_xticks(range(len(names)), _tick_labels(names, layer_types))
    if len(keys) > 1:
        ax.legend()
    return fig, ax


def plot_fields(
    fields: Mapping[str, Tensor],
    ax: Axes | None = None,
    layer_types: Mapping[str, str] | None = None,
) -> tuple[Figure, Axes]:
    """One image per layer of a per-weight map (a spike-triggered average, say): rows are
    output units (or channels), columns everything else of the weight, flattened.

    Args:
        fields: layer name -> a tensor shaped like the layer's weight.
        ax: axes to draw into, for a single layer; a new figure with one axes per layer
            is made if ``None``.
        layer_types: layer name -> type name, shown in each title.

    Returns:
        ``(fig, ax)`` with ``ax`` the axes of the first layer (all are in ``fig.axes``).
    """
    if not fields:
        raise ValueError("there is no layer to plot")
    names = list(fields)
    if ax is None:
        size = (4.0 * len(names), 4.0)
        fig, grid = _pyplot().subplots(1, len(names), figsize=size, squeeze=False)
        all_axes = list(grid[0])
    elif len(names) == 1:
        fig, all_axes = figure_for(ax, (4.0, 4.0))[0], [ax]
    else:
        raise ValueError(f"{len(names)} layers to draw: pass ax=None for one axes per layer")
    for name, axes in zip(names, all_axes, strict=True):
        field = fields[name].detach().to("cpu", dtype=torch.float64)
        image = axes.imshow(field.reshape(field.shape[0], -1).numpy(), aspect="auto")
        fig.colorbar(image, ax=axes)
        kind = (layer_types or {}).get(name)
        axes.set_title(f"{name} {kind}" if kind else name)
        axes.set_xlabel("input element of the weight")
        axes.set_ylabel("unit")
    return fig, all_axes[0]
