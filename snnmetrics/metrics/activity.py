"""Spike-train statistics (:class:`SpikeTrainStatistics`) and per-step activity profiles
(:class:`ActivityProfile`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from torch import Tensor, nn

from snnmetrics.connections import connection_rule
from snnmetrics.functional.spiketrain import spike_train_statistics, step_rates
from snnmetrics.metrics.base import HookedMetric, add_per_layer
from snnmetrics.metrics.lazy import LazyShapes
from snnmetrics.neurons import find_neurons
from snnmetrics.plot import figure_for
from snnmetrics.tracking.activity import (
    OpsSink,
    RateSink,
    SpikeTap,
    StepLayout,
    StepOpsTap,
    TrainSink,
)
from snnmetrics.tracking.hub import acquire

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["ActivityProfile", "SpikeTrainStatistics"]

S = TypeVar("S")


def _spiking_layers(
    model: nn.Module, layers: Sequence[str] | None, metric: str
) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of the spiking neurons of ``model``, or of those named."""
    found = [(name, module) for name, module, rule in find_neurons(model) if rule.spiking]
    if layers is None:
        if not found:
            raise ValueError(
                f"{type(model).__name__} has no spiking neuron to watch (snnTorch neurons, "
                "or a type registered with snnmetrics.register_neuron)"
            )
        return found
    if isinstance(layers, str) or not all(isinstance(name, str) for name in layers):
        raise TypeError(f"layers must be a sequence of layer names, got {layers!r}")
    by_name = dict(found)
    unknown = [name for name in layers if name not in by_name]
    if unknown:
        raise ValueError(
            f"{metric}: {unknown} are not spiking neuron layers of {type(model).__name__}; "
            f"its spiking neurons are {list(by_name)}"
        )
    if not layers:
        raise ValueError(f"{metric}: layers names no layer")
    return [(name, by_name[name]) for name in dict.fromkeys(layers)]


