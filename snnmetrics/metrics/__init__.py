"""Stateful metrics (``torchmetrics.Metric`` subclasses)."""

from snnmetrics.metrics.base import HookedMetric
from snnmetrics.metrics.firing import FiringRate
from snnmetrics.metrics.neuron import (
    ActivationSparsity,
    MembraneUpdates,
    NeuronMetric,
    NeuronOperations,
)
from snnmetrics.metrics.synaptic import SynapticOperations, SynOps

__all__ = [
    "ActivationSparsity",
    "FiringRate",
    "HookedMetric",
    "MembraneUpdates",
    "NeuronMetric",
    "NeuronOperations",
    "SynOps",
    "SynapticOperations",
]
