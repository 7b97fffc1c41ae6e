"""Static figures: parameter_count, footprint, connection_sparsity, against hand counts and
the figures NeuroBench publishes (literature.md 1.2 and 2)."""

from __future__ import annotations

import pytest
import snntorch as snn
import torch
from torch import nn

from snnmetrics.functional import connection_sparsity, footprint, parameter_count
from tests.workloads import gsc_snn

# snnTorch neuron constants, as registered buffers (snnTorch >= 0.7):
# threshold (f32) + graded_spikes_factor (f32) + reset_mechanism_val (int64) + beta (f32)
LEAKY_CONSTANTS = 4 + 4 + 8 + 4


def set_weight(layer: nn.Module, values) -> nn.Module:
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(values, dtype=layer.weight.dtype))
    return layer


# ----------------------------------------------------------------------------- parameters


def test_parameter_count_by_hand():
    assert parameter_count(nn.Linear(20, 5)) == 20 * 5 + 5
    assert parameter_count(nn.Conv2d(3, 4, 3, groups=1, bias=False)) == 4 * 3 * 9
    assert parameter_count(nn.Conv2d(4, 6, 3, groups=2)) == 6 * 2 * 9 + 6
    # LSTM(4, 3): 4 gates x 3 x (4 + 3) weights + 2 x 4 x 3 biases
    assert parameter_count(nn.LSTM(4, 3)) == 84 + 24
    assert parameter_count(nn.Sequential(nn.ReLU(), snn.Leaky(beta=0.5))) == 0


def test_parameter_count_of_published_architectures():
    assert parameter_count(gsc_snn()) == 145_955


def test_parameter_count_counts_learnable_neuron_constants_and_tied_weights_once():
    layer = nn.Linear(4, 3)
    model = nn.Sequential(layer, snn.Leaky(beta=0.5, learn_beta=True), layer)
    assert parameter_count(model) == 15 + 1


# ----------------------------------------------------------------------------- footprint


def test_footprint_by_hand():
    assert footprint(nn.Linear(20, 5)) == 105 * 4
    assert footprint(nn.Linear(3, 2).double()) == 8 * 8
    assert footprint(nn.Linear(3, 2).half()) == 8 * 2
    # BatchNorm1d(4): weight, bias, running mean, running var (f32) + num_batches_tracked (i64)
    assert footprint(nn.BatchNorm1d(4)) == 4 * 4 * 4 + 8


def test_footprint_of_published_gsc_snn():
    # literature.md 2: 583,900 B = 145,955 x 4 + 4 Leaky x 20 B; NeuroBench's test asserts
    # 1,406,172 on newer snnTorch, where `mem` follows the last batch (256 x 803 x 4 B more)
    model = gsc_snn()
    assert footprint(model) == 583_900
    assert footprint(model, include_state_buffers=False) == 583_900
    model(torch.zeros(256, 20))
    assert footprint(model) == 1_406_172
    assert footprint(model, include_state_buffers=False) == 583_900


def test_footprint_leaky_before_and_after_a_forward():
    model = nn.Sequential(nn.Linear(20, 5), snn.Leaky(beta=0.9, init_hidden=True))
    assert footprint(model) == 420 + LEAKY_CONSTANTS
    assert footprint(model, include_state_buffers=False) == 420 + LEAKY_CONSTANTS
    model(torch.ones(3, 20))
    assert footprint(model) == 420 + LEAKY_CONSTANTS + 3 * 5 * 4  # mem (3, 5) f32
    assert footprint(model, include_state_buffers=False) == 420 + LEAKY_CONSTANTS
    model(torch.ones(7, 20))
    assert footprint(model) == 420 + LEAKY_CONSTANTS + 7 * 5 * 4


def test_footprint_rleaky_and_synaptic_state():
    rleaky = snn.RLeaky(beta=0.5, linear_features=5)  # recurrent Linear(5, 5) with bias
    assert footprint(rleaky) == 30 * 4 + LEAKY_CONSTANTS
    rleaky(torch.ones(2, 5))
    assert footprint(rleaky) == 30 * 4 + LEAKY_CONSTANTS + 2 * (2 * 5 * 4)  # spk and mem
    assert footprint(rleaky, include_state_buffers=False) == 30 * 4 + LEAKY_CONSTANTS

    synaptic = snn.Synaptic(alpha=0.5, beta=0.5)  # alpha adds one f32 constant
    assert footprint(synaptic) == LEAKY_CONSTANTS + 4
    synaptic(torch.ones(2, 3))
    assert footprint(synaptic) == LEAKY_CONSTANTS + 4 + 2 * (2 * 3 * 4)  # syn and mem
    assert footprint(synaptic, include_state_buffers=False) == LEAKY_CONSTANTS + 4


