"""Neurons of optional frameworks: registered once imported, read right in every step mode,
and costed from their update equations (derivations in ``snnmetrics.neurons``).

Expected figures are worked out by hand (see the comments) or counted by plain loops over
the spikes and membranes recorded from the neuron itself. Each framework's tests skip when
it is not installed (``pip install --no-deps spikingjelly==2.0.0 loguru``, ``sinabs==3.1.3
nir nirtorch pbr h5py``, ``norse``).
"""

from __future__ import annotations

import sys
import types
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import snnmetrics as sm
from snnmetrics import neurons
from snnmetrics.neurons import find_neurons, neuron_cost

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:.*pkg_resources.*:UserWarning"),
]

SPIKINGJELLY = "spikingjelly.activation_based.neuron"

# 1 sample of 3 neurons for 4 steps, the same input at every step; threshold 1
DRIVE = torch.tensor([0.6, 0.0, 0.3])
T = 4


def brute_membrane_updates(start: torch.Tensor | None, membranes: torch.Tensor) -> int:
    """Every neuron at the first step (or those that left ``start``), then the changed ones."""
    first = membranes[0]
    count = first.numel() if start is None else int((first != start).sum())
    for t in range(1, membranes.shape[0]):
        count += int((membranes[t] != membranes[t - 1]).sum())
    return count


def watch(net: nn.Module) -> dict[str, sm.HookedMetric]:
    return {
        "updates": sm.MembraneUpdates(net),
        "ops": sm.NeuronOperations(net),
        "sparsity": sm.ActivationSparsity(net),
        "rates": sm.FiringRate(net),
    }


def fold(metrics: dict[str, sm.HookedMetric], batch_size: int | None = None) -> dict[str, object]:
    """Update every metric and return its figures as floats (rates as a list)."""
    for metric in metrics.values():
        metric.update(batch_size=batch_size)
    ops = metrics["ops"].compute()
    rates = metrics["rates"].compute()
    assert isinstance(ops, dict) and isinstance(rates, dict)
    return {
        "updates": float(metrics["updates"].compute()),  # type: ignore[arg-type]
        "effective": float(ops["effective"]),
        "dense": float(ops["dense"]),
        "sparsity": float(metrics["sparsity"].compute()),  # type: ignore[arg-type]
        "rates": next(iter(rates.values()))["rates"].tolist(),
    }


# ----------------------------------------------------------------------------- registry


class FakeNode(nn.Module):
    """Stands for spikingjelly's BaseNode: integrate, spike at 1, reset to 0; ``v`` starts as
    a number."""

    def __init__(self) -> None:
        super().__init__()
        self.step_mode = "s"
        self.v: float | torch.Tensor = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = self.v + x
        spikes = (v >= 1).float()
        self.v = v * (1 - spikes)
        return spikes


def test_entries_register_once_the_framework_is_imported(monkeypatch):
    monkeypatch.setattr(neurons.REGISTRY, "rules", dict(neurons.REGISTRY.rules))
    monkeypatch.setattr(neurons.REGISTRY, "pending", {SPIKINGJELLY})
    monkeypatch.delitem(sys.modules, SPIKINGJELLY, raising=False)
    net = nn.Sequential(FakeNode())
    assert find_neurons(net) == []  # "spikingjelly" not imported yet
    fake = types.ModuleType(SPIKINGJELLY)
    fake.BaseNode = FakeNode  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, SPIKINGJELLY, fake)
    assert [name for name, _, _ in find_neurons(net)] == ["0"]
    with sm.MembraneUpdates(net) as updates, sm.FiringRate(net) as rates:
        for _ in range(T):
            net(DRIVE[None])
        updates.update()
        rates.update()
        # v of neuron 0: 0.6, 0 (spike), 0.6, 0 (spike); neuron 1 stays 0; neuron 2: 0.3,
        # 0.6, 0.9, 0 (spike): 3 at the first step + 3 + 0 + 3 after it
        assert float(updates.compute()) == 9
        assert rates.compute()["0"]["rates"].tolist() == [0.5, 0.0, 0.25]
    assert not neurons.REGISTRY.pending  # registered once
    with pytest.raises(ValueError, match="no operation cost is known for neuron type FakeNode"):
        sm.NeuronOperations(net)  # a class outside spikingjelly gets no built-in cost


