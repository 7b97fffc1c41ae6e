"""The neuron registry: every snnTorch neuron type, reset mechanism and state mode, read
right; op costs; user-registered types; errors for unknown types.

Expected figures are worked out by hand (see the comments) or counted by a plain loop over
the spikes and membranes recorded from the neuron itself.
"""

from __future__ import annotations

import pytest
import snntorch as snn
import torch
from torch import nn

import snnmetrics as sm
from snnmetrics.neurons import find_neurons, neuron_cost

TYPES = ("Leaky", "Synaptic", "Lapicque", "Alpha", "RLeaky", "RSynaptic")
RESETS = ("subtract", "zero", "none")
# (init_hidden, output): the module keeps its state and returns spikes, or spikes and state;
# or the state goes in as arguments and comes back with the spikes
MODES = ((True, False), (True, True), (False, False))

# operations per membrane update: NeuroBench 2.3.0's table (seed 002) for subtract/zero of
# Leaky, Synaptic, Lapicque, Alpha; the rest as documented in snnmetrics.neurons
COSTS = {
    "Leaky": {"subtract": 4, "zero": 4, "none": 2},
    "Synaptic": {"subtract": 6, "zero": 8, "none": 4},
    "Lapicque": {"subtract": 11, "zero": 11, "none": 9},
    "Alpha": {"subtract": 18, "zero": 24, "none": 9},
    "RLeaky": {"subtract": 5, "zero": 5, "none": 3},
    "RSynaptic": {"subtract": 7, "zero": 9, "none": 5},
}


def make_neuron(
    kind: str,
    reset: str = "subtract",
    init_hidden: bool = True,
    output: bool = False,
    one_to_one: bool = True,
    features: int = 4,
) -> nn.Module:
    kw = {"reset_mechanism": reset, "init_hidden": init_hidden, "output": output}
    recurrent = {"all_to_all": False, "V": 0.5} if one_to_one else {"linear_features": features}
    if kind == "Leaky":
        return snn.Leaky(beta=0.5, **kw)
    if kind == "Synaptic":
        return snn.Synaptic(alpha=0.6, beta=0.5, **kw)
    if kind == "Lapicque":
        return snn.Lapicque(beta=0.5, **kw)
    if kind == "Alpha":
        return snn.Alpha(alpha=0.8, beta=0.5, **kw)
    if kind == "RLeaky":
        return snn.RLeaky(beta=0.5, **recurrent, **kw)
    return snn.RSynaptic(alpha=0.6, beta=0.5, **recurrent, **kw)


