"""MembraneUpdates, NeuronOperations and ActivationSparsity: NeuroBench's unit-test values,
time handling, shared hooks with different update cadences, errors, memory and DDP.

Expected figures come from NeuroBench's unit tests, from hand calculations, or from a
plain recording of every call (outputs and membranes kept in lists, then counted).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest
import snntorch as snn
import torch
from snntorch import surrogate
from torch import nn

import snnmetrics as sm

# --- a recording reference ----------------------------------------------------------------


@dataclass
class Call:
    layer: str
    spikes: torch.Tensor
    before: torch.Tensor | None
    after: torch.Tensor | None


@dataclass
class Recorder:
    """Keeps every output and membrane of the watched layers, call by call."""

    calls: list[Call] = field(default_factory=list)

    def attach(self, model: nn.Module) -> Recorder:
        for name, module in model.named_modules():
            if isinstance(module, (nn.ReLU, nn.Sigmoid, snn.SpikingNeuron)):
                module.register_forward_pre_hook(self._pre(name))
                module.register_forward_hook(self._post(name))
        return self

    def _pre(self, name):
        def hook(module, args):
            mem = getattr(module, "mem", None)
            before = None if mem is None else mem.clone()
            self.calls.append(Call(name, torch.empty(0), before, None))

        return hook

    def _post(self, name):
        def hook(module, args, output):
            call = self.calls[-1]
            call.spikes = (output[0] if isinstance(output, tuple) else output).detach().clone()
            mem = getattr(module, "mem", None)
            call.after = None if mem is None else mem.detach().clone()

        return hook

    def window(self) -> list[Call]:
        calls, self.calls = self.calls, []
        return calls


def reference(windows: list[list[Call]], costs: dict[str, float]) -> dict[str, float]:
    """The figures of the metrics, counted on the recorded calls of each update window."""
    samples = updates = dense = effective = 0.0
    zeros = elements = 0
    by_layer: dict[str, list[int]] = {}
    layer_updates: dict[str, int] = {}
    for calls in windows:
        samples += calls[0].spikes.shape[0]
        seen: set[str] = set()
        for call in calls:
            z = int((call.spikes == 0).sum())
            zeros += z
            elements += call.spikes.numel()
            counts = by_layer.setdefault(call.layer, [0, 0])
            counts[0] += z
            counts[1] += call.spikes.numel()
            if call.layer not in costs:
                continue
            assert call.after is not None
            fresh = call.before is None or call.before.shape != call.after.shape
            if call.layer not in seen or fresh:
                changed = call.after.numel()
            else:
                changed = int((call.after != call.before).sum())
            seen.add(call.layer)
            layer_updates[call.layer] = layer_updates.get(call.layer, 0) + changed
            updates += changed
            effective += changed * costs[call.layer]
            dense += call.after.numel() * costs[call.layer]
    return {
        "updates": updates / samples,
        "effective": effective / samples,
        "dense": dense / samples,
        "sparsity": zeros / elements,
        **{f"sparsity/{name}": z / n for name, (z, n) in by_layer.items()},
        **{f"updates/{name}": n / samples for name, n in layer_updates.items()},
    }


def make_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(6, 5, bias=False),
        snn.Leaky(beta=0.8, init_hidden=True),
        nn.Linear(5, 4, bias=False),
        nn.ReLU(),
        nn.Linear(4, 3, bias=False),
        snn.Synaptic(alpha=0.7, beta=0.8, reset_mechanism="zero", init_hidden=True, output=True),
    )


COSTS = {"1": 4.0, "5": 8.0}  # Leaky subtract, Synaptic zero (seed 002)
BATCH_SIZES = (4, 2, 5, 3)
STEPS = 5


def make_batch(index: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(10 + index)
    x = torch.rand(BATCH_SIZES[index], STEPS, 6, generator=gen) * 1.5
    x *= torch.rand(x.shape, generator=gen) < 0.6
    x[:, :3] *= torch.rand(x.shape[0], 1, 1, generator=gen) < 0.5  # some samples start late
    return x


def reset_state(net: nn.Module) -> None:
    for module in net.modules():
        if isinstance(module, snn.SpikingNeuron):
            module.reset_mem()


def run_batch(net: nn.Module, x: torch.Tensor) -> None:
    reset_state(net)
    for t in range(x.shape[1]):
        net(x[:, t])


def all_metrics(net: nn.Module) -> dict[str, sm.HookedMetric]:
    return {
        "updates": sm.MembraneUpdates(net),
        "ops": sm.NeuronOperations(net),
        "sparsity": sm.ActivationSparsity(net),
        "by_layer": sm.ActivationSparsity(net, by_layer=True),
    }


def figures(metrics: dict[str, sm.HookedMetric]) -> dict[str, float]:
    ops = metrics["ops"].compute()
    out = {
        "updates": float(metrics["updates"].compute()),
        "effective": float(ops["effective"]),
        "dense": float(ops["dense"]),
        "sparsity": float(metrics["sparsity"].compute()),
    }
    for name, value in metrics["by_layer"].compute().items():
        out[f"sparsity/{name.removeprefix('net.')}"] = float(value)
    for name, value in metrics["updates"].compute_per_layer().items():
        out[f"updates/{name.removeprefix('net.')}"] = float(value)
    return out


def assert_figures(actual: dict[str, float], expected: dict[str, float]) -> None:
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        assert actual[key] == pytest.approx(value, rel=1e-12, abs=0), key


# --- NeuroBench's unit-test values ----------------------------------------------------------


def _neurobench_snn() -> nn.Module:
    # NeuroBench tests/models/model_list.py: net_snn
    return nn.Sequential(
        nn.Linear(20, 5, bias=False),
        snn.Leaky(beta=0.9, spike_grad=surrogate.fast_sigmoid(), init_hidden=True, output=True),
    )


@pytest.mark.parametrize(("value", "updates", "effective"), [(1.0, 50, 200), (0.0, 5, 20)])
def test_neurobench_unit_values(value, updates, effective):
    # B=5, T=10: ones drive every membrane at every step (5 neurons x 10 steps = 50 per
    # sample, x 4 ops = 200); zeros leave it at 0 after the first step (5, x 4 = 20).
    # Dense is 5 x 10 x 4 = 200 either way.
    torch.manual_seed(0)
    net = _neurobench_snn()
    mem_updates, ops = sm.MembraneUpdates(net), sm.NeuronOperations(net)
    x = torch.full((5, 10, 20), value)
    for t in range(10):
        net(x[:, t])
    mem_updates.update()
    ops.update()
    assert float(mem_updates.compute()) == updates
    assert float(ops.compute()["effective"]) == effective
    assert float(ops.compute()["dense"]) == 200


def test_neurobench_sparsity_by_layer():
    # NeuroBench asserts 0.96 for net_snn on ones (B=5, T=10) with its random weights, i.e.
    # 2 spikes per sample in 50 outputs. Fixed weights give that count by hand: neuron 0
    # gets 20 x 0.015 = 0.3 per step (beta 0.9, threshold 1, subtract reset):
    # 0.3, 0.57, 0.813, 1.032*, 0.228, 0.506, 0.755, 0.980, 1.182*, 0.364 -> 2 spikes;
    # the other neurons get 0 and never spike.
    net = _neurobench_snn()
    with torch.no_grad():
        net[0].weight.zero_()
        net[0].weight[0] = 0.015
    sparsity = sm.ActivationSparsity(net, by_layer=True)
    x = torch.ones(5, 10, 20)
    for t in range(10):
        net(x[:, t])
    sparsity.update()
    assert sparsity.compute() == {"1": pytest.approx(0.96, abs=1e-15)}


def test_neurobench_relu_and_sigmoid_values():
    # NeuroBench test_activation_sparsity: ReLU on ones -> 0.0, on half -1 -> 0.5, one ReLU
    # module used four times -> the same; Sigmoid on ones -> 0.0
    relu = nn.ReLU()
    nets = {
        "relu": nn.Sequential(nn.Identity(), nn.ReLU()),
        "shared": nn.Sequential(nn.Identity(), relu, nn.Identity(), relu, relu, relu),
        "sigmoid": nn.Sequential(nn.Identity(), nn.Sigmoid()),
    }
    half = torch.ones(1, 20)
    half[:, :10] = -1
    for name, net in nets.items():
        sparsity = sm.ActivationSparsity(net)
        net(torch.ones(1, 20))
        sparsity.update()
        assert float(sparsity.compute()) == 0.0, name
        if name != "sigmoid":
            sparsity.reset()
            net(half)
            sparsity.update()
            assert float(sparsity.compute()) == 0.5, name
        sparsity.detach()


# --- time handling and update cadence --------------------------------------------------------


class Looping(nn.Module):
    """A model that loops over time inside its own forward: x is [B, T, ...]."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.net(x[:, t])[0] for t in range(x.shape[1])], 1)