def test_a_users_entry_is_kept(monkeypatch):
    monkeypatch.setattr(neurons.REGISTRY, "rules", dict(neurons.REGISTRY.rules))
    monkeypatch.setattr(neurons.REGISTRY, "pending", {SPIKINGJELLY})
    mine = sm.NeuronRule(spikes=lambda module, output: output, cost=1)
    sm.register_neuron(FakeNode, mine)
    fake = types.ModuleType(SPIKINGJELLY)
    fake.BaseNode = FakeNode  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, SPIKINGJELLY, fake)
    assert neurons.neuron_rule(FakeNode()) is mine


# ----------------------------------------------------------------------------- spikingjelly


@pytest.fixture(scope="module")
def sj():
    pytest.importorskip(
        SPIKINGJELLY, reason="spikingjelly not installed: pip install --no-deps spikingjelly loguru"
    )
    from spikingjelly.activation_based import functional, neuron

    return SimpleNamespace(functional=functional, neuron=neuron)


def sj_nodes(sj, store_v_seq: bool = False) -> dict[str, nn.Module]:
    n = sj.neuron
    return {
        "IF-hard": n.IFNode(store_v_seq=store_v_seq),
        "IF-soft": n.IFNode(v_reset=None, store_v_seq=store_v_seq),
        "LIF-hard": n.LIFNode(tau=2.0, store_v_seq=store_v_seq),
        "LIF-soft": n.LIFNode(tau=2.0, v_reset=None, decay_input=False, store_v_seq=store_v_seq),
        "PLIF-hard": n.ParametricLIFNode(store_v_seq=store_v_seq),
    }


SJ_COSTS = {"IF-hard": 5, "IF-soft": 3, "LIF-hard": 8, "LIF-soft": 6, "PLIF-hard": 8}


@pytest.mark.optional
def test_spikingjelly_if_node_by_hand(sj):
    # IFNode (threshold 1, hard reset to 0) driven by DRIVE: as FakeNode above, 9 updates,
    # rates [1/2, 0, 1/4]; 5 operations per update (charge 1, hard reset 4)
    expected = {
        "updates": 9.0,
        "effective": 45.0,
        "dense": 60.0,  # 3 neurons x 4 steps x 5
        "sparsity": 9 / 12,
        "rates": [0.5, 0.0, 0.25],
    }
    x = DRIVE.expand(T, 1, 3)
    single = nn.Sequential(sj.neuron.IFNode())  # one call per step: [B, N]
    metrics = watch(single)
    for t in range(T):
        single(x[t])
    assert fold(metrics) == expected
    multi = nn.Sequential(sj.neuron.IFNode(step_mode="m", store_v_seq=True))  # [T, B, N]
    metrics = watch(multi)
    multi(x)
    assert fold(metrics, batch_size=1) == expected
    # without v_seq only the final v is seen: every neuron at every step, with a warning
    plain = nn.Sequential(sj.neuron.IFNode(step_mode="m"))
    metrics = watch(plain)
    with pytest.warns(UserWarning, match=r"IFNode ran 4 steps.*store_v_seq=True"):
        plain(x)
    assert fold(metrics, batch_size=1) == {**expected, "updates": 12.0, "effective": 60.0}


