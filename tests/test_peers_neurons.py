"""Neuron metrics against what sinabs, spikingjelly and NIR-imported models report themselves.

Each test builds a model on which the peer's definition and ours coincide and converts
units explicitly:

* sinabs' ``SNNAnalyzer`` gives per spiking layer ``firing_rate``, the mean of the
  layer's output over batch, time and neurons, and ``firing_rate_per_neuron``, the mean
  over batch and time; its model ``firing_rate`` is the mean over the neurons of all
  layers. The output is a spike *count*, ours counts outputs that are nonzero, so the
  neurons emit single spikes (``SingleSpike``); with ``MultiSpike`` ours is the fraction of
  steps with a spike and sinabs' the mean count (checked too).
* spikingjelly has no rate or sparsity function; its monitors record each neuron layer's
  output (``OutputMonitor``) and membrane (``AttributeMonitor``), and the expected figures
  are counted from those records.
* a NIR graph imported into sinabs, norse and snnTorch (``nirtorch`` graph executors) is
  made of those frameworks' ordinary neuron modules: each is watched and checked against
  spikes and membranes recorded from it.

The peers are installed with ``pip install --no-deps`` (sinabs 3.1.3 also needs ``nir``,
``nirtorch``, ``pbr`` and ``h5py``; spikingjelly 2.0.0 needs ``loguru``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

import snnmetrics as sm

pytestmark = [
    pytest.mark.optional,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:.*pkg_resources.*:UserWarning"),
]

B, T = 3, 5


@pytest.fixture(scope="module")
def spikingjelly():
    pytest.importorskip(
        "spikingjelly.activation_based.neuron",
        reason="spikingjelly not installed: pip install --no-deps spikingjelly==2.0.0 loguru",
    )
    return pytest.importorskip(
        "spikingjelly.activation_based.monitor",
        reason="spikingjelly's monitors import torch.utils.tensorboard: pip install tensorboard",
    )


def spikes(shape: tuple[int, ...], seed: int, p: float = 0.4) -> torch.Tensor:
    return (torch.rand(shape, generator=torch.Generator().manual_seed(seed)) < p).float()


def brute_membrane_updates(membranes: torch.Tensor) -> int:
    """Every neuron at the first step, then those whose membrane changed ([T, ...])."""
    count = membranes[0].numel()
    for t in range(1, membranes.shape[0]):
        count += int((membranes[t] != membranes[t - 1]).sum())
    return count


# ----------------------------------------------------------------------------- sinabs


def sinabs_net(sinabs, spike_fn: Any) -> nn.Sequential:
    layers = sinabs.layers
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        layers.IAFSqueeze(batch_size=B, spike_fn=spike_fn),
        nn.Conv2d(4, 4, 3, stride=2, padding=1),
        layers.LIFSqueeze(tau_mem=4.0, norm_input=False, batch_size=B, spike_fn=spike_fn),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 6),
        layers.IAFSqueeze(batch_size=B, spike_fn=spike_fn),
    )
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                module.weight.mul_(4.0)
    return net


def reset_sinabs(sinabs, net: nn.Module) -> None:
    for module in net.modules():
        if isinstance(module, sinabs.layers.StatefulLayer):
            module.reset_states()


@pytest.mark.parametrize("average", [False, True])
def test_sinabs_analyzer_firing_rates_equal_ours(sinabs, average):
    from sinabs.activation import SingleSpike

    net = sinabs_net(sinabs, SingleSpike)
    batches = [spikes((B * T, 2, 8, 8), seed=s) for s in (1, 2)]  # squeezed [B*T, ...]
    analyzer = sinabs.SNNAnalyzer(net)
    for x in batches:
        reset_sinabs(sinabs, net)
        net(x)
    layer_stats = analyzer.get_layer_statistics(average=average)["spiking"]
    model_rate = float(analyzer.get_model_statistics(average=average)["firing_rate"].detach())
    analyzer.reset()
    for handle in analyzer.handles:  # leave only our hooks on the net
        handle.remove()
    with sm.FiringRate(net) as rates:
        # the analyzer's plain figures are those of the last batch
        for x in batches if average else batches[-1:]:
            reset_sinabs(sinabs, net)
            net(x)
            rates.update(batch_size=B)
        ours = rates.compute()
    assert set(ours) == set(layer_stats) == {"1", "3", "6"}
    neurons = total = 0.0
    for name, layer in ours.items():
        theirs = {key: value.detach() for key, value in layer_stats[name].items() if "rate" in key}
        assert 0 < float(theirs["firing_rate"]) < 1
        # sinabs averages in float32
        assert float(layer["mean"]) == pytest.approx(float(theirs["firing_rate"]), rel=1e-6)
        torch.testing.assert_close(
            layer["rates"], theirs["firing_rate_per_neuron"].double(), rtol=1e-6, atol=1e-7
        )
        neurons += layer["rates"].numel()
        total += float(layer["rates"].sum())
    # the model figure: the mean over every neuron of every layer, not over layer means
    assert total / neurons == pytest.approx(model_rate, rel=1e-6)


def test_sinabs_hooks_firing_rates_equal_ours(sinabs):
    from sinabs.activation import SingleSpike
    from sinabs.hooks import firing_rate_hook, firing_rate_per_neuron_hook

    net = sinabs_net(sinabs, SingleSpike)
    x = spikes((B * T, 2, 8, 8), seed=3)
    for module in net.modules():
        if isinstance(module, sinabs.layers.StatefulLayer):
            module.register_forward_hook(firing_rate_hook)
            module.register_forward_hook(firing_rate_per_neuron_hook)
    with sm.FiringRate(net) as rates:
        net(x)
        rates.update(batch_size=B)
        ours = rates.compute()
    for name, layer in ours.items():
        data = net.get_submodule(name).hook_data
        assert float(layer["mean"]) == pytest.approx(float(data["firing_rate"].detach()), rel=1e-6)
        torch.testing.assert_close(
            layer["rates"], data["firing_rate_per_neuron"].detach().double(), rtol=1e-6, atol=1e-7
        )


def test_sinabs_multi_spike_counts_differ_from_ours(sinabs):
    # MultiSpike emits floor(v / threshold) spikes per step: sinabs' rate is the mean count,
    # ours the fraction of steps with a spike
    layer = sinabs.layers.IAF()  # [B, T, N]
    x = torch.rand(B, T, 6, generator=torch.Generator().manual_seed(4)) * 3
    with sm.FiringRate(layer) as rates:
        out = layer(x)
        rates.update()
        ours = float(rates.compute()[""]["mean"])
    assert int(out.max()) > 1  # some steps carry several spikes
    assert ours == pytest.approx(float((out > 0).double().mean()), abs=1e-15)
    assert float(layer.firing_rate) == pytest.approx(float(out.mean()))  # sinabs' own figure
    assert ours < float(layer.firing_rate)


# ----------------------------------------------------------------------------- spikingjelly


def spikingjelly_net() -> nn.Sequential:
    from spikingjelly.activation_based import layer, neuron

    torch.manual_seed(5)
    net = nn.Sequential(
        layer.Linear(8, 6, step_mode="m"),
        neuron.IFNode(step_mode="m", store_v_seq=True),
        layer.Linear(6, 6, step_mode="m"),
        neuron.LIFNode(tau=2.0, v_reset=None, step_mode="m", store_v_seq=True),
        layer.Linear(6, 4, step_mode="m"),
        neuron.ParametricLIFNode(step_mode="m", store_v_seq=True),
    )
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.Linear):
                module.weight.mul_(3.0)
    return net


def test_spikingjelly_monitors_equal_ours(spikingjelly):
    from spikingjelly.activation_based import functional, neuron

    monitor = spikingjelly
    net = spikingjelly_net()
    batches = [spikes((T, B, 8), seed=s) for s in (6, 7)]  # multi-step: [T, B, ...]
    metrics = (
        sm.FiringRate(net),
        sm.ActivationSparsity(net, by_layer=True),
        sm.MembraneUpdates(net),
        sm.NeuronOperations(net),
    )
    outputs = monitor.OutputMonitor(net, neuron.BaseNode)
    voltages = monitor.AttributeMonitor("v_seq", False, net, neuron.BaseNode)
    with torch.no_grad():
        for x in batches:
            net(x)
            functional.reset_net(net)  # the next batch starts afresh
            for metric in metrics:
                metric.update(batch_size=B)
    rates, sparsity, updates, ops = metrics
    got_rates = rates.compute()
    got_sparsity = sparsity.compute()
    got_updates = updates.compute_per_layer()
    got_ops = ops.compute_per_layer()
    assert isinstance(got_sparsity, dict)
    cost = {"1": 5, "3": 6, "5": 8}  # IF hard reset, LIF soft reset, PLIF hard reset
    assert ops.costs == cost
    for name in ("1", "3", "5"):
        recorded = torch.stack(outputs[name])  # [batches, T, B, N]
        fired = (recorded != 0).double()
        assert 0 < float(fired.mean()) < 1
        expected_rates = fired.sum((0, 1, 2)) / (len(batches) * T * B)
        torch.testing.assert_close(got_rates[name]["rates"], expected_rates, rtol=0, atol=0)
        assert float(got_sparsity[name]) == 1 - float(fired.mean())
        # each batch starts from a fresh v: all neurons at its first step, then changes
        changed = sum(brute_membrane_updates(v_seq) for v_seq in voltages[name])
        assert float(got_updates[name]) == changed / (len(batches) * B)
        assert float(got_ops[name]["effective"]) == changed * cost[name] / (len(batches) * B)
        assert float(got_ops[name]["dense"]) == T * recorded.shape[-1] * cost[name]


# ----------------------------------------------------------------------------- NIR


def nir_graph() -> Any:
    """Affine -> LIF -> Affine -> LIF, with a short membrane time constant."""
    nir = pytest.importorskip("nir", reason="nir not installed: pip install nir nirtorch")
    import numpy as np

    gen = np.random.default_rng(0)

    def lif(n: int) -> Any:
        return nir.LIF(
            tau=np.full(n, 2e-4, np.float32),
            r=np.ones(n, np.float32),
            v_leak=np.zeros(n, np.float32),
            v_threshold=np.ones(n, np.float32),
        )

    def affine(n_out: int, n_in: int) -> Any:
        weight = gen.normal(size=(n_out, n_in)).astype(np.float32)
        return nir.Affine(weight=weight, bias=np.zeros(n_out, np.float32))

    return nir.NIRGraph.from_list(affine(5, 4), lif(5), affine(3, 5), lif(3))


def run_sinabs(model: nn.Module, x: torch.Tensor) -> None:
    model(x.transpose(0, 1).flatten(0, 1))  # squeezed, sample-major [B * T, ...]


def run_norse(model: nn.Module, x: torch.Tensor) -> None:
    state = None
    for t in range(x.shape[0]):
        _, state = model(x[t], state)


def run_snntorch(model: nn.Module, x: torch.Tensor) -> None:
    for t in range(x.shape[0]):
        model(x[t])


def import_sinabs(graph: Any) -> nn.Module:
    from sinabs.nir import from_nir

    model = from_nir(graph, batch_size=B)
    for module in model.modules():
        if hasattr(module, "record_states"):
            module.record_states = True  # membranes after every step, for the exact count
    return model


def import_norse(graph: Any) -> nn.Module:
    pytest.importorskip("norse.torch", reason="norse not installed: pip install norse")
    from norse.torch import from_nir

    return from_nir(graph)


def import_snntorch(graph: Any) -> nn.Module:
    from snntorch.import_nir import import_from_nir

    return import_from_nir(graph)


def sinabs_membranes(module: nn.Module, output: Any) -> list[torch.Tensor]:
    return list(module.recordings["v_mem"].transpose(0, 1))  # [B, T, ...] -> per step


def norse_membranes(module: nn.Module, output: Any) -> list[torch.Tensor]:
    return [output[1].v]


def snntorch_membranes(module: nn.Module, output: Any) -> list[torch.Tensor]:
    return [module.mem]


IMPORTS: dict[str, tuple[Callable[..., Any], ...]] = {
    # framework: (import, run over [T, B, ...], read membranes, neuron type, cost)
    "sinabs": (import_sinabs, run_sinabs, sinabs_membranes, "LIFSqueeze", 4),
    "norse": (import_norse, run_norse, norse_membranes, "LIFBoxCell", 9),
    "snntorch": (import_snntorch, run_snntorch, snntorch_membranes, "Leaky", 4),
}


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("framework", list(IMPORTS))
def test_nir_imported_models_are_watched(framework, capsys):
    pytest.importorskip("nirtorch", reason="nirtorch not installed: pip install nirtorch")
    pytest.importorskip(framework, reason=f"{framework} not installed")
    importer, run, read_membranes, neuron_type, cost = IMPORTS[framework]
    model = importer(nir_graph())
    capsys.readouterr()  # snnTorch's importer prints its weight scaling
    found = {name: type(module).__name__ for name, module, _ in sm.neurons.find_neurons(model)}
    assert found == {"lif": neuron_type, "lif_1": neuron_type}
    recorded: dict[str, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}

    def record(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            spikes_out = output[0] if isinstance(output, tuple) else output
            spike_list, membrane_list = recorded.setdefault(name, ([], []))
            spike_list.append(spikes_out.detach().clone())
            membrane_list.extend(v.detach().clone() for v in read_membranes(module, output))

        return hook

    for name in found:
        model.get_submodule(name).register_forward_hook(record(name))
    x = spikes((T, B, 4), seed=8, p=0.6) * 3
    rates, updates, ops = (
        sm.FiringRate(model),
        sm.MembraneUpdates(model),
        sm.NeuronOperations(model),
    )
    with torch.no_grad():
        run(model, x)
    for metric in (rates, updates, ops):
        metric.update(batch_size=B)
    assert ops.costs == {"lif": cost, "lif_1": cost}
    got_rates, got_updates = rates.compute(), updates.compute_per_layer()
    for name, (spike_list, membrane_list) in recorded.items():
        fired = (torch.cat(spike_list) != 0).double()  # rows: samples x steps
        assert 0 < float(fired.mean()) < 1
        torch.testing.assert_close(got_rates[name]["rates"], fired.sum(0) / (T * B), rtol=0, atol=0)
        changed = brute_membrane_updates(torch.stack(membrane_list))
        assert float(got_updates[name]) == changed / B