def test_footprint_non_persistent_buffers():
    module = nn.Linear(2, 2)
    module.register_buffer("persistent", torch.zeros(3))
    module.register_buffer("scratch", torch.zeros(5, dtype=torch.float64), persistent=False)
    assert footprint(module) == 6 * 4 + 3 * 4 + 5 * 8
    assert footprint(module, include_state_buffers=False) == 6 * 4 + 3 * 4


def test_footprint_counts_tied_weights_once():
    layer = nn.Linear(4, 3)
    assert footprint(nn.Sequential(layer, nn.ReLU(), layer)) == 15 * 4


def test_footprint_counts_a_shared_buffer_once():
    # NeuroBench sums over `model.buffers()`, which yields a tensor shared by two modules
    # once; snnTorch registers a tensor `beta` as given, so two neurons can share it
    beta = torch.tensor(0.9)
    model = nn.Sequential(snn.Leaky(beta=beta), snn.Leaky(beta=beta))
    assert model[0].beta is model[1].beta
    assert footprint(model) == 2 * LEAKY_CONSTANTS - 4


# ----------------------------------------------------------------------------- sparsity


def test_connection_sparsity_by_hand():
    layer = set_weight(nn.Linear(2, 2, bias=False), [[0.0, 1.0], [2.0, 0.0]])
    assert connection_sparsity(layer) == 0.5


def test_connection_sparsity_over_layers_excludes_biases():
    linear = set_weight(
        nn.Linear(4, 3), [[0.0, 1.0, 1.0, 1.0], [1.0, 0.0, 1.0, 1.0], [1.0, 1.0, 0.0, 1.0]]
    )
    conv = set_weight(nn.Conv1d(1, 2, 3), [[[0.0, 1.0, 0.0]], [[1.0, 0.0, 1.0]]])
    with torch.no_grad():
        linear.bias.zero_()
        conv.bias.zero_()
    model = nn.Sequential(linear, nn.ReLU(), nn.Sequential(nn.Flatten(), conv))
    # (3 + 3) zeros of (12 + 6) weights
    assert connection_sparsity(model) == 0.3333
    assert connection_sparsity(model, decimals=None) == 6 / 18
    assert connection_sparsity(model, decimals=2) == 0.33


def test_connection_sparsity_dense_model_is_zero():
    torch.manual_seed(0)
    assert connection_sparsity(nn.Sequential(nn.Linear(5, 5), nn.Conv3d(1, 1, 2))) == 0.0


def test_connection_sparsity_of_recurrent_layers_includes_biases():
    lstm = nn.LSTM(2, 1)  # weight_ih 8, weight_hh 4, bias_ih 4, bias_hh 4
    with torch.no_grad():
        lstm.bias_ih_l0.zero_()
    assert connection_sparsity(nn.Sequential(lstm), decimals=None) == 4 / 20

    gru_cell = nn.GRUCell(2, 1)  # weight_ih 6, weight_hh 3, bias_ih 3, bias_hh 3
    with torch.no_grad():
        gru_cell.bias_hh.zero_()
    assert connection_sparsity(gru_cell, decimals=None) == 3 / 15

    rnn_cell = nn.RNNCell(3, 2, bias=False)  # weight_ih 6, weight_hh 4
    with torch.no_grad():
        rnn_cell.weight_hh.zero_()
    assert connection_sparsity(rnn_cell) == 0.4

    lstm_cell = nn.LSTMCell(1, 1)  # 4 + 4 + 4 + 4
    with torch.no_grad():
        lstm_cell.weight_ih.zero_()
        lstm_cell.bias_hh[:2] = 0.0
    model = nn.Sequential(lstm_cell, set_weight(nn.Linear(2, 2, bias=False), [[0, 1], [1, 1]]))
    assert connection_sparsity(model, decimals=None) == (4 + 2 + 1) / (16 + 4)

    gru = nn.GRU(1, 1, num_layers=2)  # per layer: 3 + 3 + 3 + 3
    with torch.no_grad():
        gru.weight_hh_l1.zero_()
    assert connection_sparsity(gru, decimals=None) == 3 / 24


def test_connection_sparsity_counts_the_rleaky_recurrent_layer():
    neuron = snn.RLeaky(beta=0.5, linear_features=2)
    set_weight(neuron.recurrent, [[0.0, 0.0], [0.0, 1.0]])
    model = nn.Sequential(set_weight(nn.Linear(2, 2, bias=False), [[1, 1], [1, 0]]), neuron)
    assert connection_sparsity(model) == 0.5


def test_connection_sparsity_without_weights_raises():
    with pytest.raises(ValueError, match="connection sparsity"):
        connection_sparsity(nn.Sequential(nn.ReLU(), snn.Leaky(beta=0.5), nn.BatchNorm1d(3)))


@pytest.mark.parametrize("function", [parameter_count, footprint, connection_sparsity])
def test_non_module_raises_type_error(function):
    with pytest.raises(TypeError, match="model"):
        function([nn.Linear(2, 2)])
