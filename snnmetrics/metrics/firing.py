"""Per-layer firing-rate distributions: :class:`FiringRate`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from snnmetrics.functional.neuron import bin_edges, firing_rate_statistics, firing_rates
from snnmetrics.metrics.base import add_per_layer
from snnmetrics.metrics.lazy import LazyShapes
from snnmetrics.metrics.neuron import NeuronMetric, NeuronReading
from snnmetrics.plot import plot_firing_rates
from snnmetrics.tracking.neuron import NeuronTap

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["FiringRate"]

class FiringRate(LazyShapes, NeuronMetric):
    """Each spiking neuron's firing rate, and its distribution over each layer's neurons.

    The rate of a neuron is its spikes (nonzero outputs) over the sample-steps it ran:
    ``spikes / (samples x steps)``. The state is one int64 spike count per neuron and one
    sample-step count per layer, whatever the number of batches and steps. ``compute()``
    returns, per layer name, a dict of ``rates`` (float64, the layer's neuron shape) and,
    over the layer's neurons, ``mean``, ``std`` (Bessel's correction), ``min``, ``max``,
    ``median``, ``q1``, ``q3`` (numpy's default linear percentiles), ``histogram`` (int64
    counts) and its ``bin_edges``: ``bins`` equal bins on [0, 1] or the given edges.
    Layers that never ran are left out. Every call of a layer must have the same neurons
    (shape per sample). :meth:`plot` draws a box plot per layer.

    snnTorch neurons do not know how many neurons they have, so each layer's count state
    is empty until the layer first runs. Under DDP, a rank that saw no data takes the
    others' shapes when the states sync (one extra ``all_reduce`` of the shapes), and
    :meth:`merge_state` does the same, so every rank syncs the same states.

    Example:
        >>> import torch, snntorch as snn
        >>> from snnmetrics import FiringRate
        >>> net = torch.nn.Sequential(torch.nn.Identity(),
        ...                           snn.Leaky(beta=0.5, threshold=0.5, init_hidden=True))
        >>> with FiringRate(net, bins=4) as rates:
        ...     for t in range(4):
        ...         _ = net(torch.tensor([[0.0, 0.3, 1.0]]))
        ...     rates.update()
        ...     layer = rates.compute()["1"]
        >>> layer["rates"].tolist(), layer["histogram"].tolist()  # 0.3 crosses 0.5 once in 4 steps
        ([0.0, 0.25, 1.0], [1, 1, 0, 1])
    """

    observations: Tensor

    def __init__(
        self, model: nn.Module, bins: int | Sequence[float] | Tensor = 20, **kwargs: Any
    ) -> None:
        """Hook every spiking neuron of ``model``.

        Args:
            model: the network to watch (the inner module of a DDP/DataParallel wrapper).
            bins: the histogram's bins: a number of equal bins on [0, 1], or their edges.
            **kwargs: torchmetrics ``Metric`` options (``sync_on_compute``, ``process_group``, ...).

        Raises:
            ValueError: if ``model`` has no spiking neuron or ``bins`` is invalid.
        """
        edges = bin_edges(bins)
        super().__init__(model, **kwargs)
        self.bin_edges = edges
        self._lazy = [f"spikes_{i}" for i in range(len(self.layer_names))]
        for name in self._lazy:
            self._add_count(name, (0,))
        self._add_count("observations", (len(self.layer_names),))

    def _track(self, taps: Sequence[NeuronTap]) -> None:
        for tap in taps:
            tap.track_per_neuron()

    def _fold_layers(self, reading: NeuronReading) -> None:
        add_per_layer(self.observations, reading.changes("rows"))
        for i, (now, before) in enumerate(zip(reading.now, reading.before, strict=True)):
            if now.per_neuron is None:
                continue  # the layer has not run since this metric began counting
            spikes = now.per_neuron.to(self.observations.device)
            if before.per_neuron is not None:
                spikes = spikes - before.per_neuron.to(spikes.device)
            state: Tensor = getattr(self, self._lazy[i])
            if state.numel() == 0:
                with torch.inference_mode(False):  # a state must stay updatable outside it
                    state = torch.zeros(spikes.shape, dtype=torch.int64, device=spikes.device)
                setattr(self, self._lazy[i], state)
            state += spikes.to(torch.int64)

    def compute(self) -> dict[str, dict[str, Tensor]]:
        """Firing-rate statistics of each layer that ran.

        Returns:
            per layer name a dict of ``rates`` (each neuron's, float64, the neuron shape),
            ``mean``, ``std``, ``min``, ``max``, ``median``, ``q1``, ``q3``, ``histogram``
            and ``bin_edges`` (empty before any update).
        """
        self._check_finite()
        result = {}
        for i, name in enumerate(self.layer_names):
            if int(self.observations[i]) > 0:
                rates = firing_rates(getattr(self, self._lazy[i]), self.observations[i])
                result[name] = firing_rate_statistics(rates, self.bin_edges)
        return result

    def plot(
        self,
        val: dict[str, dict[str, Tensor]] | Sequence[Any] | None = None,
        ax: Axes | None = None,
    ) -> tuple[Figure, Axes]:
        """Box plot of each layer's rates over its neurons (means shown), with each layer's
        type under its name; given a list of results (one per epoch, say), one line per
        layer statistic over the list. Returns ``(fig, ax)``.

        Args:
            val: a result of :meth:`compute` (computed now if ``None``), or a list of them.
            ax: axes to draw into; a new figure is made if ``None``.
        """
        if val is None:
            val = self.compute()
        if isinstance(val, Mapping):
            return plot_firing_rates(val, ax=ax, layer_types=self.layer_types())
        return super().plot(val, ax=ax)
