"""Sparse-code metrics (seed 004) on hand-made binary codes with answers worked out by hand
or by brute-force loops, plus their errors, windows, shared hooks and fixed state sizes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import snntorch as snn
import torch
from torch import nn
from torchmetrics import MetricCollection

import snnmetrics as sm
from snnmetrics.functional import (
    activation_statistics,
    basis_average,
    basis_set_size,
    feature_coverage,
    match_accuracy,
    normalized_hamming_distance,
    num_activations,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The tensors here are tiny: more threads only contend (seconds on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Relay(nn.Module):
    """A neuron layer whose outputs are its inputs: the test feeds the codes themselves."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clone()


class Step(nn.Module):
    """A binary activation: 1 where the input is positive."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x > 0).to(x.dtype)


for _type in (Relay, Step):
    sm.register_neuron(_type, sm.NeuronRule(spikes=lambda module, output: output))


def relay_net() -> nn.Sequential:
    return nn.Sequential(nn.Identity(), Relay())


def feed(net: nn.Module, metric: sm.HookedMetric, *calls: list[list[float]]) -> None:
    """One batch: every call is one step of the batch's codes; then update()."""
    for codes in calls:
        net(torch.tensor(codes, dtype=torch.float32))
    metric.update()


# --- NumActivations ----------------------------------------------------------------------


def test_num_activations_on_hand_made_codes():
    net = relay_net()
    metric = sm.NumActivations(net)
    # 3 samples x 2 steps of 4 units; -1 and 2 are active too (nonzero)
    step_0 = [[1, 0, 1, 1], [0, 0, 0, 0], [1, -1, 1, 2]]
    step_1 = [[0, 1, 0, 0], [0, 0, 0, 0], [1, 1, 0, 1]]
    feed(net, metric, step_0, step_1)
    layer = metric.compute()["1"]
    active = [3, 0, 4, 1, 0, 3]  # per code, by hand
    assert layer["histogram"].tolist() == [2, 1, 0, 2, 1]
    assert layer["histogram"].dtype == torch.int64
    assert float(layer["per_sample"]) == pytest.approx(11 / 3, abs=1e-15)
    assert float(layer["per_step"]) == pytest.approx(11 / 6, abs=1e-15)
    assert float(layer["std"]) == pytest.approx(np.std(active, ddof=1), abs=1e-12)
    assert (float(layer["min"]), float(layer["max"])) == (0.0, 4.0)


def test_num_activations_functional_twins():
    codes = torch.tensor([[[1, 0], [0, 0]], [[1, 1], [1, 0]]])  # 2 codes of 2 x 2 units
    assert num_activations(codes).tolist() == [1, 3]
    stats = activation_statistics(torch.tensor([0, 1, 0, 1, 0]), samples=1)
    assert (float(stats["per_sample"]), float(stats["per_step"])) == (4.0, 2.0)
    assert math.isnan(float(activation_statistics(torch.tensor([0, 1]), 1)["std"]))
    with pytest.raises(ValueError, match="histogram"):
        activation_statistics(torch.tensor([[1]]), 1)


# --- BasisSetSize / BasisSetSizeIncrease --------------------------------------------------

A, B, C, Z = [1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0]


def test_basis_set_size_and_increase_on_hand_made_codes():
    net = relay_net()
    size, increase = sm.BasisSetSize(net), sm.BasisSetSizeIncrease(net)
    both = MetricCollection({"size": size, "increase": increase})
    for codes, new in (([A, A, Z], 2), ([B, A], 1), ([C, Z, Z, B], 1)):
        net(torch.tensor(codes, dtype=torch.float32))
        both.update()
        assert float(increase.compute()["1"]) == new
        assert float(increase.compute()["1"]) == new  # cached until the next update
    assert float(size.compute()["1"]) == 4  # A, B, C, Z
    assert size.exact() == {"1": True}
    increase.reset()
    net(torch.tensor([A, B], dtype=torch.float32))
    increase.update()
    assert float(increase.compute()["1"]) == 2  # a reset forgets the previous size


def test_basis_set_size_counts_distinct_random_codes_exactly():
    gen = torch.Generator().manual_seed(4)
    codes = (torch.rand(600, 2, 5, generator=gen) < 0.25).float()  # 10 sparse units: repeats
    expected = len(np.unique(codes.flatten(1).numpy(), axis=0))
    assert 150 < expected < 600
    net = relay_net()
    metric = sm.BasisSetSize(net)
    for chunk in codes.split([100, 1, 250, 249]):
        net(chunk)
        metric.update()
    assert float(metric.compute()["1"]) == expected
    assert int(basis_set_size(codes)) == expected


