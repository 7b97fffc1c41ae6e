"""Energy: operation counts x cost tables, checked by hand and against the counting metrics."""

from __future__ import annotations

import math

import pytest
import snntorch as snn
import torch
from torch import nn
from torchmetrics import MetricCollection

import snnmetrics as sm
from snnmetrics.energy import energy_table, energy_tables, sram_access_joules
from snnmetrics.functional import energy
from tests.workloads import BATCH_SIZES, STEPS, build_net, feed

PJ = 1e-12
# Horowitz (ISSCC 2014) 45 nm, written out from literature.md section 1.4: add (= AC), MAC
HOROWITZ = {
    "horowitz45nm_int8": (0.03, 0.23),
    "horowitz45nm_int32": (0.1, 3.2),
    "horowitz45nm_fp16": (0.4, 1.5),
    "horowitz45nm_fp32": (0.9, 4.6),
}


def close(got: torch.Tensor, expected: float) -> None:
    torch.testing.assert_close(
        got, torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=0
    )


def _tiny_net() -> nn.Sequential:
    """Linear(4, 3) with every weight 0.25, then a Leaky neuron (beta 0.5, threshold 1)."""
    net = nn.Sequential(nn.Linear(4, 3, bias=False), snn.Leaky(beta=0.5, init_hidden=True))
    with torch.no_grad():
        net[0].weight.fill_(0.25)
    return net


def _run_tiny(metric_factory, value: float = 1.0):
    """Two samples of 5 steps of a constant input; the metric and the recorded spikes and
    membranes."""
    net = _tiny_net()
    metric = metric_factory(net)
    spikes, membranes = [], []
    for _ in range(5):
        spikes.append(net(torch.full((2, 4), value)).detach())
        membranes.append(net[1].mem.clone())
    metric.update()
    return metric, torch.stack(spikes), torch.stack(membranes)


def test_the_builtin_tables_are_horowitz_45nm():
    for name, (add, mac) in HOROWITZ.items():
        table = energy_table(name)
        assert table.name == name and "Horowitz" in table.source and "ISSCC 2014" in table.source
        assert math.isclose(table.ac_joules, add * PJ, rel_tol=1e-12)
        assert math.isclose(table.mac_joules, mac * PJ, rel_tol=1e-12)
        # a neuron operation is priced at half a MAC (documented choice)
        assert math.isclose(table.neuron_op_joules, mac / 2 * PJ, rel_tol=1e-12)
    assert set(HOROWITZ) <= set(energy_tables())


def test_hand_computed_spiking_case():
    energy_metric, spikes, membranes = _run_tiny(sm.Energy)
    # input current 4 x 0.25 = 1 per step: the membrane runs 1, 1.5, 0.75, 1.375, 0.6875
    # (beta 0.5, subtract reset after each value above 1), so every neuron updates at
    # every step and fires at steps 2 and 4
    expected_membrane = torch.tensor([1.0, 1.5, 0.75, 1.375, 0.6875])
    torch.testing.assert_close(membranes[:, 0, 0], expected_membrane)
    assert float(spikes.sum()) / 2 == 6  # 3 neurons x 2 spikes, per sample

    result = energy_metric.compute()
    acs = 5 * 4 * 3  # per sample: 5 steps x 4 inputs x 3 outputs, inputs in {0, 1}
    neuron_ops = 5 * 3 * 4  # 5 steps x 3 neurons x 4 operations of a Leaky update
    close(result["synaptic"], acs * 0.9 * PJ)
    close(result["neuron"], neuron_ops * 2.3 * PJ)
    close(result["total"], acs * 0.9 * PJ + neuron_ops * 2.3 * PJ)
    # the dense ANN: the same 60 taps per sample, as MACs
    close(result["ann_macs"], 60.0)
    close(result["ann"], 60 * 4.6 * PJ)
    close(result["ann_ratio"], (acs * 0.9 + neuron_ops * 2.3) / (60 * 4.6))
    close(result["spikes_per_synapse"], 1.0)
    assert set(result) == {
        "total", "synaptic", "neuron", "ann", "ann_macs", "ann_ratio", "spikes_per_synapse"
    }
    assert energy_metric.table is energy_table("horowitz45nm_fp32")


def test_graded_input_is_priced_as_macs():
    energy_metric, _, _ = _run_tiny(sm.Energy, value=2.0)
    close(energy_metric.compute()["synaptic"], 60 * 4.6 * PJ)


def test_static_input_compares_with_one_ann_pass():
    energy_metric, _, _ = _run_tiny(lambda net: sm.Energy(net, steps_per_inference=5))
    result = energy_metric.compute()
    close(result["ann_macs"], 12.0)  # one pass of the 4 x 3 layer
    close(result["ann"], 12 * 4.6 * PJ)
    close(result["spikes_per_synapse"], 5.0)  # 60 events on 12 synapses
    energy_metric.steps_per_inference = 1  # a property: no re-run needed
    close(energy_metric.compute()["ann_macs"], 60.0)


