"""Every metric under torch.distributed (gloo, CPU, 2 and 3 ranks): the synced figures on
every rank equal the single-process figures on the union of the data, with uneven shards
and a rank that saw no batch; merge_state() gives the same without a process group."""

from __future__ import annotations

from typing import Any

import pytest

from tests.workloads import BATCH_SIZES, FACTORIES, assert_equal, figures, run_metrics


def _task(rank: int, world_size: int, names: list[str], shards: list[list[int]]) -> dict:
    return {name: figures(metric) for name, metric in run_metrics(names, shards[rank]).items()}


@pytest.fixture(scope="module")
def expected() -> dict[str, dict[str, Any]]:
    everything = list(range(len(BATCH_SIZES)))
    return {name: figures(m) for name, m in run_metrics(list(FACTORIES), everything).items()}


def test_the_data_exercises_every_figure(expected):
    synops = expected["synops"]["total"]
    assert float(synops["effective_acs"]) > 0 and float(synops["effective_macs"]) > 0
    assert 0 < float(expected["sparsity"]["total"]) < 1
    assert all(float(layer["max"]) > 0 for layer in expected["firing"]["total"].values())


@pytest.mark.parametrize(
    "shards", [[[0, 1, 2], [3, 4]], [[], [0, 1, 2, 3, 4]]], ids=["uneven", "rank0-empty"]
)
def test_two_ranks(ddp2, expected, shards):
    for rank_result in ddp2.run(_task, list(FACTORIES), shards):
        assert_equal(rank_result, expected)


@pytest.mark.parametrize(
    "shards", [[[0, 3], [1], [2, 4]], [[4, 2, 0], [], [3, 1]]], ids=["uneven", "rank1-empty"]
)
def test_three_ranks(ddp3, expected, shards):
    for rank_result in ddp3.run(_task, list(FACTORIES), shards):
        assert_equal(rank_result, expected)


@pytest.mark.parametrize("name", list(FACTORIES))
def test_merge_state_without_a_process_group(expected, name):
    parts = [run_metrics([name], shard)[name] for shard in ([0, 3], [], [1, 2, 4])]
    merged = parts[0]
    for part in parts[1:]:
        merged.merge_state(part)
    assert_equal(figures(merged), expected[name], name)
