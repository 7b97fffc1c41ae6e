"""Energy in joules from operation counts and a cost table (the rules :class:`Energy` uses)."""

from __future__ import annotations

import numbers

import torch
from torch import Tensor

from snnmetrics.energy import EnergyTable, MemoryModel, energy_table

__all__ = ["check_memory", "check_steps_per_inference", "energy"]


def _counts(name: str, value: Tensor | float) -> Tensor:
    if isinstance(value, bool) or not isinstance(value, (Tensor, numbers.Real)):
        raise TypeError(f"{name} must be a number or a tensor of counts, got {value!r}")
    counts = torch.as_tensor(value).detach().to(torch.float64)
    if not bool(torch.isfinite(counts).all()):
        raise ValueError(f"{name} must be finite counts (found NaN or inf)")
    if bool((counts < 0).any()):
        raise ValueError(f"{name} must be non-negative counts")
    return counts


def check_steps_per_inference(steps: object) -> int:
    """``steps`` as a positive int, or a ``TypeError``/``ValueError`` naming the argument."""
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral):
        raise TypeError(f"steps_per_inference must be a positive int, got {steps!r}")
    if steps <= 0:
        raise ValueError(f"steps_per_inference must be a positive int, got {steps}")
    return int(steps)


def check_memory(memory: object) -> MemoryModel | None:
    """``memory`` if it is a :class:`~snnmetrics.energy.MemoryModel` or ``None``, else a
    ``TypeError``."""
    if memory is not None and not isinstance(memory, MemoryModel):
        raise TypeError(f"memory must be a MemoryModel or None, got {type(memory).__name__}")
    return memory


def energy(
    effective_acs: Tensor | float,
    effective_macs: Tensor | float,
    neuron_ops: Tensor | float = 0.0,
    table: str | EnergyTable = "horowitz45nm_fp32",
    *,
    memory: MemoryModel | None = None,
    membrane_updates: Tensor | float = 0.0,
    spikes: Tensor | float = 0.0,
    dense: Tensor | float | None = None,
    steps_per_inference: int = 1,
) -> dict[str, Tensor]:
    """Joules from operation counts: the figures of :class:`snnmetrics.Energy`.

    Counts are per sample (or per layer: tensors work elementwise). With ``table``'s
    costs (see :mod:`snnmetrics.energy`):

    * ``synaptic`` = ``effective_acs * ac_joules + effective_macs * mac_joules``;
    * ``neuron`` = ``neuron_ops * neuron_op_joules``;
    * with a ``memory`` model, ``memory_weights`` = ``synops * weight_joules``,
      ``memory_membrane`` = ``2 * (synops + membrane_updates) * membrane_joules``,
      ``memory_spikes`` = ``2 * spikes * spike_joules`` and ``memory`` their sum, where
      ``synops = effective_acs + effective_macs`` (each term is explained in
      :class:`~snnmetrics.energy.MemoryModel`);
    * ``total`` = the sum of the above;
    * with ``dense`` (dense synaptic operations), the comparison with the same layers
      run as a dense ANN: ``ann_macs`` = ``dense / steps_per_inference``, ``ann`` =
      ``ann_macs * mac_joules`` (plus one weight read per MAC with a ``memory`` model),
      ``ann_ratio`` = ``total / ann`` (below 1: the spiking version costs less) and
      ``spikes_per_synapse`` = ``synops / ann_macs``, the synaptic events per synapse
      per ANN inference.

    ``steps_per_inference`` is the number of SNN steps that one ANN inference stands
    for: 1 (the ANN processes each step of a stream as the SNN does), or ``T`` when the
    SNN repeats a static input for ``T`` steps that an ANN classifies in one pass.

    Example:
        >>> out = energy(effective_acs=60.0, effective_macs=0.0, neuron_ops=60.0,
        ...              dense=60.0, steps_per_inference=5)
        >>> [round(float(out[key]) * 1e12, 2) for key in ("synaptic", "neuron", "total", "ann")]
        [54.0, 138.0, 192.0, 55.2]
        >>> float(out["spikes_per_synapse"])  # 60 events on 12 synapses
        5.0
    """
    costs = energy_table(table)
    memory = check_memory(memory)
    acs, macs = _counts("effective_acs", effective_acs), _counts("effective_macs", effective_macs)
    synops = acs + macs
    synaptic = acs * costs.ac_joules + macs * costs.mac_joules
    neuron = _counts("neuron_ops", neuron_ops) * costs.neuron_op_joules
    parts: dict[str, Tensor] = {}
    if memory is not None:
        updates = _counts("membrane_updates", membrane_updates)
        weights = synops * memory.weight_joules
        membrane = 2 * (synops + updates) * memory.membrane_joules
        spike_memory = 2 * _counts("spikes", spikes) * memory.spike_joules
        parts = {
            "memory": weights + membrane + spike_memory,
            "memory_weights": weights,
            "memory_membrane": membrane,
            "memory_spikes": spike_memory,
        }
    total = synaptic + neuron + parts.get("memory", 0.0)
    result = {"total": total, "synaptic": synaptic, "neuron": neuron, **parts}
    if dense is not None:
        ann_macs = _counts("dense", dense) / check_steps_per_inference(steps_per_inference)
        per_mac = costs.mac_joules + (memory.weight_joules if memory is not None else 0.0)
        result["ann"] = ann_macs * per_mac
        result["ann_macs"] = ann_macs
        result["ann_ratio"] = total / result["ann"]
        result["spikes_per_synapse"] = synops / ann_macs
    return result
