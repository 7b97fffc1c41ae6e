"""SynapticOperations and SynOps under torch.distributed (gloo, CPU): the synced figure on
every rank equals the single-process figure on all the data, with uneven shards and a rank
that saw no batch."""

from __future__ import annotations

import snntorch as snn
import torch
from torch import nn

from snnmetrics import SynapticOperations, SynOps
from snnmetrics.examples import reset_neurons

BATCH_SIZES = (5, 3, 7, 2)
STEPS = 4


def _model() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv1d(2, 4, 3, padding=1),
        snn.Leaky(beta=0.8, init_hidden=True),
        nn.Flatten(),
        nn.Linear(4 * 6, 5),
        snn.Leaky(beta=0.8, init_hidden=True),
    )
    with torch.no_grad():
        net[3].weight[:, ::3] = 0.0
    return net


def _batch(index: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(100 + index)
    spikes = (torch.rand(BATCH_SIZES[index], STEPS, 2, 6, generator=gen) < 0.4).float()
    if index == 2:  # graded input: MAC calls
        spikes = spikes * 2.0
    return spikes


def _run_synaptic(indices: list[int]) -> dict[str, torch.Tensor]:
    net = _model()
    metric = SynapticOperations(net)
    for index in indices:
        x = _batch(index)
        reset_neurons(net)
        for t in range(STEPS):
            net(x[:, t])
        metric.update()
    return metric.compute()


def _synaptic_task(rank: int, world_size: int, shards: list[list[int]]) -> dict[str, torch.Tensor]:
    return _run_synaptic(shards[rank])


def _spike_counts(index: int) -> torch.Tensor:
    return _batch(index).sum(1)  # [B, 2, 6]


def _synops_task(rank: int, world_size: int, shards: list[list[int]]) -> dict[str, torch.Tensor]:
    metric = SynOps(fanout=3.0, sample_time=0.5)  # neuron shape from the first batch
    for index in shards[rank]:
        metric.update(_spike_counts(index).flatten(1))
    return metric.compute()


def _expected_synops() -> dict[str, torch.Tensor]:
    counts = torch.cat([_spike_counts(i).flatten(1) for i in range(len(BATCH_SIZES))])
    per_neuron = counts.double().sum(0) * 3.0 / counts.shape[0]
    return {"synops_per_neuron": per_neuron, "synops": per_neuron.sum()}


def _assert_same(results: list[dict[str, torch.Tensor]], expected: dict[str, torch.Tensor]) -> None:
    for rank_result in results:
        for key, value in expected.items():
            torch.testing.assert_close(rank_result[key], value, rtol=0, atol=0)


def test_synaptic_operations_two_ranks_uneven(ddp2):
    expected = _run_synaptic(list(range(len(BATCH_SIZES))))
    assert float(expected["effective_macs"]) > 0 and float(expected["effective_acs"]) > 0
    _assert_same(ddp2.run(_synaptic_task, [[0, 1, 2], [3]]), expected)


def test_synaptic_operations_one_rank_without_data(ddp3):
    expected = _run_synaptic(list(range(len(BATCH_SIZES))))
    _assert_same(ddp3.run(_synaptic_task, [[0, 2], [1, 3], []]), expected)


def test_synops_lazily_shaped_state_syncs_with_an_empty_rank(ddp3):
    expected = _expected_synops()
    results = ddp3.run(_synops_task, [[3, 1], [], [0, 2]])
    _assert_same(results, expected)
    for rank_result in results:
        torch.testing.assert_close(rank_result["synops/s"], expected["synops"] / 0.5)


def _ddp_wrapped_task(rank: int, world_size: int, shards: list[list[int]]) -> dict:
    net = _model()
    wrapped = nn.parallel.DistributedDataParallel(net)
    metric = SynapticOperations(wrapped)  # hooks go on the inner module
    assert metric.model is net
    for index in shards[rank]:
        x = _batch(index)
        reset_neurons(net)
        with torch.no_grad():
            for t in range(STEPS):
                wrapped(x[:, t])
        metric.update()
    return metric.compute()


def test_model_wrapped_in_distributed_data_parallel(ddp2):
    expected = _run_synaptic(list(range(len(BATCH_SIZES))))
    _assert_same(ddp2.run(_ddp_wrapped_task, [[1, 3], [0, 2]]), expected)


def _synops_mismatch_task(rank: int, world_size: int) -> str:
    metric = SynOps(fanout=2.0)
    metric.update(torch.ones(2, 3 + rank))  # a different number of neurons on each rank
    try:
        metric.compute()
    except ValueError as error:
        return str(error)
    return "no error"


def test_synops_ranks_with_different_neuron_shapes_all_raise(ddp3):
    errors = ddp3.run(_synops_mismatch_task)
    assert all("ranks saw different shapes for state synops_sum" in e for e in errors)