@pytest.mark.parametrize("driver", ["stepped", "looping", "chunks"])
def test_time_handling(driver):
    net = make_net()
    looping = Looping(net)
    recorder = Recorder().attach(net)
    metrics = all_metrics(looping if driver != "stepped" else net)
    windows = []
    for index in range(len(BATCH_SIZES)):
        x = make_batch(index)
        if driver == "stepped":
            run_batch(net, x)
        else:
            reset_state(net)
            for chunk in (x,) if driver == "looping" else (x[:, :2], x[:, 2:]):
                looping(chunk)
        for metric in metrics.values():
            metric.update()
        windows.append(recorder.window())
    assert_figures(figures(metrics), reference(windows, COSTS))


def test_metrics_with_different_cadences_share_one_hook():
    # batches of one size: a neuron's state after reset_mem() keeps its shape, so the first
    # step of a batch counts every neuron only if it is the first step of a window
    net = make_net()
    recorder = Recorder().attach(net)
    per_batch = all_metrics(net)
    per_two = all_metrics(net)
    windows, pairs = [], []
    for index in range(len(BATCH_SIZES)):
        run_batch(net, make_batch(index)[:2])
        for metric in per_batch.values():
            metric.update()
        windows.append(recorder.window())
        if index % 2 == 1:  # one window of two batches: its samples passed explicitly
            for metric in per_two.values():
                metric.update(batch_size=4)
            pairs.append(windows[-2] + windows[-1])
    assert_figures(figures(per_batch), reference(windows, COSTS))
    two = reference(pairs, COSTS)
    for key in two:
        if not key.startswith("sparsity"):
            two[key] /= 2  # the reference takes dim 0 of a window's first call as its samples
    assert_figures(figures(per_two), two)
    assert float(per_two["updates"].compute()) < float(per_batch["updates"].compute())
    for module in (net[1], net[3], net[5]):  # one hook per module for 8 metrics
        assert len(module._forward_hooks) == 1 + 1  # ours and the recorder's
    for metric in [*per_batch.values(), *per_two.values()]:
        metric.detach()
    assert len(net[1]._forward_hooks) == 1 and len(net[1]._forward_pre_hooks) == 1


