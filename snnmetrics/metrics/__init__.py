"""Stateful metrics (``torchmetrics.Metric`` subclasses)."""

from snnmetrics.metrics.activity import ActivityProfile, SpikeTrainStatistics
from snnmetrics.metrics.base import HookedMetric
from snnmetrics.metrics.energy import Energy
from snnmetrics.metrics.firing import FiringRate
from snnmetrics.metrics.neuron import (
    ActivationSparsity,
    MembraneUpdates,
    NeuronMetric,
    NeuronOperations,
)
from snnmetrics.metrics.sparsey import (
    BasisAverage,
    BasisSetSize,
    BasisSetSizeIncrease,
    CodeMetric,
    FeatureCoverage,
    MatchAccuracy,
    NumActivations,
)
from snnmetrics.metrics.synaptic import SynapticOperations, SynOps

__all__ = [
    "ActivationSparsity",
    "ActivityProfile",
    "BasisAverage",
    "BasisSetSize",
    "BasisSetSizeIncrease",
    "CodeMetric",
    "Energy",
    "FeatureCoverage",
    "FiringRate",
    "HookedMetric",
    "MatchAccuracy",
    "MembraneUpdates",
    "NeuronMetric",
    "NeuronOperations",
    "NumActivations",
    "SpikeTrainStatistics",
    "SynOps",
    "SynapticOperations",
]