@pytest.mark.optional
@pytest.mark.parametrize("kind", list(SJ_COSTS))
def test_spikingjelly_multi_step_equals_single_step(sj, kind):
    gen = torch.Generator().manual_seed(list(SJ_COSTS).index(kind))
    steps, batch, n = 6, 3, 5
    x = torch.rand(steps, batch, n, generator=gen) * 1.5
    x *= torch.rand(steps, batch, n, generator=gen) < 0.6
    # single step, v recorded after every call
    node = sj_nodes(sj)[kind]
    net = nn.Sequential(node)
    metrics = watch(net)
    spikes, membranes = [], []
    with torch.no_grad():
        for t in range(steps):
            spikes.append(net(x[t]))
            membranes.append(node.v.clone())
    got_single = fold(metrics)
    spike_record, membrane_record = torch.stack(spikes), torch.stack(membranes)
    updates = brute_membrane_updates(None, membrane_record)
    rates = (spike_record != 0).double().sum((0, 1)) / (steps * batch)
    assert got_single["updates"] == updates / batch
    assert got_single["effective"] == updates * SJ_COSTS[kind] / batch
    assert got_single["dense"] == steps * n * SJ_COSTS[kind]
    assert got_single["rates"] == rates.tolist()
    # multi step with store_v_seq: the same figures, and the same v per step
    node = sj_nodes(sj, store_v_seq=True)[kind]
    sj.functional.set_step_mode(node, "m")
    net = nn.Sequential(node)
    metrics = watch(net)
    with torch.no_grad():
        assert torch.equal(net(x), spike_record)
    assert torch.equal(node.v_seq, membrane_record)
    assert fold(metrics, batch_size=batch) == got_single


@pytest.mark.optional
def test_spikingjelly_state_carried_across_calls_and_windows(sj):
    gen = torch.Generator().manual_seed(11)
    steps, batch, n = 6, 2, 5
    x = torch.rand(2 * steps, batch, n, generator=gen) * (
        torch.rand(2 * steps, batch, n, generator=gen) < 0.5
    )
    node = sj.neuron.LIFNode(tau=2.0, step_mode="m", store_v_seq=True)
    net = nn.Sequential(node)
    updates = sm.MembraneUpdates(net)
    windows = []
    with torch.no_grad():
        for window in (x[:steps], x[steps:]):  # the state goes on into the second window
            # two calls of half the steps each in a window: the second continues the first
            v_seqs = []
            for half in window.chunk(2):
                net(half)
                v_seqs.append(node.v_seq.clone())
            updates.update(batch_size=batch)
            windows.append(torch.cat(v_seqs))
    # each window counts every neuron at its first step, then the changed ones
    expected = sum(brute_membrane_updates(None, v_seq) for v_seq in windows)
    assert float(updates.compute()) == expected / (2 * batch)


@pytest.mark.optional
def test_spikingjelly_multi_step_sample_count_is_dim_0(sj):
    # a [T, B, ...] call: dim 0 is T, so update() counts T samples; pass batch_size=B
    steps, batch = 4, 2
    x = DRIVE.expand(steps, batch, 3)
    net = nn.Sequential(sj.neuron.IFNode(step_mode="m", store_v_seq=True))
    default, explicit = sm.MembraneUpdates(net), sm.MembraneUpdates(net)
    rates = sm.FiringRate(net)
    net(x)
    default.update()
    explicit.update(batch_size=batch)
    rates.update()
    # per sample: the 9 updates of the hand count above; in total 9 x 2 = 18
    assert float(default.samples) == steps and float(default.compute()) == 18 / steps
    assert float(explicit.compute()) == 9
    # rates divide by sample-steps seen (T x B), whatever the sample count
    assert rates.compute()["0"]["rates"].tolist() == [0.5, 0.0, 0.25]


@pytest.mark.optional
def test_spikingjelly_costs(sj):
    n = sj.neuron
    for kind, node in sj_nodes(sj).items():
        assert neuron_cost(node) == SJ_COSTS[kind], kind
    assert neuron_cost(n.LIFNode(decay_input=False)) == 8
    assert neuron_cost(n.SimpleIFNode()) == 5
    assert neuron_cost(n.SimpleIFNode(v_reset=None)) == 3
    assert neuron_cost(n.SimpleLIFNode(tau=2.0, decay_input=True)) == 8

    class MyLIF(n.LIFNode):  # may change the equations: no built-in cost
        pass

    for node in (MyLIF(), n.QIFNode()):
        with pytest.raises(
            ValueError, match=f"no operation cost is known for neuron type {type(node).__name__}"
        ):
            neuron_cost(node)
    assert neuron_cost(MyLIF(), {"MyLIF": 7}) == 7