def test_discard_pending_and_reset():
    net = make_net()
    recorder = Recorder().attach(net)
    metrics = all_metrics(net)
    run_batch(net, make_batch(0))
    for metric in metrics.values():
        metric.discard_pending()
    recorder.window()
    run_batch(net, make_batch(1))
    for metric in metrics.values():
        metric.update()
    assert_figures(figures(metrics), reference([recorder.window()], COSTS))
    for metric in metrics.values():
        metric.reset()
    run_batch(net, make_batch(2))
    for metric in metrics.values():
        metric.update()
    assert_figures(figures(metrics), reference([recorder.window()], COSTS))


def test_batch_size_argument_and_init_hidden_false():
    # a model whose neurons take and return their state (init_hidden=False)
    class Explicit(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(3)
            self.fc = nn.Linear(6, 4)
            self.lif = snn.Alpha(alpha=0.9, beta=0.6)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            state = (torch.zeros(0),) * 3
            spikes = []
            for t in range(x.shape[1]):
                spk, *state = self.lif(self.fc(x[:, t]), *state)
                spikes.append(spk)
            return torch.stack(spikes, 1)

    net = Explicit()
    x = make_batch(0)
    traces = []
    with torch.no_grad():
        state = (torch.zeros(0),) * 3
        for t in range(STEPS):  # the same run, recorded by hand
            _, *state = net.lif(net.fc(x[:, t]), *state)
            traces.append(state[-1].clone())
    expected = traces[0].numel() + sum(
        int((traces[t] != traces[t - 1]).sum()) for t in range(1, STEPS)
    )
    updates, ops = sm.MembraneUpdates(net), sm.NeuronOperations(net)
    net(x)
    updates.update(batch_size=2)  # say, two recordings of two samples each
    ops.update(batch_size=2)
    assert float(updates.compute()) == expected / 2
    assert float(ops.compute()["dense"]) == 4 * STEPS * 4 * 24 / 2  # B*T*N*cost / 2
    assert float(ops.compute()["effective"]) == expected * 24 / 2


def test_inference_mode_then_training_mode():
    net = make_net()
    recorder = Recorder().attach(net)
    metrics = all_metrics(net)
    windows = []
    with torch.inference_mode():  # hooks first run here, as in a Lightning validation loop
        run_batch(net, make_batch(0))
        for metric in metrics.values():
            metric.update()
    windows.append(recorder.window())
    run_batch(net, make_batch(1))
    for metric in metrics.values():
        metric.update()
    windows.append(recorder.window())
    assert_figures(figures(metrics), reference(windows, COSTS))


# --- bad input ---------------------------------------------------------------------------------


def test_model_without_neurons():
    linear = nn.Sequential(nn.Linear(3, 3))
    for metric in (sm.MembraneUpdates, sm.NeuronOperations, sm.ActivationSparsity, sm.FiringRate):
        with pytest.raises(ValueError, match=r"has no .* to watch"):
            metric(linear)
    relu_only = nn.Sequential(nn.Linear(3, 3), nn.ReLU())
    for metric in (sm.MembraneUpdates, sm.NeuronOperations, sm.FiringRate):
        with pytest.raises(ValueError, match="no spiking neuron"):
            metric(relu_only)
    sm.ActivationSparsity(relu_only).detach()  # a ReLU is an activation
    with pytest.raises(TypeError, match=r"torch\.nn\.Module"):
        sm.MembraneUpdates("model")  # type: ignore[arg-type]


class Passthrough(nn.Module):
    """A spiking neuron type of the tests: its input is its output."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


sm.register_neuron(Passthrough, sm.NeuronRule(spikes=lambda module, output: output))


def test_nan_is_an_error_not_a_zero():
    nan_batch = make_batch(0)
    nan_batch[0, 2, 0] = float("nan")  # reaches the first Leaky's membrane
    net = make_net()
    checks = [
        (net, sm.MembraneUpdates(net), lambda: run_batch(net, nan_batch)),
        (net, sm.NeuronOperations(net), lambda: run_batch(net, nan_batch)),
    ]
    relu = nn.Sequential(nn.Identity(), nn.ReLU())
    checks.append((relu, sm.ActivationSparsity(relu), lambda: relu(torch.tensor([[1, math.nan]]))))
    spiking = nn.Sequential(Passthrough())
    checks.append((spiking, sm.FiringRate(spiking), lambda: spiking(torch.tensor([[math.nan]]))))
    for model, metric, run_with_nan in checks:
        run_with_nan()
        metric.update()
        with pytest.raises(ValueError, match="NaN"):
            metric.compute()
        metric.reset()  # the hooks keep counting right after a NaN
        model(torch.ones(2, 6) if model is net else torch.ones(2, 1))
        metric.update()
        metric.compute()


@pytest.mark.filterwarnings("ignore:The ``compute`` method")
def test_compute_and_update_without_data():
    net = make_net()
    updates = sm.MembraneUpdates(net)
    with pytest.raises(ValueError, match="no forward pass"):
        updates.update()
    assert torch.isnan(updates.compute())  # torchmetrics' convention: NaN, with a warning


def test_detached_metric_and_context_manager():
    net = make_net()
    with sm.ActivationSparsity(net) as sparsity:
        assert len(net[3]._forward_hooks) == 1
    assert len(net[3]._forward_hooks) == 0
    with pytest.raises(RuntimeError, match="detached"):
        sparsity.update()


def test_model_is_not_a_submodule():
    net = make_net()
    for metric in all_metrics(net).values():
        assert list(metric.parameters()) == []
        assert all("weight" not in key for key in metric.state_dict())


def test_counts_stay_exact_past_float32():
    # one call of 2**24 + 3 outputs, 5 of them zero: a float32 sum would round
    net = nn.Sequential(nn.Identity(), nn.ReLU())
    sparsity = sm.ActivationSparsity(net)
    x = torch.ones(1, 2**24 + 3)
    x[0, :5] = 0
    net(x)
    sparsity.update()
    assert float(sparsity.compute()) == 5 / (2**24 + 3)


# --- memory ------------------------------------------------------------------------------------


def _sizes(metrics: dict[str, sm.HookedMetric]) -> list[tuple[str, tuple[int, ...]]]:
    sizes = []
    for name, metric in metrics.items():
        for key, value in metric.metric_state.items():
            sizes.append((f"{name}.{key}", tuple(value.shape)))
        sizes.append((f"{name}.first_call", (len(metric._window.first_call),)))
        for tap in metric._taps:
            for attr, value in vars(tap).items():
                if isinstance(value, torch.Tensor):
                    sizes.append((f"{name}.tap.{attr}", tuple(value.shape)))
                elif isinstance(value, (list, dict)):
                    sizes.append((f"{name}.tap.{attr}", (len(value),)))
    return sorted(sizes)


def test_no_state_grows_with_batches_or_steps():
    net = make_net()
    metrics = {**all_metrics(net), "rates": sm.FiringRate(net)}
    run_batch(net, make_batch(0))
    for metric in metrics.values():
        metric.update()
    before = _sizes(metrics)
    gen = torch.Generator().manual_seed(0)
    for _ in range(40):
        x = torch.rand(4, 25, 6, generator=gen)  # 25 steps, unlike the first batch
        run_batch(net, x)
        for metric in metrics.values():
            metric.update()
    assert _sizes(metrics) == before


# --- DDP -----------------------------------------------------------------------------------------


def _ddp_task(rank: int, world_size: int, shards: list[list[int]]) -> dict[str, float]:
    net = make_net()
    metrics = all_metrics(net)
    for index in shards[rank]:
        run_batch(net, make_batch(index))
        for metric in metrics.values():
            metric.update()
    return figures(metrics)


def _expected_all_batches() -> dict[str, float]:
    net = make_net()
    recorder = Recorder().attach(net)
    windows = []
    for index in range(len(BATCH_SIZES)):
        run_batch(net, make_batch(index))
        windows.append(recorder.window())
    return reference(windows, COSTS)


def test_ddp_uneven_shards_and_an_empty_rank(ddp3):
    expected = _expected_all_batches()
    for shards in ([[0, 3], [1], [2]], [[0, 1, 2], [], [3]]):
        for result in ddp3.run(_ddp_task, shards):
            assert_figures(result, expected)
    assert not math.isnan(expected["updates"])