def test_basis_set_size_is_exact_below_capacity_and_estimated_beyond():
    net = relay_net()
    metric = sm.BasisSetSize(net, capacity=8)
    seven = torch.eye(7)  # 7 distinct one-hot codes
    net(seven)
    metric.update()
    assert float(metric.compute()["1"]) == 7 and metric.exact() == {"1": True}
    net(torch.ones(1, 7))
    metric.update()
    assert metric.exact() == {"1": False}


def test_basis_set_size_sketch_error_is_within_its_bound():
    gen = torch.Generator().manual_seed(0)
    codes = (torch.rand(20000, 40, generator=gen) < 0.5).float()
    expected = len(np.unique(codes.numpy(), axis=0))
    net = relay_net()
    metric = sm.BasisSetSize(net, capacity=1024)
    for chunk in codes.split(3000):
        net(chunk)
        metric.update()
    estimate = float(metric.compute()["1"])
    # relative standard error <= 1 / sqrt(1022) = 3.1 %: allow four of them
    assert abs(estimate / expected - 1) < 4 / math.sqrt(1022)
    assert metric.exact() == {"1": False}


# --- BasisAverage ------------------------------------------------------------------------


def test_basis_average_of_a_linear_layer_by_hand():
    net = nn.Sequential(nn.Linear(3, 2, bias=False), Step())
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))
    metric = sm.BasisAverage(net)
    # unit 0 fires where x0 + x1 > 0 (rows 0, 2), unit 1 where x2 > 0 (rows 1, 2)
    feed(net, metric, [[2, 0, 0], [0, 0, 3], [1, 1, 1], [0, 0, -1]])
    layer = metric.compute()["1"]
    assert metric.source_names == ["0"]
    expected = [[1.5, 0.5, 0.5], [0.5, 0.5, 2.0]]
    torch.testing.assert_close(layer["average"], torch.tensor(expected, dtype=torch.float64))
    assert layer["counts"].tolist() == [[2, 2, 2], [2, 2, 2]]
    assert layer["sums"].tolist() == [[3, 1, 1], [1, 1, 4]]


def test_basis_average_never_active_unit_is_nan():
    net = nn.Sequential(nn.Linear(2, 2, bias=False), Step())
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))
    metric = sm.BasisAverage(net)
    feed(net, metric, [[1, 4]])
    average = metric.compute()["1"]["average"]
    assert average[0].tolist() == [1.0, 4.0] and bool(average[1].isnan().all())


