"""Sparse-code metrics under batch splitting, merge_state() and 2-rank gloo DDP: every figure
equals the one of a single process that saw all the data, including a rank with no data and
the basis-set sketch past its exact bound (all figures compared exactly)."""

from __future__ import annotations

import io
from typing import Any

import pytest
import snntorch as snn
import torch
from torch import nn

import snnmetrics as sm
from tests.workloads import assert_equal as _assert_equal

BATCH_SIZES = (4, 1, 6, 3, 2)
STEPS = 3
NUM_KEYS = 5
STORED = {0, 1, 2}  # batches whose codes are stored; the others are matched


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The tensors here are tiny: more threads only contend (seconds on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def assert_equal(got: Any, expected: Any) -> None:
    """Exact equality of nested lists and dicts of tensors."""
    if isinstance(expected, list):
        assert len(got) == len(expected)
        for i, (one, other) in enumerate(zip(got, expected, strict=True)):
            _assert_equal(one, other, f"phase {i}")
    else:
        _assert_equal(got, expected)


def build_net() -> nn.Sequential:
    torch.manual_seed(11)
    net = nn.Sequential(
        nn.Conv1d(2, 3, 3, stride=2, padding=1),
        snn.Leaky(beta=0.6, threshold=0.5, init_hidden=True),  # 3 x 4 units
        nn.Flatten(),
        nn.Linear(12, 10),
        snn.Leaky(beta=0.6, threshold=0.5, init_hidden=True),
    )
    with torch.no_grad():
        net[3].weight.mul_(3.0)
    return net


def make_metrics(net: nn.Module) -> dict[str, sm.HookedMetric]:
    return {
        "activations": sm.NumActivations(net),
        "size": sm.BasisSetSize(net),
        "sketch": sm.BasisSetSize(net, capacity=16),  # past its exact bound
        "increase": sm.BasisSetSizeIncrease(net, capacity=16),
        "average": sm.BasisAverage(net),
        "coverage": sm.FeatureCoverage(net),
        "match": sm.MatchAccuracy(net, num_keys=NUM_KEYS),
    }


def make_batch(index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Binary input ``[B, STEPS, 2, 8]`` (so that every sum is an exact integer) and keys."""
    gen = torch.Generator().manual_seed(70 + index)
    x = (torch.rand(BATCH_SIZES[index], STEPS, 2, 8, generator=gen) < 0.5).float()
    keys = (torch.arange(BATCH_SIZES[index]) + 2 * index) % NUM_KEYS
    return x, keys


def feed(net: nn.Module, metrics: dict[str, sm.HookedMetric], index: int, parts: int = 1) -> None:
    """Run batch ``index``, split into ``parts`` sub-batches each updated on its own."""
    x, keys = make_batch(index)
    for x_part, keys_part in zip(x.tensor_split(parts), keys.tensor_split(parts), strict=True):
        if x_part.shape[0] == 0:
            continue
        for module in net.modules():
            if isinstance(module, snn.SpikingNeuron):
                module.reset_mem()
        for t in range(STEPS):
            net(x_part[:, t])
        for name, metric in metrics.items():
            if name == "match":
                metric.update(keys_part, store=index in STORED)
            else:
                metric.update()


def figures(metrics: dict[str, sm.HookedMetric]) -> dict[str, Any]:
    result = {name: metric.compute() for name, metric in metrics.items()}
    result["exact"] = {name: metrics[name].exact() for name in ("size", "sketch")}
    return result


def run(phases: list[list[int]], parts: int = 1) -> list[dict[str, Any]]:
    """Feed the batches of each phase, computing every figure after each phase."""
    net = build_net()
    metrics = make_metrics(net)
    results = []
    for phase in phases:
        for index in phase:
            feed(net, metrics, index, parts)
        results.append(figures(metrics))
    return results


PHASES = [[0, 2, 3], [1, 4]]


@pytest.fixture(scope="module")
def expected() -> list[dict[str, Any]]:
    return run(PHASES)


def test_the_data_exercises_every_figure(expected):
    final = expected[-1]
    assert final["exact"] == {"size": {"1": True, "4": True}, "sketch": {"1": False, "4": False}}
    assert all(float(v) > 0 for v in final["increase"].values())  # new codes in phase 2
    assert all(0 < float(v) < 1 for v in final["coverage"].values())
    assert all(0 < float(v) < 1 for v in final["match"].values())
    assert all(float(layer["counts"].min()) > 0 for layer in final["average"].values())


@pytest.mark.parametrize("parts", [2, 3])
def test_splitting_every_batch_changes_nothing(expected, parts):
    assert_equal(run(PHASES, parts), expected)


def _task(rank: int, world_size: int, shards: list[list[list[int]]]) -> list[dict[str, Any]]:
    return run([phase[rank] for phase in shards])


@pytest.mark.parametrize(
    "shards",
    [
        [[[0, 3], [2]], [[4], [1]]],  # uneven
        [[[], [0, 2, 3]], [[1], [4]]],  # rank 0 sees nothing before the first compute
    ],
    ids=["uneven", "rank0-empty-first"],
)
def test_two_ranks_equal_one_process(ddp2, expected, shards):
    for rank_result in ddp2.run(_task, shards):
        assert_equal(rank_result, expected)


def test_merge_state_equals_one_process(expected):
    everything = run([[0, 1, 2, 3, 4]])[0]
    parts = []
    for shard in ([0, 3], [], [1, 2, 4]):
        net = build_net()
        metrics = make_metrics(net)
        for index in shard:
            feed(net, metrics, index)
        parts.append(metrics)
    for name in parts[0]:
        for other in parts[1:]:
            parts[0][name].merge_state(other[name])
    merged = figures(parts[0])
    # the increase over one compute() is the size itself
    assert_equal(merged, everything)
    assert_equal(merged["sketch"], expected[-1]["sketch"])


def test_resuming_from_a_checkpoint_equals_one_process(expected):
    net = build_net()
    first = make_metrics(net)
    for index in PHASES[0]:
        feed(net, first, index)
    figures(first)  # moves BasisSetSizeIncrease's previous size on, as in `expected`
    saved = {}
    for name, metric in first.items():
        buffer = io.BytesIO()
        torch.save(metric.state_dict(), buffer)
        buffer.seek(0)
        saved[name] = torch.load(buffer)
        metric.detach()
    resumed = make_metrics(net)
    for name, metric in resumed.items():
        metric.load_state_dict(saved[name])
    for index in PHASES[1]:
        feed(net, resumed, index)
    assert_equal(figures(resumed), expected[-1])
