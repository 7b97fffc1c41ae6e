"""The ``snnmetrics profile`` command."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

import snnmetrics as sm
from snnmetrics.cli import main
from snnmetrics.examples import mlp_snn, poisson_spikes


def tiny_model() -> torch.nn.Module:
    """Factory used through --model tests.test_cli:tiny_model."""
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4, bias=False), torch.nn.ReLU())


def test_default_run_prints_a_table(capsys):
    assert main(["profile", "--batches", "1", "--timesteps", "3", "--no-progress"]) == 0
    out = capsys.readouterr().out
    for title in ("Synaptic operations per sample", "Neurons and activations", "Energy per sample"):
        assert title in out
    assert "SNN / ANN energy" in out.strip().splitlines()[-1]


def _as_floats(value):
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return {key: _as_floats(item) for key, item in value.items()}
    return value.item() if value.ndim == 0 else value.tolist()


def test_json_matches_the_metrics_run_by_hand(tmp_path):
    path = tmp_path / "report.json"
    args = ["profile", "--batches", "2", "--batch-size", "3", "--timesteps", "4"]
    assert main([*args, "--seed", "7", "--json", str(path), "--no-progress"]) == 0
    report = json.loads(path.read_text())

    # the same run, written out: same seed, same Poisson draws, same model init
    generator = torch.Generator().manual_seed(7)
    torch.manual_seed(7)
    net = mlp_snn()
    synops, neuron_ops = sm.SynapticOperations(net), sm.NeuronOperations(net)
    membrane, firing = sm.MembraneUpdates(net), sm.FiringRate(net)
    sparsity, by_layer = sm.ActivationSparsity(net), sm.ActivationSparsity(net, by_layer=True)
    energy = sm.Energy(net, steps_per_inference=4)
    metrics = [synops, neuron_ops, membrane, firing, sparsity, by_layer, energy]
    with torch.no_grad():
        for _ in range(2):
            x = poisson_spikes((3, 4, 20), 0.1, generator)
            for module in net.modules():
                if hasattr(module, "reset_mem"):
                    module.reset_mem()
            for t in range(4):
                net(x[:, t])
            for metric in metrics:
                metric.update()
    expected = {
        "synaptic_operations": {
            "total": synops.compute(), "per_layer": synops.compute_per_layer()
        },
        "neuron_operations": {
            "total": neuron_ops.compute(), "per_layer": neuron_ops.compute_per_layer()
        },
        "membrane_updates": {
            "total": membrane.compute(), "per_layer": membrane.compute_per_layer()
        },
        "activation_sparsity": {"total": sparsity.compute(), "per_layer": by_layer.compute()},
        "firing_rate": {"per_layer": firing.compute()},
        "energy": {
            "total": energy.compute(), "per_layer": energy.compute_per_layer(),
            "table": "horowitz45nm_fp32",
        },
    }
    assert report.pop("run")["seed"] == 7
    assert report == _as_floats(expected)
    assert set(report["synaptic_operations"]["per_layer"]) == {"0", "2", "4", "6"}
    assert set(report["firing_rate"]["per_layer"]) == {"1", "3", "5", "7"}


def test_plots_are_written(tmp_path):
    folder = tmp_path / "plots"
    args = ["profile", "--batches", "1", "--timesteps", "3", "--plots", str(folder)]
    assert main([*args, "--no-progress"]) == 0
    for name in ("firing_rates.png", "operations.png"):
        data = (folder / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_dense_of_builtin_mlp_is_architectural(tmp_path):
    path = tmp_path / "r.json"
    assert main(["profile", "--batches", "1", "--timesteps", "5", "--json", str(path),
                 "--no-progress"]) == 0
    dense = json.loads(path.read_text())["synaptic_operations"]["total"]["dense"]
    assert dense == 5 * (20 * 256 + 256 * 256 + 256 * 256 + 256 * 35)


def test_custom_model_factory(capsys):
    args = ["profile", "--model", "tests.test_cli:tiny_model", "--input-shape", "3",
            "--batches", "1", "--timesteps", "2", "--no-progress"]
    assert main(args) == 0
    assert "total" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "nonsense"], "--model must look like"),
        (["--model", "no_such_module_xyz:f", "--input-shape", "3"], "cannot load --model"),
        (["--model", "tests.test_cli:tiny_model"], "--input-shape is required"),
        (["--input-shape", "3,-1"], "--input-shape must be positive"),
        (["--input-shape", "a,b"], "--input-shape must be comma-separated"),
        (["--device", "warp-drive"], "unknown --device"),
        (["--model", "tests.test_cli:tiny_model", "--input-shape", "5"], "profiling failed"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(capsys, args, message):
    assert main(["profile", "--no-progress", "--batches", "1", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("args", [["--batches", "0"], ["--rate", "1.5"], ["--timesteps", "x"]])
def test_argparse_rejects_bad_numbers(args):
    with pytest.raises(SystemExit) as info:
        main(["profile", *args])
    assert info.value.code == 2


def test_python_dash_m_entry_point():
    run = subprocess.run(
        [sys.executable, "-m", "snnmetrics", "profile", "--batches", "1", "--timesteps", "2",
         "--no-progress"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "total" in run.stdout


def test_an_ann_gets_the_sections_that_apply_and_says_why_not_the_others(tmp_path):
    path = tmp_path / "ann.json"
    args = ["profile", "--model", "tests.test_cli:tiny_model", "--input-shape", "3",
            "--batches", "1", "--timesteps", "2", "--json", str(path), "--no-progress"]
    assert main(args) == 0
    report = json.loads(path.read_text())
    assert set(report["skipped"]) == {"neuron_operations", "membrane_updates", "firing_rate"}
    assert "no spiking neuron" in report["skipped"]["firing_rate"]
    # Linear(3, 4) on 2 steps: dense = 2 x 3 x 4 per sample; ReLU sparsity is in [0, 1]
    assert report["synaptic_operations"]["total"]["dense"] == 24
    assert 0.0 <= report["activation_sparsity"]["total"] <= 1.0