def run_recorded(neuron: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Step ``neuron`` over ``x`` [T, B, N]; return its spikes and membranes, [T, B, N]."""
    spikes, membranes, states = [], [], ()
    recurrent = isinstance(neuron, (snn.RLeaky, snn.RSynaptic))
    for t in range(x.shape[0]):
        out = neuron(x[t], *states)
        if neuron.init_hidden:
            spikes.append(out[0] if isinstance(out, tuple) else out)
            membranes.append(neuron.mem.detach().clone())
        else:  # the state is passed back in, as a user of init_hidden=False does
            spikes.append(out[0])
            membranes.append(out[-1].detach().clone())
            states = out if recurrent else out[1:]
    return torch.stack(spikes).detach(), torch.stack(membranes)


def brute_membrane_updates(membranes: torch.Tensor) -> int:
    """Every neuron at the first step, then those whose membrane changed."""
    count = membranes[0].numel()
    for t in range(1, membranes.shape[0]):
        count += int((membranes[t] != membranes[t - 1]).sum())
    return count


def _metrics(net: nn.Module) -> list[sm.HookedMetric]:
    return [
        sm.MembraneUpdates(net),
        sm.NeuronOperations(net),
        sm.ActivationSparsity(net),
        sm.FiringRate(net),
    ]


# --- every type, reset mechanism and state mode --------------------------------------


@pytest.mark.parametrize("mode", MODES, ids=lambda m: f"hidden{int(m[0])}-out{int(m[1])}")
@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("kind", TYPES)
def test_each_type_reset_and_mode(kind, reset, mode):
    # B=2 samples of N=4 neurons for T=4 steps; input 0.7 to three (sample, neuron) pairs,
    # 0 elsewhere. Undriven membranes stay exactly 0; driven ones change at every step
    # (no type reaches a fixed point in 4 steps), so by hand:
    # updates = B*N (first step) + (T-1) * 3 = 8 + 9 = 17, i.e. 8.5 per sample.
    T, B, N = 4, 2, 4
    x = torch.zeros(T, B, N)
    x[:, 0, 0] = x[:, 0, 1] = x[:, 1, 0] = 0.7
    neuron = make_neuron(kind, reset, *mode)
    net = nn.Sequential(neuron)
    updates, ops, sparsity, rates = _metrics(net)
    spikes, membranes = run_recorded(neuron, x)
    for metric in (updates, ops, sparsity, rates):
        metric.update()

    assert brute_membrane_updates(membranes) == 17  # the hand count holds for this run
    cost = COSTS[kind][reset] + (1 if kind.startswith("R") else 0)  # one-to-one recurrence
    assert float(updates.compute()) == 8.5
    result = ops.compute()
    assert float(result["effective"]) == 8.5 * cost
    assert float(result["dense"]) == T * N * cost  # every neuron, every step, per sample
    zeros = int((spikes == 0).sum())
    assert float(sparsity.compute()) == pytest.approx(zeros / spikes.numel(), abs=0)
    expected_rates = spikes.double().sum((0, 1)) / (T * B)
    torch.testing.assert_close(rates.compute()["0"]["rates"], expected_rates, rtol=0, atol=0)


@pytest.mark.parametrize("reset", RESETS)
def test_leaky_spikes_by_hand(reset):
    # Leaky(beta=0.5, threshold=1), input 0.7 at every step; the reset of a step follows a
    # spike of the step before (mem > 1):
    #   subtract: 0.7, 1.05*, 0.525+0.7-1 = 0.225, 0.8125          -> 1 spike in 4 steps
    #   zero:     0.7, 1.05*, 0+0.7 = 0.7, 0.35+0.7 = 1.05*         -> 2 spikes
    #   none:     0.7, 1.05*, 1.225*, 1.3125*                       -> 3 spikes
    spikes_per_neuron = {"subtract": 1, "zero": 2, "none": 3}[reset]
    neuron = snn.Leaky(beta=0.5, reset_mechanism=reset, init_hidden=True)
    net = nn.Sequential(nn.Identity(), neuron)
    rates = sm.FiringRate(net)
    sparsity = sm.ActivationSparsity(net)
    x = torch.tensor([[0.7, 0.0, 0.7]])  # 1 sample, 3 neurons, the middle one undriven
    for _ in range(4):
        net(x)
    rates.update()
    sparsity.update()
    rate = spikes_per_neuron / 4
    assert rates.compute()["1"]["rates"].tolist() == [rate, 0.0, rate]
    assert float(sparsity.compute()) == (12 - 2 * spikes_per_neuron) / 12  # zeros / outputs


KINDS = [
    (kind, one_to_one)
    for kind in TYPES
    for one_to_one in ((False, True) if kind.startswith("R") else (False,))
]


@pytest.mark.parametrize("mode", MODES, ids=lambda m: f"hidden{int(m[0])}-out{int(m[1])}")
@pytest.mark.parametrize(("kind", "one_to_one"), KINDS)
def test_random_input_against_recording(kind, one_to_one, mode):
    gen = torch.Generator().manual_seed(TYPES.index(kind))
    T, B, N = 6, 3, 4
    x = torch.rand(T, B, N, generator=gen) * (torch.rand(T, B, N, generator=gen) < 0.5)
    torch.manual_seed(1)
    neuron = make_neuron(kind, "subtract", *mode, one_to_one=one_to_one, features=N)
    net = nn.Sequential(neuron)
    updates, ops, sparsity, rates = _metrics(net)
    spikes, membranes = run_recorded(neuron, x * 2)
    for metric in (updates, ops, sparsity, rates):
        metric.update()
    expected = brute_membrane_updates(membranes)
    assert float(updates.compute()) == expected / B
    cost = COSTS[kind]["subtract"] + (1 if one_to_one and kind.startswith("R") else 0)
    assert float(ops.compute()["effective"]) == expected * cost / B
    assert float(sparsity.compute()) == int((spikes == 0).sum()) / spikes.numel()
    torch.testing.assert_close(
        rates.compute()["0"]["rates"], spikes.double().sum((0, 1)) / (T * B), rtol=0, atol=0
    )


def test_state_passed_in_is_the_state_compared():
    # init_hidden=False, two independent sequences interleaved through one neuron: the
    # module's own last state belongs to the other sequence, so the membrane a call starts
    # from must be read from its arguments
    neuron = snn.Leaky(beta=0.5, init_hidden=False)
    net = nn.Sequential(neuron)
    updates = sm.MembraneUpdates(net)
    xa = torch.tensor([[0.3, 0.0]])
    xb = torch.tensor([[0.0, 0.0]])
    mem_a = mem_b = torch.zeros(0)
    trace_a, trace_b = [], []
    for _ in range(3):
        _, mem_a = neuron(xa, mem_a)
        _, mem_b = neuron(xb, mem_b)
        trace_a.append(mem_a)
        trace_b.append(mem_b)
    updates.update(batch_size=2)  # two sequences of one sample each
    # the first call counts its 2 neurons; then sequence a changes in neuron 0 at each
    # step; sequence b starts fresh (an empty state: 2 neurons) and never changes again
    # (the membranes of b stay 0): 2 + 2 + 1 + 0 + 1 + 0 = 6
    assert (
        brute_membrane_updates(torch.stack(trace_a)) + brute_membrane_updates(torch.stack(trace_b))
        == 6
    )
    assert float(updates.compute()) == 6 / 2


# --- costs -----------------------------------------------------------------------------


@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("kind", TYPES)
def test_cost_table(kind, reset):
    full = make_neuron(kind, reset, one_to_one=False)
    assert neuron_cost(full) == COSTS[kind][reset]
    if kind.startswith("R"):  # V * spike: one more operation per neuron
        assert neuron_cost(make_neuron(kind, reset, one_to_one=True)) == COSTS[kind][reset] + 1


def test_cost_overrides():
    leaky = snn.Leaky(beta=0.9, reset_mechanism="zero")
    assert neuron_cost(leaky, {"Leaky": 7}) == 7
    assert neuron_cost(leaky, {snn.Leaky: {"zero": 3}}) == 3
    assert neuron_cost(leaky, {"Leaky": {"subtract": 9}}) == 4  # zero keeps its cost

    class MyLeaky(snn.Leaky):
        pass

    mine = MyLeaky(beta=0.9)
    assert neuron_cost(mine) == 4  # the rule of the nearest registered base
    assert neuron_cost(mine, {"Leaky": 5}) == 5
    assert neuron_cost(mine, {MyLeaky: 6, "Leaky": 5}) == 6
    with pytest.raises(ValueError, match="finite number >= 0"):
        neuron_cost(leaky, {"Leaky": -1})


def test_neuron_operations_costs_argument():
    net = nn.Sequential(
        nn.Linear(3, 2),
        snn.Leaky(beta=0.9, init_hidden=True),
        nn.Linear(2, 2),
        snn.Synaptic(alpha=0.9, beta=0.8, init_hidden=True),
    )
    ops = sm.NeuronOperations(net, costs={"Synaptic": 10})
    assert ops.costs == {"1": 4.0, "3": 10.0}
    for _ in range(3):
        net(torch.ones(2, 3))
    ops.update()
    # dense = neurons x steps x cost per sample = 2*3*4 + 2*3*10
    assert float(ops.compute()["dense"]) == 84.0
    per_layer = ops.compute_per_layer()
    assert float(per_layer["1"]["dense"]) == 24.0 and float(per_layer["3"]["dense"]) == 60.0


# --- registry ----------------------------------------------------------------------------


def test_find_neurons_names_and_nesting():
    net = nn.Sequential(
        nn.Linear(4, 4),
        nn.ReLU(),
        nn.Sequential(nn.Linear(4, 4), nn.Sigmoid()),
        snn.RLeaky(beta=0.9, linear_features=4, init_hidden=True),
    )
    found = [(name, type(module).__name__) for name, module, _ in find_neurons(net)]
    # RLeaky's recurrent nn.Linear is part of the neuron, not a layer of its own
    assert found == [("1", "ReLU"), ("2.1", "Sigmoid"), ("3", "RLeaky")]


class _ToyNeuron(nn.Module):
    """A neuron the registry does not know: integrate, spike above 1, subtract."""

    def __init__(self) -> None:
        super().__init__()
        self.v = torch.zeros(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.v.shape != x.shape:
            self.v = torch.zeros_like(x)
        self.v = self.v + x
        spikes = (self.v > 1).float()
        self.v = self.v - spikes
        return spikes


def test_register_a_user_neuron():
    sm.register_neuron(
        _ToyNeuron,
        sm.NeuronRule(
            spikes=lambda module, output: output,
            membrane_before=lambda module, args, kwargs: module.v,
            membrane_after=lambda module, output: module.v,
            cost=2,
        ),
    )
    net = nn.Sequential(nn.Identity(), _ToyNeuron())
    updates, ops, sparsity, rates = _metrics(net)
    x = torch.tensor([[0.6, 0.0]])
    for _ in range(4):
        net(x)
    for metric in (updates, ops, sparsity, rates):
        metric.update()
    # v of neuron 0: 0.6, 1.2 -> spike -> 0.2, 0.8, 1.4 -> spike -> 0.4: changes every
    # step; neuron 1 stays 0. updates = 2 + 3 = 5; spikes 2 of 8 outputs
    assert float(updates.compute()) == 5
    assert float(ops.compute()["effective"]) == 10 and float(ops.compute()["dense"]) == 16
    assert float(sparsity.compute()) == 6 / 8
    assert rates.compute()["1"]["rates"].tolist() == [0.5, 0.0]


def test_unknown_snntorch_neuron_names_the_type_and_how_to_register():
    class Custom(snn.SpikingNeuron):
        def forward(self, x):
            return x

    net = nn.Sequential(nn.Linear(2, 2), Custom())
    for metric in (sm.MembraneUpdates, sm.NeuronOperations, sm.ActivationSparsity, sm.FiringRate):
        with pytest.raises(TypeError, match=r"(?s)Custom \(layer '1'\).*register_neuron"):
            metric(net)
    with pytest.raises(TypeError, match=r"(?s)LeakyParallel.*register_neuron"):
        sm.FiringRate(nn.Sequential(snn.LeakyParallel(input_size=2, hidden_size=2)))


def test_unknown_cost_is_reported():
    class Plain(nn.Module):
        def forward(self, x):
            return x

    sm.register_neuron(
        Plain,
        sm.NeuronRule(
            spikes=lambda m, out: out,
            membrane_before=lambda m, a, k: None,
            membrane_after=lambda m, out: out,
        ),
    )
    net = nn.Sequential(Plain())
    with pytest.raises(ValueError, match=r"no operation cost.*Plain"):
        sm.NeuronOperations(net)
    assert float(sm.NeuronOperations(net, costs={Plain: 1}).costs["0"]) == 1.0


def test_bad_registrations():
    with pytest.raises(TypeError, match=r"nn\.Module subclass"):
        sm.register_neuron(int, sm.NeuronRule(spikes=lambda m, o: o))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="NeuronRule"):
        sm.register_neuron(nn.Tanh, lambda m, o: o)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="both membrane_before and membrane_after"):
        sm.register_neuron(
            nn.Tanh, sm.NeuronRule(spikes=lambda m, o: o, membrane_after=lambda m, o: o)
        )


def test_spiking_neuron_without_membrane_readers():
    class Spiker(nn.Module):
        def forward(self, x):
            return (x > 0).float()

    sm.register_neuron(Spiker, sm.NeuronRule(spikes=lambda m, o: o))
    net = nn.Sequential(Spiker())
    with pytest.raises(TypeError, match="without membrane readers"):
        sm.MembraneUpdates(net)
    rates = sm.FiringRate(net)  # rates need no membrane
    net(torch.tensor([[1.0, -1.0]]))
    rates.update()
    assert rates.compute()["0"]["rates"].tolist() == [1.0, 0.0]
