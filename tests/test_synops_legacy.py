"""`SynOps(fanout=...)`, the snnmetrics 0.0.1 API: hand-computed batch and epoch figures."""

from __future__ import annotations

import math

import pytest
import torch

from snnmetrics import SynOps
from snnmetrics.functional import synops as synops_fn

pytestmark = pytest.mark.filterwarnings("ignore:The ``compute`` method of metric")


def floats(result: dict[str, torch.Tensor]) -> dict[str, object]:
    return {key: value.tolist() for key, value in result.items()}


# ----------------------------------------------------------------------------- figures


def test_float_fanout_batch_and_epoch():
    metric = SynOps(fanout=10.0)
    # batch 1: neuron 0 spikes 1 + 3 times over 2 samples -> 20 per sample
    assert floats(metric(torch.tensor([[1.0, 0.0], [3.0, 0.0]]))) == {
        "synops_per_neuron": [20.0, 0.0],
        "synops": 20.0,
    }
    # batch 2: neuron 1 spikes once over 2 samples -> 5 per sample
    assert floats(metric(torch.tensor([[0.0, 0.0], [0.0, 1.0]]))) == {
        "synops_per_neuron": [0.0, 5.0],
        "synops": 5.0,
    }
    # epoch: [40, 10] over 4 samples
    assert floats(metric.compute()) == {"synops_per_neuron": [10.0, 2.5], "synops": 12.5}


def test_epoch_average_weights_batches_by_size():
    metric = SynOps(fanout=2.0)
    metric.update(torch.tensor([[4.0, 0.0, 0.0]]))  # 1 sample: 8
    metric.update(torch.tensor([[0.0, 1.0, 0.0]] * 3))  # 3 samples: 6
    # (8 + 6) / 4, not the mean of the batch means (8 + 2) / 2
    assert floats(metric.compute()) == {"synops_per_neuron": [2.0, 1.5, 0.0], "synops": 3.5}


def test_tensor_fanout_per_channel():
    metric = SynOps(fanout=torch.tensor([1.0, 2.0, 5.0]))
    metric.update(torch.tensor([[1.0, 1.0, 1.0], [2.0, 0.0, 1.0]]))
    assert floats(metric.compute()) == {"synops_per_neuron": [1.5, 1.0, 5.0], "synops": 7.5}


def test_tensor_fanout_chw_with_bchw_activations():
    fanout = torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [1.0, 0.0]]])  # (2, 2, 2)
    metric = SynOps(fanout=fanout)
    spikes = torch.zeros(2, 2, 2, 2)
    spikes[0, 0, 0, 1] = 3.0  # 3 x 2
    spikes[1, 0, 1, 1] = 1.0  # 1 x 4
    spikes[1, 1, 0, 0] = 5.0  # 5 x 0
    spikes[0, 1, 1, 0] = 2.0  # 2 x 1
    batch = floats(metric(spikes))
    assert batch == {
        "synops_per_neuron": [[[0.0, 3.0], [0.0, 2.0]], [[0.0, 0.0], [1.0, 0.0]]],
        "synops": 6.0,
    }
    metric.update(torch.ones(2, 2, 2, 2))  # sum(fanout) = 12 per sample
    assert floats(metric.compute())["synops"] == (12.0 + 24.0) / 4


def test_float_fanout_with_bchw_activations():
    metric = SynOps(fanout=3.0)
    metric.update(torch.ones(2, 1, 2, 3))
    result = metric.compute()
    assert result["synops_per_neuron"].shape == (1, 2, 3)
    assert float(result["synops"]) == 18.0


def test_synops_per_second():
    metric = SynOps(fanout=10.0, sample_time=0.5)
    batch = floats(metric(torch.tensor([[1.0, 0.0], [3.0, 0.0]])))
    assert batch["synops/s"] == 40.0
    assert set(batch) == {"synops_per_neuron", "synops", "synops/s"}
    metric.update(torch.tensor([[0.0, 0.0], [0.0, 1.0]]))
    assert floats(metric.compute())["synops/s"] == 25.0
    assert set(SynOps(fanout=1.0)(torch.ones(1, 1))) == {"synops_per_neuron", "synops"}


def test_functional_twin_is_the_batch_value():
    activations = torch.tensor([[1.0, 0.0, 2.0], [3.0, 1.0, 0.0]])
    fanout = torch.tensor([2.0, 4.0, 1.0])
    assert floats(synops_fn(activations, fanout, sample_time=2.0)) == {
        "synops_per_neuron": [4.0, 2.0, 1.0],
        "synops": 7.0,
        "synops/s": 3.5,
    }
    assert floats(SynOps(fanout=fanout, sample_time=2.0)(activations)) == floats(
        synops_fn(activations, fanout, sample_time=2.0)
    )


def test_state_is_float64_and_exact():
    big = 2**24 + 1  # not a float32
    metric = SynOps(fanout=3.0)
    metric.update(torch.tensor([[float(big)]], dtype=torch.float64))
    metric.update(torch.tensor([[big]], dtype=torch.int64))
    result = metric.compute()
    assert result["synops"].dtype == torch.float64
    assert result["synops_per_neuron"].dtype == torch.float64
    assert int(result["synops"]) == 3 * big
    assert float(torch.tensor(3 * big, dtype=torch.float32)) != 3 * big


def test_python_float_fanout_keeps_double_precision():
    # a Python float is a double: 0.1 must not become float32's 0.10000000149011612
    metric = SynOps(fanout=0.1)
    metric.update(torch.tensor([[1.0, 2.0]], dtype=torch.float64))
    assert float(metric.compute()["synops"]) == 0.1 * 3
    assert float(synops_fn(torch.tensor([[1.0]]), 0.1)["synops"]) == 0.1


