"""ActivityProfile: per-step rates and synaptic operations against a brute-force count on the
recorded spikes and layer inputs, their sum against SynapticOperations on the same run (conv
and MLP, zero weights), multi-step neurons of spikingjelly, sinabs and norse, recurrent cells,
the max_steps limit, DDP with uneven and empty ranks, constant memory, the idioms
(MetricCollection, reset between epochs, clone) and the plot."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import pytest
import snntorch as snn
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection

import snnmetrics as sm
from snnmetrics.examples import conv_snn, mlp_snn, poisson_spikes, run_steps
from tests.workloads import host_reads

MAX_STEPS = 8


def conv_net() -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1, stride=2),
        snn.Leaky(beta=0.7, threshold=0.5, init_hidden=True),  # (3, 3, 3)
        nn.Conv2d(3, 4, 2),
        snn.Leaky(beta=0.8, threshold=0.3, init_hidden=True),  # (4, 2, 2)
        nn.Flatten(),
        nn.Linear(16, 5),
        snn.Synaptic(alpha=0.5, beta=0.8, threshold=0.3, init_hidden=True, output=True),
    )
    with torch.no_grad():
        net[0].weight[1] = 0.0  # a dead channel
        net[2].weight[:, :, 0, 1] = 0.0
        net[5].weight[:, ::3] = 0.0
        net[2].weight.abs_()
        net[5].weight.abs_()
    return net


def mlp() -> nn.Sequential:
    torch.manual_seed(1)
    net = nn.Sequential(
        nn.Flatten(),
        nn.Linear(25, 12),
        snn.Leaky(beta=0.8, threshold=0.5, init_hidden=True),
        nn.Linear(12, 6),
        snn.Leaky(beta=0.9, threshold=0.2, init_hidden=True),
        nn.Linear(6, 2),
    )
    with torch.no_grad():
        net[1].weight[::2, 3:9] = 0.0
        net[3].weight[:, :4] = 0.0
        net[3].weight.abs_()
    return net


MODELS = {"conv": conv_net, "mlp": mlp}
PLAN = [(3, 6), (1, 8), (5, 4)]  # (samples, steps) of each window


def make_data(samples: int, steps: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = (torch.rand(samples, steps, 1, 5, 5, generator=gen) < 0.4).float()
    return x * 2.0 if seed % 2 else x  # graded input in some windows: MAC calls


def run(net: nn.Module, x: torch.Tensor) -> None:
    for module in net.modules():
        if isinstance(module, snn.SpikingNeuron):
            module.reset_mem()
    for t in range(x.shape[1]):
        net(x[:, t])


def pairs(layer: nn.Module, x: torch.Tensor) -> float:
    """(nonzero input element, nonzero weight) pairs that reach an output, by running the
    layer on the nonzero flags with the nonzero flags of its weights."""
    flags, mask = (x != 0).double(), (layer.weight != 0).double()
    if isinstance(layer, nn.Linear):
        return float((flags @ mask.T).sum())
    assert isinstance(layer, nn.Conv2d)
    out = F.conv2d(flags, mask, None, layer.stride, layer.padding, layer.dilation, layer.groups)
    return float(out.sum())


class Reference:
    """Per step of each window, by forward hooks: spikes and sample-neurons of every
    spiking layer, and the pairs of every connection layer."""

    def __init__(self, net: nn.Module) -> None:
        self.spikes: dict[str, list[float]] = {}
        self.seen: dict[str, list[float]] = {}
        self.ops: dict[str, list[float]] = {}
        self.samples = 0
        self._step: dict[str, int] = {}
        for name, module in net.named_modules():
            if isinstance(module, snn.SpikingNeuron):
                self.spikes[name], self.seen[name] = [0.0] * MAX_STEPS, [0.0] * MAX_STEPS
                module.register_forward_hook(self._neuron(name))
            elif isinstance(module, (nn.Linear, nn.Conv2d)):
                self.ops[name] = [0.0] * MAX_STEPS
                module.register_forward_pre_hook(self._connection(name))

    def _next(self, name: str) -> int:
        t = self._step.get(name, 0)
        self._step[name] = t + 1
        return t

    def _neuron(self, name: str):
        def hook(module, args, output):
            spikes = output[0] if isinstance(output, tuple) else output
            t = self._next(name)
            self.spikes[name][t] += float((spikes != 0).sum())
            self.seen[name][t] += spikes.numel()

        return hook

    def _connection(self, name: str):
        def hook(module, args):
            self.ops[name][self._next(name)] += pairs(module, args[0])

        return hook

    def close_window(self, samples: int) -> None:
        self._step = {}
        self.samples += samples

    def expected(self) -> dict[str, dict[str, torch.Tensor]]:
        result: dict[str, dict[str, torch.Tensor]] = {}
        for name, spikes in self.spikes.items():
            seen = torch.tensor(self.seen[name], dtype=torch.float64)
            rate = torch.tensor(spikes, dtype=torch.float64) / seen  # NaN where 0 / 0
            result[name] = {"rate": rate}
        for name, ops in self.ops.items():
            result[name] = {"synops": torch.tensor(ops, dtype=torch.float64) / self.samples}
        return result


def feed(net: nn.Module, metrics: list[Any], plan, seed: int = 0) -> Reference:
    """Run the windows of ``plan`` ((samples, steps) each, data seeded ``seed + i``),
    updating ``metrics`` after each; the reference counts of the same run."""
    reference = Reference(net)
    for i, (samples, steps) in enumerate(plan):
        run(net, make_data(samples, steps, seed + i))
        for metric in metrics:
            metric.update()
        reference.close_window(samples)
    return reference


def assert_profile(got: dict[str, dict[str, torch.Tensor]], expected) -> None:
    assert list(got) == list(expected) or set(got) == set(expected)
    for name, figures in expected.items():
        assert set(got[name]) == set(figures), name
        for key, value in figures.items():
            torch.testing.assert_close(
                got[name][key], value, rtol=1e-13, atol=1e-13, equal_nan=True, msg=name
            )


@pytest.mark.parametrize("model", MODELS.values(), ids=MODELS.keys())
def test_matches_brute_force_and_sums_to_synaptic_operations(model):
    net = model()
    profile, synops = sm.ActivityProfile(net, max_steps=MAX_STEPS), sm.SynapticOperations(net)
    reference = feed(net, [profile, synops], PLAN)
    result = profile.compute()
    expected = reference.expected()
    assert_profile(result, expected)
    assert list(result) == profile.layer_names  # model order
    # the data exercises every case: silent and busy steps, steps only one window reached
    rates = torch.stack([figures["rate"] for figures in expected.values() if "rate" in figures])
    assert not rates.isnan().any() and (rates > 0).any() and (rates.diff(dim=1) != 0).any()
    per_layer = synops.compute_per_layer()
    assert set(per_layer) == set(profile.connection_names)
    for name, figures in per_layer.items():
        assert float(figures["synops"]) > 0
        torch.testing.assert_close(
            result[name]["synops"].sum(), figures["synops"], rtol=1e-14, atol=0
        )
    total = sum(result[name]["synops"].sum() for name in per_layer)
    torch.testing.assert_close(total, synops.compute()["synops"], rtol=1e-14, atol=0)


def test_a_model_without_neurons_runs_one_step_per_call():
    torch.manual_seed(2)
    net = nn.Sequential(nn.Flatten(), nn.Linear(25, 4))
    with torch.no_grad():
        net[1].weight[0] = 0.0
    profile = sm.ActivityProfile(net, max_steps=MAX_STEPS)
    reference = feed(net, [profile], PLAN)
    assert_profile(profile.compute(), reference.expected())


def test_two_profiles_keep_their_own_windows():
    """Both read the same taps: one updates after every batch, the other after two."""
    net = mlp()
    short = sm.ActivityProfile(net, max_steps=4)
    long = sm.ActivityProfile(net, max_steps=MAX_STEPS)
    reference = Reference(net)
    for i in range(2):
        x = make_data(2, 8, seed=60 + i)
        for module in net.modules():
            if isinstance(module, snn.SpikingNeuron):
                module.reset_mem()
        for half in (x[:, :4], x[:, 4:]):
            for t in range(4):
                net(half[:, t])
            short.update()
        long.update()
        reference.close_window(2)
    whole = long.compute()
    assert_profile(whole, reference.expected())
    # the short windows are the halves of the long ones: as many samples each (rates), and
    # twice the samples in all (operations per sample)
    got = short.compute()
    for name, figures in whole.items():
        for key, value in figures.items():
            halves = value.view(2, 4).mean(0)
            torch.testing.assert_close(got[name][key], halves, rtol=1e-13, atol=1e-13)


def test_a_window_longer_than_max_steps_is_refused():
    net = mlp()
    profile = sm.ActivityProfile(net, max_steps=3)
    for _ in range(3):
        net(torch.ones(2, 1, 5, 5))
    with pytest.raises(ValueError, match=r"max_steps=3"):
        net(torch.ones(2, 1, 5, 5))
    profile.discard_pending()
    net(torch.ones(2, 1, 5, 5))  # a new window starts at step 0
    profile.update()
    assert profile.compute()["1"]["synops"].tolist()[1:] == [0.0, 0.0]


@pytest.mark.parametrize("max_steps", [0, -1, 2.0, True, None])
def test_bad_max_steps(max_steps):
    with pytest.raises((TypeError, ValueError), match="max_steps"):
        sm.ActivityProfile(mlp(), max_steps=max_steps)


def test_full_recurrent_layers_are_refused():
    net = nn.Sequential(nn.LSTM(3, 4))
    with pytest.raises(TypeError, match="one call per step"):
        sm.ActivityProfile(net, max_steps=4)


def test_recurrent_cells_count_one_step_per_call():
    torch.manual_seed(3)
    net = nn.ModuleDict({"cell": nn.RNNCell(3, 4), "readout": nn.Linear(4, 2)})
    profile = sm.ActivityProfile(net, max_steps=5)
    reference = sm.SynapticOperations(net)  # updated after every step: its per-step count
    per_step = []
    gen = torch.Generator().manual_seed(4)
    h = None
    for _ in range(5):
        x = (torch.rand(2, 3, generator=gen) < 0.5).float()
        h = net["cell"](x, h)
        net["readout"](h)
        reference.update()
        per_step.append(reference.compute_per_layer())
    profile.update()
    got = profile.compute()
    for name in ("cell", "readout"):
        totals = torch.stack([step[name]["synops"] * (t + 1) for t, step in enumerate(per_step)])
        steps = torch.diff(totals, prepend=torch.zeros(1, dtype=torch.float64))
        torch.testing.assert_close(got[name]["synops"], steps, rtol=1e-12, atol=1e-12)
        assert float(got[name]["synops"].sum()) > 0


# --- several steps per call -----------------------------------------------------------------


class MultiStep(NamedTuple):
    net: nn.Module
    data: Callable[[int, int, torch.Generator], torch.Tensor]  # (samples, steps, gen)
    reset: Callable[[nn.Module], None]
    # name -> how to turn a recorded neuron output / connection input into [T, B, ...]
    neurons: dict[str, Callable[[Any, int], torch.Tensor]]
    connections: dict[str, Callable[[torch.Tensor, int], torch.Tensor]]


def _time_first(x: torch.Tensor, steps: int) -> torch.Tensor:
    return x


def _sample_first(x: torch.Tensor, steps: int) -> torch.Tensor:
    return x.transpose(0, 1)


def _flat_time_first(x: torch.Tensor, steps: int) -> torch.Tensor:
    return x.reshape(steps, -1, *x.shape[1:])


def _flat_sample_first(x: torch.Tensor, steps: int) -> torch.Tensor:
    return x.reshape(-1, steps, *x.shape[1:]).transpose(0, 1)


def _excitatory(net: nn.Module, gain: float = 1.0) -> nn.Module:
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.Linear):
                module.weight.abs_().mul_(gain)
                module.weight[:, 0] = 0.0  # zero weights too
    return net


def _spikingjelly() -> MultiStep:
    pytest.importorskip("spikingjelly", reason="spikingjelly not installed")
    from spikingjelly.activation_based import functional, layer, neuron

    torch.manual_seed(5)
    net = nn.Sequential(
        layer.Linear(4, 6, step_mode="m"),  # [T, B, 4]
        neuron.IFNode(v_threshold=0.7, step_mode="m"),
        layer.SeqToANNContainer(nn.Linear(6, 5)),  # [T * B, 6]
        neuron.LIFNode(tau=2.0, v_threshold=0.3, step_mode="m"),
        layer.Linear(5, 3, step_mode="m"),
    )
    return MultiStep(
        _excitatory(net),
        lambda b, t, gen: torch.rand(t, b, 4, generator=gen) * 1.5,
        functional.reset_net,
        {"1": _time_first, "3": _time_first},
        {"0": _time_first, "2.0": _flat_time_first, "4": _time_first},
    )


def _sinabs_squeezed() -> MultiStep:
    sinabs = pytest.importorskip("sinabs", reason="sinabs not installed")
    torch.manual_seed(6)
    net = nn.Sequential(
        nn.Linear(4, 6),  # [B * T, 4]
        sinabs.layers.IAFSqueeze(num_timesteps=7),
        nn.Linear(6, 3),
        sinabs.layers.IAFSqueeze(num_timesteps=7),
    )
    return MultiStep(
        _excitatory(net),
        lambda b, t, gen: torch.rand(b * t, 4, generator=gen) * 1.5,
        sinabs.reset_states,
        {"1": _flat_sample_first, "3": _flat_sample_first},
        {"0": _flat_sample_first, "2": _flat_sample_first},
    )


def _sinabs() -> MultiStep:
    sinabs = pytest.importorskip("sinabs", reason="sinabs not installed")
    torch.manual_seed(6)
    net = nn.Sequential(
        nn.Linear(4, 6), sinabs.layers.IAF(), nn.Linear(6, 3), sinabs.layers.LIF(tau_mem=3.0)
    )
    return MultiStep(
        _excitatory(net),
        lambda b, t, gen: torch.rand(b, t, 4, generator=gen) * 3.0,  # [B, T, 4]
        sinabs.reset_states,
        {"1": _sample_first, "3": _sample_first},
        {"0": _sample_first, "2": _sample_first},
    )


def _norse() -> MultiStep:
    norse = pytest.importorskip("norse.torch", reason="norse not installed")
    torch.manual_seed(7)
    net = norse.SequentialState(nn.Linear(4, 6), norse.LIF(), nn.Linear(6, 3), norse.LIF())
    return MultiStep(
        _excitatory(net, gain=3.0),
        lambda b, t, gen: torch.rand(t, b, 4, generator=gen) * 3.0,  # [T, B, 4]
        lambda net: None,  # a call without a state starts afresh
        {"1": lambda out, steps: out[0], "3": lambda out, steps: out[0]},
        {"0": _time_first, "2": _time_first},
    )


FRAMEWORKS = [_spikingjelly, _sinabs_squeezed, _sinabs, _norse]


@pytest.mark.optional
@pytest.mark.parametrize("framework", FRAMEWORKS, ids=lambda f: f.__name__.strip("_"))
def test_multi_step_calls_fill_one_entry_per_step(framework):
    model = framework()
    steps = 7
    profile = sm.ActivityProfile(model.net, max_steps=steps + 1)
    synops = sm.SynapticOperations(model.net)
    spikes = {name: torch.zeros(steps + 1, dtype=torch.float64) for name in model.neurons}
    seen = {name: torch.zeros(steps + 1, dtype=torch.float64) for name in model.neurons}
    ops = {name: torch.zeros(steps + 1, dtype=torch.float64) for name in model.connections}

    def on_neuron(name, read):
        def hook(module, args, output):
            flags = read(output, steps) != 0
            flags = flags.reshape(steps, -1).double()  # [T, B * neurons]
            spikes[name][:steps] += flags.sum(1)
            seen[name][:steps] += flags.shape[1]

        return hook

    def on_connection(name, read):
        def hook(module, args):
            x = read(args[0], steps)  # [T, B, features]
            ops[name][:steps] += torch.tensor([pairs(module, x[t]) for t in range(steps)])

        return hook

    for name, read in model.neurons.items():
        model.net.get_submodule(name).register_forward_hook(on_neuron(name, read))
    for name, read in model.connections.items():
        model.net.get_submodule(name).register_forward_pre_hook(on_connection(name, read))
    samples = 0
    for i, batch in enumerate((3, 1, 4)):
        model.reset(model.net)
        model.net(model.data(batch, steps, torch.Generator().manual_seed(80 + i)))
        profile.update(batch_size=batch)
        synops.update(batch_size=batch)
        samples += batch
    result = profile.compute()
    assert set(result) == {*model.neurons, *model.connections}
    for name in model.neurons:
        expected = spikes[name] / seen[name]
        assert (expected[:steps] > 0).any()
        torch.testing.assert_close(result[name]["rate"], expected, equal_nan=True)
    per_layer = synops.compute_per_layer()
    assert any((ops[name][:steps].diff() != 0).any() for name in ops)  # the steps differ
    for name in model.connections:
        torch.testing.assert_close(result[name]["synops"], ops[name] / samples, rtol=1e-13, atol=0)
        torch.testing.assert_close(
            result[name]["synops"].sum(), per_layer[name]["synops"], rtol=1e-13, atol=0
        )


# --- state, idioms ------------------------------------------------------------------------


def _elements(metric: sm.ActivityProfile) -> int:
    states = sum(getattr(metric, name).numel() for name in metric._defaults)
    buffers = sum(
        value.numel() if isinstance(value, torch.Tensor) else len(value)
        for _, sink in metric._sinks
        for value in vars(sink).values()
        if isinstance(value, (torch.Tensor, list))
    )
    return states + buffers


def test_memory_is_flat_in_batches_and_steps():
    net = conv_net()
    profile = sm.ActivityProfile(net, max_steps=30)
    for i in range(2):
        run(net, make_data(4, 2, seed=i))
        profile.update()
    small = _elements(profile)
    for i in range(4):
        run(net, make_data(4, 30, seed=i))
        profile.update()
    assert _elements(profile) == small
    assert small < 60 * 30  # [layers, max_steps] per figure and sink


@pytest.mark.parametrize("model", MODELS.values(), ids=MODELS.keys())
def test_collection_and_reset_between_epochs(model):
    epochs = [PLAN[:2], PLAN[2:]]
    net = model()
    collection = MetricCollection(
        {"profile": sm.ActivityProfile(net, max_steps=MAX_STEPS), "ops": sm.SynapticOperations(net)}
    )
    for epoch, plan in enumerate(epochs):
        collection.reset()
        reference = feed(net, [collection], plan, seed=10 * epoch)
        profile = collection["profile"].compute()
        assert_profile(profile, reference.expected())
        flat = collection.compute()
        total = sum(
            profile[name]["synops"].sum() for name in collection["profile"].connection_names
        )
        torch.testing.assert_close(total, flat["synops"], rtol=1e-14, atol=0)


def test_forward_and_clone():
    net = mlp()
    profile = sm.ActivityProfile(net, max_steps=MAX_STEPS)
    reference = Reference(net)
    run(net, make_data(3, 6, seed=1))
    batch = profile()  # this window alone
    reference.close_window(3)
    assert_profile(batch, reference.expected())
    twin = profile.clone()
    run(net, make_data(2, 5, seed=2))
    reference.close_window(2)
    profile.update()
    twin.update()
    assert_profile(profile.compute(), reference.expected())
    assert_profile(twin.compute(), reference.expected())
    run(net, make_data(2, 5, seed=3))
    twin.discard_pending()
    profile.update()
    assert int(profile.samples) == 7 and int(twin.samples) == 5


def test_nan_inputs_make_the_figures_undefined():
    net = mlp()
    profile = sm.ActivityProfile(net, max_steps=2)
    net(torch.full((1, 1, 5, 5), float("nan")))
    profile.update()
    with pytest.raises(ValueError, match="NaN"):
        profile.compute()


def test_plot():
    matplotlib = pytest.importorskip("matplotlib", reason="plotting needs matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    net = conv_net()
    profile = sm.ActivityProfile(net, max_steps=MAX_STEPS + 4)
    feed(net, [profile], PLAN)
    fig, ax = profile.plot()
    rates = [line for line in ax.lines]
    assert [line.get_label() for line in rates] == [
        "1 (Leaky) rate",
        "3 (Leaky) rate",
        "6 (Synaptic) rate",
    ]
    assert len(rates[0].get_xdata()) == MAX_STEPS  # up to the last step a window reached
    (cost_ax,) = [other for other in fig.axes if other is not ax]
    assert [line.get_label() for line in cost_ax.lines] == [
        "0 (Conv2d) synops",
        "2 (Conv2d) synops",
        "5 (Linear) synops",
    ]
    assert len(ax.get_legend().get_texts()) == 6
    plt.close(fig)
    fig, given = plt.subplots()
    assert profile.plot(ax=given) == (fig, given)
    plt.close(fig)
    with pytest.raises(ValueError, match="one result at a time"):
        profile.plot([profile.compute(), profile.compute()])


# --- DDP ----------------------------------------------------------------------------------


def _ddp_task(rank: int, world_size: int, shards: list[list[int]]):
    net = conv_net()
    profile = sm.ActivityProfile(net, max_steps=MAX_STEPS)
    for index in shards[rank]:
        samples, steps = PLAN[index]
        run(net, make_data(samples, steps, index))
        profile.update()
    return profile.compute()


@pytest.mark.parametrize("shards", [[[0, 2], [1]], [[], [0, 1, 2]], [[2, 1], [0]]], ids=str)
def test_ddp_uneven_and_empty_ranks_equal_one_process(ddp2, shards):
    net = conv_net()
    profile = sm.ActivityProfile(net, max_steps=MAX_STEPS)
    reference = feed(net, [profile], PLAN)
    expected = profile.compute()
    assert_profile(expected, reference.expected())
    for result in ddp2.run(_ddp_task, shards):
        assert_profile(result, expected)


# --- no host reads in hooks ---------------------------------------------------------------

@pytest.mark.parametrize("make, shape", [(mlp_snn, (2, 3, 20)), (conv_snn, (2, 3, 2, 32, 32))])
def test_hooked_forward_passes_never_read_a_tensor_on_the_host(monkeypatch, make, shape):
    """A CPU stand-in for CUDA's sync debug mode: no tensor becomes a Python value or a
    host copy while the hooks of both metrics run (a stepped model and a multi-step one)."""
    torch.manual_seed(0)
    net = make()
    metrics = [sm.ActivityProfile(net, max_steps=3), sm.SpikeTrainStatistics(net)]
    x = poisson_spikes(shape, 0.3, torch.Generator().manual_seed(1))
    run_steps(net, x)  # first calls derive fanouts and make buffers
    for metric in metrics:
        metric.update()
    with host_reads(monkeypatch) as seen:
        run_steps(net, x)
    assert seen == []
    for metric in metrics:  # and the run still counted
        metric.update()
    assert int(metrics[1].trains[0]) == 4
    assert float(metrics[0].compute()["0"]["synops"].sum()) > 0


@pytest.mark.optional
def test_multi_step_hooks_never_read_a_tensor_on_the_host(monkeypatch):
    model = _spikingjelly()
    metrics = [sm.ActivityProfile(model.net, max_steps=5), sm.SpikeTrainStatistics(model.net)]
    x = model.data(2, 5, torch.Generator().manual_seed(1))
    model.net(x)
    for metric in metrics:
        metric.update()
    model.reset(model.net)
    with host_reads(monkeypatch) as seen:
        model.net(x)
    assert seen == []
    for metric in metrics:
        metric.update()
    assert int(metrics[1].trains[0]) == 4
