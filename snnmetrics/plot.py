"""Plots of metric results (matplotlib is imported only when a plot is drawn)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from torch import Tensor

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_firing_rates"]


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
