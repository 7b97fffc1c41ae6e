"""FiringRate: per-neuron rates and their statistics against numpy on the recorded spikes,
batch-split invariance, histogram edges, plotting, merging, checkpoints and DDP with a rank
that saw no data."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import snntorch as snn
import torch
from torch import nn

import snnmetrics as sm
from snnmetrics.functional import activation_sparsity, firing_rate_statistics, firing_rates

STEPS = 6
SAMPLES = 12


def make_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1),
        snn.Leaky(beta=0.7, threshold=0.5, init_hidden=True),  # neurons (2, 4, 4)
        nn.Flatten(),
        nn.Linear(32, 7),
        snn.Synaptic(alpha=0.6, beta=0.7, threshold=0.4, init_hidden=True, output=True),
        nn.Linear(7, 3),
        snn.Leaky(beta=0.9, reset_mechanism="zero", init_hidden=True),  # never called below
    )


def make_data(seed: int = 0, samples: int = SAMPLES) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(samples, STEPS, 1, 4, 4, generator=gen) * 2.5


def run(net: nn.Module, x: torch.Tensor) -> None:
    for module in net.modules():
        if isinstance(module, snn.SpikingNeuron):
            module.reset_mem()
    for t in range(x.shape[1]):
        net[:5](x[:, t])  # the last neuron never runs


def record_spikes(x: torch.Tensor, batch_sizes: list[int]) -> dict[str, torch.Tensor]:
    """Every spike of layers "1" and "4", [samples, steps, *neurons], by forward hooks."""
    net = make_net()
    outputs: dict[str, list[torch.Tensor]] = {"1": [], "4": []}
    for name in outputs:
        net.get_submodule(name).register_forward_hook(
            lambda m, a, out, name=name: outputs[name].append(
                (out[0] if isinstance(out, tuple) else out).detach().clone()
            )
        )
    start = 0
    for size in batch_sizes:
        run(net, x[start : start + size])
        start += size
    recorded = {}
    for name, calls in outputs.items():  # calls: batch after batch, step after step
        starts = range(0, len(calls), STEPS)
        recorded[name] = torch.cat([torch.stack(calls[i : i + STEPS], 1) for i in starts])
    return recorded


def numpy_statistics(spikes: torch.Tensor, edges: np.ndarray) -> dict[str, np.ndarray]:
    """Seed 000's statistics, by numpy: rate = spikes / (samples x steps) per neuron."""
    s = spikes.numpy()
    rates = (s != 0).sum((0, 1)) / (s.shape[0] * s.shape[1])
    flat = rates.reshape(-1)
    return {
        "rates": rates,
        "mean": flat.mean(),
        "std": flat.std(ddof=1),
        "min": flat.min(),
        "max": flat.max(),
        "median": np.median(flat),
        "q1": np.percentile(flat, 25),
        "q3": np.percentile(flat, 75),
        "histogram": np.histogram(flat, bins=edges)[0],
        "bin_edges": edges,
    }


def assert_matches_numpy(result, expected_by_layer):
    assert set(result) == set(expected_by_layer)
    for name, expected in expected_by_layer.items():
        got = result[name]
        assert set(got) == set(expected)
        for key, value in expected.items():
            np.testing.assert_allclose(got[key].numpy(), value, rtol=1e-12, atol=1e-15, err_msg=key)


EDGES = np.linspace(0.0, 1.0, 11)


def expected_for(x: torch.Tensor) -> dict[str, dict[str, np.ndarray]]:
    spikes = record_spikes(x, [x.shape[0]])
    return {name: numpy_statistics(s, EDGES) for name, s in spikes.items()}


@pytest.mark.parametrize("batch_sizes", [[12], [1] * 12, [5, 7], [3, 3, 3, 3], [7, 4, 1]], ids=str)
def test_statistics_match_numpy_for_any_batch_split(batch_sizes):
    x = make_data()
    expected = expected_for(x)
    # neurons are per sample, so how the samples are batched changes no spike
    recorded = record_spikes(x, batch_sizes)
    for name, spikes in recorded.items():
        rates = numpy_statistics(spikes, EDGES)["rates"]
        np.testing.assert_array_equal(rates, expected[name]["rates"])
    net = make_net()
    rates = sm.FiringRate(net, bins=10)
    start = 0
    for size in batch_sizes:
        run(net, x[start : start + size])
        rates.update()
        start += size
    result = rates.compute()
    assert_matches_numpy(result, expected)  # layer "6" never ran: left out
    assert result["1"]["rates"].shape == (2, 4, 4) and result["4"]["rates"].shape == (7,)
    assert result["1"]["histogram"].dtype == torch.int64


