"""Energy estimate of a model from its operation counts: :class:`Energy`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from snnmetrics.energy import EnergyTable, MemoryModel, energy_table
from snnmetrics.functional.energy import check_memory, check_steps_per_inference, energy
from snnmetrics.metrics.base import HookedMetric, unwrap_model
from snnmetrics.metrics.neuron import (
    NeuronLayers,
    membrane_update_counts,
    operation_costs,
    watches_membrane,
)
from snnmetrics.metrics.synaptic import ConnectionLayers
from snnmetrics.neurons import Costs, find_neurons

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["Energy"]

_RATIOS = ("ann_ratio", "spikes_per_synapse")
_SYNAPTIC_COUNTS = ("effective_acs", "effective_macs", "dense")
_NEURON_COUNTS = ("neuron_ops", "membrane_updates", "spikes")


class Energy(HookedMetric):
    """Estimated energy per sample, in joules, from operation counts and a cost table.

    Counts what :class:`~snnmetrics.SynapticOperations` counts (effective ACs and MACs,
    dense operations; zero weights skipped) and what :class:`~snnmetrics.NeuronOperations`
    counts (membrane updates times each neuron type's operations, ``costs`` overrides
    them as there), sharing their hooks, and prices them with ``table``
    (:mod:`snnmetrics.energy`; default Horowitz's 45 nm fp32: AC 0.9 pJ, MAC 4.6 pJ,
    neuron operation 2.3 pJ). ``compute()`` returns float64 tensors, per sample:

    * ``synaptic``: effective ACs x AC cost + effective MACs x MAC cost;
    * ``neuron``: neuron operations x the table's cost of a neuron operation;
    * with ``memory`` (a :class:`~snnmetrics.energy.MemoryModel`): ``memory`` and its
      terms ``memory_weights``, ``memory_membrane``, ``memory_spikes``;
    * ``total``: the sum of the above;
    * the same connection layers as a dense ANN: ``ann_macs`` (dense operations per
      ANN inference), ``ann`` (their energy as MACs, with one weight read each under a
      memory model), ``ann_ratio`` (``total / ann``: below 1 the spiking version costs
      less) and ``spikes_per_synapse`` (effective synaptic operations per ANN MAC: the
      synaptic events per synapse per inference).

    ``steps_per_inference`` says how many SNN steps one ANN inference stands for: 1
    (default) when an ANN would process every step as the SNN does (a stream, e.g.
    audio or event frames), ``T`` when the SNN repeats a static input for ``T`` steps
    that an ANN classifies in one pass. Published break-even points for digital
    hardware are about 0.15-1.38 (Dampfhoffer et al., IEEE TETCI 2023, depending on the
    ANN dataflow) and about 1.72 (Davidson & Furber, Front. Neurosci. 2021) spikes per
    synapse per inference: above them a well-implemented ANN tends to win.

    ``compute_per_layer()`` gives, per layer name, the same figures without the two
    ratios: connection layers carry the synaptic (and weight and accumulation memory)
    energy, neuron layers the neuron (and membrane and spike memory) energy. The state
    holds counts, not joules: change ``energy.table``, ``energy.memory`` or
    ``energy.steps_per_inference`` and ``compute()`` again, no re-run needed.

    Every figure is an estimate from counted operations and published per-operation
    energies (see the table's ``source``), not a measurement.

    Example:
        >>> import torch, snntorch as snn
        >>> from snnmetrics import Energy
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 3, bias=False),
        ...                           snn.Leaky(beta=0.9, init_hidden=True))
        >>> with Energy(net) as energy:
        ...     for t in range(5):
        ...         _ = net(torch.zeros(2, 4))   # no input spikes: no synaptic operation
        ...     energy.update()
        ...     result = energy.compute()
        >>> # the membrane stays 0: 3 updates (first step) x 4 operations x 2.3 pJ
        >>> round(float(result["neuron"]) * 1e12, 6), float(result["synaptic"])
        (27.6, 0.0)
        >>> energy.table.name
        'horowitz45nm_fp32'
    """

    higher_is_better = False
    _unit = "J per sample"
    effective_acs: Tensor
    effective_macs: Tensor
    dense: Tensor
    updates: Tensor
    spikes: Tensor
    nonfinite: Tensor
    _transient = ("_connections", "_neurons")

    def __init__(
        self,
        model: nn.Module,
        table: str | EnergyTable = "horowitz45nm_fp32",
        memory: MemoryModel | None = None,
        costs: Costs | None = None,
        steps_per_inference: int = 1,
        **kwargs: Any,
    ) -> None:
        """Hook every connection layer and spiking neuron of ``model``.

        Args:
            model: the network to watch (the inner module of a DDP/DataParallel wrapper).
            table: the cost table, a :class:`~snnmetrics.energy.EnergyTable` or a
                registered name (see ``snnmetrics.energy.energy_tables()``).
            memory: a :class:`~snnmetrics.energy.MemoryModel` to add memory-access energy.
            costs: operations per membrane update by neuron type, as in
                :class:`~snnmetrics.NeuronOperations`.
            steps_per_inference: SNN steps that one ANN inference stands for, in the ANN
                comparison.
            **kwargs: torchmetrics ``Metric`` options (``sync_on_compute``, ``process_group``, ...).
        """
        # check everything that can fail before any hook is added
        self._table = energy_table(table)
        self._memory = check_memory(memory)
        self._steps = check_steps_per_inference(steps_per_inference)
        known_costs = operation_costs(unwrap_model(model), costs)
        super().__init__(model, **kwargs)
        self._attach()
        self.costs: dict[str, float] = {name: known_costs[name] for name in self.neuron_names}
        for name, dtype, n in (
            ("effective_acs", torch.float64, len(self.connection_names)),
            ("effective_macs", torch.float64, len(self.connection_names)),
            ("dense", torch.int64, len(self.connection_names)),
            ("updates", torch.int64, len(self.neuron_names)),
            ("spikes", torch.int64, len(self.neuron_names)),
            ("nonfinite", torch.int64, None),
        ):
            zeros = torch.zeros(() if n is None else (n,), dtype=dtype)
            self.add_state(name, zeros, dist_reduce_fx="sum", persistent=True)

    def _attach(self) -> None:
        neurons = [  # first: a neuron without membrane readers fails before any hook is added
            (name, module)
            for name, module, rule in find_neurons(self.model)
            if watches_membrane(name, rule, "Energy")
        ]
        self._connections = ConnectionLayers(self.model, skip_zero_weights=True)
        self._neurons = NeuronLayers(neurons)
        for tap in self._neurons.taps:
            tap.track_membrane()
        self.connection_names = self._connections.names
        self.neuron_names = self._neurons.names
        # a module that is both (a recurrent cell that spikes) is named once
        self.layer_names = list(dict.fromkeys([*self.connection_names, *self.neuron_names]))
        self._subscribe([*self._connections.taps, *self._neurons.taps])

    @property
    def table(self) -> EnergyTable:
        """The cost table in use; assign a table or a registered name to change it."""
        return self._table

    @table.setter
    def table(self, table: str | EnergyTable) -> None:
        self._table = energy_table(table)
        self._computed = None  # the cached compute() used the old setting

    @property
    def memory(self) -> MemoryModel | None:
        """The memory model in use (``None``: operations only); assignable."""
        return self._memory

    @memory.setter
    def memory(self, memory: MemoryModel | None) -> None:
        self._memory = check_memory(memory)
        self._computed = None  # the cached compute() used the old setting

    @property
    def steps_per_inference(self) -> int:
        """SNN steps per ANN inference in the ANN comparison; assignable."""
        return self._steps

    @steps_per_inference.setter
    def steps_per_inference(self, steps: int) -> None:
        self._steps = check_steps_per_inference(steps)
        self._computed = None  # the cached compute() used the old setting

    def _fold(self) -> None:
        self._connections.fold(self.effective_acs, self.effective_macs, self.dense, self.nonfinite)
        reading = self._neurons.read(self._window, self.updates.device)
        self.nonfinite.add_(reading.counts[:, 2].sum().to(torch.int64))
        self.updates.add_(membrane_update_counts(reading))
        self.spikes.add_(reading.counts[:, 0].to(torch.int64))  # NaN is counted apart

    def _skip(self) -> None:
        self._connections.skip()
        self._neurons.skip()

    def compute(self) -> dict[str, Tensor]:
        """Estimated energy per sample.

        Returns:
            float64 tensors in joules per sample: ``total``, ``synaptic``, ``neuron`` (and
            the ``memory`` terms with a memory model), ``ann`` with ``ann_macs``, and the
            ratios ``ann_ratio`` and ``spikes_per_synapse``; NaN before any update.
        """
        counts = self._counts()
        return self._energy({key: value.sum() for key, value in counts.items()})

    def compute_per_layer(self) -> dict[str, dict[str, Tensor]]:
        """The figures of :meth:`compute` but the ratios, for each layer name."""
        with self._synced():
            counts = self._counts()
            samples = self._samples()
        device = self.dense.device
        no_neuron = torch.zeros(len(self.connection_names), dtype=torch.float64, device=device)
        no_synapse = torch.zeros(len(self.neuron_names), dtype=torch.float64, device=device)
        result: dict[str, dict[str, Tensor]] = {}
        for names, part in (
            (self.connection_names, dict.fromkeys(_NEURON_COUNTS, no_neuron)),
            (self.neuron_names, dict.fromkeys(_SYNAPTIC_COUNTS, no_synapse)),
        ):
            figures = self._energy({**counts, **part}, samples)
            for i, name in enumerate(names):
                layer = {key: value[i] for key, value in figures.items() if key not in _RATIOS}
                if name in result:  # a module that is both a connection and a neuron
                    layer = {key: value + result[name][key] for key, value in layer.items()}
                result[name] = layer
        return result

    def plot(self, val: Any = None, ax: Axes | None = None) -> tuple[Figure, Axes]:
        """Per-layer bars of the joules per sample (``val=None``), bars of a result, or one
        line per figure over a list of results; ``(fig, ax)``. See
        :meth:`HookedMetric.plot <snnmetrics.HookedMetric.plot>`."""
        if val is None:  # joules only: leave out the ANN's operation count
            val = {
                name: {key: value for key, value in figures.items() if key != "ann_macs"}
                for name, figures in self.compute_per_layer().items()
            }
        return super().plot(val, ax=ax)

    def _counts(self) -> dict[str, Tensor]:
        """Each layer's counts over all samples (float64), after checking they are defined."""
        if int(self.nonfinite) > 0:
            raise ValueError(
                "Energy: a watched layer received NaN inputs or produced NaN spikes or "
                "membranes; its energy is undefined (reset() it to count the next windows)"
            )
        cost = torch.tensor(list(self.costs.values()), dtype=torch.float64)
        updates = self.updates.to(torch.float64)
        return {
            "effective_acs": self.effective_acs,
            "effective_macs": self.effective_macs,
            "dense": self.dense.to(torch.float64),
            "neuron_ops": updates * cost.to(updates.device),
            "membrane_updates": updates,
            "spikes": self.spikes.to(torch.float64),
        }

    def _energy(self, counts: dict[str, Any], samples: Tensor | None = None) -> dict[str, Tensor]:
        """Joules per sample of ``counts`` (totals over ``samples``, default the state's);
        the ratios do not depend on the number of samples."""
        figures = energy(
            counts["effective_acs"],
            counts["effective_macs"],
            counts["neuron_ops"],
            self._table,
            memory=self._memory,
            membrane_updates=counts["membrane_updates"],
            spikes=counts["spikes"],
            dense=counts["dense"],
            steps_per_inference=self._steps,
        )
        samples = self._samples() if samples is None else samples
        return {key: value if key in _RATIOS else value / samples for key, value in figures.items()}
