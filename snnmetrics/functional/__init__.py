"""Pure functions: fanout maps, static model figures and per-batch metric values."""

from snnmetrics.functional.fanout import fanout
from snnmetrics.functional.static import connection_sparsity, footprint, parameter_count
from snnmetrics.functional.synops import synops, synops_per_neuron

__all__ = [
    "connection_sparsity",
    "fanout",
    "footprint",
    "parameter_count",
    "synops",
    "synops_per_neuron",
]
