"""The hooks never ask for a tensor's value on the host (a CPU stand-in for CUDA's
``torch.cuda.set_sync_debug_mode``): during hooked forward passes no tensor is turned into
a Python number, list, bool or NumPy array, and none is copied to the CPU."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import snnmetrics as sm
from snnmetrics.examples import conv_snn, mlp_snn, poisson_spikes, run_steps
from tests.workloads import host_reads


def _every_hooked_metric(net: nn.Module, receptive_fields: bool) -> list[sm.HookedMetric]:
    metrics = [
        sm.SynapticOperations(net), sm.SynapticOperations(net, skip_zero_weights=False),
        sm.NeuronOperations(net), sm.MembraneUpdates(net), sm.ActivationSparsity(net),
        sm.FiringRate(net), sm.Energy(net), sm.NumActivations(net), sm.BasisSetSize(net),
    ]
    if receptive_fields:  # each neuron layer directly after its connection layer
        metrics += [sm.BasisAverage(net), sm.FeatureCoverage(net)]
    return metrics


@pytest.mark.parametrize(
    "make, shape", [(mlp_snn, (2, 3, 20)), (conv_snn, (2, 3, 2, 32, 32))], ids=["mlp", "conv"]
)
def test_hooked_forward_passes_never_read_a_tensor_on_the_host(monkeypatch, make, shape):
    torch.manual_seed(0)
    net = make()
    metrics = _every_hooked_metric(net, receptive_fields=make is mlp_snn)
    x = poisson_spikes(shape, 0.3, torch.Generator().manual_seed(1))
    run_steps(net, x)  # first calls derive fanouts and make buffers: that may read shapes
    for metric in metrics:
        metric.update()
    with host_reads(monkeypatch) as seen:
        run_steps(net, x)
    assert seen == []
    for metric in metrics:  # and the run still counted
        metric.update()
    assert float(metrics[0].compute()["dense"]) > 0