def test_custom_bin_edges_and_graded_spikes():
    # graded spikes (factor 3) still count once each: rates stay in [0, 1]
    net = nn.Sequential(
        nn.Identity(),
        snn.Leaky(beta=0.5, threshold=0.5, init_hidden=True, graded_spikes_factor=3.0),
    )
    edges = [0.0, 0.1, 0.5, 1.0]
    rates = sm.FiringRate(net, bins=edges)
    x = torch.tensor([[0.0, 0.3, 1.0, 0.6]])
    for _ in range(4):
        net(x)
    rates.update()
    layer = rates.compute()["1"]
    # by hand (beta 0.5, threshold 0.5, subtract): 0 never spikes; 0.3 -> 0.3, 0.45,
    # 0.525*, 0.0625: 1 of 4; 1.0 -> spikes at every step; 0.6 -> 0.6*, 0.2, 0.7*, 0.25: 2
    assert layer["rates"].tolist() == [0.0, 0.25, 1.0, 0.5]
    assert layer["histogram"].tolist() == [1, 1, 2]  # [0, .1) [.1, .5) [.5, 1]
    assert layer["bin_edges"].tolist() == edges


@pytest.mark.parametrize("bins", [0, -3, True, [0.5], [0.0, 0.0], [0.0, 1.0, 0.5], "ten"])
def test_bad_bins(bins):
    with pytest.raises((ValueError, TypeError), match="bin"):
        sm.FiringRate(make_net(), bins=bins)


def test_functional_statistics_against_numpy():
    gen = np.random.default_rng(0)
    for n in (1, 2, 5, 8, 101):
        rates = gen.random(n)
        stats = firing_rate_statistics(torch.from_numpy(rates), bins=7)
        edges = np.linspace(0, 1, 8)
        assert float(stats["median"]) == pytest.approx(np.median(rates), abs=1e-15)
        assert float(stats["q1"]) == pytest.approx(np.percentile(rates, 25), abs=1e-15)
        assert float(stats["q3"]) == pytest.approx(np.percentile(rates, 75), abs=1e-15)
        assert stats["histogram"].tolist() == np.histogram(rates, edges)[0].tolist()
        if n == 1:
            assert np.isnan(float(stats["std"]))  # numpy's ddof=1 gives nan too
        else:
            assert float(stats["std"]) == pytest.approx(rates.std(ddof=1), abs=1e-15)
    assert firing_rates(torch.tensor([3, 0, 6]), 6).tolist() == [0.5, 0.0, 1.0]
    with pytest.raises(ValueError, match="non-negative"):
        firing_rates(torch.tensor([-1]), 6)
    with pytest.raises(ValueError, match="more spikes than"):
        firing_rates(torch.tensor([7]), 6)
    with pytest.raises(ValueError, match="at least one neuron"):
        firing_rate_statistics(torch.zeros(0))
    with pytest.raises(ValueError, match="exceed"):
        activation_sparsity(torch.tensor([5]), torch.tensor([4]))


def test_neuron_shape_must_not_change():
    net = nn.Sequential(snn.Leaky(beta=0.5, init_hidden=True))
    rates = sm.FiringRate(net)
    net(torch.ones(2, 3))
    with pytest.raises(ValueError, match="firing rates need the same neurons"):
        net(torch.ones(2, 4))
    rates.detach()


# --- merging, checkpoints ------------------------------------------------------------------


def _filled(x: torch.Tensor) -> sm.FiringRate:
    net = make_net()
    metric = sm.FiringRate(net, bins=10)
    run(net, x)
    metric.update()
    return metric


