"""Differentiable activity losses: values by hand and equal to the metrics' batch figures,
gradients by gradcheck and by autograd on recorded spikes, and a training run."""

from __future__ import annotations

import pytest
import snntorch as snn
import torch
from torch import nn

import snnmetrics as sm
from snnmetrics.functional import (
    ActivityRegularizer,
    band_penalty,
    rate_band_loss,
    synops_loss,
)
from tests.workloads import BATCH_SIZES, build_net, make_batch


def _reset(net: nn.Module) -> None:
    for module in net.modules():
        if isinstance(module, snn.SpikingNeuron):
            module.reset_mem()


def _mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(5, 6), snn.Leaky(beta=0.9, init_hidden=True),
        nn.Linear(6, 3), snn.Leaky(beta=0.9, init_hidden=True),
    )


# ------------------------------------------------------------------ on tensors


def test_synops_loss_by_hand():
    counts = torch.tensor([[2.0, 0.0, 1.0], [0.0, 0.0, 3.0]])
    # (2 + 1 + 3) spikes x 4 synapses over 2 samples
    assert float(synops_loss(counts, 4.0)) == 12.0
    per_neuron = torch.tensor([1.0, 2.0, 3.0])
    assert float(synops_loss(counts, per_neuron)) == (2 * 1 + 1 * 3 + 3 * 3) / 2
    # the layer fed: a Linear drives out_features synapses per input
    assert float(synops_loss(counts, nn.Linear(3, 7))) == 6 * 7 / 2
    # a padded Conv1d: border inputs drive fewer synapses (fanout 2, 3, 3, 3, 2)
    conv = nn.Conv1d(1, 1, kernel_size=3, padding=1)
    ones = torch.ones(2, 1, 5)
    assert float(synops_loss(ones, conv)) == 2 + 3 + 3 + 3 + 2
    # a time dimension between batch and neurons is summed over
    steps = torch.ones(2, 4, 3)
    assert float(synops_loss(steps, per_neuron)) == 4 * (1 + 2 + 3)


def test_synops_loss_rejects_bad_input():
    with pytest.raises(ValueError, match="fanout of shape"):
        synops_loss(torch.ones(2, 3), torch.ones(4))
    with pytest.raises(ValueError, match="fanout of shape"):
        synops_loss(torch.ones(2, 3), torch.ones(2, 3))
    with pytest.raises(ValueError, match="batch first"):
        synops_loss(torch.ones(3), 2.0)
    with pytest.raises(TypeError, match="activations must be a floating-point tensor"):
        synops_loss(torch.ones(2, 3, dtype=torch.int64), 2.0)
    with pytest.raises(TypeError, match="fanout must be a number or a tensor"):
        synops_loss(torch.ones(2, 3), "3")
    with pytest.raises(ValueError, match="fanout must be finite and non-negative"):
        synops_loss(torch.ones(2, 3), -1.0)


def test_rate_band_loss_by_hand():
    quiet = torch.zeros(10, 2, 5)  # rate 0
    busy = torch.ones(10, 2, 5)  # rate 1
    half = torch.zeros(4, 5)
    half[:2] = 1.0  # rate 0.5
    assert float(rate_band_loss(half, low=0.1, high=0.6)) == 0.0
    loss = rate_band_loss([quiet, busy, half], low=0.25, high=0.75)
    torch.testing.assert_close(loss, torch.tensor(0.25**2 + 0.25**2))
    torch.testing.assert_close(
        band_penalty(torch.tensor([0.0, 1.0]), low=0.25, high=0.75), torch.tensor(0.125)
    )
    with pytest.raises(ValueError, match=r"low \(0.5\) must not exceed high"):
        rate_band_loss(half, low=0.5, high=0.2)
    with pytest.raises(ValueError, match="high must be a finite rate"):
        rate_band_loss(half, low=0.0, high=float("inf"))
    with pytest.raises(TypeError, match="low must be a firing rate"):
        rate_band_loss(half, low=True, high=0.5)
    with pytest.raises(ValueError, match="at least one layer"):
        rate_band_loss([], low=0.0, high=0.5)
    with pytest.raises(ValueError, match="empty"):
        rate_band_loss(torch.zeros(0, 3), low=0.0, high=0.5)
    with pytest.raises(TypeError, match="floating-point"):
        rate_band_loss([torch.ones(2, dtype=torch.int64)], low=0.0, high=0.5)


