"""Staged counting: small calls are counted many at a time, and the figures are exactly
those of counting each call on its own, however the calls fall into buffers and windows.

The references are brute-force counts of recorded calls; windows are long enough to fill
the staging buffers several times, and close in the middle of a buffer.
"""

from __future__ import annotations

import pytest
import snntorch as snn
import torch
from torch import nn

import snnmetrics as sm
from snnmetrics.tracking import staging

from .test_neuron_metrics import COSTS, Recorder, make_net, reference, reset_state


def _linear_counts(layer: nn.Linear, x: torch.Tensor) -> tuple[int, int, bool]:
    """Effective and dense synaptic operations of one call, and whether it is a MAC call."""
    fanout = (layer.weight != 0).sum(0)  # outputs each input element reaches
    effective = int(((x != 0).to(torch.int64) * fanout).sum())
    dense = x.shape[0] * layer.weight.numel()
    is_mac = not bool(((x == 0) | (x.abs() == 1)).all())
    return effective, dense, is_mac


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_synaptic_operations_equal_a_call_by_call_count(dtype):
    torch.manual_seed(0)
    layer = nn.Linear(24, 16).to(dtype)
    with torch.no_grad():
        layer.weight[:, ::3] = 0.0
    synops = sm.SynapticOperations(layer)
    gen = torch.Generator().manual_seed(1)
    expected = {"effective": 0, "dense": 0, "mac": 0, "samples": 0}
    # 3 windows of 45, 7 and 90 calls: buffers fill, and windows close mid-buffer
    for calls in (45, 7, 90):
        for call in range(calls):
            rows = 5 if call < calls // 2 else 3  # the batch size changes inside a window
            x = (torch.rand(rows, 24, generator=gen) < 0.3).to(dtype)
            if call % 4 == 1:
                x = -x  # {-1, 0}: still an accumulate
            if call % 6 == 5:
                x = x * 0.5  # graded: a multiply-accumulate call
            effective, dense, is_mac = _linear_counts(layer, x)
            expected["effective"] += effective
            expected["dense"] += dense
            expected["mac"] += effective if is_mac else 0
            with torch.no_grad():
                layer(x)
            x.fill_(7.0)  # edited after the call: the call's own values count
        expected["samples"] += 5
        synops.update()
    figures = synops.compute()
    samples = expected["samples"]
    ac = expected["effective"] - expected["mac"]
    assert figures["synops"].item() == expected["effective"] / samples
    assert figures["effective_macs"].item() == expected["mac"] / samples
    assert figures["effective_acs"].item() == ac / samples
    assert figures["dense"].item() == expected["dense"] / samples
    assert 0 < expected["mac"] < expected["effective"]  # both kinds of call occurred


def test_neuron_metrics_equal_a_call_by_call_count_over_long_windows():
    net = make_net()
    metrics = {
        "membrane": sm.MembraneUpdates(net),
        "neuron_ops": sm.NeuronOperations(net),
        "sparsity": sm.ActivationSparsity(net, by_layer=True),
        "firing": sm.FiringRate(net, bins=5),
    }
    recorder = Recorder().attach(net)
    gen = torch.Generator().manual_seed(2)
    windows = []
    spike_counts = torch.zeros(5, dtype=torch.float64)
    spike_rows = 0
    for batch, steps in enumerate((70, 9, 101)):
        rows = (4, 1, 3)[batch]
        x = torch.rand(rows, steps, 6, generator=gen) * 1.5
        x *= torch.rand(x.shape, generator=gen) < 0.6
        reset_state(net)
        with torch.no_grad():
            for t in range(steps):
                net(x[:, t])
        window = recorder.window()
        for call in window:
            if call.layer == "1":
                spike_counts += (call.spikes != 0).sum(0)
                spike_rows += call.spikes.shape[0]
        windows.append(window)
        for metric in metrics.values():
            metric.update()
    expected = reference(windows, COSTS)
    membrane = metrics["membrane"].compute()
    assert membrane.item() == pytest.approx(expected["updates"], rel=1e-12)
    neuron_ops = metrics["neuron_ops"].compute()
    assert neuron_ops["effective"].item() == pytest.approx(expected["effective"], rel=1e-12)
    assert neuron_ops["dense"].item() == pytest.approx(expected["dense"], rel=1e-12)
    sparsity = metrics["sparsity"].compute()
    for name in ("1", "3", "5"):
        assert sparsity[name].item() == pytest.approx(expected[f"sparsity/{name}"], rel=1e-12)
    rates = metrics["firing"].compute()["1"]["rates"]
    torch.testing.assert_close(rates.to(torch.float64), spike_counts / spike_rows, rtol=0, atol=0)


