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
        value
        for tap in _taps(net)
        for stage in vars(tap).values()
        if isinstance(stage, staging.Staging)
        for value in (stage._buffer, stage._scratch)
        if value is not None
    ]
    assert buffers, "the Linear's 16 x 8 inputs are staged"
    assert all(buffer.numel() <= staging.STAGING_ELEMENTS for buffer in buffers)
    # the Leaky's 16 x 20000 outputs exceed the budget: counted at once, never buffered
    assert staging.STAGING_ELEMENTS < 16 * 20_000
    assert all(buffer.shape[1:] == (16, 8) for buffer in buffers)
    for metric in metrics:
        metric.update()
        metric.detach()


def _taps(net: nn.Module) -> list[object]:
    from snnmetrics.tracking.hub import _TAPS

    return [tap for module in net.modules() for tap in _TAPS.get(module, {}).values()]