class _SinkMetric(HookedMetric):
    """A hooked metric that gives its taps one sink per layer (see
    :mod:`snnmetrics.tracking.activity`), and takes them back on :meth:`detach`."""

    nonfinite: Tensor
    _sinks: list[tuple[SpikeTap | StepOpsTap, Any]]

    def __init__(self, model: nn.Module, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        zero = torch.zeros((), dtype=torch.int64)
        self.add_state("nonfinite", zero, dist_reduce_fx="sum", persistent=True)

    def _add_sink(self, tap: SpikeTap | StepOpsTap, sink: S) -> S:
        if isinstance(tap, SpikeTap):
            tap.drain()  # the calls staged so far belong to the other sinks
        tap.sinks.append(sink)  # type: ignore[arg-type]
        self._sinks.append((tap, sink))
        return sink

    def _drain(self) -> None:
        """Bring every sink up to the last call (see :class:`SpikeTap`)."""
        for tap, _ in self._sinks:
            if isinstance(tap, SpikeTap):
                tap.drain()

    def detach(self) -> None:
        for tap, sink in self._sinks:
            tap.sinks.remove(sink)
        self._sinks = []
        super().detach()

    def _check_finite(self) -> None:
        if int(self.nonfinite) > 0:
            raise ValueError(
                f"{type(self).__name__}: a watched neuron produced NaN spikes; its figures "
                "are undefined"
            )


class SpikeTrainStatistics(LazyShapes, _SinkMetric):
    """How regularly and how reproducibly each spiking neuron fires: Fano factor and CV of
    the inter-spike intervals, per neuron and per layer.

    A sample's spike train is a neuron's output over the calls of one ``update()``
    window: the steps at which it is nonzero (a step counts once, whatever the value).
    ``compute()`` returns, per layer name, a dict of

    * ``fano_factor`` (float64, the layer's neuron shape): the population variance over
      samples of the neuron's spike count in a sample, divided by its mean; NaN where the
      mean is 0;
    * ``cv_isi``: the standard deviation over the mean (ddof 0) of the neuron's
      inter-spike intervals in steps, pooled over samples (an interval never spans two
      samples); NaN with fewer than 2 intervals;
    * ``mean_fano_factor``, ``mean_cv_isi``: their means over the neurons where they are
      not NaN.

    These are Elephant's ``statistics.fanofactor`` of each neuron's spike trains and
    ``statistics.cv`` of its pooled ``statistics.isi`` (which gives 0, not NaN, for one
    interval). Layers that never ran are left out.

    The state is fixed in size and sums across ranks: per neuron, the sums over samples
    of its spike count and squared count, and the sum, squared sum and number of its
    intervals; the samples (spike trains) per layer. While a window is open, each layer
    keeps each sample's spike count and last spike step (two ``[samples, neurons]``
    buffers, taken into the state by ``update()``), so every call of a window must carry
    the same samples. Multi-step neurons (spikingjelly, sinabs, norse) are read step by
    step (see :func:`snnmetrics.tracking.activity.register_step_order`).

    Example:
        >>> import torch
        >>> from snnmetrics import SpikeTrainStatistics
        >>> class Replay(torch.nn.Module):  # a "neuron" that replays given spikes
        ...     def forward(self, x):
        ...         return x
        >>> from snnmetrics import NeuronRule, register_neuron
        >>> register_neuron(Replay, NeuronRule(spikes=lambda module, output: output))
        >>> net = torch.nn.Sequential(Replay())
        >>> # [samples, steps, neurons]; neuron 0 fires at steps 0, 2, 4 in sample 0 and at
        >>> # steps 0, 1, 5 in sample 1, neuron 1 only at step 3 of sample 1
        >>> spikes = torch.zeros(2, 6, 2)
        >>> spikes[0, [0, 2, 4], 0] = spikes[1, [0, 1, 5], 0] = spikes[1, 3, 1] = 1.0
        >>> with SpikeTrainStatistics(net) as stats:
        ...     for t in range(6):
        ...         _ = net(spikes[:, t])
        ...     stats.update()
        ...     layer = stats.compute()["0"]
        >>> layer["fano_factor"].tolist()  # counts 3, 3 (no variance) and 0, 1
        [0.0, 0.5]
        >>> [round(cv, 4) for cv in layer["cv_isi"].tolist()]  # 2, 2, 1, 4: 1.0897 / 2.25; none
        [0.4843, nan]
    """

    trains: Tensor
    _transient = ("_sinks", "_trains")

    def __init__(
        self, model: nn.Module, layers: Sequence[str] | None = None, **kwargs: Any
    ) -> None:
        """Hook the spiking neurons of ``model`` (or those named in ``layers``).

        Args:
            model: the network to watch (the inner module of a DDP/DataParallel wrapper).
            layers: qualified names of the spiking neuron layers to watch (default: all).
            **kwargs: torchmetrics ``Metric`` options (``sync_on_compute``, ...).

        Raises:
            ValueError: if ``model`` has no spiking neuron, or ``layers`` names a layer
                that is not one.
            TypeError: if ``layers`` is not a sequence of names.
        """
        super().__init__(model, **kwargs)
        watched = _spiking_layers(self.model, layers, type(self).__name__)
        self.layer_names = [name for name, _ in watched]
        self._attach()
        # per layer [5, *neurons]: sums of counts, squared counts, intervals, squared
        # intervals and the number of intervals; empty until the layer first runs
        self._lazy = [f"sums_{i}" for i in range(len(self.layer_names))]
        for name in self._lazy:
            self.add_state(
                name, torch.zeros(0, dtype=torch.int64), dist_reduce_fx="sum", persistent=True
            )
        trains = torch.zeros(len(self.layer_names), dtype=torch.int64)
        self.add_state("trains", trains, dist_reduce_fx="sum", persistent=True)

    def _attach(self) -> None:
        taps = [acquire(self.model.get_submodule(name), SpikeTap) for name in self.layer_names]
        self._sinks = []
        self._trains = [
            self._add_sink(tap, TrainSink(name))
            for tap, name in zip(taps, self.layer_names, strict=True)
        ]
        self._subscribe(taps)

    def _fold(self) -> None:
        self._drain()
        device = self.trains.device
        samples = []
        for i, sink in enumerate(self._trains):
            window = sink.take()
            if window is None:
                samples.append(0)
                continue
            sums = window.sums.to(device)
            state: Tensor = getattr(self, self._lazy[i])
            if state.numel() == 0:
                with torch.inference_mode(False):  # a state must stay updatable outside it
                    state = torch.zeros_like(sums)
                setattr(self, self._lazy[i], state)
            elif state.shape != sums.shape:
                raise ValueError(
                    f"layer {self.layer_names[i]!r} ran {tuple(sums.shape[1:])} neurons after "
                    f"{tuple(state.shape[1:])}: spike-train statistics need the same neurons "
                    "in every call of a layer"
                )
            state += sums
            self.nonfinite.add_(window.nan.to(device))
            samples.append(window.samples)
        add_per_layer(self.trains, samples)

    def _skip(self) -> None:
        self._drain()
        for sink in self._trains:
            sink.clear()

    def compute(self) -> dict[str, dict[str, Tensor]]:
        """The statistics of each layer that ran.

        Returns:
            per layer name, float64 ``fano_factor`` and ``cv_isi`` (the layer's neuron
            shape) and ``mean_fano_factor`` and ``mean_cv_isi`` (see the class docstring);
            layers that never ran are left out.

        Raises:
            ValueError: if a watched neuron produced NaN spikes.
        """
        self._check_finite()
        result = {}
        for i, name in enumerate(self.layer_names):
            if int(self.trains[i]) > 0:
                sums = getattr(self, self._lazy[i])
                result[name] = spike_train_statistics(
                    sums[0], sums[1], self.trains[i], sums[2], sums[3], sums[4]
                )
        return result

    def plot(
        self,
        val: dict[str, dict[str, Tensor]] | Sequence[Any] | None = None,
        ax: Axes | None = None,
    ) -> tuple[Figure, Axes]:
        """Box plots of each layer's Fano factors and CVs over its neurons (NaN left
        out), each layer's type under its name; given a list of results (one per epoch,
        say), the means over the list, as the other metrics draw one. Returns
        ``(fig, ax)``.

        Args:
            val: a result of :meth:`compute` (computed now if ``None``), or a list of them.
            ax: axes to draw into; a new figure is made if ``None``.
        """
        if isinstance(val, (list, tuple)):
            return super().plot(val, ax=ax)
        result = self.compute() if val is None else val
        if not result:
            raise ValueError("there is no layer to plot")
        fig, ax = figure_for(ax, (max(6.0, 1.6 * len(result)), 4.5))
        names = list(result)
        for offset, key, color in ((-0.2, "fano_factor", "C0"), (0.2, "cv_isi", "C1")):
            data = []
            for name in names:
                values = result[name][key].detach().flatten().cpu()
                data.append(values[~values.isnan()].numpy())
            boxes = ax.boxplot(
                data,
                positions=[i + offset for i in range(len(names))],
                widths=0.35,
                patch_artist=True,
                manage_ticks=False,
            )
            for box in boxes["boxes"]:
                box.set_facecolor(color)
            boxes["boxes"][0].set_label(key)
        types = [type(self.model.get_submodule(name)).__name__ for name in names]
        ax.set_xticks(range(len(names)), [f"{n}\n{t}" for n, t in zip(names, types, strict=True)])
        ax.set_xlabel("layer")
        ax.set_ylabel("per neuron")
        ax.set_title("Fano factor of spike counts and CV of inter-spike intervals")
        ax.legend()
        return fig, ax


class ActivityProfile(_SinkMetric):
    """How activity and cost unfold over the steps of a window.

    For every spiking neuron layer, ``rate[t]``: the fraction of its neurons firing at
    step ``t`` of a window (the ``t``-th step the layer ran since the last ``update()``),
    averaged over the samples that ran step ``t`` (NaN at steps none did). For every
    connection layer, ``synops[t]``: the effective synaptic operations (nonzero input
    element x nonzero weight pairs, counted as :class:`~snnmetrics.SynapticOperations`
    counts them) at step ``t``, per sample of all windows, so that they sum over steps to
    ``SynapticOperations``' ``synops`` of the layer (0 at steps no window reached).

    ``compute()`` returns, per layer name, a dict with ``rate`` (neuron layers) and/or
    ``synops`` (connection layers), each float64 ``[max_steps]``. :meth:`plot` draws both
    over the steps.

    The state is ``[layers, max_steps]`` per figure whatever the number of batches; a
    window longer than ``max_steps`` raises a ``ValueError`` (call ``update()`` after
    each batch). Neurons that run several steps per call (spikingjelly multi-step,
    sinabs, norse sequences) fill one entry per step; their connection layers' rows are
    split into the same steps (``[T, B, ...]``, ``[B, T, ...]`` or flattened rows, in the
    neurons' order). Full recurrent layers (``nn.RNN``/``LSTM``/``GRU``), whose steps run
    inside one call with no per-step count, are refused.

    The number of samples of ``update()`` is dim 0 of the first input the hooks saw, as
    for the other hooked metrics: pass ``update(batch_size=B)`` for a model fed
    ``[T, B, ...]``.

    Example:
        >>> import torch, snntorch as snn
        >>> from snnmetrics import ActivityProfile
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 3, bias=False),
        ...                           snn.Leaky(beta=1.0, threshold=1.5, init_hidden=True))
        >>> _ = torch.nn.init.ones_(net[0].weight)
        >>> with ActivityProfile(net, max_steps=4) as profile:
        ...     for t in range(3):
        ...         _ = net(torch.tensor([[1.0, 0.0]]))  # 1 nonzero input x 3 synapses
        ...     profile.update()
        ...     result = profile.compute()
        >>> result["0"]["synops"].tolist()
        [3.0, 3.0, 3.0, 0.0]
        >>> result["1"]["rate"].tolist()  # the membrane reaches 2 at the second step
        [0.0, 1.0, 0.0, nan]
    """

    spikes: Tensor
    observations: Tensor
    ops: Tensor
    _transient = ("_sinks", "_layout", "_rates", "_ops", "_connection_taps")

    def __init__(self, model: nn.Module, max_steps: int, **kwargs: Any) -> None:
        """Hook the spiking neurons and the connection layers of ``model``.

        Args:
            model: the network to watch (the inner module of a DDP/DataParallel wrapper).
            max_steps: the most steps a window (the calls between two ``update()``) may run.
            **kwargs: torchmetrics ``Metric`` options (``sync_on_compute``, ...).

        Raises:
            ValueError: if ``max_steps`` is not positive, or ``model`` has neither a
                spiking neuron nor a connection layer.
            TypeError: if ``max_steps`` is not an int, or ``model`` holds a full recurrent
                layer (``nn.RNN``/``LSTM``/``GRU``).
        """
        if isinstance(max_steps, bool) or not isinstance(max_steps, int):
            raise TypeError(f"max_steps must be a positive int, got {max_steps!r}")
        if max_steps <= 0:
            raise ValueError(f"max_steps must be a positive int, got {max_steps}")
        super().__init__(model, **kwargs)
        self.max_steps = max_steps
        neurons = [(n, m) for n, m, rule in find_neurons(self.model) if rule.spiking]
        connections = [
            (n, m) for n, m in self.model.named_modules() if connection_rule(m) is not None
        ]
        if not neurons and not connections:
            raise ValueError(
                f"{type(self.model).__name__} has no spiking neuron and no connection layer "
                "to profile"
            )
        for name, module in connections:
            if isinstance(module, nn.RNNBase):
                raise TypeError(
                    f"layer {name!r} ({type(module).__name__}) runs all its steps in one call "
                    "and its operations cannot be told apart by step: ActivityProfile needs "
                    "one call per step (use its cell, e.g. nn.LSTMCell)"
                )
        self.neuron_names = [name for name, _ in neurons]
        self.connection_names = [name for name, _ in connections]
        profiled = {*self.neuron_names, *self.connection_names}
        self.layer_names = [name for name, _ in self.model.named_modules() if name in profiled]
        self._attach()
        for name, rows, dtype in (
            ("spikes", len(neurons), torch.int64),
            ("observations", len(neurons), torch.int64),
            ("ops", len(connections), torch.float64),
        ):
            zeros = torch.zeros((rows, max_steps), dtype=dtype)
            self.add_state(name, zeros, dist_reduce_fx="sum", persistent=True)

    def _attach(self) -> None:
        module = self.model.get_submodule
        neuron_taps = [acquire(module(name), SpikeTap) for name in self.neuron_names]
        connection_taps = [acquire(module(name), StepOpsTap) for name in self.connection_names]
        self._layout = StepLayout()
        self._sinks = []
        self._rates = [
            self._add_sink(tap, RateSink(name, self.max_steps, self._layout))
            for tap, name in zip(neuron_taps, self.neuron_names, strict=True)
        ]
        self._ops = [
            self._add_sink(tap, OpsSink(name, self.max_steps, self._layout))
            for tap, name in zip(connection_taps, self.connection_names, strict=True)
        ]
        self._connection_taps = connection_taps
        self._subscribe([*neuron_taps, *connection_taps])

    def _options(self) -> tuple[Any, ...]:
        return (self.max_steps,)

    def _fold(self) -> None:
        self._drain()
        self._layout.settle()
        self._layout.clear()
        device = self.spikes.device
        observations = torch.zeros_like(self.observations, device="cpu")
        for i, rate_sink in enumerate(self._rates):
            window = rate_sink.take()
            if window is not None:
                spikes, seen, nan = window
                self.spikes[i].add_(spikes.to(device))
                observations[i].add_(torch.tensor(seen, dtype=torch.int64))
                self.nonfinite.add_(nan.to(device))
        self.observations.add_(observations.to(device))
        for i, ops_sink in enumerate(self._ops):
            ops = ops_sink.take()
            if ops is not None:
                self.ops[i].add_(ops.to(device))
        for tap in self._connection_taps:
            tap.mark_read()

    def _skip(self) -> None:
        self._drain()
        self._layout.clear()
        for _, sink in self._sinks:
            sink.clear()
        for tap in self._connection_taps:
            tap.mark_read()

    def compute(self) -> dict[str, dict[str, Tensor]]:
        """The profile of each layer, in model order.

        Returns:
            per layer name, ``rate`` (spiking neuron layers) and/or ``synops`` (connection
            layers), float64 ``[max_steps]`` (see the class docstring; NaN before any
            update).

        Raises:
            ValueError: if a watched neuron produced NaN spikes or a connection layer NaN
                inputs.
        """
        samples = self._samples()
        self._check_finite()
        if not bool(torch.isfinite(self.ops).all()):
            raise ValueError(
                "a connection layer received NaN inputs: synaptic operations are undefined"
            )
        result: dict[str, dict[str, Tensor]] = {name: {} for name in self.layer_names}
        for i, name in enumerate(self.neuron_names):
            result[name]["rate"] = step_rates(self.spikes[i], self.observations[i])
        for i, name in enumerate(self.connection_names):
            result[name]["synops"] = self.ops[i] / samples
        return result

    def plot(
        self,
        val: dict[str, dict[str, Tensor]] | Sequence[Any] | None = None,
        ax: Axes | None = None,
    ) -> tuple[Figure, Axes]:
        """Each neuron layer's rate (solid, left axis) and each connection layer's
        synaptic operations per sample (dashed, right axis) over the steps that a window
        reached, labelled with the layers' names and types; ``(fig, ax)``.

        Args:
            val: a result of :meth:`compute`; computed now if ``None``. A profile is
                drawn one result at a time (a list raises a ``ValueError``).
            ax: axes to draw into; a new figure is made if ``None``.
        """
        if val is not None and not isinstance(val, dict):
            raise ValueError(
                "ActivityProfile plots one result at a time: its figures are already over "
                "steps; plot each result of the list"
            )
        result = self.compute() if val is None else val
        rates = {name: r["rate"].detach().cpu() for name, r in result.items() if "rate" in r}
        costs = {name: r["synops"].detach().cpu() for name, r in result.items() if "synops" in r}
        # the last step any window reached: a finite rate or nonzero operations
        reached = [rate.isfinite() for rate in rates.values()]
        reached += [cost != 0 for cost in costs.values()]
        last = [int(flags.nonzero().max()) for flags in reached if bool(flags.any())]
        if not last:
            raise ValueError("there is no step to plot: run the model and call update() first")
        steps = range(max(last) + 1)
        fig, ax = figure_for(ax, (8.0, 4.5))
        kind = {name: type(self.model.get_submodule(name)).__name__ for name in result}
        for name, rate in rates.items():
            label = f"{name} ({kind[name]}) rate"
            ax.plot(steps, rate[: len(steps)].numpy(), marker="o", label=label)
        ax.set_xlabel("step")
        ax.set_ylabel("fraction of neurons firing")
        handles, labels = ax.get_legend_handles_labels()
        if costs:
            cost_ax = ax.twinx() if rates else ax
            for name, cost in costs.items():
                label = f"{name} ({kind[name]}) synops"
                cost_ax.plot(steps, cost[: len(steps)].numpy(), linestyle="--", label=label)
            cost_ax.set_ylabel("synaptic operations per sample")
            if cost_ax is not ax:
                more_handles, more_labels = cost_ax.get_legend_handles_labels()
                handles, labels = handles + more_handles, labels + more_labels
            else:
                handles, labels = ax.get_legend_handles_labels()
        ax.legend(handles, labels, fontsize="small")
        ax.set_title("Activity and synaptic operations per step")
        return fig, ax
