"""snnmetrics.Benchmark under torch.distributed (gloo, 2 ranks): every rank's run() returns
the single-process results of the whole data set, with uneven shards and a rank with none.

Shards come from a ``DistributedSampler`` (whose padding repeats must not count), plain or
shuffled, or from each rank's own loader. The expected dict is computed in the test
process, never in a worker.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler, Subset, TensorDataset

from snnmetrics import Benchmark
from tests.test_benchmark import (
    ALL_STATIC,
    ALL_WORKLOAD,
    assert_results_equal,
    choose_max_count,
    dataset,
    mlp_snn,
)

SAMPLES = 7
# figures averaged from NeuroBench's float32 batch means: their rounding depends on how the
# data is batched
FLOAT32 = ("classification_accuracy", "mse", "sMAPE")


def full_dataset(task: str, samples: int = SAMPLES) -> TensorDataset:
    x, labels = dataset((6,), samples=samples).tensors
    # every sample graded: a layer call whose batch mixes spikes and graded values is a MAC
    # call (NeuroBench's rule), so mixed data would split ACs and MACs by batch composition
    x = x * 2
    if task == "regression":  # positive targets: SMAPE never meets 0 / 0
        gen = torch.Generator().manual_seed(9)
        labels = torch.rand(samples, 3, generator=gen) * 3 + 0.5
    return TensorDataset(x, labels)


def metrics_and_post(task: str) -> tuple[list[list[str]], list[Any]]:
    if task == "classification":
        return [ALL_STATIC, [*ALL_WORKLOAD, "FiringRate"]], [choose_max_count]
    workload = ["mse", "r2", "sMAPE", "synaptic_operations", "activation_sparsity_by_layer"]
    return [[], workload], [lambda spikes: spikes.sum(1)]


def shard_loader(scenario: str, rank: int, world_size: int, task: str) -> DataLoader:
    if scenario == "one-sample":  # rank 1 gets only the padding repeat of sample 0
        data = full_dataset(task, samples=1)
        return DataLoader(data, batch_size=2, sampler=DistributedSampler(data, shuffle=False))
    data = full_dataset(task)
    if scenario == "sampler":  # 4 and 3 samples, the last batch of rank 1 padded
        return DataLoader(data, batch_size=2, sampler=DistributedSampler(data, shuffle=False))
    if scenario == "shuffled":
        sampler = DistributedSampler(data, shuffle=True, seed=3)
        return DataLoader(data, batch_size=3, sampler=sampler)
    # each rank its own loader: rank 0 every sample, rank 1 an empty one
    indices = range(SAMPLES) if rank == 0 else range(0)
    return DataLoader(Subset(data, list(indices)), batch_size=3)


def _task(rank: int, world_size: int, scenario: str, task: str) -> dict[str, Any]:
    metrics, post = metrics_and_post(task)
    loader = shard_loader(scenario, rank, world_size, task)
    return Benchmark(mlp_snn(), loader, [], post, metrics).run(quiet=True)


def single_process(scenario: str, task: str) -> dict[str, Any]:
    metrics, post = metrics_and_post(task)
    data = full_dataset(task, samples=1 if scenario == "one-sample" else SAMPLES)
    return Benchmark(mlp_snn(), DataLoader(data, batch_size=2), [], post, metrics).run(quiet=True)


@pytest.mark.parametrize("task", ["classification", "regression"])
@pytest.mark.parametrize("scenario", ["sampler", "shuffled", "one-sample", "own-loaders"])
def test_two_ranks_return_the_single_process_results(ddp2, scenario, task):
    expected = single_process(scenario, task)
    assert expected["synaptic_operations"]["Effective_MACs"] > 0
    for result in ddp2.run(_task, scenario, task):
        assert list(result) == list(expected)
        for key in FLOAT32:
            if key in expected:
                assert result.pop(key) == pytest.approx(expected[key], rel=1e-6)
        rest = {key: value for key, value in expected.items() if key not in FLOAT32}
        assert_results_equal(result, rest)
