"""``snnmetrics profile --data module:function``: the model on the user's own batches."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import snnmetrics as sm
from snnmetrics.cli import main
from snnmetrics.examples import mlp_snn, reset_neurons

# Six samples of 4 steps and 3 channels; channel c of sample i spikes at its first
# COUNTS[i][c] steps. The identity model below outputs its input, so its prediction (the
# channel with the most spikes over the steps) is the argmax of each row.
COUNTS = [[3, 1, 0], [0, 4, 1], [1, 0, 2], [2, 3, 0], [4, 0, 0], [0, 1, 3]]
LABELS = [0, 1, 0, 1, 2, 2]  # predictions 0, 1, 2, 1, 0, 2: samples 0, 1, 3, 5 right
STEPS = 4


def _spikes() -> torch.Tensor:
    x = torch.zeros(len(COUNTS), STEPS, 3)
    for i, counts in enumerate(COUNTS):
        for c, count in enumerate(counts):
            x[i, :count, c] = 1.0
    return x


def identity_ann() -> torch.nn.Module:
    """Linear(3, 3) with the identity as weights, then ReLU: the output is the input."""
    net = torch.nn.Sequential(torch.nn.Linear(3, 3, bias=False), torch.nn.ReLU())
    with torch.no_grad():
        net[0].weight.copy_(torch.eye(3))
    return net


def labelled() -> DataLoader:
    """Batches of 4 and then 2 samples, with labels."""
    return DataLoader(TensorDataset(_spikes(), torch.tensor(LABELS)), batch_size=4)


def unlabelled() -> list[torch.Tensor]:
    return [_spikes()[:4], _spikes()[4:]]


def list_labels() -> list[tuple[torch.Tensor, list[int]]]:
    return [(_spikes()[:3], LABELS[:3]), (_spikes()[3:], LABELS[3:])]


def uint8_frames() -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(_spikes().to(torch.uint8), torch.tensor(LABELS))]


def float_labels() -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(_spikes(), torch.tensor(LABELS, dtype=torch.float32))]


def varying_steps() -> list[torch.Tensor]:
    return [torch.ones(2, 2, 20), torch.ones(2, 3, 20)]


def breaks_at_batch_2():
    yield _spikes()[:2]
    raise OSError("corrupt shard 7")


def mlp_data() -> DataLoader:
    """Random spikes with labels for the built-in MLP: batches of 4, 4 and 2."""
    generator = torch.Generator().manual_seed(3)
    x = (torch.rand(10, 3, 20, generator=generator) < 0.3).float()
    y = torch.randint(0, 35, (10,), generator=generator)
    return DataLoader(TensorDataset(x, y), batch_size=4)


def _run(tmp_path, *args: str) -> dict:
    path = tmp_path / "report.json"
    assert main(["profile", "--no-progress", "--json", str(path), *args]) == 0
    return json.loads(path.read_text())


IDENTITY = ("--model", "tests.test_cli_data:identity_ann")


def test_accuracy_by_hand(tmp_path, capsys):
    report = _run(tmp_path, *IDENTITY, "--data", "tests.test_cli_data:labelled")
    assert report["accuracy"] == {
        "value": 4 / 6,
        "correct": 4,
        "samples": 6,
        "prediction": "argmax of the model's output summed over the steps of a sample",
    }
    out = capsys.readouterr().out
    assert "accuracy  0.6667 (4 of 6; prediction: argmax of the output summed over steps)" in out
    assert "samples   2 batches of up to 4 = 6" in out
    assert "input     --data tests.test_cli_data:labelled; 3 per step, 4 timesteps" in out
    # synops: each input spike drives one nonzero weight; dense: 4 steps x 3 x 3 taps
    spikes = sum(map(sum, COUNTS))
    synops = report["synaptic_operations"]["total"]
    assert synops["synops"] == pytest.approx(spikes / 6)
    assert synops["effective_acs"] == synops["synops"] and synops["effective_macs"] == 0
    assert synops["dense"] == 36
    # the ReLU's output equals its input: zeros / outputs
    assert report["activation_sparsity"]["total"] == pytest.approx(1 - spikes / (6 * 4 * 3))
    run = report["run"]
    assert (run["input"], run["batches"], run["batch_size"], run["samples"]) == (
        "tests.test_cli_data:labelled",
        2,
        4,
        6,
    )
    assert (run["input_shape"], run["timesteps"]) == ([3], 4)
    assert "rate" not in run


def test_labels_as_lists_and_uint8_frames(tmp_path):
    for data in ("list_labels", "uint8_frames"):
        report = _run(tmp_path, *IDENTITY, "--data", f"tests.test_cli_data:{data}")
        assert report["accuracy"]["correct"] == 4 and report["accuracy"]["samples"] == 6
        assert report["synaptic_operations"]["total"]["effective_acs"] == pytest.approx(25 / 6)


def test_data_without_labels(tmp_path, capsys):
    report = _run(tmp_path, *IDENTITY, "--data", "tests.test_cli_data:unlabelled")
    assert "accuracy" not in report
    assert report["skipped"]["accuracy"] == "the data has no labels"
    assert report["run"]["samples"] == 6
    assert report["synaptic_operations"]["total"]["synops"] == pytest.approx(25 / 6)
    assert "Not measured: accuracy: the data has no labels" in capsys.readouterr().out


def test_labels_that_are_not_class_indices(tmp_path):
    report = _run(tmp_path, *IDENTITY, "--data", "tests.test_cli_data:float_labels")
    assert "accuracy" not in report
    assert report["skipped"]["accuracy"] == (
        "labels are not class indices [batch] (batch 1: a float32 tensor of shape [6])"
    )


def test_batches_limits_the_data(tmp_path):
    report = _run(tmp_path, *IDENTITY, "--data", "tests.test_cli_data:labelled", "--batches", "1")
    # the first 4 samples: predictions 0, 1, 2, 1 against labels 0, 1, 0, 1
    assert report["accuracy"]["correct"] == 3 and report["accuracy"]["samples"] == 4
    assert report["run"]["batches"] == 1


def test_batches_of_different_lengths(tmp_path, capsys):
    report = _run(tmp_path, "--data", "tests.test_cli_data:varying_steps")
    assert report["run"]["timesteps"] == [2, 3]
    assert report["skipped"]["ann_comparison"] == (
        "batches have 2 to 3 steps: give --steps-per-inference"
    )
    assert "ann_ratio" not in report["energy"]["total"]
    assert "input     --data tests.test_cli_data:varying_steps; 20 per step, 2 to 3 timesteps" in (
        capsys.readouterr().out
    )
    report = _run(
        tmp_path, "--data", "tests.test_cli_data:varying_steps", "--steps-per-inference", "1"
    )
    assert report["energy"]["steps_per_inference"] == 1 and "ann_ratio" in report["energy"]["total"]


def test_a_loader_that_fails_names_the_batch(capsys):
    args = [
        "profile",
        "--no-progress",
        *IDENTITY,
        "--data",
        "tests.test_cli_data:breaks_at_batch_2",
    ]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(
        "snnmetrics: error: loading --data batch 2 raised OSError: corrupt shard 7 "
        "(at test_cli_data.py:"
    )
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize(
    "source, message",
    [
        ("not_iterable", "--data must give an iterable of batches, got an int"),
        ("dict_batches", "--data batch 1: expected x or (x, y), got a dict"),
        ("flat_x", "--data batch 1: x must be a tensor [batch, time, ...], got a float32 tensor"),
    ],
)
def test_batches_of_the_wrong_kind(capsys, source, message):
    args = ["profile", "--no-progress", "--data", f"tests.test_cli_data:{source}"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def not_iterable() -> int:
    return 5


def dict_batches() -> list[dict]:
    return [{"x": torch.ones(2, 3, 20)}]


def flat_x() -> list[torch.Tensor]:
    return [torch.ones(20)]


def test_every_table_on_real_data_equals_the_metrics_run_by_hand(tmp_path):
    """The built-in MLP on a labelled loader (last batch smaller): all sections and the
    accuracy against the metrics and a prediction loop written out here."""
    report = _run(tmp_path, "--data", "tests.test_cli_data:mlp_data", "--seed", "4")

    torch.manual_seed(4)  # the CLI seeds torch before the factories
    net = mlp_snn()
    synops, neuron_ops = sm.SynapticOperations(net), sm.NeuronOperations(net)
    membrane, firing = sm.MembraneUpdates(net), sm.FiringRate(net)
    sparsity, by_layer = sm.ActivationSparsity(net), sm.ActivationSparsity(net, by_layer=True)
    energy = sm.Energy(net, steps_per_inference=3)
    metrics = [synops, neuron_ops, membrane, firing, sparsity, by_layer, energy]
    correct = 0
    with torch.no_grad():
        for x, y in mlp_data():
            reset_neurons(net)
            counts = torch.zeros(x.shape[0], 35)
            for t in range(x.shape[1]):
                counts += net(x[:, t])
            for i in range(x.shape[0]):
                row = counts[i].tolist()
                correct += row.index(max(row)) == int(y[i])
            for metric in metrics:
                metric.update()
    assert report["accuracy"]["correct"] == correct and report["accuracy"]["samples"] == 10
    assert report["synaptic_operations"]["per_layer"] == {
        name: {key: float(value) for key, value in figures.items()}
        for name, figures in synops.compute_per_layer().items()
    }
    assert report["neuron_operations"]["total"] == {
        key: float(value) for key, value in neuron_ops.compute().items()
    }
    assert report["membrane_updates"]["total"] == float(membrane.compute())
    assert report["activation_sparsity"]["per_layer"] == {
        name: float(value) for name, value in by_layer.compute().items()
    }
    assert report["activation_sparsity"]["total"] == float(sparsity.compute())
    assert (
        report["firing_rate"]["per_layer"]["7"]["rates"] == firing.compute()["7"]["rates"].tolist()
    )
    assert report["energy"]["total"] == {
        key: float(value) for key, value in energy.compute().items()
    }
    assert report["run"]["samples"] == 10 and report["run"]["batches"] == 3