def test_buffers_stay_within_their_budget():
    net = nn.Sequential(nn.Linear(8, 20_000), snn.Leaky(beta=0.5, init_hidden=True))
    metrics = [sm.SynapticOperations(net), sm.MembraneUpdates(net), sm.FiringRate(net)]
    with torch.no_grad():
        for _ in range(50):
            net(torch.rand(16, 8))
    buffers = [
        stage._buffer
        for tap in _taps(net)
        for stage in vars(tap).values()
        if isinstance(stage, staging.Staging) and stage._buffer is not None
    ]
    assert buffers, "the Linear's 16 x 8 inputs are staged"
    # the Leaky's 16 x 20000 outputs exceed the budget: counted at once, never buffered
    assert staging.STAGING_ELEMENTS < 16 * 20_000
    assert all(buffer.shape[1:] == (16, 8) for buffer in buffers)
    scratch = list(staging._scratch.buffers.values())  # the counts' shared scratch
    assert scratch
    assert all(buffer.numel() <= staging.STAGING_ELEMENTS for buffer in buffers + scratch)
    for metric in metrics:
        metric.update()
        metric.detach()


def _taps(net: nn.Module) -> list[object]:
    from snnmetrics.tracking.hub import _TAPS

    return [tap for module in net.modules() for tap in _TAPS.get(module, {}).values()]


