"""snnmetrics.Benchmark without NeuroBench: every figure against a brute-force or hand count.

The brute force steps the network itself and counts with its own hooks, from the
definitions: effective synaptic operations = (nonzero input, nonzero weight) pairs that
reach an output (a convolution of the binarised input with the binarised weight), dense =
the same with every input and weight set to one, AC calls when every input is in {-1, 0,
1}; membrane updates = every neuron at a batch's first step, then those whose membrane
changed; neuron operations = updates x NeuroBench's published cost per update; and
NeuroBench's averaging: per-batch figures weighted by batch size over the data set's length.
"""

from __future__ import annotations

import csv
import functools
import json
from collections.abc import Callable
from typing import Any

import pytest
import snntorch as snn
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import snnmetrics as sm
from snnmetrics import Benchmark

# NeuroBench 2.3.0's operations per membrane update (its neuron_ops_reset_operations)
COSTS = {
    ("Leaky", "subtract"): 4,
    ("Leaky", "zero"): 4,
    ("Synaptic", "subtract"): 6,
    ("Synaptic", "zero"): 8,
}
ALL_WORKLOAD = [
    "classification_accuracy",
    "activation_sparsity",
    "activation_sparsity_by_layer",
    "synaptic_operations",
    "membrane_updates",
    "neuron_operations",
]
ALL_STATIC = ["footprint", "connection_sparsity", "parameter_count"]


# ----------------------------------------------------------------------------- models


def mlp_snn() -> nn.Sequential:
    """Linear(6, 5) Leaky, Linear(5, 4) Synaptic (reset to zero), Linear(4, 3) Leaky; 7 of
    the 62 weights zero."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(6, 5),
        snn.Leaky(beta=0.6, init_hidden=True),
        nn.Linear(5, 4, bias=False),
        snn.Synaptic(alpha=0.5, beta=0.6, init_hidden=True, reset_mechanism="zero"),
        nn.Linear(4, 3),
        snn.Leaky(beta=0.6, init_hidden=True, output=True),
    )
    with torch.no_grad():
        for layer in (net[0], net[2], net[4]):
            layer.weight.mul_(4.0)
            layer.weight.add_(torch.where(layer.weight == 0, 1.0, 0.0))  # no zero by chance
        net[2].weight.view(-1)[[0, 3, 5, 8, 11, 14, 19]] = 0.0
    return net


class ConvSNN(nn.Module):
    """Conv2d -> Leaky -> (block: Conv2d -> Leaky) -> Linear -> Leaky; two neurons share
    the name ``lif`` in different parents, as NeuroBench's by-layer names would."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.lif = snn.Leaky(beta=0.5, init_hidden=True)
        self.block = nn.Module()
        self.block.conv = nn.Conv2d(2, 2, 3, stride=2, padding=1, groups=2, bias=False)
        self.block.lif = snn.Leaky(beta=0.5, init_hidden=True, reset_mechanism="zero")
        self.fc = nn.Linear(2 * 3 * 3, 3)
        self.out = snn.Leaky(beta=0.5, init_hidden=True, output=True)
        with torch.no_grad():
            for layer in (self.conv, self.block.conv, self.fc):
                layer.weight.mul_(5.0)
            self.block.conv.weight[0] = 0.0  # a dead channel

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.block.lif(self.block.conv(self.lif(self.conv(x))))
        return self.out(self.fc(hidden.flatten(1)))


MODELS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "mlp": (mlp_snn, (6,)),
    "conv": (ConvSNN, (1, 6, 6)),
}


def dataset(shape: tuple[int, ...], samples: int = 7, steps: int = 4, seed: int = 5):
    """Spikes, with every other sample graded (counts and signed values): MAC calls too."""
    gen = torch.Generator().manual_seed(seed)
    x = (torch.rand(samples, steps, *shape, generator=gen) < 0.5).float()
    x[1::2] *= torch.randint(-1, 3, x[1::2].shape, generator=gen).float()
    y = torch.randint(0, 3, (samples,), generator=gen)
    return TensorDataset(x, y)


def choose_max_count(spikes: torch.Tensor) -> torch.Tensor:
    return spikes.sum(1).argmax(1)


