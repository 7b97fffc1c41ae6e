"""Saving state_dict() mid-epoch and loading it into a fresh metric resumes exactly."""

from __future__ import annotations

import io

import pytest
import torch

from snnmetrics import SynOps
from tests.workloads import (
    BATCH_SIZES,
    FACTORIES,
    assert_equal,
    build_net,
    feed,
    figures,
    run_metrics,
)


def _roundtrip(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer)


@pytest.mark.parametrize("name", list(FACTORIES))
def test_every_hooked_metric_resumes_from_a_checkpoint(name):
    everything = list(range(len(BATCH_SIZES)))
    expected = figures(run_metrics([name], everything)[name])

    net = build_net()
    first = FACTORIES[name](net)
    feed(net, [first], everything[:2])
    saved = _roundtrip(first.state_dict())
    first.detach()
    resumed = FACTORIES[name](net)
    resumed.load_state_dict(saved)
    feed(net, [resumed], everything[2:])
    assert_equal(figures(resumed), expected, name)


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