def test_gradcheck_in_float64():
    gen = torch.Generator().manual_seed(0)
    counts = torch.rand(3, 2, 4, generator=gen, dtype=torch.float64).requires_grad_()
    fanout = torch.rand(2, 4, generator=gen, dtype=torch.float64) * 5
    assert torch.autograd.gradcheck(lambda a: synops_loss(a, fanout), (counts,))
    conv = nn.Conv1d(2, 3, kernel_size=3, stride=2, padding=1)
    assert torch.autograd.gradcheck(lambda a: synops_loss(a, conv), (counts,))
    # rates 0.05 (below), 0.5 (inside) and about 0.9 (above) a band [0.1, 0.8]: away from
    # the kinks at its edges
    low_layer = torch.full((4, 5), 0.05, dtype=torch.float64).requires_grad_()
    mid_layer = torch.full((3, 2), 0.5, dtype=torch.float64).requires_grad_()
    high_layer = (0.85 + 0.1 * torch.rand(2, 6, generator=gen, dtype=torch.float64))
    high_layer.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda a, b, c: rate_band_loss([a, b, c], low=0.1, high=0.8),
        (low_layer, mid_layer, high_layer),
    )


# ------------------------------------------------------------------ on a hooked model


@pytest.mark.parametrize("index", range(len(BATCH_SIZES)))
def test_regularizer_equals_the_metrics_batch_figures(index):
    net = build_net()  # Conv1d, Linear with zero weights, RLeaky, ReLU, graded batch 3
    regularizer = ActivityRegularizer(net)
    synops = sm.SynapticOperations(net, skip_zero_weights=False)
    rates = sm.FiringRate(net)
    x = make_batch(index)
    _reset(net)
    with regularizer.step():
        for t in range(x.shape[1]):
            net(x[:, t])
        loss = regularizer.synops_loss()
        layer_rates = regularizer.rates()
        band = regularizer.rate_band_loss(low=0.1, high=0.2)
    synops.update()
    rates.update()
    assert loss.requires_grad
    torch.testing.assert_close(
        loss.detach().double(), synops.compute()["synops"], rtol=1e-6, atol=0
    )
    expected_rates = {name: layer["mean"] for name, layer in rates.compute().items()}
    assert set(layer_rates) == set(expected_rates) == {"1", "4", "8"}
    for name, rate in layer_rates.items():
        torch.testing.assert_close(rate.detach().double(), expected_rates[name], rtol=1e-6, atol=0)
    expected_band = band_penalty(torch.stack(list(expected_rates.values())), 0.1, 0.2)
    torch.testing.assert_close(band.detach().double(), expected_band, rtol=1e-5, atol=1e-12)


def test_regularizer_gradient_equals_the_losses_on_recorded_spikes():
    net = _mlp()
    regularizer = ActivityRegularizer(net)
    x = (torch.rand(4, 6, 5, generator=torch.Generator().manual_seed(1)) < 0.6).float()
    hidden, outputs = [], []
    _reset(net)
    with regularizer.step():
        for t in range(x.shape[1]):
            hidden.append(net[1](net[0](x[:, t])))
            outputs.append(net[3](net[2](hidden[-1])))
        hooked = regularizer.synops_loss() + regularizer.rate_band_loss(low=0.3, high=0.35)
    hidden_spikes = torch.stack(hidden, dim=1)  # (B, T, 6), with the surrogate's gradient
    assert hidden_spikes.requires_grad
    # the same losses from tensors: the input spikes (no gradient) and the hidden ones feed
    # the two Linear layers; both neuron layers' spikes give the rates
    recorded = synops_loss(x, net[0]) + synops_loss(hidden_spikes, net[2])
    recorded = recorded + rate_band_loss([hidden_spikes, torch.stack(outputs)], 0.3, 0.35)
    torch.testing.assert_close(hooked, recorded)
    params = [net[0].weight, net[0].bias, net[2].weight]
    hooked_grads = torch.autograd.grad(hooked, params, retain_graph=True)
    recorded_grads = torch.autograd.grad(recorded, params)
    assert float(hooked_grads[0].abs().sum()) > 0
    for got, expected in zip(hooked_grads, recorded_grads, strict=True):
        torch.testing.assert_close(got, expected)


