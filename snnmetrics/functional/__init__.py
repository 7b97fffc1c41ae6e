"""Pure functions: fanout maps, static model figures and per-batch metric values."""

from snnmetrics.functional.energy import energy
from snnmetrics.functional.fanout import fanout
from snnmetrics.functional.losses import (
    ActivityRegularizer,
    band_penalty,
    rate_band_loss,
    synops_loss,
)
from snnmetrics.functional.neuron import (
    activation_sparsity,
    firing_rate_statistics,
    firing_rates,
    membrane_updates,
    neuron_operations,
)
from snnmetrics.functional.sparsey import (
    activation_statistics,
    basis_average,
    basis_set_size,
    code_hashes,
    distinct_count,
    feature_coverage,
    match_accuracy,
    normalized_hamming_distance,
    num_activations,
)
from snnmetrics.functional.spiketrain import (
    cv_isi,
    fano_factor,
    spike_train_statistics,
    step_rates,
)
from snnmetrics.functional.static import connection_sparsity, footprint, parameter_count
from snnmetrics.functional.synops import synops, synops_per_neuron

__all__ = [
    "ActivityRegularizer",
    "activation_sparsity",
    "activation_statistics",
    "band_penalty",
    "basis_average",
    "basis_set_size",
    "code_hashes",
    "connection_sparsity",
    "cv_isi",
    "distinct_count",
    "energy",
    "fano_factor",
    "fanout",
    "feature_coverage",
    "firing_rate_statistics",
    "firing_rates",
    "footprint",
    "match_accuracy",
    "membrane_updates",
    "neuron_operations",
    "normalized_hamming_distance",
    "num_activations",
    "parameter_count",
    "rate_band_loss",
    "spike_train_statistics",
    "step_rates",
    "synops",
    "synops_loss",
    "synops_per_neuron",
]