def _recorded(net: nn.Sequential, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """The input of net[0] and the output of net[1], by a forward that skips the hooks."""
    with torch.no_grad():
        out = net[1].forward(net[0].forward(x))
    return x.numpy().astype(np.float64), out.numpy().astype(np.float64)


def _conv_geometry(conv: nn.Conv2d):
    return conv.stride, conv.padding, conv.dilation, conv.groups


def brute_force_conv_sta(conv: nn.Conv2d, x: np.ndarray, a: np.ndarray):
    """Spike-triggered sums and counts per weight tap, by loops over every output unit."""
    (sh, sw), (ph, pw), (dh, dw), groups = _conv_geometry(conv)
    c_out, c_in_group, kh_n, kw_n = conv.weight.shape
    out_per_group = c_out // groups
    sums = np.zeros(conv.weight.shape)
    counts = np.zeros(conv.weight.shape)
    for b, c, oh, ow in np.ndindex(a.shape):
        if a[b, c, oh, ow] == 0:
            continue
        g = c // out_per_group
        for j, kh, kw in np.ndindex(c_in_group, kh_n, kw_n):
            ih, iw = oh * sh - ph + kh * dh, ow * sw - pw + kw * dw
            if 0 <= ih < x.shape[2] and 0 <= iw < x.shape[3]:
                sums[c, j, kh, kw] += x[b, g * c_in_group + j, ih, iw]
                counts[c, j, kh, kw] += 1
    return sums, counts


def test_basis_average_of_a_grouped_strided_conv_by_brute_force():
    torch.manual_seed(1)
    conv = nn.Conv2d(2, 4, 3, stride=2, padding=1, groups=2)
    net = nn.Sequential(conv, Step())
    gen = torch.Generator().manual_seed(2)
    batches = [torch.randint(-2, 3, (n, 2, 5, 6), generator=gen).float() for n in (3, 2)]
    metric = sm.BasisAverage(net)
    sums, counts = np.zeros(conv.weight.shape), np.zeros(conv.weight.shape)
    for x in batches:
        net(x)
        metric.update()
        s, c = brute_force_conv_sta(conv, *_recorded(net, x))
        sums, counts = sums + s, counts + c
    layer = metric.compute()["1"]
    assert counts.min() > 0
    np.testing.assert_array_equal(layer["sums"].numpy(), sums)
    np.testing.assert_array_equal(layer["counts"].numpy(), counts)
    np.testing.assert_allclose(layer["average"].numpy(), sums / counts, rtol=1e-14)
    x, a = _recorded(net, batches[0])
    twin = basis_average(conv, batches[0], torch.from_numpy(a))
    np.testing.assert_array_equal(twin["sums"].numpy(), brute_force_conv_sta(conv, x, a)[0])


# --- FeatureCoverage ---------------------------------------------------------------------


def test_feature_coverage_of_a_sparse_linear_layer_by_hand():
    net = nn.Sequential(nn.Linear(4, 3, bias=False), Step())
    with torch.no_grad():  # unit 0 sees input 0, unit 1 inputs 1 and 2, unit 2 nothing
        net[0].weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 2, 3, 0], [0, 0, 0, 0]]))
    metric = sm.FeatureCoverage(net)
    # active units: {0} -> 1 of 4 inputs; {1} -> 2; {0, 1} -> 3; {} -> 0
    feed(net, metric, [[1, 0, 0, 0], [0, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]])
    assert float(metric.compute()["1"]) == pytest.approx(6 / 16, abs=1e-15)


def brute_force_conv_coverage(conv: nn.Conv2d, a: np.ndarray, in_shape) -> float:
    """Covered input elements over all input elements, marking each active unit's field."""
    (sh, sw), (ph, pw), (dh, dw), groups = _conv_geometry(conv)
    weight = conv.weight.detach().numpy()
    c_in_group, out_per_group = weight.shape[1], weight.shape[0] // groups
    covered = 0
    for b in range(a.shape[0]):
        seen = np.zeros(in_shape, dtype=bool)
        for c, oh, ow in np.ndindex(a.shape[1:]):
            if a[b, c, oh, ow] == 0:
                continue
            g = c // out_per_group
            for j, kh, kw in np.ndindex(weight.shape[1:]):
                ih, iw = oh * sh - ph + kh * dh, ow * sw - pw + kw * dw
                inside = 0 <= ih < in_shape[1] and 0 <= iw < in_shape[2]
                if inside and weight[c, j, kh, kw] != 0:
                    seen[g * c_in_group + j, ih, iw] = True
        covered += seen.sum()
    return covered / (a.shape[0] * math.prod(in_shape))


def test_feature_coverage_of_a_dilated_conv_with_zero_weights_by_brute_force():
    torch.manual_seed(3)
    conv = nn.Conv2d(2, 2, 3, stride=2, padding=2, dilation=2, bias=False)
    with torch.no_grad():
        conv.weight[:, :, 1, :] = 0.0  # a zeroed row of taps: those inputs are not seen
        conv.weight[1, 0] = 0.0
    net = nn.Sequential(conv, Step())
    x = torch.randint(-1, 2, (4, 2, 7, 7), generator=torch.Generator().manual_seed(5)).float()
    metric = sm.FeatureCoverage(net)
    net(x)
    metric.update()
    _, a = _recorded(net, x)
    expected = brute_force_conv_coverage(conv, a, (2, 7, 7))
    assert 0 < expected < 1
    assert float(metric.compute()["1"]) == pytest.approx(expected, abs=1e-15)
    assert float(feature_coverage(conv, x, torch.from_numpy(a))) == pytest.approx(expected)