def test_the_step_state_is_dropped_and_hooks_idle_outside_a_step():
    net = _mlp()
    regularizer = ActivityRegularizer(net)
    x = torch.ones(2, 5)
    net(x)  # outside a step: nothing is kept
    assert not regularizer._inputs and not regularizer._spikes
    for _ in range(3):
        with regularizer.step():
            for _ in range(4):
                net(x)
            # one running sum per layer, however many calls
            assert {name: tuple(s.shape) for name, s in regularizer._inputs.items()} == {
                "0": (5,), "2": (6,)
            }
            assert all(total.ndim == 0 for total in regularizer._spikes.values())
            regularizer.synops_loss()
        assert not regularizer._inputs and not regularizer._spikes
    with pytest.raises(RuntimeError, match=r"inside `with regularizer\.step"):
        regularizer.synops_loss()
    with regularizer.step(), pytest.raises(ValueError, match="no hooked layer ran"):
        regularizer.rates()
    with regularizer.step(batch_size=4):
        net(x)
        # 5 inputs x 6 synapses + the hidden spikes x 3, per sample of the 4 given
        spikes = float(regularizer.rates()["1"].detach()) * 2 * 6
        expected = (2 * 5 * 6 + spikes * 3) / 4
        torch.testing.assert_close(float(regularizer.synops_loss().detach()), expected)
        with pytest.raises(RuntimeError, match="already open"), regularizer.step():
            pass
    with pytest.raises(ValueError, match="batch_size"), regularizer.step(batch_size=0):
        pass
    regularizer.detach()
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in net)
    with pytest.raises(RuntimeError, match="detached"), regularizer.step():
        pass


def test_layer_selection_and_bad_models():
    net = _mlp()
    with ActivityRegularizer(net, layers=["2", "3"]) as regularizer:
        assert regularizer.connection_names == ["2"] and regularizer.neuron_names == ["3"]
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in net)
    with pytest.raises(ValueError, match="'9'"):
        ActivityRegularizer(net, layers=["9"])
    with pytest.raises(TypeError, match="sequence of layer names"):
        ActivityRegularizer(net, layers="0")
    cell_net = nn.Sequential(nn.LSTMCell(3, 4))
    with pytest.raises(TypeError, match="no fanout map"):
        ActivityRegularizer(cell_net, layers=["0"])
    with pytest.raises(ValueError, match="no connection layer with a fanout map"):
        ActivityRegularizer(cell_net)
    with pytest.raises(TypeError, match="model must be"):
        ActivityRegularizer("net")


def _train(penalty: float) -> float:
    """Train a small SNN for a few steps; return its spikes per sample afterwards."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(20, 40), snn.Leaky(beta=0.9, init_hidden=True),
        nn.Linear(40, 4), snn.Leaky(beta=0.9, init_hidden=True),
    )
    gen = torch.Generator().manual_seed(1)
    x = (torch.rand(32, 10, 20, generator=gen) < 0.3).float()
    y = torch.randint(0, 4, (32,), generator=gen)
    optimizer = torch.optim.Adam(net.parameters(), lr=5e-3)
    with ActivityRegularizer(net) as regularizer:
        for _ in range(25):
            _reset(net)
            with regularizer.step():
                counts = sum(net(x[:, t]) for t in range(x.shape[1]))
                loss = nn.functional.cross_entropy(counts, y)
                loss = loss + penalty * regularizer.synops_loss()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad(), sm.FiringRate(net) as rates:
        _reset(net)
        for t in range(x.shape[1]):
            net(x[:, t])
        rates.update()
        return sum(float(layer["rates"].sum()) * 10 for layer in rates.compute().values())


def test_training_with_the_synops_loss_lowers_the_spike_count():
    plain, regularized = _train(penalty=0.0), _train(penalty=1e-3)
    assert plain > 0
    assert regularized < 0.5 * plain