def test_reset():
    metric = SynOps(fanout=1.0)
    metric.update(torch.ones(2, 3))
    metric.reset()
    with pytest.warns(UserWarning, match="called before the ``update``"):
        assert torch.isnan(metric.compute()["synops"])
    metric.update(torch.ones(1, 4) * 2)  # a lazily shaped state may take a new shape
    assert floats(metric.compute()) == {"synops_per_neuron": [2.0] * 4, "synops": 8.0}


# ----------------------------------------------------------------------------- merging


def _batches():
    gen = torch.Generator().manual_seed(0)
    return [torch.randint(0, 4, (b, 3, 2, 2), generator=gen).float() for b in (2, 5, 1, 3)]


@pytest.mark.parametrize("fanout", [2.5, torch.arange(12.0).reshape(3, 2, 2)])
def test_merge_state_equals_one_metric_on_all_data(fanout):
    batches = _batches()
    whole, left, right = SynOps(fanout=fanout), SynOps(fanout=fanout), SynOps(fanout=fanout)
    for i, batch in enumerate(batches):
        whole.update(batch)
        (left if i % 2 else right).update(batch)
    left.merge_state(right)
    assert floats(left.compute()) == floats(whole.compute())
    # and by hand
    total = sum((batch * torch.as_tensor(fanout)).sum().item() for batch in batches)
    assert float(whole.compute()["synops"]) == pytest.approx(total / 11, rel=1e-15)


def test_lazily_shaped_state_merges_with_an_empty_one():
    seen = SynOps(fanout=2.0)
    seen.update(torch.tensor([[1.0, 0.0, 2.0]]))
    expected = {"synops_per_neuron": [2.0, 0.0, 4.0], "synops": 6.0}

    empty = SynOps(fanout=2.0)
    seen.merge_state(empty)
    assert floats(seen.compute()) == expected

    empty = SynOps(fanout=2.0)
    empty.merge_state(seen)
    assert floats(empty.compute()) == expected

    both_empty = SynOps(fanout=2.0)
    both_empty.merge_state(SynOps(fanout=2.0))
    assert torch.isnan(both_empty.compute()["synops"])


def test_neuron_shape_fixes_the_state_shape():
    metric = SynOps(fanout=1.0, neuron_shape=(2,))
    with pytest.raises(ValueError):
        metric.update(torch.ones(1, 3))
    metric.update(torch.ones(1, 2))
    assert floats(metric.compute())["synops"] == 2.0


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("fanout", "activations"),
    [
        (torch.ones(3), torch.ones(2, 4)),
        (torch.ones(2, 3, 3), torch.ones(2, 2, 3, 4)),
        (torch.ones(2, 3, 3), torch.ones(2, 2)),
        (torch.ones(2), torch.ones(2, 2, 3, 3)),
    ],
)
def test_fanout_shape_mismatch_raises(fanout, activations):
    with pytest.raises(ValueError, match="fanout"):
        SynOps(fanout=fanout).update(activations)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_activations_raise(value):
    activations = torch.ones(2, 3)
    activations[1, 2] = value
    with pytest.raises(ValueError, match="finite"):
        SynOps(fanout=1.0).update(activations)


def test_negative_spike_counts_raise():
    with pytest.raises(ValueError, match="non-negative"):
        SynOps(fanout=1.0).update(torch.tensor([[1.0, -1.0]]))


@pytest.mark.parametrize("shape", [(3,), (2, 3, 4), (1, 2, 3, 4, 5), ()])
def test_wrong_ndim_raises(shape):
    with pytest.raises(ValueError, match=r"\(B, C\)"):
        SynOps(fanout=1.0).update(torch.ones(shape))


def test_activations_must_be_a_tensor():
    with pytest.raises(TypeError, match="activations"):
        SynOps(fanout=1.0).update([[1.0, 2.0]])  # type: ignore[arg-type]


def test_shape_change_between_batches_raises():
    metric = SynOps(fanout=1.0)
    metric.update(torch.ones(2, 3))
    with pytest.raises(ValueError, match="shape"):
        metric.update(torch.ones(2, 4))
    with pytest.raises(ValueError, match="shape"):
        metric.update(torch.ones(2, 3, 1, 1))


@pytest.mark.parametrize("fanout", [-1.0, math.nan, math.inf, torch.tensor([1.0, -0.5])])
def test_bad_fanout_value_raises(fanout):
    with pytest.raises(ValueError, match="fanout"):
        SynOps(fanout=fanout)


@pytest.mark.parametrize("fanout", ["10", True, None, [1.0, 2.0]])
def test_bad_fanout_type_raises(fanout):
    with pytest.raises(TypeError, match="fanout"):
        SynOps(fanout=fanout)


@pytest.mark.parametrize("sample_time", [0, -1.0, math.inf, math.nan])
def test_bad_sample_time_value_raises(sample_time):
    with pytest.raises(ValueError, match="sample_time"):
        SynOps(fanout=1.0, sample_time=sample_time)


@pytest.mark.parametrize("sample_time", ["1", True, [1.0]])
def test_bad_sample_time_type_raises(sample_time):
    with pytest.raises(TypeError, match="sample_time"):
        SynOps(fanout=1.0, sample_time=sample_time)


def test_compute_without_update_gives_nan_with_a_warning():
    with pytest.warns(UserWarning, match="called before the ``update``"):
        result = SynOps(fanout=1.0).compute()
    assert torch.isnan(result["synops"]) and result["synops_per_neuron"].numel() == 0
