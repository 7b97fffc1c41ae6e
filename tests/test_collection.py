"""Metrics in a torchmetrics.MetricCollection: one hook per module, nothing counted twice."""

from __future__ import annotations

import pytest
import snntorch as snn
import torch
from torch import nn
from torchmetrics import MetricCollection

import snnmetrics as sm


def _net() -> nn.Sequential:
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Linear(5, 7), snn.Leaky(beta=0.8, init_hidden=True),
        nn.Linear(7, 3), snn.Synaptic(alpha=0.5, beta=0.8, init_hidden=True),
    )


def _metrics(net: nn.Module) -> dict[str, sm.HookedMetric]:
    return {
        "synops": sm.SynapticOperations(net),
        "neuron_ops": sm.NeuronOperations(net),
        "membrane": sm.MembraneUpdates(net),
        "sparsity": sm.ActivationSparsity(net, by_layer=True),
        "firing": sm.FiringRate(net),
    }


def _feed(net: nn.Module, update) -> None:
    gen = torch.Generator().manual_seed(9)
    for batch_size in (3, 5):
        x = (torch.rand(batch_size, 6, 5, generator=gen) < 0.5).float() * 1.5
        for module in net.modules():
            if isinstance(module, snn.SpikingNeuron):
                module.reset_mem()
        for t in range(x.shape[1]):
            net(x[:, t])
        update()


def _hooks(net: nn.Module) -> list[int]:
    return [len(m._forward_hooks) + len(m._forward_pre_hooks) for m in net]


@pytest.mark.parametrize("compute_groups", [False, True])
def test_collection_equals_metrics_run_alone_and_shares_hooks(compute_groups):
    expected = {}
    for name in _metrics(_net()):
        net = _net()
        alone = _metrics(net)[name]
        for other_name, other in _metrics(net).items():
            if other_name != name:
                other.detach()
        _feed(net, alone.update)
        expected[name] = alone.compute()

    net = _net()
    collection = MetricCollection(_metrics(net), compute_groups=compute_groups)
    # every module has the hooks one metric family needs, however many metrics watch it:
    # a pre-hook on each Linear, a pre- and a post-hook on each neuron
    assert _hooks(net) == [1, 2, 1, 2]
    _feed(net, collection.update)
    got = collection.compute()
    flat = {}  # MetricCollection flattens dict results one level: "{name}_{key}"
    for name, value in expected.items():
        if isinstance(value, dict):
            flat.update({f"{name}_{key}": item for key, item in value.items()})
        else:
            flat[name] = value
    assert set(got) == set(flat)
    for key, value in flat.items():
        torch.testing.assert_close(got[key], value, rtol=0, atol=0, msg=key)
