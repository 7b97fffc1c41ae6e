"""snnmetrics: exact, streaming, DDP-ready metrics for spiking neural networks."""

from snnmetrics import functional
from snnmetrics.connections import ConnectionRule, register_connection
from snnmetrics.metrics import (
    ActivationSparsity,
    FiringRate,
    HookedMetric,
    MembraneUpdates,
    NeuronOperations,
    SynapticOperations,
    SynOps,
)
from snnmetrics.neurons import NeuronRule, register_neuron
from snnmetrics.results import scalars

__version__ = "0.1.0"

__all__ = [
    "ActivationSparsity",
    "ConnectionRule",
    "FiringRate",
    "HookedMetric",
    "MembraneUpdates",
    "NeuronOperations",
    "NeuronRule",
    "SynOps",
    "SynapticOperations",
    "__version__",
    "functional",
    "register_connection",
    "register_neuron",
    "scalars",
]