def test_field_metrics_pair_by_sources_and_reject_a_shape_change():
    class NeuronFirst(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.spike = Step()  # registered before the layer that feeds it
            self.fc = nn.Linear(2, 2, bias=False)

        def forward(self, x):
            return self.spike(self.fc(x))

    net = NeuronFirst()
    with pytest.raises(ValueError, match="sources="):
        sm.FeatureCoverage(net)
    with torch.no_grad():
        net.fc.weight.copy_(torch.eye(2))
    metric = sm.FeatureCoverage(net, sources={"spike": "fc"})
    feed(net, metric, [[1, 0], [1, 1]])
    assert float(metric.compute()["spike"]) == 0.75

    pooled = nn.Sequential(nn.Conv1d(1, 1, 3), nn.MaxPool1d(2), Step())
    with sm.BasisAverage(pooled) as metric, pytest.raises(ValueError, match="sources="):
        pooled(torch.ones(1, 1, 6))


# --- MatchAccuracy -----------------------------------------------------------------------


def test_match_accuracy_on_hand_made_codes():
    net = relay_net()
    metric = sm.MatchAccuracy(net, num_keys=3)
    t = torch.tensor
    # stored codes: key 0 from three presentations by majority -> [1, 1, 0, 0];
    # key 1 from two, unit 3 active in one of them (a tie is inactive) -> [0, 0, 1, 0]
    net(t([[1.0, 1, 0, 0], [1, 0, 0, 0], [1, 1, 0, 1], [0, 0, 1, 1], [0, 0, 1, 0]]))
    metric.update(t([0, 0, 0, 1, 1]), store=True)
    # selected codes over two steps (OR): key 0 -> [1, 1, 0, 0] (distance 0), key 1 ->
    # [0, 1, 1, 1] (2 of 4 differ), key 2 has no stored code and is not compared
    net(t([[1.0, 0, 0, 0], [0, 1, 1, 0], [1, 1, 1, 1]]))
    net(t([[0.0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0]]))
    metric.update(t([0, 1, 2]), store=False)
    assert float(metric.compute()["1"]) == 1 - (0 + 0.5) / 2


def test_match_accuracy_follows_training_mode_and_checks_keys():
    net = relay_net()
    metric = sm.MatchAccuracy(net, num_keys=2)
    net.train()
    feed_codes = torch.tensor([[1.0, 0, 1], [0, 1, 0]])
    net(feed_codes)
    metric.update([1, 0])  # training: stored
    with pytest.raises(ValueError, match="compared no code"):
        metric.compute()
    net.eval()
    net(torch.tensor([[1.0, 1, 1]]))
    metric.update(torch.tensor([1]))  # eval: compared with key 1's [1, 0, 1]
    assert float(metric.compute()["1"]) == pytest.approx(2 / 3, abs=1e-15)
    net(feed_codes)
    with pytest.raises(ValueError, match="keys"):
        metric.update(torch.tensor([1]))  # two samples ran
    net(feed_codes)
    with pytest.raises(ValueError, match="num_keys"):
        metric.update(torch.tensor([0, 2]))
    with pytest.raises(TypeError, match="keys"):
        metric.update(torch.tensor([0.0, 1.0]))


def test_match_accuracy_functional_twins():
    stored, selected = torch.tensor([[1, 1, 0, 0]]), torch.tensor([[1, 0, 0, 1]])
    assert normalized_hamming_distance(stored, selected).tolist() == [0.5]
    # key 0 stored once as [1, 1, 0, 0]; matched twice: [1, 1, 0, 0] and [1, 0, 0, 1]
    matched, counts = torch.tensor([[2, 1, 0, 1]]), (torch.tensor([1]), torch.tensor([2]))
    assert float(match_accuracy(stored, counts[0], matched, counts[1])) == 0.75


# --- factory and comparisons -------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("NumActivations", sm.NumActivations),
        ("NumActivationsMetric", sm.NumActivations),
        ("basis_set_size", sm.BasisSetSize),
        ("BasisSetSizeIncreaseMetric", sm.BasisSetSizeIncrease),
        ("basis_average", sm.BasisAverage),
        ("feature_coverage", sm.FeatureCoverage),
        ("match_accuracy", sm.MatchAccuracy),
        ("firing_rate", sm.FiringRate),
    ],
)
def test_get_metric_by_any_spelling(name, cls):
    net = nn.Sequential(nn.Linear(3, 2), snn.Leaky(beta=0.5, init_hidden=True))
    kwargs = {"num_keys": 2} if cls is sm.MatchAccuracy else {}
    metric = sm.get_metric(name, model=net, **kwargs)
    assert type(metric) is cls
    metric.detach()


def test_get_metric_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown metric"):
        sm.get_metric("NoSuchMetric", model=relay_net())
    with pytest.raises(ValueError, match="unknown metric"):
        sm.get_metric("CodeMetric", model=relay_net())  # a base class, not a metric
    with pytest.raises(TypeError, match="name"):
        sm.get_metric(3)