class _SharedSpikes(nn.Module):
    """Spikes fed on as they are, through a flattening view, to two layers at once, and
    edited in place after their neuron ran."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1, bias=False)
        self.lif1 = snn.Leaky(beta=0.7, threshold=0.3, init_hidden=True)
        self.fc_a = nn.Linear(48, 5, bias=False)
        self.fc_b = nn.Linear(48, 5, bias=False)
        self.lif2 = snn.Leaky(beta=0.7, threshold=0.3, init_hidden=True)
        self.fc_c = nn.Linear(5, 4, bias=False)

    def forward(self, x: torch.Tensor, edit: bool) -> torch.Tensor:
        spikes = self.lif1(self.conv(x)).flatten(1)
        spikes2 = self.lif2(self.fc_a(spikes) + self.fc_b(spikes))
        if edit:
            spikes2.mul_(0.5)  # the neuron fired 1s; the next layer receives 0.5s (MAC)
        return self.fc_c(spikes2)


def _effective_ops(layer: nn.Module, x: torch.Tensor) -> int:
    """Pairs of a nonzero input and a nonzero weight that one call multiplies."""
    nonzero, weights = (x != 0).to(torch.float64), (layer.weight != 0).to(torch.float64)
    if isinstance(layer, nn.Conv2d):
        return int(nn.functional.conv2d(nonzero, weights, padding=layer.padding).sum())
    return int((nonzero @ weights.T).sum())


def test_a_layer_fed_by_a_neuron_counts_its_spikes_from_the_neuron_staging(monkeypatch):
    torch.manual_seed(3)
    net = _SharedSpikes()
    with torch.no_grad():
        net.fc_a.weight[:, ::4] = 0.0
        net.conv.weight *= 3.0
    rides: list[bool] = []
    ride = staging.Staging.ride

    def counted_ride(self: staging.Staging, x: torch.Tensor) -> bool:
        rides.append(ride(self, x))
        return rides[-1]

    monkeypatch.setattr(staging.Staging, "ride", counted_ride)
    synops = sm.SynapticOperations(net)
    rates = sm.FiringRate(net, bins=4)
    sparsity = sm.ActivationSparsity(net, by_layer=True)
    inputs: dict[str, list[torch.Tensor]] = {"conv": [], "fc_a": [], "fc_b": [], "fc_c": []}
    spikes: dict[str, list[torch.Tensor]] = {"lif1": [], "lif2": []}
    for name in inputs:
        getattr(net, name).register_forward_pre_hook(
            lambda module, args, name=name: inputs[name].append(args[0].clone())
        )
    for name in spikes:
        getattr(net, name).register_forward_hook(
            lambda module, args, out, name=name: spikes[name].append(out.clone())
        )
    gen = torch.Generator().manual_seed(4)
    samples = 0
    with torch.no_grad():
        for calls in (37, 11, 52):  # windows that end mid-buffer
            rows = 3
            samples += rows
            for call in range(calls):
                if call == calls // 2:
                    rows = 2  # a new layout inside the window
                x = (torch.rand(rows, 2, 4, 4, generator=gen) < 0.4).float()
                net(x, edit=call % 5 == 4)
            for metric in (synops, rates, sparsity):
                metric.update(batch_size=3)
    assert sum(rides) >= 2 * 100  # fc_a on lif1 and fc_c on lif2 (unless edited)
    assert not all(rides)  # fc_b re-stages the values fc_a rode on; edited ones are staged
    effective = mac = 0
    for name, calls in inputs.items():
        for x in calls:
            ops = _effective_ops(getattr(net, name), x)
            effective += ops
            mac += ops if not bool(((x == 0) | (x.abs() == 1)).all()) else 0
    figures = synops.compute()
    assert figures["synops"].item() == effective / samples
    assert figures["effective_macs"].item() == mac / samples
    assert 0 < mac < effective
    by_layer = sparsity.compute()
    for name, outputs in spikes.items():
        fired = torch.cat(outputs).to(torch.float64)
        expected_rates = (fired != 0).sum(0).to(torch.float64) / fired.shape[0]
        assert torch.equal(rates.compute()[name]["rates"], expected_rates)
        assert by_layer[name].item() == float((fired == 0).sum()) / fired.numel()


class _TwoSources(nn.Module):
    """One layer fed by the spikes of two neurons in turn."""

    def __init__(self) -> None:
        super().__init__()
        self.in_a, self.in_b = nn.Linear(4, 6, bias=False), nn.Linear(4, 6, bias=False)
        self.lif_a = snn.Leaky(beta=0.7, threshold=0.2, init_hidden=True)
        self.lif_b = snn.Leaky(beta=0.7, threshold=0.2, init_hidden=True)
        self.fc = nn.Linear(6, 3, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.lif_a(self.in_a(x))) + self.fc(self.lif_b(self.in_b(x)))


def test_a_layer_riding_on_two_neurons_counts_each_window_with_its_own_weights():
    torch.manual_seed(5)
    net = _TwoSources()
    synops = sm.SynapticOperations(net)
    sparsity = sm.ActivationSparsity(net)  # the neurons update after the synapses
    fc_inputs: list[torch.Tensor] = []
    net.fc.register_forward_pre_hook(lambda module, args: fc_inputs.append(args[0].clone()))
    gen = torch.Generator().manual_seed(6)
    expected = 0
    with torch.no_grad():
        for window in range(3):
            fc_inputs.clear()
            for _ in range(9):
                net(torch.rand(2, 4, generator=gen) * 2)
            ops = sum(_effective_ops(net.fc, x) for x in fc_inputs)
            assert ops > 0
            expected += ops
            synops.update(batch_size=2)
            sparsity.update()
            counted = synops.compute_per_layer()["fc"]["synops"].item() * 2 * (window + 1)
            assert counted == pytest.approx(expected, rel=1e-12)
            net.fc.weight.data[:, window] = 0.0  # pruned between windows, untracked


def test_nan_outputs_a_layer_rode_on_leave_both_layers_figures_undefined():
    net = nn.Sequential(nn.ReLU(), nn.Linear(3, 2))
    sparsity, synops = sm.ActivationSparsity(net), sm.SynapticOperations(net)
    with torch.no_grad():
        for _ in range(3):
            net(torch.ones(2, 3))
        net(torch.tensor([[float("nan"), 1.0, 0.0], [0.0, 0.0, 1.0]]))
    sparsity.update()
    synops.update()
    with pytest.raises(ValueError, match="NaN"):
        sparsity.compute()
    with pytest.raises(ValueError, match="NaN"):
        synops.compute()