def test_memory_model_terms_by_hand():
    memory = sm.MemoryModel(weight_joules=1 * PJ, membrane_joules=2 * PJ, spike_joules=3 * PJ)
    energy_metric, spikes, _ = _run_tiny(lambda net: sm.Energy(net, memory=memory))
    result = energy_metric.compute()
    synops, updates, fired = 60, 15, float(spikes.sum()) / 2
    close(result["memory_weights"], synops * 1 * PJ)  # one weight read per synaptic op
    # read + write of the target membrane per synaptic op and per membrane update
    close(result["memory_membrane"], 2 * (synops + updates) * 2 * PJ)
    close(result["memory_spikes"], 2 * fired * 3 * PJ)  # written once, read once
    memory_total = (synops * 1 + 2 * (synops + updates) * 2 + 2 * fired * 3) * PJ
    close(result["memory"], memory_total)
    close(result["total"], (synops * 0.9 + updates * 4 * 2.3) * PJ + memory_total)
    close(result["ann"], synops * (4.6 + 1) * PJ)  # a MAC and a weight read per synapse

    per_layer = energy_metric.compute_per_layer()
    assert set(per_layer) == {"0", "1"}
    linear, neuron = per_layer["0"], per_layer["1"]
    close(linear["synaptic"], synops * 0.9 * PJ)
    close(linear["neuron"], 0.0)
    close(linear["memory_membrane"], 2 * synops * 2 * PJ)
    close(linear["memory_spikes"], 0.0)
    close(linear["ann"], synops * 5.6 * PJ)
    close(neuron["synaptic"], 0.0)
    close(neuron["neuron"], updates * 4 * 2.3 * PJ)
    close(neuron["memory_membrane"], 2 * updates * 2 * PJ)
    close(neuron["memory_spikes"], 2 * fired * 3 * PJ)
    close(neuron["ann"], 0.0)
    close(linear["total"] + neuron["total"], float(result["total"]))
    assert "ann_ratio" not in linear


def test_sram_sized_memory_follows_the_linear_fit():
    bits = 64 * 1024 * 8  # 64 KB
    assert math.isclose(sram_access_joules(bits), (1.09e-5 * bits + 13.2) * PJ, rel_tol=1e-12)
    memory = sm.MemoryModel.sram(weight_bits=bits, membrane_bits=0, spike_bits=1000)
    assert math.isclose(memory.weight_joules, (1.09e-5 * bits + 13.2) * PJ, rel_tol=1e-12)
    assert math.isclose(memory.membrane_joules, 13.2 * PJ, rel_tol=1e-12)
    assert "Lemaire" in memory.source
    assert sm.MemoryModel().weight_joules == 10 * PJ  # Horowitz: 64-bit read, 8 KB SRAM


def test_energy_equals_the_counting_metrics_times_the_table():
    net = build_net()
    metrics = {
        "energy": sm.Energy(net, memory=sm.MemoryModel()),
        "synops": sm.SynapticOperations(net),
        "neuron_ops": sm.NeuronOperations(net),
        "firing": sm.FiringRate(net),
    }
    feed(net, list(metrics.values()), list(range(len(BATCH_SIZES))))
    result = metrics["energy"].compute()
    synops = metrics["synops"].compute()
    neuron_ops = metrics["neuron_ops"].compute()["effective"]
    acs, macs = float(synops["effective_acs"]), float(synops["effective_macs"])
    assert acs > 0 and macs > 0  # batch 3 is graded
    close(result["synaptic"], acs * 0.9 * PJ + macs * 4.6 * PJ)
    close(result["neuron"], float(neuron_ops) * 2.3 * PJ)
    close(result["ann"], float(synops["dense"]) * (4.6 + 10) * PJ)
    # spikes per sample from the firing rates: sum of rates x steps
    firing = metrics["firing"].compute().values()
    fired = sum(float(layer["rates"].sum()) * STEPS for layer in firing)
    close(result["memory_spikes"], 2 * fired * 10 * PJ)

    per_layer = metrics["energy"].compute_per_layer()
    for name, counts in metrics["synops"].compute_per_layer().items():
        expected = float(counts["effective_acs"]) * 0.9 + float(counts["effective_macs"]) * 4.6
        close(per_layer[name]["synaptic"], expected * PJ)
        close(per_layer[name]["ann"], float(counts["dense"]) * 14.6 * PJ)
    for name, ops in metrics["neuron_ops"].compute_per_layer().items():
        close(per_layer[name]["neuron"], float(ops["effective"]) * 2.3 * PJ)
    assert metrics["energy"].costs == metrics["neuron_ops"].costs


def test_a_custom_table_is_honoured_and_a_table_change_needs_no_rerun():
    mine = sm.EnergyTable("test_chip", ac_joules=1.0, mac_joules=10.0, neuron_op_joules=100.0)
    energy_metric, _, _ = _run_tiny(lambda net: sm.Energy(net, table=mine))
    assert energy_metric.table is mine
    result = energy_metric.compute()
    close(result["synaptic"], 60 * 1.0)
    close(result["neuron"], 60 * 100.0)
    close(result["ann"], 60 * 10.0)
    energy_metric.table = "horowitz45nm_int8"
    result = energy_metric.compute()
    close(result["synaptic"], 60 * 0.03 * PJ)
    close(result["neuron"], 60 * 0.115 * PJ)
    sm.register_table(sm.EnergyTable("test_registered", 2.0, 3.0, 4.0, source="a test"))
    energy_metric.table = "test_registered"
    close(energy_metric.compute()["synaptic"], 60 * 2.0)


