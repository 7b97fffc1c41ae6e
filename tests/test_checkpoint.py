"""Saving state_dict() mid-epoch and loading it into a fresh metric resumes exactly."""

from __future__ import annotations

import io

import snntorch as snn
import torch
from torch import nn

from snnmetrics import SynapticOperations, SynOps

STEPS = 3


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv1d(1, 3, 3, padding="same"), snn.Leaky(beta=0.7, init_hidden=True),
        nn.Flatten(), nn.Linear(3 * 8, 4), snn.Leaky(beta=0.7, init_hidden=True),
    )


def _batches() -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(5)
    return [(torch.rand(b, STEPS, 1, 8, generator=gen) < 0.5).float() * (1 + i % 2)
            for i, b in enumerate((3, 4, 2, 5))]


def _run(net: nn.Module, metric: SynapticOperations, batches: list[torch.Tensor]) -> None:
    for x in batches:
        for module in net.modules():
            if isinstance(module, snn.SpikingNeuron):
                module.reset_mem()
        for t in range(STEPS):
            net(x[:, t])
        metric.update()


def _roundtrip(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer)


def test_synaptic_operations_resumes_from_a_checkpoint():
    batches = _batches()
    net = _net()
    uninterrupted = SynapticOperations(net)
    _run(net, uninterrupted, batches)
    expected = uninterrupted.compute_per_layer()
    uninterrupted.detach()

    net = _net()
    first = SynapticOperations(net)
    _run(net, first, batches[:2])
    saved = _roundtrip(first.state_dict())
    first.detach()
    resumed = SynapticOperations(net)
    resumed.load_state_dict(saved)
    _run(net, resumed, batches[2:])
    got = resumed.compute_per_layer()
    for name, figures in expected.items():
        for key, value in figures.items():
            assert torch.equal(got[name][key], value), (name, key)
    assert float(expected["0"]["effective_macs"]) > 0  # graded batches gave MAC calls


def test_synops_resumes_from_a_checkpoint_with_a_lazily_shaped_state():
    counts = [torch.tensor([[1.0, 0.0, 2.0]]), torch.tensor([[0.0, 3.0, 1.0], [1.0, 1.0, 1.0]])]
    saved_metric = SynOps(fanout=4.0)
    saved_metric.update(counts[0])
    resumed = SynOps(fanout=4.0)
    resumed.load_state_dict(_roundtrip(saved_metric.state_dict()))
    resumed.update(counts[1])
    # by hand: per-neuron spikes [2, 4, 4] x fanout 4 over 3 samples
    torch.testing.assert_close(
        resumed.compute()["synops_per_neuron"],
        torch.tensor([8.0, 16.0, 16.0], dtype=torch.float64) / 3, rtol=0, atol=0,
    )