@pytest.mark.filterwarnings("ignore:The ``compute`` method")
def test_merge_state_with_a_metric_that_saw_nothing():
    x = make_data()
    expected = expected_for(x)
    empty = sm.FiringRate(make_net(), bins=10)
    full = _filled(x)
    full.merge_state(sm.FiringRate(make_net(), bins=10))
    assert_matches_numpy(full.compute(), expected)
    empty.merge_state(_filled(x))
    assert_matches_numpy(empty.compute(), expected)
    # two halves merge into the whole
    first, second = _filled(x[:5]), _filled(x[5:])
    first.merge_state(second)
    assert_matches_numpy(first.compute(), expected)


@pytest.mark.filterwarnings("ignore:The ``compute`` method")
def test_checkpoint_round_trip():
    x = make_data()
    saved = _filled(x).state_dict()
    restored = sm.FiringRate(make_net(), bins=10)
    restored.load_state_dict(saved)
    assert_matches_numpy(restored.compute(), expected_for(x))


# --- plot --------------------------------------------------------------------------------------


def test_plot_draws_one_box_per_layer_with_means():
    matplotlib = pytest.importorskip("matplotlib", reason="plotting needs matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = make_data()
    expected = expected_for(x)
    metric = _filled(x)
    fig, ax = metric.plot()
    types = [type(metric.model.get_submodule(name)).__name__ for name in ("1", "4")]
    assert [label.get_text() for label in ax.get_xticklabels()] == [
        f"1\n{types[0]}", f"4\n{types[1]}"
    ]
    assert len(ax.patches) == 2  # one box per layer
    # meanline=True draws each layer's mean as a horizontal line
    means = sorted(
        {round(float(line.get_ydata()[0]), 12) for line in ax.lines if line.get_linestyle() == "--"}
    )
    assert means == sorted(round(float(expected[n]["mean"]), 12) for n in ("1", "4"))
    plt.close(fig)
    fig2, given = plt.subplots()
    assert metric.plot(ax=given) == (fig2, given)
    plt.close(fig2)
    with pytest.raises(ValueError, match="no layer"):
        sm.plot.plot_firing_rates({})


def test_package_imports_without_matplotlib():
    code = """
import importlib.metadata
import sys

class Hide:  # as if matplotlib were not installed: no module, no distribution
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "matplotlib":
            raise ModuleNotFoundError(f"No module named {name!r}")

def version(name, real=importlib.metadata.version):
    if name == "matplotlib":
        raise importlib.metadata.PackageNotFoundError(name)
    return real(name)

sys.meta_path.insert(0, Hide())
importlib.metadata.version = version
import torch, snntorch as snn, snnmetrics as sm
net = torch.nn.Sequential(snn.Leaky(beta=0.5, init_hidden=True))
m = sm.FiringRate(net)
net(torch.ones(1, 2))
m.update()
m.compute()
try:
    m.plot()
except ModuleNotFoundError as error:
    print(error)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'snnmetrics[plot]'" in out.stdout


# --- DDP -----------------------------------------------------------------------------------------


def _ddp_task(rank: int, world_size: int, shards: list[tuple[int, int]]):
    x = make_data()
    net = make_net()
    metric = sm.FiringRate(net, bins=10)
    for start, stop in shards[rank]:
        run(net, x[start:stop])
        metric.update()
    return metric.compute()


def _ddp_mismatch_task(rank: int, world_size: int):
    net = nn.Sequential(snn.Leaky(beta=0.5, init_hidden=True))
    metric = sm.FiringRate(net)
    net(torch.ones(2, 3 + rank))  # a different number of neurons on each rank
    metric.update()
    try:
        metric.compute()
    except ValueError as error:
        return str(error)
    return "no error"


def test_ddp_uneven_ranks_and_a_rank_without_data(ddp3):
    expected = expected_for(make_data())
    for shards in (
        [[(0, 5)], [(5, 6), (6, 9)], [(9, 12)]],
        [[(0, 7), (7, 12)], [], []],
        [[], [(0, 12)], []],
    ):
        for result in ddp3.run(_ddp_task, shards):
            assert_matches_numpy(result, expected)
    errors = ddp3.run(_ddp_mismatch_task)
    assert all("ranks saw different shapes for state spikes_0" in e for e in errors)