@pytest.mark.optional
def test_spikingjelly_unknown_neuron_names_the_type(sj):
    net = nn.Sequential(sj.neuron.IFNode(), sj.neuron.PSN(T=4))
    with pytest.raises(TypeError, match=r"(?s)PSN \(layer '1'\).*register_neuron"):
        sm.FiringRate(net)
    # non-spiking read-outs are neither neurons nor errors
    readout = nn.Sequential(sj.neuron.IFNode(), sj.neuron.NonSpikingLIFNode(tau=2.0))
    assert [name for name, _, _ in find_neurons(readout)] == ["0"]


# ----------------------------------------------------------------------------- sinabs


@pytest.fixture(scope="module")
def sinabs():
    return pytest.importorskip(
        "sinabs.layers",
        reason="sinabs not installed: pip install --no-deps sinabs==3.1.3 nir nirtorch pbr h5py",
    )


@pytest.mark.optional
def test_sinabs_iaf_by_hand(sinabs):
    from sinabs.activation import SingleSpike

    # IAF, threshold 1, subtract reset; DRIVE at each step: v of neuron 0 is 0.6, 1.2 ->
    # spike -> 0.2, 0.8, 1.4 -> spike -> 0.4 (changes every step); neuron 1 stays 0;
    # neuron 2: 0.3, 0.6, 0.9, 1.2 -> spike -> 0.2. Updates 3 + 3 + 0 + 3 = 9; 3 operations
    # each (V + I, then V - S * V_th)
    expected = {
        "updates": 9.0,
        "effective": 27.0,
        "dense": 36.0,
        "sparsity": 9 / 12,
        "rates": [0.5, 0.0, 0.25],
    }
    x = DRIVE.expand(1, T, 3)  # [B, T, N]
    net = nn.Sequential(sinabs.IAF(spike_fn=SingleSpike, record_states=True))
    metrics = watch(net)
    net(x)
    assert fold(metrics) == expected  # dim 0 is B here
    squeezed = nn.Sequential(
        sinabs.IAFSqueeze(batch_size=1, spike_fn=SingleSpike, record_states=True)
    )
    metrics = watch(squeezed)
    squeezed(x.flatten(0, 1))  # [B * T, N]
    assert fold(metrics, batch_size=1) == expected  # dim 0 is B * T: pass B
    stepped = nn.Sequential(sinabs.IAF(spike_fn=SingleSpike))  # one step per call, [B, 1, N]
    metrics = watch(stepped)
    for t in range(T):
        stepped(x[:, t : t + 1])
    assert fold(metrics) == expected
    plain = nn.Sequential(sinabs.IAF(spike_fn=SingleSpike))  # no recordings: an upper bound
    metrics = watch(plain)
    with pytest.warns(UserWarning, match=r"IAF ran 4 steps.*record_states=True"):
        plain(x)
    assert fold(metrics) == {**expected, "updates": 12.0, "effective": 36.0}


@pytest.mark.optional
@pytest.mark.parametrize("squeeze", [False, True])
def test_sinabs_lif_against_recordings(sinabs, squeeze):
    steps, batch, n = 5, 3, 4
    gen = torch.Generator().manual_seed(7)
    x = torch.rand(batch, steps, n, generator=gen) * 3
    x *= torch.rand(batch, steps, n, generator=gen) < 0.5
    kwargs = {"tau_mem": 4.0, "tau_syn": 2.0, "min_v_mem": -0.5, "record_states": True}
    layer = sinabs.LIFSqueeze(num_timesteps=steps, **kwargs) if squeeze else sinabs.LIF(**kwargs)
    net = nn.Sequential(layer)
    metrics = watch(net)
    out = net(x.flatten(0, 1) if squeeze else x)
    got = fold(metrics, batch_size=batch)
    counts = out.reshape(batch, steps, n)
    membranes = layer.recordings["v_mem"].transpose(0, 1)  # [T, B, N]
    updates = brute_membrane_updates(None, membranes)
    cost = 4 + 2 + 1 + 2  # charge (norm_input), synaptic current, min_v_mem, subtract reset
    assert metrics["ops"].costs == {"0": cost}
    assert got["updates"] == updates / batch
    assert got["effective"] == updates * cost / batch
    assert got["dense"] == steps * n * cost
    assert got["rates"] == ((counts != 0).double().sum((0, 1)) / (steps * batch)).tolist()
    assert got["sparsity"] == int((counts == 0).sum()) / counts.numel()


