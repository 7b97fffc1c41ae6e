"""Neuron-side figures equal NeuroBench 2.3.0's on random snnTorch models.

Both measure the same run: NeuroBench's hooks (through its ``SNNTorchModel``, which resets
the neurons before each batch) and ours watch the same network at the same time.
"""

from __future__ import annotations

import pytest
import snntorch as snn
import torch
from torch import nn

import snnmetrics as sm

pytestmark = pytest.mark.optional

nb_models = pytest.importorskip(
    "neurobench.models", reason="compares against NeuroBench 2.3.0 (pip install neurobench)"
)
nb_workload = pytest.importorskip(
    "neurobench.metrics.workload", reason="compares against NeuroBench 2.3.0's workload metrics"
)

BATCH_SIZES = (3, 5, 2)
STEPS = 7


def make_neuron(kind: str, reset: str, features: int, output: bool = False) -> nn.Module:
    kw = {"reset_mechanism": reset, "init_hidden": True, "output": output}
    if kind == "Leaky":
        return snn.Leaky(beta=0.8, **kw)
    if kind == "Synaptic":
        return snn.Synaptic(alpha=0.7, beta=0.8, **kw)
    if kind == "Lapicque":
        return snn.Lapicque(beta=0.8, **kw)
    if kind == "Alpha":
        return snn.Alpha(alpha=0.9, beta=0.7, **kw)
    if kind == "RLeaky":
        return snn.RLeaky(beta=0.8, linear_features=features, **kw)
    return snn.RSynaptic(alpha=0.7, beta=0.8, linear_features=features, **kw)


class Net(nn.Module):
    """Linear -> neuron -> Linear -> ReLU/Sigmoid -> Linear -> neuron; returns (spk, mem)."""

    def __init__(self, kind: str, reset: str, activation: nn.Module, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        # no bias: a neuron with no input keeps its membrane, so updates < dense
        self.fc1 = nn.Linear(8, 6, bias=False)
        self.lif1 = make_neuron(kind, reset, 6)
        self.fc2 = nn.Linear(6, 5, bias=False)
        self.act = activation
        self.fc3 = nn.Linear(5, 4, bias=False)
        self.lif2 = make_neuron(kind, reset, 4, output=True)
        for lif in (self.lif1, self.lif2):
            if kind.startswith("R"):
                nn.init.zeros_(lif.recurrent.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.lif1(self.fc1(x))
        out = self.lif2(self.fc3(self.act(self.fc2(hidden))))
        return out[0], out[-1]


def compare(kind: str, reset: str, activation: nn.Module, seed: int, neuron_ops: bool) -> None:
    net = Net(kind, reset, activation, seed)
    ours = {
        "updates": sm.MembraneUpdates(net),
        "sparsity": sm.ActivationSparsity(net),
        "by_layer": sm.ActivationSparsity(net, by_layer=True),
    }
    if neuron_ops:
        ours["ops"] = sm.NeuronOperations(net)
    model = nb_models.SNNTorchModel(net)
    model.register_hooks()
    theirs = {
        "updates": nb_workload.MembraneUpdates(),
        "by_layer": nb_workload.ActivationSparsityByLayer(),
        "ops": nb_workload.NeuronOperations(),
    }
    sparsity = nb_workload.ActivationSparsity()
    gen = torch.Generator().manual_seed(seed)
    results: dict[str, object] = {}
    weighted_sparsity = 0.0
    for size in BATCH_SIZES:
        x = torch.rand(size, STEPS, 8, generator=gen) * 2
        x *= torch.rand(x.shape, generator=gen) < 0.5
        x[:, :3] *= torch.rand(size, 1, 1, generator=gen) < 0.5  # some samples start late
        data = (x, torch.zeros(size))
        preds = model(x)
        for name, metric in theirs.items():
            if name != "ops" or neuron_ops:
                results[name] = metric(model, preds, data)
        # NeuroBench combines its per-batch ActivationSparsity weighted by batch size
        weighted_sparsity += sparsity(model, preds, data) * size / sum(BATCH_SIZES)
        model.reset_hooks()
        for metric in ours.values():
            metric.update()

    assert float(ours["updates"].compute()) == pytest.approx(results["updates"], rel=1e-12)
    assert float(ours["sparsity"].compute()) == pytest.approx(weighted_sparsity, rel=1e-12)
    by_layer = {name: float(value) for name, value in ours["by_layer"].compute().items()}
    assert by_layer == pytest.approx(results["by_layer"], rel=1e-12)
    if neuron_ops:
        ops = ours["ops"].compute()
        expected = results["ops"]
        assert float(ops["effective"]) == pytest.approx(expected["Effective Neuron Ops"], rel=1e-12)
        assert float(ops["dense"]) == pytest.approx(expected["Neuron Dense Ops"], rel=1e-12)
    dense = STEPS * (6 + 4)  # neurons x steps per sample
    assert 0 < results["updates"] < dense  # the comparison sees unchanged membranes
    for metric in ours.values():
        metric.detach()
    model.cleanup_hooks()


ACTIVATIONS = {"identity": nn.Identity, "relu": nn.ReLU, "sigmoid": nn.Sigmoid}


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("kind", ["Leaky", "Synaptic", "Lapicque", "Alpha"])
def test_against_neurobench(kind, reset, activation):
    # NeuroBench's NeuronOperations fails on a model with a ReLU or Sigmoid (it asks every
    # activation for its reset mechanism): neuron operations compare on spiking-only models
    seed = list(ACTIVATIONS).index(activation)
    compare(kind, reset, ACTIVATIONS[activation](), seed, neuron_ops=activation == "identity")


@pytest.mark.parametrize("kind", ["RLeaky", "RSynaptic"])
def test_recurrent_neurons_against_neurobench(kind):
    # NeuroBench has no op cost for RLeaky/RSynaptic (KeyError); the rest compares
    compare(kind, "subtract", nn.ReLU(), 2, neuron_ops=False)