# ----------------------------------------------------------------------------- brute force


class BruteForce:
    """Steps a network batch by batch and counts everything from the definitions."""

    def __init__(self, net: nn.Module) -> None:
        self.net = net
        self.totals = {"ac": 0.0, "mac": 0.0, "dense": 0.0}
        self.neurons = [(n, m) for n, m in net.named_modules() if isinstance(m, snn.SpikingNeuron)]
        self.layer_counts: dict[str, list[int]] = {}  # NeuroBench name -> [zeros, total]
        self.updates = 0.0
        self.neuron_ops = 0.0
        self.dense_neuron_ops = 0.0
        self.batch_zeros = self.batch_total = 0
        self.first: set[str] = set()
        for module in net.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                module.register_forward_pre_hook(self._synapses)
        for name, module in self.neurons:
            module.register_forward_pre_hook(functools.partial(self._before, name))
            module.register_forward_hook(functools.partial(self._after, name))

    def _synapses(self, module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        x = args[0].double()
        binary, weight = (x != 0).double(), (module.weight != 0).double()
        if isinstance(module, nn.Linear):
            effective = (binary @ weight.T).sum()
            dense = x.shape[0] * weight.numel()
        else:
            conv = functools.partial(
                F.conv2d,
                stride=module.stride,
                padding=module.padding,
                dilation=module.dilation,
                groups=module.groups,
            )
            effective = conv(binary, weight).sum()
            dense = conv(torch.ones_like(x), torch.ones_like(weight)).sum()
        spiking = bool(((x == 0) | (x == 1) | (x == -1)).all())
        self.totals["ac" if spiking else "mac"] += float(effective)
        self.totals["dense"] += float(dense)

    def _before(self, name: str, module: nn.Module, args: Any) -> None:
        self._mem_before = module.mem.clone()

    def _after(self, name: str, module: nn.Module, args: Any, output: Any) -> None:
        spikes = output[0] if isinstance(output, tuple) else output
        zeros, total = int((spikes == 0).sum()), spikes.numel()
        counts = self.layer_counts.setdefault(name.rsplit(".", 1)[-1], [0, 0])
        counts[0] += zeros
        counts[1] += total
        self.batch_zeros += zeros
        self.batch_total += total
        mem = module.mem
        if name not in self.first:
            self.first.add(name)
            updates = mem.numel()
        else:
            updates = int((self._mem_before != mem).sum())
        cost = COSTS[(type(module).__name__, module.reset_mechanism)]
        self.updates += updates
        self.neuron_ops += updates * cost
        self.dense_neuron_ops += mem.numel() * cost

    def run(self, x: torch.Tensor) -> torch.Tensor:
        for _, module in self.neurons:
            module.reset_mem()
        self.first.clear()
        self.batch_zeros = self.batch_total = 0
        with torch.no_grad():
            return torch.stack([self.net(x[:, t])[0] for t in range(x.shape[1])], 1)


def brute_force(make_net: Callable[[], nn.Module], loader: DataLoader) -> dict[str, Any]:
    """The workload figures of ALL_WORKLOAD, keyed as NeuroBench keys them."""
    counter = BruteForce(make_net())
    length = len(loader.dataset)
    accuracy = sparsity = 0.0
    samples = 0
    for x, y in loader:
        preds = choose_max_count(counter.run(x))
        n = x.shape[0]
        samples += n
        accuracy += float((preds == y).float().mean()) * n / length
        sparsity += counter.batch_zeros / counter.batch_total * n / length
    totals = counter.totals
    return {
        "classification_accuracy": accuracy,
        "activation_sparsity": sparsity,
        "activation_sparsity_by_layer": {
            name: zeros / total for name, (zeros, total) in counter.layer_counts.items()
        },
        "synaptic_operations": {
            "Effective_MACs": totals["mac"] / samples,
            "Effective_ACs": totals["ac"] / samples,
            "Dense": totals["dense"] / samples,
        },
        "membrane_updates": counter.updates / samples,
        "neuron_operations": {
            "Effective Neuron Ops": counter.neuron_ops / samples,
            "Neuron Dense Ops": counter.dense_neuron_ops / samples,
        },
    }


def assert_results_equal(actual: Any, expected: Any, rel: float = 1e-12, path: str = "") -> None:
    """Same keys in the same order, same types of values, numbers equal to ``rel``."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), path
        assert list(actual) == list(expected), path
        for key in expected:
            assert_results_equal(actual[key], expected[key], rel, f"{path}/{key}")
    elif isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected), path
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_results_equal(a, e, rel, f"{path}[{i}]")
    else:
        assert type(actual) is type(expected), (path, actual, expected)
        assert actual == pytest.approx(expected, rel=rel, abs=1e-300), path


def bench(make_net, loader, metrics=None, post=(choose_max_count,), **run_kwargs) -> dict:
    metrics = metrics or [[], ALL_WORKLOAD]
    return Benchmark(make_net(), loader, [], list(post), metrics).run(quiet=True, **run_kwargs)


# ----------------------------------------------------------------------------- figures


@pytest.mark.parametrize("name", sorted(MODELS))
def test_workload_figures_equal_the_brute_force(name):
    make_net, shape = MODELS[name]
    loader = DataLoader(dataset(shape), batch_size=3)  # 3, 3, 1: the last batch is smaller
    expected = brute_force(make_net, loader)
    # the data exercises every figure
    synops = expected["synaptic_operations"]
    assert synops["Effective_ACs"] > 0 and synops["Effective_MACs"] > 0
    assert all(0 < value < 1 for value in expected["activation_sparsity_by_layer"].values())
    assert expected["membrane_updates"] < expected["neuron_operations"]["Neuron Dense Ops"] / 4
    assert_results_equal(bench(make_net, loader), expected)


def test_layers_named_alike_in_different_parents_add_up_as_in_neurobench():
    loader = DataLoader(dataset((1, 6, 6)), batch_size=4)
    result = bench(ConvSNN, loader, [[], ["activation_sparsity_by_layer"]])
    assert list(result["activation_sparsity_by_layer"]) == ["lif", "out"]  # lif + block.lif


def test_static_figures_by_hand():
    net = mlp_snn()
    state = sum(b.numel() * b.element_size() for b in net.buffers())  # beta, threshold, mem...
    results = Benchmark(net, DataLoader(dataset((6,))), [], [], [ALL_STATIC, []]).run(quiet=True)
    # 6*5+5 + 5*4 + 4*3+3 parameters; 7 of the 30 + 20 + 12 weights are zero
    assert results == {
        "footprint": 70 * 4 + state,
        "connection_sparsity": round(7 / 62, 4),
        "parameter_count": 70,
    }


def test_task_figures_by_hand_with_neurobench_averaging():
    # an identity "model": the inputs are the predictions
    preds = torch.tensor([[1.0, 2.0], [3.0, 4.0], [0.0, 1.0], [2.0, 0.0], [1.0, 1.0]])
    labels = torch.tensor([[1.0, 1.0], [2.0, 2.0], [0.0, 2.0], [2.0, 2.0], [3.0, 1.0]])
    loader = DataLoader(TensorDataset(preds, labels), batch_size=2)  # 2, 2, 1
    metrics = [[], ["mse", "sMAPE", "r2", "classification_accuracy"]]
    results = Benchmark(nn.Identity(), loader, [], [], metrics).run(quiet=True)
    # squared errors per batch: [0 1 1 4], [0 1 0 4], [4 0]
    mse = 6 / 4 * 2 / 5 + 5 / 4 * 2 / 5 + 4 / 2 * 1 / 5
    # |p - y| / (|p| + |y|): batch 2 has 0 / 0, so its figure is NeuroBench's 200
    smape = 200 * (1 / 3 + 1 / 5 + 2 / 6) / 4 * 2 / 5 + 200 * 2 / 5 + 200 * (2 / 4) / 2 / 5
    # R2 over all the data, per column (labels x: 1 2 0 2 3, y: 1 2 2 2 1), then the mean
    r2_x = 1 - (0 + 1 + 0 + 0 + 4) / (1 + 4 + 0 + 4 + 9 - 8**2 / 5)
    r2_y = 1 - (1 + 4 + 1 + 4 + 0) / (1 + 4 + 4 + 4 + 1 - 8**2 / 5)
    accuracy = 1 / 4 * 2 / 5 + 2 / 4 * 2 / 5 + 1 / 2 * 1 / 5  # elements equal
    assert results["mse"] == pytest.approx(mse, rel=1e-7)
    assert results["sMAPE"] == pytest.approx(smape, rel=1e-7)
    assert results["r2"] == pytest.approx((r2_x + r2_y) / 2, rel=1e-12)
    assert results["classification_accuracy"] == pytest.approx(accuracy, rel=1e-12)


def test_per_batch_figures_divide_by_the_data_set_length_as_in_neurobench():
    # drop_last leaves a sample out; NeuroBench still divides by len(dataset)
    preds = torch.tensor([0, 1, 2, 0, 1])
    loader = DataLoader(
        TensorDataset(preds, torch.tensor([0, 1, 0, 0, 2])), batch_size=2, drop_last=True
    )
    results = Benchmark(nn.Identity(), loader, [], [], [[], ["ClassificationAccuracy"]]).run(
        quiet=True
    )
    assert results["ClassificationAccuracy"] == 1.0 * 2 / 5 + 0.5 * 2 / 5


def test_a_loader_without_a_data_set_averages_over_the_samples_seen():
    batches = [(torch.tensor([0, 1]), torch.tensor([0, 0])), (torch.tensor([2]), torch.tensor([2]))]
    results = Benchmark(nn.Identity(), batches, [], [], [[], ["classification_accuracy"]]).run(
        quiet=True
    )
    assert results["classification_accuracy"] == pytest.approx(2 / 3, rel=1e-15)


def test_our_metrics_by_name_class_and_partial():
    make_net, shape = MODELS["mlp"]
    loader = DataLoader(dataset(shape), batch_size=3)
    expected = brute_force(make_net, loader)
    metrics = [
        [],
        ["FiringRate", functools.partial(sm.FiringRate, bins=4), sm.Energy, "synaptic_operations"],
    ]
    results = bench(make_net, loader, metrics)
    # the partial's key is the class name too: it replaces the first FiringRate's figures
    assert list(results) == ["FiringRate", "Energy", "synaptic_operations"]
    rates = results["FiringRate"]
    assert set(rates) == {"1", "3", "5"} and len(rates["1"]["histogram"]) == 4
    # a neuron's rate is its spikes over samples x steps: the layer's mean is 1 - sparsity
    for name, layer in rates.items():
        assert isinstance(layer["rates"], list) and isinstance(layer["mean"], float)
        sparsity = expected["activation_sparsity_by_layer"][name]
        assert layer["mean"] == pytest.approx(1 - sparsity, rel=1e-12)
    # Horowitz 45 nm: 0.9 pJ per AC, 4.6 pJ per MAC, 2.3 pJ per neuron operation
    synops, ops = expected["synaptic_operations"], expected["neuron_operations"]
    synaptic = (synops["Effective_ACs"] * 0.9 + synops["Effective_MACs"] * 4.6) * 1e-12
    assert results["Energy"]["synaptic"] == pytest.approx(synaptic, rel=1e-12)
    neuron = ops["Effective Neuron Ops"] * 2.3e-12
    assert results["Energy"]["neuron"] == pytest.approx(neuron, rel=1e-12)


def test_zero_weights_give_no_effective_operation():
    def dead() -> nn.Module:
        net = mlp_snn()
        with torch.no_grad():
            for layer in (net[0], net[2], net[4]):
                layer.weight.zero_()
        return net

    loader = DataLoader(dataset((6,)), batch_size=3)
    results = bench(dead, loader, [["connection_sparsity"], ["synaptic_operations"]])
    assert results["connection_sparsity"] == 1.0
    synops = results["synaptic_operations"]
    assert synops["Effective_ACs"] == synops["Effective_MACs"] == 0.0
    assert synops["Dense"] == 4 * (6 * 5 + 5 * 4 + 4 * 3)  # 4 steps


# ----------------------------------------------------------------------------- naming


class ClassificationAccuracy:  # a stand-in for NeuroBench's class: matched by name
    pass


class SynapticOperations:
    pass


class Footprint:
    pass


def test_metrics_named_by_string_class_name_or_class_give_the_same_figures():
    make_net, shape = MODELS["mlp"]
    loader = DataLoader(dataset(shape), batch_size=3)
    by_string = bench(
        make_net, loader, [["footprint"], ["classification_accuracy", "synaptic_operations"]]
    )
    by_name = bench(
        make_net, loader, [["Footprint"], ["ClassificationAccuracy", "SynapticOperations"]]
    )
    by_class = bench(make_net, loader, [[Footprint], [ClassificationAccuracy, SynapticOperations]])
    assert list(by_class) == ["Footprint", "ClassificationAccuracy", "SynapticOperations"]
    assert by_class == by_name
    assert list(by_string.values()) == list(by_class.values())
    # ours, as a class, is ours: its own keys
    ours = bench(make_net, loader, [[], [sm.SynapticOperations]])["SynapticOperations"]
    assert set(ours) == {"synops", "effective_acs", "effective_macs", "dense"}
    assert ours["effective_acs"] == by_class["SynapticOperations"]["Effective_ACs"]


@pytest.mark.parametrize(
    ("metrics", "error", "match"),
    [
        ([["synaptic_operations"], []], ValueError, "workload metric: list it second"),
        ([[], ["footprint"]], ValueError, "static metric: list it in metric_list"),
        ([[], ["spike_count"]], ValueError, "unknown workload metric 'spike_count'"),
        ([[], [nn.Linear]], ValueError, "unknown workload metric class Linear"),
        ([[], ["match_accuracy"]], ValueError, "MatchAccuracy cannot run"),
        ([[], [3]], TypeError, "expected metric names"),
        ([["footprint"]], ValueError, r"\[static metrics, workload metrics\]"),
    ],
)
def test_bad_metric_lists_fail_at_construction(metrics, error, match):
    with pytest.raises(error, match=match):
        Benchmark(mlp_snn(), [], [], [], metrics)


def test_bad_models_and_processors_fail_at_construction():
    with pytest.raises(TypeError, match=r"model must be an nn\.Module or a NeuroBench"):
        Benchmark(lambda x: x, [], [], [], [[], []])
    with pytest.raises(TypeError, match="postprocessors must be"):
        Benchmark(mlp_snn(), [], [], [3], [[], []])


def test_run_errors_are_raised_not_reported_as_zero():
    loader = DataLoader(dataset((6,)), batch_size=3)
    with pytest.raises(ValueError, match="same shape"):  # no postprocessor: spikes vs labels
        bench(mlp_snn, loader, [[], ["classification_accuracy"]], post=())
    with pytest.raises(ValueError, match=r"shape \[batch, 2\]"):
        Benchmark(
            nn.Identity(),
            DataLoader(TensorDataset(torch.ones(3), torch.ones(3))),
            [],
            [],
            [[], ["r2"]],
        ).run(quiet=True)
    with pytest.raises(ValueError, match="no dataloader"):
        Benchmark(mlp_snn(), None, [], [], [[], ["synaptic_operations"]]).run(quiet=True)
    with pytest.raises(ValueError, match="gave no sample"):
        bench(mlp_snn, [], [[], ["synaptic_operations"]])
    ann = nn.Sequential(nn.Linear(3, 2), nn.ReLU())
    with pytest.raises(ValueError, match="no spiking neuron"):
        Benchmark(ann, [(torch.ones(2, 3), torch.ones(2))], [], [], [[], ["membrane_updates"]]).run(
            quiet=True
        )


# ----------------------------------------------------------------------------- models and data


class Wrapper:
    """A NeuroBench-style model wrapper, without NeuroBench: __net__() and __call__."""

    def __init__(self, net: nn.Module) -> None:
        self.net = net

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        for module in self.net.modules():
            if isinstance(module, snn.SpikingNeuron):
                module.reset_mem()
        return torch.stack([self.net(batch[:, t])[0] for t in range(batch.shape[1])], 1)

    def __net__(self) -> nn.Module:
        return self.net


class SequenceSNN(nn.Module):
    """An snnTorch network whose forward loops over time itself."""

    def __init__(self) -> None:
        super().__init__()
        self.net = mlp_snn()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return Wrapper(self.net)(x)


def test_a_model_wrapper_and_a_wrapped_sequence_model_give_the_stepped_figures():
    loader = DataLoader(dataset((6,)), batch_size=3)
    expected = brute_force(mlp_snn, loader)
    assert_results_equal(bench(lambda: Wrapper(mlp_snn()), loader), expected)

    class Sequence:  # a wrapper whose model takes the whole sequence
        def __init__(self) -> None:
            self.net = SequenceSNN()

        def __call__(self, batch: torch.Tensor) -> torch.Tensor:
            return self.net(batch)

        def __net__(self) -> nn.Module:
            return self.net

    assert_results_equal(bench(Sequence, loader), expected)


def test_a_module_without_snntorch_neurons_gets_the_whole_batch():
    torch.manual_seed(4)
    ann = nn.Sequential(nn.Flatten(), nn.Linear(4 * 6, 5), nn.ReLU(), nn.Linear(5, 3))
    loader = DataLoader(dataset((6,)), batch_size=3)
    results = Benchmark(
        ann,
        loader,
        [],
        [lambda out: out.argmax(1)],
        [[], ["synaptic_operations", "activation_sparsity", "classification_accuracy"]],
    ).run(quiet=True)
    dense = 4 * 6 * 5 + 5 * 3  # one call per sample
    assert results["synaptic_operations"]["Dense"] == dense
    relu_zeros, length, accuracy = 0.0, 7, 0.0
    for x, y in loader:
        with torch.no_grad():
            hidden = ann[2](ann[1](ann[0](x)))
            accuracy += float((ann[3](hidden).argmax(1) == y).float().mean()) * len(x) / length
        relu_zeros += int((hidden == 0).sum()) / hidden.numel() * len(x) / length
    assert results["activation_sparsity"] == pytest.approx(relu_zeros, rel=1e-12)
    assert results["classification_accuracy"] == pytest.approx(accuracy, rel=1e-12)


def test_preprocessors_and_run_overrides():
    make_net, shape = MODELS["mlp"]
    data = dataset(shape)
    loader = DataLoader(data, batch_size=3)
    doubled = DataLoader(TensorDataset(data.tensors[0] * 2, data.tensors[1]), batch_size=3)
    expected = brute_force(make_net, doubled)
    halve = lambda batch: (batch[0] / 2, batch[1])  # noqa: E731
    benchmark = Benchmark(make_net(), loader, [], [choose_max_count], [[], ALL_WORKLOAD])
    # preprocessors see (inputs, labels) and are kept for later runs, as in NeuroBench
    double = lambda batch: (batch[0] * 2, batch[1])  # noqa: E731
    assert_results_equal(benchmark.run(quiet=True, preprocessors=[double]), expected)
    assert_results_equal(benchmark.run(quiet=True, device="cpu"), expected)
    assert_results_equal(
        benchmark.run(quiet=True, dataloader=doubled, preprocessors=[double, halve]), expected
    )
    argmin = lambda spikes: spikes.sum(1).argmin(1)  # noqa: E731
    results = benchmark.run(quiet=True, postprocessors=[argmin])
    assert benchmark.postprocessors == [argmin]
    wrapper, accuracy = Wrapper(make_net()), 0.0
    for x, y in doubled:
        with torch.no_grad():
            accuracy += float((argmin(wrapper(x)) == y).float().mean()) * len(x) / 7
    assert results["classification_accuracy"] == pytest.approx(accuracy, rel=1e-12)


def test_a_run_leaves_no_hook_and_evaluates_in_eval_mode():
    net = mlp_snn().train()
    loader = DataLoader(dataset((6,)), batch_size=3)
    Benchmark(net, loader, [], [choose_max_count], [[], ALL_WORKLOAD]).run(quiet=True)
    assert not net.training
    for module in net.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks


def test_bare_tensor_batches_and_distributed_sampler_padding():
    x = dataset((6,)).tensors[0][:3]
    # rank 1 of 2 over 3 samples gets sample 1 and sample 0 again as padding: not counted
    sampler = DistributedSampler(TensorDataset(x), num_replicas=2, rank=1, shuffle=False)
    loader = DataLoader(x, batch_size=2, sampler=sampler)
    result = Benchmark(mlp_snn(), loader, [], [], [[], ["synaptic_operations"]]).run(quiet=True)
    alone = Benchmark(mlp_snn(), [x[1:2]], [], [], [[], ["synaptic_operations"]]).run(quiet=True)
    assert result == alone
    with pytest.raises(ValueError, match="needs labels"):
        Benchmark(nn.Identity(), [x], [], [], [[], ["mse"]]).run(quiet=True)


# ----------------------------------------------------------------------------- output


def test_quiet_verbose_and_progress(capsys):
    loader = DataLoader(dataset((6,)), batch_size=3)
    benchmark = Benchmark(
        mlp_snn(),
        loader,
        [],
        [choose_max_count],
        [["parameter_count"], ["classification_accuracy"]],
    )
    benchmark.run(quiet=True)
    assert capsys.readouterr() == ("", "")
    final = benchmark.run(verbose=True)
    out, err = capsys.readouterr()
    assert out.startswith("Running benchmark\n")
    assert "Batch num 3/3" in out and str(final) in out  # the running figures after the last
    assert "3/3" in err  # tqdm's bar


def test_save_benchmark_results(tmp_path, capsys):
    loader = DataLoader(dataset((6,)), batch_size=3)
    benchmark = Benchmark(
        mlp_snn(),
        loader,
        [],
        [choose_max_count],
        [["parameter_count"], ["classification_accuracy", "synaptic_operations"]],
    )
    with pytest.raises(ValueError, match="call run"):
        benchmark.save_benchmark_results(str(tmp_path / "r"))
    results = benchmark.run(quiet=True)
    base = tmp_path / "out" / "results"
    for file_format in ("json", "CSV", "txt"):
        benchmark.save_benchmark_results(str(base), file_format)
    assert json.loads((tmp_path / "out" / "results.json").read_text()) == results
    with open(tmp_path / "out" / "results.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows == [list(results), [str(value) for value in results.values()]]
    lines = (tmp_path / "out" / "results.txt").read_text().splitlines()
    assert lines == [f"{key}: {value}" for key, value in results.items()]
    assert "Results saved to" in capsys.readouterr().out
    with pytest.raises(ValueError, match="Unsupported file format: xml"):
        benchmark.save_benchmark_results(str(base), "xml")  # type: ignore[arg-type]


def test_regression_figures_against_torchmetrics():
    """Where NeuroBench's conventions meet torchmetrics': MSE equals MeanSquaredError when
    every sample is seen and has as many elements, sMAPE is 100 x torchmetrics' fraction
    without 0 / 0, and R2 is R2Score's uniform average over the first two columns."""
    import torchmetrics

    gen = torch.Generator().manual_seed(11)
    preds, labels = torch.rand(9, 3, generator=gen) + 0.1, torch.rand(9, 3, generator=gen) * 2
    loader = DataLoader(TensorDataset(preds, labels), batch_size=4)  # 4, 4, 1
    metrics = [[], ["mse", "sMAPE", "r2"]]
    results = Benchmark(nn.Identity(), loader, [], [], metrics).run(quiet=True)
    mse = torchmetrics.MeanSquaredError()(preds, labels)
    smape = torchmetrics.SymmetricMeanAbsolutePercentageError()(preds, labels)
    r2 = torchmetrics.R2Score()(preds[:, :2], labels[:, :2])
    assert results["mse"] == pytest.approx(float(mse), rel=1e-6)
    assert results["sMAPE"] == pytest.approx(100 * float(smape), rel=1e-6)
    assert results["r2"] == pytest.approx(float(r2), rel=1e-5)  # R2Score sums in float32
    y, p = labels[:, :2].double(), preds[:, :2].double()  # two passes in float64
    exact = (1 - ((y - p) ** 2).sum(0) / ((y - y.mean(0)) ** 2).sum(0)).mean()
    assert results["r2"] == pytest.approx(float(exact), rel=1e-12)
