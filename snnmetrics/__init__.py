"""snnmetrics: exact, streaming, DDP-ready metrics for spiking neural networks."""

from snnmetrics import functional
from snnmetrics.benchmark import Benchmark
from snnmetrics.connections import ConnectionRule, ProductRule, register_connection
from snnmetrics.energy import EnergyTable, MemoryModel, register_table
from snnmetrics.factory import (
    average_nested_data,
    get_comparison,
    get_metric,
    max_by_layerwise_mean,
    min_by_layerwise_mean,
)
from snnmetrics.metrics import (
    ActivationSparsity,
    ActivityProfile,
    BasisAverage,
    BasisSetSize,
    BasisSetSizeIncrease,
    Energy,
    FeatureCoverage,
    FiringRate,
    HookedMetric,
    MatchAccuracy,
    MembraneUpdates,
    NeuronOperations,
    NumActivations,
    SpikeTrainStatistics,
    SynapticOperations,
    SynOps,
)
from snnmetrics.neurons import NeuronRule, register_neuron
from snnmetrics.results import scalars

__version__ = "0.2.0.dev0"

__all__ = [
    "ActivationSparsity",
    "ActivityProfile",
    "BasisAverage",
    "BasisSetSize",
    "BasisSetSizeIncrease",
    "Benchmark",
    "ConnectionRule",
    "Energy",
    "EnergyTable",
    "FeatureCoverage",
    "FiringRate",
    "HookedMetric",
    "MatchAccuracy",
    "MembraneUpdates",
    "MemoryModel",
    "NeuronOperations",
    "NeuronRule",
    "NumActivations",
    "ProductRule",
    "SpikeTrainStatistics",
    "SynOps",
    "SynapticOperations",
    "__version__",
    "average_nested_data",
    "functional",
    "get_comparison",
    "get_metric",
    "max_by_layerwise_mean",
    "min_by_layerwise_mean",
    "register_connection",
    "register_neuron",
    "register_table",
    "scalars",
]