@pytest.mark.optional
def test_sinabs_recurrent_recordings_are_not_used(sinabs):
    from sinabs.activation import SingleSpike

    # with no recurrent weights IAFRecurrent steps as IAF (9 updates by hand, above), but it
    # records each step's state after the next step overwrote it: its recordings are not
    # read, and the count is the upper bound
    recurrent = nn.Linear(3, 3, bias=False)
    nn.init.zeros_(recurrent.weight)
    layer = sinabs.IAFRecurrent(rec_connect=recurrent, spike_fn=SingleSpike, record_states=True)
    updates = sm.MembraneUpdates(nn.Sequential(layer))
    with pytest.warns(UserWarning, match="IAFRecurrent ran 4 steps"), torch.no_grad():
        layer(DRIVE.expand(1, T, 3))
    assert float(layer.recordings["v_mem"][0, 0, 0]) == pytest.approx(1.2)  # not 0.6
    updates.update()
    assert float(updates.compute()) == 12


@pytest.mark.optional
def test_sinabs_costs(sinabs):
    from sinabs.activation import MembraneReset

    assert neuron_cost(sinabs.IAF()) == 3  # V + I; V - S * V_th
    assert neuron_cost(sinabs.IAFSqueeze(batch_size=2)) == 3
    assert neuron_cost(sinabs.IAF(min_v_mem=-1.0)) == 4
    assert neuron_cost(sinabs.IAF(tau_syn=2.0)) == 5
    assert neuron_cost(sinabs.IAFRecurrent(rec_connect=nn.Linear(2, 2))) == 4
    assert neuron_cost(sinabs.LIF(tau_mem=10.0)) == 6  # alpha V + (1 - alpha) I, reset 2
    assert neuron_cost(sinabs.LIF(tau_mem=10.0, norm_input=False)) == 4
    assert neuron_cost(sinabs.LIF(tau_mem=10.0, train_alphas=True, tau_syn=3.0)) == 8
    assert neuron_cost(sinabs.LIFSqueeze(tau_mem=10.0, batch_size=2)) == 6
    assert neuron_cost(sinabs.LIF(tau_mem=10.0, reset_fn=MembraneReset())) == 7
    with pytest.raises(ValueError, match="no operation cost is known for neuron type ALIF"):
        neuron_cost(sinabs.ALIF(tau_mem=10.0, tau_adapt=10.0))


@pytest.mark.optional
def test_sinabs_exp_leak_is_an_activation_and_unknown_layers_fail(sinabs):
    net = nn.Sequential(sinabs.IAF(), sinabs.ExpLeak(tau_mem=5.0))
    sparsity, rates = sm.ActivationSparsity(net, by_layer=True), sm.FiringRate(net)
    x = torch.zeros(2, 3, 4)
    x[0, 0, 0] = 2.0  # one spike of the IAF at step 0; the leak holds it for 3 steps
    net(x)
    sparsity.update()
    rates.update()
    assert list(rates.compute()) == ["0"]  # only the spiking layer has rates
    by_layer = sparsity.compute()
    assert isinstance(by_layer, dict)
    assert float(by_layer["0"]) == 23 / 24 and float(by_layer["1"]) == 21 / 24

    class MyLayer(sinabs.StatefulLayer):
        def __init__(self) -> None:
            super().__init__(state_names=["v_mem"])

    with pytest.raises(TypeError, match=r"(?s)MyLayer \(layer '1'\).*register_neuron"):
        sm.FiringRate(nn.Sequential(nn.Identity(), MyLayer()))


# ----------------------------------------------------------------------------- norse