def test_comparisons_by_hand():
    x = {"0": torch.tensor([1.0, 3.0]), "1": torch.tensor(5.0)}  # layer means 2 and 5 -> 3.5
    y = {"0": torch.tensor(4.0), "1": [torch.tensor(2.0), 2.0]}  # 4 and 2 -> 3
    assert sm.average_nested_data(x) == 3.5 and sm.average_nested_data(y) == 3.0
    assert sm.max_by_layerwise_mean(x, y) is x and sm.min_by_layerwise_mean(x, y) is y
    assert sm.max_by_layerwise_mean(x, dict(x)) is x  # a tie keeps the first
    nan = {"0": torch.tensor([float("nan"), 1.0])}
    assert sm.average_nested_data(nan) == 1.0
    stats = {"0": {"per_sample": torch.tensor(2.0), "histogram": torch.tensor([9, 9])}}
    assert sm.average_nested_data(stats, key="per_sample") == 2.0
    assert sm.get_comparison("min_by_layerwise_mean") is sm.min_by_layerwise_mean
    with pytest.raises(ValueError, match="unknown comparison"):
        sm.get_comparison("best")
    with pytest.raises(ValueError, match="higher is better"):
        sm.get_comparison(sm.FiringRate)


def test_factory_metrics_in_a_collection_pick_the_best_epoch():
    net = relay_net()
    names = ("num_activations", "basis_set_size")
    collection = MetricCollection({name: sm.get_metric(name, model=net) for name in names})
    epochs = ([[1, 1, 0], [1, 0, 0]], [[1, 0, 0], [1, 0, 0]])  # 1.5 then 1 active, 2 then 1 code
    results = []
    for codes in epochs:
        net(torch.tensor(codes, dtype=torch.float32))
        collection.update()
        assert set(collection.compute()) == {"num_activations_1", "basis_set_size_1"}
        results.append({name: metric.compute() for name, metric in collection.items()})
        collection.reset()
    for name, metric in collection.items():
        best = sm.get_comparison(metric)(results[0][name], results[1][name])
        # fewer activations and fewer codes are better, as in sparsey: epoch 2 for both
        assert best is results[1][name]
    assert float(results[1]["num_activations"]["1"]["per_sample"]) == 1.0
    assert float(results[0]["basis_set_size"]["1"]) == 2.0


# --- errors, windows, hooks, state sizes -------------------------------------------------


def test_bad_arguments_raise_naming_them():
    with pytest.raises(ValueError, match="no spiking neuron"):
        sm.NumActivations(nn.Sequential(nn.Linear(2, 2)))
    net = relay_net()
    with pytest.raises(ValueError, match="layers"):
        sm.BasisSetSize(net, layers=["0"])
    with pytest.raises(TypeError, match="layers"):
        sm.BasisSetSize(net, layers="1")
    with pytest.raises(ValueError, match="capacity"):
        sm.BasisSetSize(net, capacity=2)
    with pytest.raises(TypeError, match="capacity"):
        sm.BasisSetSize(net, capacity=8.0)
    with pytest.raises(ValueError, match="num_keys"):
        sm.MatchAccuracy(net, num_keys=0)
    with pytest.raises(TypeError, match="num_keys"):
        sm.MatchAccuracy(net, num_keys="3")
    field_net = nn.Sequential(nn.Linear(2, 2), Step())
    with pytest.raises(TypeError, match="sources"):
        sm.FeatureCoverage(field_net, sources=["0"])
    with pytest.raises(ValueError, match="sources"):
        sm.FeatureCoverage(field_net, sources={"0": "1"})
    with pytest.raises(ValueError, match="sources"):
        sm.FeatureCoverage(field_net, sources={"1": "nothing"})


def test_nan_outputs_make_compute_raise():
    net = relay_net()
    metric = sm.NumActivations(net)
    feed(net, metric, [[float("nan"), 1.0]])
    with pytest.raises(ValueError, match="NaN"):
        metric.compute()


def test_discarded_forwards_are_left_out():
    net = relay_net()
    size, match = sm.BasisSetSize(net), sm.MatchAccuracy(net, num_keys=1)
    net(torch.tensor([A, B, C]))
    size.discard_pending()
    match.discard_pending()
    net(torch.tensor([A]))
    size.update()
    match.update([0], store=True)
    net(torch.tensor([A]))
    match.update([0], store=False)
    assert float(size.compute()["1"]) == 1
    assert float(match.compute()["1"]) == 1.0


