"""Pure functions: fanout maps, static model figures and per-batch metric values."""

from snnmetrics.functional.fanout import fanout
from snnmetrics.functional.neuron import (
    activation_sparsity,
    firing_rate_statistics,
    firing_rates,
    membrane_updates,
    neuron_operations,
)
from snnmetrics.functional.static import connection_sparsity, footprint, parameter_count
from snnmetrics.functional.synops import synops, synops_per_neuron

__all__ = [
    "activation_sparsity",
    "connection_sparsity",
    "fanout",
    "firing_rate_statistics",
    "firing_rates",
    "footprint",
    "membrane_updates",
    "neuron_operations",
    "parameter_count",
    "synops",
    "synops_per_neuron",
]