def test_neuron_costs_can_be_overridden():
    energy_metric, _, _ = _run_tiny(lambda net: sm.Energy(net, costs={"Leaky": 10}))
    assert energy_metric.costs == {"1": 10.0}
    close(energy_metric.compute()["neuron"], 15 * 10 * 2.3 * PJ)


@pytest.mark.filterwarnings("ignore:The ``compute`` method of metric Energy was called before")
def test_unknown_and_wrong_tables():
    net = _tiny_net()
    with pytest.raises(ValueError, match="unknown energy table 'fp32'") as error:
        sm.Energy(net, table="fp32")
    for name in HOROWITZ:
        assert name in str(error.value)
    with pytest.raises(TypeError, match="table must be"):
        sm.Energy(net, table=0.9e-12)
    assert not net[0]._forward_pre_hooks and not net[1]._forward_hooks  # nothing hooked
    with pytest.raises(TypeError, match="memory must be a MemoryModel"):
        sm.Energy(net, memory=10e-12)
    with pytest.raises(ValueError, match="steps_per_inference"):
        sm.Energy(net, steps_per_inference=0)
    with pytest.raises(TypeError, match="steps_per_inference"):
        sm.Energy(net, steps_per_inference=2.5)
    with pytest.raises(ValueError, match=r"EnergyTable\.ac_joules"):
        sm.EnergyTable("bad", ac_joules=-1.0, mac_joules=1.0, neuron_op_joules=1.0)
    with pytest.raises(TypeError, match=r"EnergyTable\.mac_joules"):
        sm.EnergyTable("bad", ac_joules=1.0, mac_joules="4.6 pJ", neuron_op_joules=1.0)
    with pytest.raises(ValueError, match=r"MemoryModel\.spike_joules"):
        sm.MemoryModel(spike_joules=float("nan"))
    with pytest.raises(TypeError, match="table must be an EnergyTable"):
        sm.register_table("horowitz45nm_fp32")
    energy_metric = sm.Energy(net)
    with pytest.raises(ValueError, match="known tables"):
        energy_metric.table = "nope"
    with pytest.warns(UserWarning, match="called before the ``update``"):
        assert all(torch.isnan(value) for value in energy_metric.compute().values())


def test_models_without_neurons_or_connections():
    linear = nn.Linear(3, 2)
    with sm.Energy(linear) as energy_metric:
        linear(torch.ones(4, 3))
        energy_metric.update()
        result = energy_metric.compute()
    close(result["neuron"], 0.0)
    close(result["synaptic"], 6 * 0.9 * PJ)  # 3 inputs x 2 outputs, per sample
    assert energy_metric.neuron_names == []
    with pytest.raises(ValueError, match="no connection layer"):
        sm.Energy(nn.Sequential(snn.Leaky(beta=0.5, init_hidden=True)))


def test_nan_inputs_make_the_energy_undefined():
    energy_metric, _, _ = _run_tiny(sm.Energy, value=float("nan"))
    with pytest.raises(ValueError, match="NaN"):
        energy_metric.compute()


def test_energy_shares_the_hooks_of_the_counting_metrics():
    net = _tiny_net()
    collection = MetricCollection(
        {"energy": sm.Energy(net), "synops": sm.SynapticOperations(net),
         "neuron_ops": sm.NeuronOperations(net)}
    )
    assert len(net[0]._forward_pre_hooks) == 1
    assert len(net[1]._forward_pre_hooks) == 1 and len(net[1]._forward_hooks) == 1
    for _ in range(5):
        net(torch.ones(2, 4))
    collection.update()
    got = collection.compute()
    close(got["energy_synaptic"], float(got["synops_effective_acs"]) * 0.9 * PJ)
    close(got["energy_neuron"], float(got["neuron_ops_effective"]) * 2.3 * PJ)
    for metric in collection.values():
        metric.detach()
    assert not net[0]._forward_pre_hooks and not net[1]._forward_hooks


def test_functional_energy_and_its_checks():
    out = energy(10.0, 2.0, 8.0, "horowitz45nm_int32", dense=40.0, steps_per_inference=2)
    close(out["synaptic"], (10 * 0.1 + 2 * 3.2) * PJ)
    close(out["neuron"], 8 * 1.6 * PJ)
    close(out["ann"], 20 * 3.2 * PJ)
    close(out["spikes_per_synapse"], 12 / 20)
    per_layer = energy(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 1.0]))
    close(per_layer["synaptic"][1], (2 * 0.9 + 4.6) * PJ)
    assert "ann" not in per_layer
    with pytest.raises(ValueError, match="effective_acs must be non-negative"):
        energy(-1.0, 0.0)
    with pytest.raises(ValueError, match="neuron_ops must be finite"):
        energy(1.0, 0.0, float("inf"))
    with pytest.raises(TypeError, match="effective_macs"):
        energy(1.0, "2")
