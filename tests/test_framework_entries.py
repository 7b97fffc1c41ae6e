"""Entries for optional frameworks: never imported by snnmetrics, registered once imported."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest
import torch
from torch import nn

from snnmetrics import SynapticOperations, connections

FRAMEWORKS = ("spikingjelly", "sinabs", "norse")
SPIKINGJELLY = "spikingjelly.activation_based.layer"


def test_importing_snnmetrics_imports_no_framework():
    # nor does looking up connection and neuron rules, which registers framework entries
    code = (
        "import sys, snnmetrics, snnmetrics.recurrent, snnmetrics.tracking.call\n"
        "import snntorch, torch\n"
        "net = torch.nn.Sequential(torch.nn.Linear(2, 2), snntorch.Leaky(beta=0.5))\n"
        "snnmetrics.SynapticOperations(net); snnmetrics.NeuronOperations(net)\n"
        f"print([m for m in sys.modules if m.split('.')[0] in {FRAMEWORKS!r}])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


class FakeDropConnect(nn.Module):
    """Stands for spikingjelly's DropConnectLinear: a Linear's weight, no nn.Linear base."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.tensor([[1.0, 0.0, 2.0], [0.0, 0.0, 3.0]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.weight)


def test_framework_entries_register_once_the_framework_is_imported(monkeypatch):
    monkeypatch.setattr(connections.REGISTRY, "rules", dict(connections.REGISTRY.rules))
    monkeypatch.setattr(connections.REGISTRY, "pending", {SPIKINGJELLY})
    monkeypatch.delitem(sys.modules, SPIKINGJELLY, raising=False)
    layer = FakeDropConnect()
    assert connections.connection_rule(layer) is None  # "spikingjelly" not imported yet
    fake = types.ModuleType(SPIKINGJELLY)
    fake.DropConnectLinear = FakeDropConnect  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, SPIKINGJELLY, fake)
    assert connections.connection_rule(layer) is not None
    with SynapticOperations(layer) as synops:
        layer(torch.tensor([[1.0, 1.0, 0.0]]))  # inputs 0, 1: weights in column 0 only
        synops.update()
        assert float(synops.compute()["effective_acs"]) == 1.0
    assert not connections.REGISTRY.pending  # registered once


def test_a_users_entry_is_kept(monkeypatch):
    monkeypatch.setattr(connections.REGISTRY, "rules", dict(connections.REGISTRY.rules))
    monkeypatch.setattr(connections.REGISTRY, "pending", {SPIKINGJELLY})
    mine = connections.ConnectionRule(
        feature_dims=lambda layer: 1, apply=lambda layer, x, w: nn.functional.linear(x, w)
    )
    connections.register_connection(FakeDropConnect, mine)
    fake = types.ModuleType(SPIKINGJELLY)
    fake.DropConnectLinear = FakeDropConnect  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, SPIKINGJELLY, fake)
    assert connections.connection_rule(FakeDropConnect()) is mine


@pytest.mark.optional
def test_norse_cells_count_input_and_recurrent_weights():
    norse = pytest.importorskip("norse.torch", reason="norse not installed: pip install norse")
    torch.manual_seed(0)
    net = nn.ModuleDict(
        {"lif": norse.LIFRecurrentCell(5, 4), "readout": norse.LILinearCell(4, 2)}
    )
    with torch.no_grad():
        net["lif"].input_weights.mul_(4.0 * (torch.rand(4, 5) > 0.3))
        net["lif"].recurrent_weights.mul_(4.0)  # diagonal zero: no autapses
    x = (torch.rand(3, 6, 5, generator=torch.Generator().manual_seed(1)) < 0.5).float()
    expected = {"lif": 0, "readout": 0}
    dense = recurrent = 0
    with SynapticOperations(net) as synops:
        state, readout_state = None, None
        for t in range(x.shape[1]):
            w_in, w_rec = net["lif"].input_weights, net["lif"].recurrent_weights
            pairs = (x[:, t] != 0).double() @ (w_in != 0).double().T
            dense += 3 * 4 * 5
            if state is not None:  # the previous step's spikes reach every unit they connect
                from_spikes = (state.z != 0).double() @ (w_rec != 0).double().T
                recurrent += int(from_spikes.sum())
                pairs = pairs + from_spikes
                dense += 3 * 4 * 4
            expected["lif"] += int(pairs.sum())
            z, state = net["lif"](x[:, t], state)
            w_out = net["readout"].input_weights
            expected["readout"] += int(((z != 0).double() @ (w_out != 0).double().T).sum())
            dense += 3 * 2 * 4
            _, readout_state = net["readout"](z, readout_state)
        synops.update()
        per_layer = synops.compute_per_layer()
        got = {name: float(layer["synops"]) * 3 for name, layer in per_layer.items()}
        assert float(synops.compute()["dense"]) * 3 == dense
    assert recurrent > 0 and expected["readout"] > 0
    assert got == expected
