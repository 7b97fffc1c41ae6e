"""SpikeTrainStatistics: Fano factors and CVs of inter-spike intervals against a brute-force
computation on the recorded spikes (and Elephant's, when installed), for any batching, several
windows at once, multi-step neurons of spikingjelly, sinabs and norse, DDP with uneven and empty
ranks, merging, constant memory, and the idioms (MetricCollection, reset between epochs)."""

from __future__ import annotations

import copy
import pickle
import warnings
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import pytest
import snntorch as snn
import torch
from torch import nn
from torchmetrics import MetricCollection

import snnmetrics as sm
from snnmetrics.functional import cv_isi, fano_factor, spike_train_statistics

LAYERS = ("1", "4")  # the spiking layers that run; "6" never does


def make_net(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv1d(1, 2, 3, padding=1),
        snn.Leaky(beta=0.7, threshold=0.6, init_hidden=True),  # neurons (2, 6)
        nn.Flatten(),
        nn.Linear(12, 5),
        snn.Synaptic(alpha=0.6, beta=0.7, threshold=0.4, init_hidden=True, output=True),
        nn.Linear(5, 3),
        snn.Leaky(beta=0.9, init_hidden=True),  # never called below
    )


def make_data(samples: int, steps: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    # per-sample input levels make the counts vary from sample to sample
    level = torch.rand(samples, 1, 1, 1, generator=gen) * 2.0
    return torch.rand(samples, steps, 1, 6, generator=gen) * level


def reset(net: nn.Module) -> None:
    for module in net.modules():
        if isinstance(module, snn.SpikingNeuron):
            module.reset_mem()


def run(net: nn.Module, x: torch.Tensor) -> None:
    """One window: the samples of ``x`` ([B, T, ...]) from a fresh state, step by step."""
    reset(net)
    for t in range(x.shape[1]):
        net[:5](x[:, t])


class Recorder:
    """Every spike of the layers ``LAYERS`` as one spike train per sample: a list of
    [steps, neurons] arrays, filled by forward hooks (independent of the metric's taps)."""

    def __init__(self, net: nn.Module) -> None:
        self.calls: dict[str, list[np.ndarray]] = {name: [] for name in LAYERS}
        self.trains: dict[str, list[np.ndarray]] = {name: [] for name in LAYERS}
        for name in LAYERS:
            net.get_submodule(name).register_forward_hook(self._hook(name))

    def _hook(self, name: str):
        def hook(module, args, output):
            spikes = output[0] if isinstance(output, tuple) else output
            self.calls[name].append(spikes.detach().reshape(spikes.shape[0], -1).numpy().copy())

        return hook

    def close_window(self) -> None:
        for name, calls in self.calls.items():
            if calls:
                window = np.stack(calls, 1)  # [B, T, neurons]
                self.trains[name].extend(list(window))
            self.calls[name] = []


def brute_force(trains: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Per neuron, from the spike trains (one [steps, neurons] array per sample), by loops."""
    neurons = trains[0].shape[1]
    fano = np.full(neurons, np.nan)
    cv = np.full(neurons, np.nan)
    for j in range(neurons):
        counts = np.array([np.count_nonzero(train[:, j]) for train in trains], dtype=float)
        if counts.mean() > 0:
            fano[j] = counts.var() / counts.mean()
        intervals = np.concatenate([np.diff(np.flatnonzero(train[:, j])) for train in trains])
        if len(intervals) >= 2:
            cv[j] = intervals.std() / intervals.mean()
    return {"fano_factor": fano, "cv_isi": cv}


def assert_statistics(result, expected_by_layer, shapes=None) -> None:
    assert set(result) == set(expected_by_layer)
    for name, expected in expected_by_layer.items():
        got = result[name]
        assert set(got) == {"fano_factor", "cv_isi", "mean_fano_factor", "mean_cv_isi"}
        for key in ("fano_factor", "cv_isi"):
            value = got[key].numpy().reshape(-1)
            np.testing.assert_allclose(value, expected[key], rtol=1e-12, atol=1e-14, err_msg=key)
            mean = np.nanmean(expected[key]) if not np.isnan(expected[key]).all() else np.nan
            np.testing.assert_allclose(float(got[f"mean_{key}"]), mean, rtol=1e-12)
        if shapes is not None:
            assert got["fano_factor"].shape == shapes[name]


PLANS = {
    "one": [(7, 8)],
    "uneven": [(3, 8), (1, 5), (5, 11)],  # windows of different lengths too
    "singles": [(1, 6)] * 4,
}


def feed(
    net: nn.Module, metric: sm.SpikeTrainStatistics, plan, seed: int = 0, record: bool = True
) -> Recorder | None:
    """Run the windows of ``plan`` ((samples, steps) each, data seeded ``seed + i``)."""
    recorder = Recorder(net) if record else None
    for i, (samples, steps) in enumerate(plan):
        run(net, make_data(samples, steps, seed + i))
        metric.update()
        if recorder is not None:
            recorder.close_window()
    return recorder


@pytest.mark.parametrize("plan", PLANS.values(), ids=PLANS.keys())
def test_matches_brute_force(plan):
    net = make_net()
    metric = sm.SpikeTrainStatistics(net)
    recorder = feed(net, metric, plan)
    assert recorder is not None
    expected = {name: brute_force(recorder.trains[name]) for name in LAYERS}
    for name in LAYERS:  # the data exercises every case
        finite = ~np.isnan(expected[name]["cv_isi"])
        assert finite.any() and not np.isnan(expected[name]["fano_factor"]).all()
    assert np.isnan(expected["1"]["fano_factor"]).any()  # a neuron that never fires
    assert (expected["4"]["fano_factor"] > 0).any()
    assert_statistics(metric.compute(), expected, {"1": (2, 6), "4": (5,)})


@pytest.mark.optional
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_matches_elephant():
    elephant = pytest.importorskip(
        "elephant.statistics", reason="elephant not installed: pip install elephant"
    )
    neo = pytest.importorskip("neo")
    import quantities as pq

    steps = 9
    net = make_net()
    metric = sm.SpikeTrainStatistics(net)
    recorder = feed(net, metric, [(4, steps), (1, steps), (6, steps)], seed=3)
    assert recorder is not None
    result = metric.compute()
    for name in LAYERS:
        trains = recorder.trains[name]  # 11 samples
        fano, cv = [], []
        for j in range(trains[0].shape[1]):
            spike_trains = [
                neo.SpikeTrain(np.flatnonzero(train[:, j]) * pq.ms, t_stop=steps * pq.ms)
                for train in trains
            ]
            fano.append(elephant.fanofactor(spike_trains))
            intervals = np.concatenate([elephant.isi(st).magnitude for st in spike_trains])
            # Elephant's cv of one interval is 0, of none NaN; ours NaN below 2
            cv.append(elephant.cv(intervals) if len(intervals) >= 2 else np.nan)
        np.testing.assert_allclose(result[name]["fano_factor"].reshape(-1), fano, rtol=1e-12)
        np.testing.assert_allclose(result[name]["cv_isi"].reshape(-1), cv, rtol=1e-12)
        assert np.isfinite(cv).sum() >= 3 and np.isfinite(fano).sum() >= 3


def test_windows_of_two_metrics_are_their_own():
    """Two metrics on one model read the same taps: one updates every 4 steps, the other
    every 8 steps of the same samples (two runs without a reset in between)."""
    net = make_net()
    short, long = sm.SpikeTrainStatistics(net), sm.SpikeTrainStatistics(net, layers=["4"])
    recorder = Recorder(net)
    halves: dict[str, list[np.ndarray]] = {name: [] for name in LAYERS}
    for i, samples in enumerate((3, 2)):
        x = make_data(samples, 8, seed=10 + i)
        reset(net)
        for half in (x[:, :4], x[:, 4:]):
            for t in range(4):
                net[:5](half[:, t])
            short.update()
            for name in LAYERS:
                halves[name].extend(list(np.stack(recorder.calls[name][-4:], 1)))
        long.update()
        recorder.close_window()
    assert_statistics(short.compute(), {n: brute_force(halves[n]) for n in LAYERS})
    assert_statistics(long.compute(), {"4": brute_force(recorder.trains["4"])})


def test_a_window_needs_the_same_samples_in_every_call():
    net = make_net()
    metric = sm.SpikeTrainStatistics(net)
    net[:5](torch.ones(2, 1, 6))
    with pytest.raises(ValueError, match="same samples"):
        net[:5](torch.ones(3, 1, 6))
    metric.discard_pending()
    net[:5](torch.ones(3, 1, 6))  # a new window may have other samples
    metric.update()
    assert int(metric.trains[0]) == 3
    metric.detach()


class Replay(nn.Module):
    """A neuron whose spikes are its input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


sm.register_neuron(Replay, sm.NeuronRule(spikes=lambda module, output: output))


def test_nan_spikes_make_the_figures_undefined():
    net = nn.Sequential(Replay())
    metric = sm.SpikeTrainStatistics(net)
    net(torch.full((2, 3), float("nan")))
    metric.update()
    with pytest.raises(ValueError, match="NaN"):
        metric.compute()


def test_layers_argument():
    net = make_net()
    metric = sm.SpikeTrainStatistics(net, layers=["4"])
    assert metric.layer_names == ["4"]
    with pytest.raises(ValueError, match=r"\['3'\] are not spiking neuron layers"):
        sm.SpikeTrainStatistics(net, layers=["3"])
    with pytest.raises(TypeError, match="sequence of layer names"):
        sm.SpikeTrainStatistics(net, layers="4")
    with pytest.raises(ValueError, match="no spiking neuron"):
        sm.SpikeTrainStatistics(nn.Sequential(nn.Linear(2, 2), nn.ReLU()))


def test_functional_checks_its_input():
    # by hand: counts 2, 2 -> var 0; 0, 4 -> mean 2, var 4, F = 2
    assert fano_factor(torch.tensor([4, 4]), torch.tensor([8, 16]), 2).tolist() == [0.0, 2.0]
    # intervals 1, 3, 5: mean 3, var 8/3
    expected = (8 / 3) ** 0.5 / 3
    assert float(cv_isi(torch.tensor([9]), torch.tensor([35]), torch.tensor([3]))) == pytest.approx(
        expected, rel=1e-15
    )
    with pytest.raises(ValueError, match="one shape"):
        fano_factor(torch.tensor([1, 2]), torch.tensor([1]), 3)
    with pytest.raises(ValueError, match="non-negative"):
        cv_isi(torch.tensor([-1]), torch.tensor([1]), torch.tensor([1]))
    all_nan = spike_train_statistics(
        torch.zeros(2), torch.zeros(2), 3, torch.zeros(2), torch.zeros(2), torch.zeros(2)
    )
    assert np.isnan(float(all_nan["mean_fano_factor"])) and np.isnan(float(all_nan["mean_cv_isi"]))


# --- several steps per call ---------------------------------------------------------------


class MultiStep(NamedTuple):
    """A two-layer model of a framework whose neurons run a whole sequence per call."""

    net: nn.Module
    order: str  # of a call's input and output: "TB" ([T, B, ...]) or "BT"
    reset: Callable[[nn.Module], None]


def _excitatory(net: nn.Module, gain: float = 1.0) -> nn.Module:
    """Make every weight positive (times ``gain``): every layer fires."""
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.Linear):
                module.weight.abs_().mul_(gain)
    return net


def _spikingjelly() -> MultiStep:
    pytest.importorskip("spikingjelly", reason="spikingjelly not installed")
    from spikingjelly.activation_based import functional, layer, neuron

    torch.manual_seed(5)
    net = nn.Sequential(
        layer.Linear(4, 6, step_mode="m"),
        neuron.IFNode(v_threshold=0.7, step_mode="m"),
        layer.Linear(6, 3, step_mode="m"),
        neuron.LIFNode(tau=2.0, v_threshold=0.3, step_mode="m"),
    )
    return MultiStep(net, "TB", functional.reset_net)


def _sinabs() -> MultiStep:
    sinabs = pytest.importorskip("sinabs")
    torch.manual_seed(6)
    net = nn.Sequential(
        nn.Linear(4, 6), sinabs.layers.IAF(), nn.Linear(6, 3), sinabs.layers.LIF(tau_mem=3.0)
    )
    return MultiStep(_excitatory(net), "BT", sinabs.reset_states)


def _norse() -> MultiStep:
    norse = pytest.importorskip("norse.torch")
    torch.manual_seed(7)
    net = norse.SequentialState(nn.Linear(4, 6), norse.LIF(), nn.Linear(6, 3), norse.LIF())
    # a call without a state starts afresh
    return MultiStep(_excitatory(net, gain=3.0), "TB", lambda net: None)


def _per_sample(spikes: torch.Tensor, order: str) -> list[np.ndarray]:
    """A call's output as one [steps, neurons] train per sample, from its layout."""
    if order == "TB":
        spikes = spikes.transpose(0, 1)
    return list(spikes.detach().reshape(spikes.shape[0], spikes.shape[1], -1).numpy())


def sequence(order: str, samples: int, steps: int, seed: int, scale: float) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    shape = (steps, samples, 4) if order == "TB" else (samples, steps, 4)
    return torch.rand(shape, generator=gen) * scale


@pytest.mark.optional
@pytest.mark.parametrize("framework", [_spikingjelly, _sinabs, _norse], ids=lambda f: f.__name__)
def test_multi_step_neurons_are_read_step_by_step(framework):
    model = framework()
    metric = sm.SpikeTrainStatistics(model.net)
    trains: dict[str, list[np.ndarray]] = {"1": [], "3": []}
    for name, recorded in trains.items():
        model.net.get_submodule(name).register_forward_hook(
            lambda m, a, out, recorded=recorded: recorded.extend(
                _per_sample(out[0] if isinstance(out, tuple) else out, model.order)
            )
        )
    for i, samples in enumerate((3, 1, 4)):
        model.reset(model.net)
        model.net(sequence(model.order, samples, 7, seed=20 + i, scale=3.0))
        metric.update()
    expected = {name: brute_force(recorded) for name, recorded in trains.items()}
    assert [len(recorded) for recorded in trains.values()] == [8, 8]
    assert all((~np.isnan(e["cv_isi"])).any() for e in expected.values())
    assert_statistics(metric.compute(), expected)


def test_a_multi_step_neuron_of_unknown_order_is_refused():
    class Threshold(nn.Module):
        def forward(self, x):
            return (x > 1).float()

    sm.register_neuron(
        Threshold,
        sm.NeuronRule(
            spikes=lambda module, output: output.flatten(0, 1),
            steps=lambda module, output: output.shape[0],
        ),
    )
    net = nn.Sequential(Threshold())
    metric = sm.SpikeTrainStatistics(net)
    with pytest.raises(TypeError, match="register_step_order"):
        net(torch.ones(3, 2, 4))
    metric.detach()


# --- state, copies, idioms ------------------------------------------------------------------


def _buffer_elements(metric: sm.SpikeTrainStatistics) -> int:
    states = sum(getattr(metric, name).numel() for name in metric._defaults)
    buffers = sum(
        value.numel()
        for _, sink in metric._sinks
        for value in vars(sink).values()
        if isinstance(value, torch.Tensor)
    )
    return states + buffers


def test_memory_is_flat_in_batches_and_steps():
    net = make_net()
    metric = sm.SpikeTrainStatistics(net)
    feed(net, metric, [(4, 3)] * 2)
    small = _buffer_elements(metric)
    feed(net, metric, [(4, 40)] * 6)
    assert _buffer_elements(metric) == small
    assert small < 400  # [5, neurons] per layer, [4 samples, neurons] x 2 per window


def test_collection_and_reset_between_epochs():
    epochs = [[(3, 6), (2, 6)], [(4, 5), (1, 5)]]
    net = make_net()
    collection = MetricCollection(
        {
            "trains": sm.SpikeTrainStatistics(net),
            "profile": sm.ActivityProfile(net, max_steps=6),
            "synops": sm.SynapticOperations(net),
        }
    )
    for epoch, plan in enumerate(epochs):
        collection.reset()
        recorder = Recorder(net)
        for i, (samples, steps) in enumerate(plan):
            run(net, make_data(samples, steps, seed=30 + 10 * epoch + i))
            collection.update()
            recorder.close_window()
        flat = collection.compute()  # layer names clash: prefixed with the metric's key
        result = {name: flat[f"trains_{name}"] for name in LAYERS}
        expected = {name: brute_force(recorder.trains[name]) for name in LAYERS}
        assert_statistics(result, expected)
        # a fresh metric fed the epoch alone agrees
        fresh_net = make_net()
        fresh = sm.SpikeTrainStatistics(fresh_net)
        for i, (samples, steps) in enumerate(plan):
            run(fresh_net, make_data(samples, steps, seed=30 + 10 * epoch + i))
            fresh.update()
        torch.testing.assert_close(result, fresh.compute(), equal_nan=True)


def test_forward_returns_the_batch_and_clone_counts_apart():
    net = make_net()
    metric = sm.SpikeTrainStatistics(net)
    first = make_data(3, 6, seed=40)
    run(net, first)
    batch = metric()  # forward: this window alone
    twin = metric.clone()  # the same model, a copy of the state
    run(net, make_data(2, 6, seed=41))
    metric.update()
    twin.update()
    torch.testing.assert_close(metric.compute(), twin.compute(), equal_nan=True)
    alone_net = make_net()
    alone = sm.SpikeTrainStatistics(alone_net)
    run(alone_net, first)
    alone.update()
    torch.testing.assert_close(batch, alone.compute(), equal_nan=True)
    run(net, make_data(2, 6, seed=42))
    metric.update()  # the clone does not see this window
    twin.discard_pending()
    assert int(metric.trains[0]) == 7 and int(twin.trains[0]) == 5


class Step(nn.Module):
    """A stateless neuron that fires above 0.5 (snnTorch's surrogates do not pickle)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x > 0.5).float()


sm.register_neuron(Step, sm.NeuronRule(spikes=lambda module, output: output))


def test_pickled_and_copied_metrics_keep_their_state():
    net = nn.Sequential(nn.Identity(), Step())
    metric = sm.SpikeTrainStatistics(net)
    for i, (samples, steps) in enumerate(PLANS["uneven"]):
        x = make_data(samples, steps, seed=i)
        for t in range(steps):
            net(x[:, t, 0])
        metric.update()
    expected = metric.compute()
    assert (~expected["1"]["cv_isi"].isnan()).any()
    restored = pickle.loads(pickle.dumps(metric))
    torch.testing.assert_close(restored.compute(), expected, equal_nan=True)
    restored.model(torch.ones(2, 6))  # it watches the unpickled model
    restored.update()
    assert int(restored.trains[0]) == int(metric.trains[0]) + 2
    deep = copy.deepcopy(metric)
    torch.testing.assert_close(deep.compute(), expected, equal_nan=True)


@pytest.mark.filterwarnings("ignore:The ``compute`` method")  # parts that saw no data
def test_merge_state_and_checkpoint():
    whole_net = make_net()
    whole = sm.SpikeTrainStatistics(whole_net)
    feed(whole_net, whole, PLANS["uneven"])
    parts = []
    for start, stop in ((0, 1), (1, 1), (1, 3)):  # the same windows, the middle part none
        part_net = make_net()
        metric = sm.SpikeTrainStatistics(part_net)
        feed(part_net, metric, PLANS["uneven"][start:stop], seed=start)
        parts.append(metric)
    parts[1].merge_state(parts[2])
    parts[1].merge_state(parts[0])
    torch.testing.assert_close(parts[1].compute(), whole.compute(), equal_nan=True)
    restored = sm.SpikeTrainStatistics(make_net())
    restored.load_state_dict(whole.state_dict())
    torch.testing.assert_close(restored.compute(), whole.compute(), equal_nan=True)


def test_plot():
    matplotlib = pytest.importorskip("matplotlib", reason="plotting needs matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    net = make_net()
    metric = sm.SpikeTrainStatistics(net)
    feed(net, metric, PLANS["uneven"])
    fig, ax = metric.plot()
    labels = [label.get_text() for label in ax.get_xticklabels()]
    assert labels == ["1\nLeaky", "4\nSynaptic"]
    assert len(ax.patches) == 4  # a box of Fano factors and one of CVs per layer
    assert [text.get_text() for text in ax.get_legend().get_texts()] == ["fano_factor", "cv_isi"]
    plt.close(fig)
    results = [metric.compute()]
    feed(net, metric, PLANS["singles"], record=False)
    results.append(metric.compute())
    fig, ax = metric.plot(results)  # the means over the list: a line per layer and mean
    assert len(ax.lines) == 4 and all(len(line.get_xdata()) == 2 for line in ax.lines)
    plt.close(fig)


# --- DDP ----------------------------------------------------------------------------------

DDP_PLAN = [(3, 6), (1, 4), (5, 7), (2, 6)]


def _ddp_task(rank: int, world_size: int, shards: list[list[int]]):
    net = make_net()
    metric = sm.SpikeTrainStatistics(net)
    for index in shards[rank]:
        samples, steps = DDP_PLAN[index]
        run(net, make_data(samples, steps, seed=index))
        metric.update()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a rank that saw no data
        return metric.compute()


@pytest.mark.parametrize(
    "shards", [[[0, 2], [1, 3]], [[], [0, 1, 2, 3]], [[3, 1, 0], [2]]], ids=str
)
def test_ddp_uneven_and_empty_ranks_equal_one_process(ddp2, shards):
    net = make_net()
    metric = sm.SpikeTrainStatistics(net)
    recorder = Recorder(net)
    for index, (samples, steps) in enumerate(DDP_PLAN):
        run(net, make_data(samples, steps, seed=index))
        metric.update()
        recorder.close_window()
    expected = metric.compute()
    assert_statistics(expected, {name: brute_force(recorder.trains[name]) for name in LAYERS})
    for result in ddp2.run(_ddp_task, shards):
        torch.testing.assert_close(result, expected, equal_nan=True)


def test_a_metric_created_mid_window_sees_the_calls_after_it():
    """Calls of one step are staged in the shared tap: a metric that subscribes while some
    are staged must not get them, and the first one must get all of them."""
    net = nn.Sequential(Replay())
    gen = torch.Generator().manual_seed(90)
    spikes = (torch.rand(4, 10, 3, generator=gen) < 0.5).float()  # [samples, steps, neurons]
    first = sm.SpikeTrainStatistics(net)
    for t in range(6):
        net(spikes[:, t])
    second = sm.SpikeTrainStatistics(net)
    for t in range(6, 10):
        net(spikes[:, t])
    first.update()
    second.update()
    assert_statistics(first.compute(), {"0": brute_force(list(spikes.numpy()))})
    assert_statistics(second.compute(), {"0": brute_force(list(spikes[:, 6:].numpy()))})