@pytest.fixture(scope="module")
def norse():
    return pytest.importorskip("norse.torch", reason="norse not installed: pip install norse")


@pytest.mark.optional
def test_norse_iaf_by_hand(norse):
    # IAFCell: V + X, spike above 1 and reset to 0 (as FakeNode): 9 updates; 5 operations
    # each (V + X, then (1 - Z) V + Z V_reset)
    expected = {
        "updates": 9.0,
        "effective": 45.0,
        "dense": 60.0,
        "sparsity": 9 / 12,
        "rates": [0.5, 0.0, 0.25],
    }
    x = DRIVE.expand(T, 1, 3)
    cell = nn.Sequential(norse.IAFCell())
    metrics = watch(cell)
    state = None
    for t in range(T):
        _, state = cell[0](x[t], state)
    assert fold(metrics) == expected
    sequence = nn.Sequential(norse.IAF())
    sequence[0].record_states = True  # IAF takes no record_states argument
    metrics = watch(sequence)
    sequence[0](x)
    assert fold(metrics, batch_size=1) == expected
    plain = nn.Sequential(norse.IAF())
    metrics = watch(plain)
    with pytest.warns(UserWarning, match=r"IAF ran 4 steps"):
        plain[0](x)
    assert fold(metrics, batch_size=1) == {**expected, "updates": 12.0, "effective": 60.0}


@pytest.mark.optional
@pytest.mark.parametrize("recurrent", [False, True])
def test_norse_lif_cell_and_sequence_against_recording(norse, recurrent):
    steps, batch, n = 6, 3, 4
    gen = torch.Generator().manual_seed(3)
    x = (torch.rand(steps, batch, n, generator=gen) < 0.5).float() * 40
    torch.manual_seed(0)
    if recurrent:
        cell = norse.LIFRecurrentCell(n, n)
        sequence = norse.LIFRecurrent(n, n, record_states=True)
        sequence.load_state_dict(cell.state_dict())
    else:
        cell, sequence = norse.LIFCell(), norse.LIF(record_states=True)
    metrics = watch(nn.Sequential(cell))
    state, spikes, membranes = None, [], []
    with torch.no_grad():
        for t in range(steps):
            z, state = cell(x[t], state)
            spikes.append(z)
            membranes.append(state.v)
    got = fold(metrics)
    spike_record, membrane_record = torch.stack(spikes), torch.stack(membranes)
    cost = 14 if recurrent else 13
    updates = brute_membrane_updates(None, membrane_record)
    assert 0 < updates < steps * batch * n  # some membranes stay put after a reset
    assert got["updates"] == updates / batch
    assert got["effective"] == updates * cost / batch
    assert got["dense"] == steps * n * cost
    assert got["rates"] == ((spike_record != 0).double().sum((0, 1)) / (steps * batch)).tolist()
    metrics = watch(nn.Sequential(sequence))
    with torch.no_grad():
        z_seq, states = sequence(x)
    assert torch.equal(z_seq, spike_record) and torch.equal(states.v, membrane_record)
    assert fold(metrics, batch_size=batch) == got


@pytest.mark.optional
def test_norse_costs_and_integrators(norse):
    from norse.torch.functional.reset import reset_subtract

    assert neuron_cost(norse.LIFCell()) == 13
    assert neuron_cost(norse.LIF()) == 13
    assert neuron_cost(norse.LIFRecurrentCell(2, 2)) == 14
    assert neuron_cost(norse.IAFCell()) == 5
    assert neuron_cost(norse.LIFBoxCell()) == 9
    subtract = norse.LIFBoxCell(p=norse.LIFBoxParameters(reset_method=reset_subtract))
    assert neuron_cost(subtract) == 10
    with pytest.raises(ValueError, match="no operation cost is known for neuron type LSNNCell"):
        neuron_cost(norse.LSNNCell())
    # leaky integrators output their membrane: activations, not spiking neurons
    net = nn.Sequential(norse.LIFCell(), norse.LICell())
    found = {name: rule.spiking for name, _, rule in find_neurons(net)}
    assert found == {"0": True, "1": False}