def _update(metric: sm.HookedMetric, keys: list[int]) -> None:
    if isinstance(metric, sm.MatchAccuracy):
        metric.update(keys)
    else:
        metric.update()


def test_code_metrics_share_one_hook_per_module_and_remove_it():
    net = nn.Sequential(nn.Linear(3, 4), Step(), nn.Linear(4, 2), Step())
    metrics = [
        sm.NumActivations(net), sm.BasisSetSize(net), sm.BasisSetSizeIncrease(net),
        sm.BasisAverage(net), sm.FeatureCoverage(net), sm.MatchAccuracy(net, num_keys=2),
    ]
    assert [len(m._forward_hooks) + len(m._forward_pre_hooks) for m in net] == [1, 1, 1, 1]
    net(torch.rand(2, 3))
    for metric in metrics:
        _update(metric, [0, 1])
        metric.detach()
    assert [len(m._forward_hooks) + len(m._forward_pre_hooks) for m in net] == [0, 0, 0, 0]


def test_field_metrics_work_under_inference_mode():
    net = nn.Sequential(nn.Linear(3, 2, bias=False), Step())
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]))
    metric = sm.BasisAverage(net)
    with torch.inference_mode():
        net(torch.tensor([[1.0, 2.0, 0.0]]))
    metric.update()
    assert metric.compute()["1"]["sums"][0].tolist() == [1.0, 2.0, 0.0]


def _all_code_metrics(net: nn.Module) -> dict[str, sm.HookedMetric]:
    return {
        "activations": sm.NumActivations(net),
        "size": sm.BasisSetSize(net, capacity=64),
        "increase": sm.BasisSetSizeIncrease(net, capacity=64),
        "average": sm.BasisAverage(net),
        "coverage": sm.FeatureCoverage(net),
        "match": sm.MatchAccuracy(net, num_keys=3),
    }


@pytest.mark.parametrize("batches", [1, 12])
def test_state_sizes_do_not_grow_with_batches_or_steps(batches):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), snn.Leaky(beta=0.5, threshold=0.2, init_hidden=True))
    metrics = _all_code_metrics(net)
    for index in range(batches):
        x = (torch.rand(5, 3 + index, 6) < 0.5).float()  # ever more steps
        net[1].reset_mem()
        for t in range(x.shape[1]):
            net(x[:, t])
        for metric in metrics.values():
            _update(metric, [0, 1, 2, 0, 1])
    sizes = {
        name: {key: tuple(value.shape) for key, value in metric.metric_state.items()}
        for name, metric in metrics.items()
    }
    # what every state holds after one batch of 3 steps or 12 batches of up to 14 steps
    # (watch_id tells metrics that watch different things apart in compute groups)
    common = {"samples": (), "nonfinite": (), "watch_id": (8,)}
    assert sizes == {
        "activations": {**common, "histogram_0": (9,)},
        "size": {**common, "tables": (1, 64), "codes": (1,)},
        "increase": {**common, "tables": (1, 64), "codes": (1,), "previous": (1,)},
        "average": {**common, "sums_0": (8, 6), "counts_0": (8, 6)},
        "coverage": {**common, "covered": (1,), "elements": (1,)},
        "match": {
            **common, "stored_0": (3, 8), "matched_0": (0,),
            "stored_count": (1, 3), "matched_count": (1, 3),
        },
    }
    tap = metrics["size"]._code_taps[0]
    assert tap._pending is not None and tap._pending.numel() == 64


def test_detaching_a_field_metric_leaves_the_others_running_and_no_stray_hooks():
    net = nn.Sequential(nn.Linear(2, 2), Step())
    activations, coverage = sm.NumActivations(net), sm.FeatureCoverage(net)
    coverage.detach()
    net[1](torch.ones(1, 2))  # no input-layer call: only a paired tap would object
    activations.update()
    assert activations.compute()["1"]["histogram"].sum() == 1
    activations.detach()
    with pytest.raises(ValueError, match="sources="):
        sm.BasisAverage(nn.Sequential(Step(), nn.Linear(2, 2)))
    broken = nn.Sequential(Step(), nn.Linear(2, 2))
    with pytest.raises(ValueError):
        sm.FeatureCoverage(broken)
    assert [len(m._forward_hooks) for m in (*net, *broken)] == [0, 0, 0, 0]
