"""The ``snnmetrics profile`` command: the report, the JSON, the plots, the options."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
import torch

import snnmetrics as sm
from snnmetrics.cli import main
from snnmetrics.examples import mlp_snn, poisson_spikes

QUICK = ["--batches", "1", "--timesteps", "3", "--no-progress"]


def tiny_model() -> torch.nn.Module:
    """An ANN factory, used through --model tests.test_cli:tiny_model."""
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4, bias=False), torch.nn.ReLU())


def _as_floats(value):
    if isinstance(value, (str, int, float, list)) or value is None:
        return value
    if isinstance(value, dict):
        return {key: _as_floats(item) for key, item in value.items()}
    return value.item() if value.ndim == 0 else value.tolist()


def _nan_as_none(value):
    """A result as the JSON holds it: lists of floats, None for NaN."""
    if isinstance(value, dict):
        return {key: _nan_as_none(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_nan_as_none(item) for item in value]
    if isinstance(value, torch.Tensor):
        return _nan_as_none(value.tolist())
    return None if math.isnan(value) else value


def _profile(capsys, *args: str) -> str:
    assert main(["profile", *args]) == 0
    return capsys.readouterr().out


def test_default_run_prints_the_header_and_every_table(capsys):
    out = _profile(capsys, "--batches", "2", "--timesteps", "3", "--no-progress")
    lines = out.splitlines()
    assert lines[0] == "model     mlp (built-in example)"
    assert lines[1] == "input     Poisson spikes, rate 0.1, seed 0; 20 per step, 3 timesteps"
    assert lines[2] == "samples   2 batches x 8 = 16"
    assert lines[3].startswith("run       device cpu, ") and lines[3].endswith(
        f" s, snnmetrics {sm.__version__}, torch {torch.__version__.split('+')[0]}"
    )
    for title in (
        "Synaptic operations per sample (summed over timesteps)",
        "Neuron operations and membrane updates per sample (summed over timesteps)",
        "Activity, fractions: sparsity = zeros / outputs; rate = a neuron's spikes / steps",
        "Energy, J per sample: operation counts x horowitz45nm_fp32 costs (memory not priced)",
        "Spike trains (a neuron's output over a sample's steps): Fano factor of the spike count",
        "Rate at step t: the fraction of a layer's neurons firing, mean over samples",
        "Synaptic operations per sample at step t",
    ):
        assert sum(line.startswith(title) for line in lines) == 1, title
    # layers carry their type; the rows of each table are in model order
    rows = [line.split()[:2] for line in lines if line[:1].isdigit()]
    assert rows[:4] == [["0", "Linear"], ["2", "Linear"], ["4", "Linear"], ["6", "Linear"]]
    assert ["1", "Leaky"] in rows and ["7", "Leaky"] in rows
    # a random-spike run has no labels and so no accuracy to mention
    assert "accuracy" not in out and "Not measured" not in out


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--model", "conv", "--batch-size", "1", "--timesteps", "2"],
        ["--model", "tests.test_cli:tiny_model", "--input-shape", "3"],
        # wide per-step figures (millions of synops) over many steps: a few steps shown
        ["--model", "conv", "--batch-size", "1", "--timesteps", "30"],
    ],
)
def test_the_report_fits_in_100_columns(capsys, args):
    out = _profile(capsys, "--batches", "1", "--timesteps", "2", "--no-progress", *args)
    assert max(len(line) for line in out.splitlines()) <= 100


def _format(cell: str) -> str:
    if "e" in cell:
        return "exponent"
    return f"{len(cell.split('.')[1])} decimals" if "." in cell else "integer"


def test_one_number_format_per_column(capsys):
    out = _profile(capsys, *QUICK)
    tables = [part.splitlines() for part in out.split("\n\n") if "\n---" in part]
    assert len(tables) == 7
    for table in tables:
        rows = table[[line.startswith("---") for line in table].index(True) + 1 :]
        # cells of the last row: after "total", or after a layer's name and type
        width = len(rows[-1].split()) - (1 if rows[-1].startswith("total") else 2)
        for column in range(1, width + 1):  # from the right: layer labels hold a space
            cells = [row.split()[-column] for row in rows]
            formats = {_format(cell) for cell in cells if cell != "-"}
            assert len(formats) == 1, (table[0], column, formats)


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
    trains, by_step = sm.SpikeTrainStatistics(net), sm.ActivityProfile(net, max_steps=4)
    metrics = [synops, neuron_ops, membrane, firing, sparsity, by_layer, energy, trains, by_step]
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
        "synaptic_operations": {"total": synops.compute(), "per_layer": synops.compute_per_layer()},
        "neuron_operations": {
            "total": neuron_ops.compute(),
            "per_layer": neuron_ops.compute_per_layer(),
        },
        "membrane_updates": {
            "total": membrane.compute(),
            "per_layer": membrane.compute_per_layer(),
        },
        "activation_sparsity": {"total": sparsity.compute(), "per_layer": by_layer.compute()},
        "firing_rate": {"per_layer": firing.compute()},
        "spike_train_statistics": {"per_layer": _nan_as_none(trains.compute())},
        "activity_profile": {"per_layer": _nan_as_none(by_step.compute())},
        "energy": {
            "total": energy.compute(),
            "per_layer": energy.compute_per_layer(),
            "table": "horowitz45nm_fp32",
            "steps_per_inference": 4,
        },
    }
    energy.memory = sm.MemoryModel()
    with_memory = energy.compute()
    expected["energy"]["with_memory"] = {
        key: with_memory[key] for key in ("total", "memory", "ann", "ann_ratio")
    }
    run = report.pop("run")
    assert report.pop("layer_types") == {
        **{str(i): "Linear" for i in (0, 2, 4, 6)},
        **{str(i): "Leaky" for i in (1, 3, 5, 7)},
    }
    assert report == _as_floats(expected)
    assert run["seed"] == 7 and run["samples"] == 6


def test_json_run_section_says_what_was_run(tmp_path):
    path = tmp_path / "report.json"
    args = [
        "profile",
        "--batches",
        "2",
        "--batch-size",
        "3",
        "--timesteps",
        "4",
        "--rate",
        "0.25",
        "--seed",
        "5",
        "--steps-per-inference",
        "2",
        "--json",
        str(path),
        "--no-progress",
    ]
    assert main(args) == 0
    run = json.loads(path.read_text())["run"]
    wall_time = run.pop("wall_time_s")
    assert run == {
        "model": "mlp (built-in example)",
        "seed": 5,
        "input": "poisson",
        "rate": 0.25,
        "batches": 2,
        "batch_size": 3,
        "samples": 6,
        "input_shape": [20],
        "timesteps": 4,
        "steps_per_inference": 2,
        "device": "cpu",
        "snnmetrics": sm.__version__,
        "torch": torch.__version__.split("+")[0],
    }
    assert 0 < wall_time < 600


def test_rate_changes_the_input(tmp_path):
    """--rate reaches the Poisson draws: synops of the first layer = its input spikes x 256."""
    for rate in ("0.05", "0.4"):
        path = tmp_path / f"{rate}.json"
        assert main(["profile", *QUICK, "--rate", rate, "--json", str(path)]) == 0
        first = json.loads(path.read_text())["synaptic_operations"]["per_layer"]["0"]
        spikes = poisson_spikes((8, 3, 20), float(rate), torch.Generator().manual_seed(0))
        # Linear(20, 256): every input spike drives 256 synapses (no zero weight)
        assert first["synops"] == pytest.approx(float(spikes.sum()) * 256 / 8)


def test_energy_comparison_says_how_the_ann_runs(capsys, tmp_path):
    path = tmp_path / "r.json"
    out = _profile(capsys, *QUICK, "--steps-per-inference", "3", "--json", str(path))
    energy = json.loads(path.read_text())["energy"]
    assert "one ANN pass per 3 SNN steps" in out
    ratio = (
        f"{energy['total']['ann_ratio']:.3f} arithmetic only; "
        f"{energy['with_memory']['ann_ratio']:.3f} with memory accesses"
    )
    assert ratio in out
    assert f"spikes per synapse  {energy['total']['spikes_per_synapse']:.3f}" in out
    # by hand: dense MACs per ANN pass = the dense synops of 3 steps / 3 steps
    dense = json.loads(path.read_text())["synaptic_operations"]["total"]["dense"]
    assert energy["total"]["ann_macs"] == dense / 3
    assert energy["total"]["ann"] == pytest.approx(dense / 3 * 4.6e-12)


def test_steps_per_inference_scales_the_ann_side(tmp_path):
    figures = {}
    for steps in ("1", "3"):
        path = tmp_path / f"{steps}.json"
        assert main(["profile", *QUICK, "--steps-per-inference", steps, "--json", str(path)]) == 0
        figures[steps] = json.loads(path.read_text())["energy"]["total"]
    assert figures["1"]["ann"] == pytest.approx(3 * figures["3"]["ann"])
    assert figures["1"]["total"] == figures["3"]["total"]


def test_an_ann_gets_the_sections_that_apply_and_says_why_not_the_others(capsys, tmp_path):
    path = tmp_path / "ann.json"
    args = [
        "--model",
        "tests.test_cli:tiny_model",
        "--input-shape",
        "3",
        "--batches",
        "1",
        "--timesteps",
        "2",
        "--json",
        str(path),
        "--no-progress",
    ]
    out = _profile(capsys, *args)
    report = json.loads(path.read_text())
    assert set(report["skipped"]) == {
        "neuron_operations",
        "membrane_updates",
        "firing_rate",
        "spike_train_statistics",
        "ann_comparison",
    }
    assert "no spiking neuron" in report["skipped"]["firing_rate"]
    # Linear(3, 4) on 2 steps: dense = 2 x 3 x 4 per sample; ReLU sparsity is in [0, 1]
    assert report["synaptic_operations"]["total"]["dense"] == 24
    assert 0.0 <= report["activation_sparsity"]["total"] <= 1.0
    # an ANN is not compared with an ANN
    assert "ann" not in report["energy"]["total"] and "ann_ratio" not in report["energy"]["total"]
    assert "SNN / ANN" not in out.replace("Not measured: SNN / ANN comparison", "")
    assert "dense ANN" not in out
    # the reason shared by three sections is printed once
    assert " ".join(out.split()).count(report["skipped"]["firing_rate"]) == 1
    assert (
        "Not measured: neuron operations, membrane updates, firing rates, spike-train "
        "statistics:" in out
    )
    assert report["layer_types"] == {"0": "Linear", "1": "ReLU"}


def _png(path) -> bytes:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    return data


def test_plots_are_written(tmp_path):
    folder = tmp_path / "plots"
    assert main(["profile", *QUICK, "--plots", str(folder)]) == 0
    for name in ("firing_rates.png", "operations.png", "activity_profile.png"):
        _png(folder / name)


def test_an_ann_with_plots_draws_what_applies(capsys, tmp_path):
    """An ANN has no firing rates: its plot is left out with the reason, the rest drawn."""
    folder = tmp_path / "figs"
    args = ["--model", "tests.test_cli:tiny_model", "--input-shape", "3", *QUICK]
    out = _profile(capsys, *args, "--plots", str(folder))
    assert "Synaptic operations per sample" in out  # the tables are all there
    assert "Not drawn: firing_rates.png: Sequential has no spiking neuron" in out
    assert sorted(path.name for path in folder.iterdir()) == [
        "activity_profile.png",
        "operations.png",
    ]
    _png(folder / "operations.png")
    _png(folder / "activity_profile.png")  # synaptic operations per step, no rate


def test_plots_name_layers_and_kinds():
    pytest.importorskip("matplotlib", reason="plotting needs matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    from snnmetrics.plot import plot_firing_rates, plot_operations

    types = {"0": "Linear", "1": "Leaky"}
    rates = {"1": {"rates": torch.tensor([0.1, 0.2, 0.4])}}
    _, ax = plot_firing_rates(rates, layer_types=types)
    assert [text.get_text() for text in ax.get_legend().get_texts()] == ["median", "mean"]
    assert [label.get_text() for label in ax.get_xticklabels()] == ["1\nLeaky"]
    report = {
        "synaptic_operations": {"per_layer": {"0": {"synops": 5.0, "dense": 20.0}}},
        "neuron_operations": {"per_layer": {"1": {"effective": 8.0, "dense": 8.0}}},
    }
    _, ax = plot_operations(report, layer_types=types)
    assert [label.get_text() for label in ax.get_xticklabels()] == ["0\nLinear", "1\nLeaky"]
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert labels == [
        "synaptic ops, effective",
        "synaptic ops, dense",
        "neuron ops, effective",
        "neuron ops, dense",
    ]
    heights = sorted(patch.get_height() for patch in ax.patches)
    assert heights == [5.0, 8.0, 8.0, 20.0]
    # an ANN's report has no neuron section
    _fig, ax = plot_operations({"synaptic_operations": report["synaptic_operations"]})
    assert len(ax.patches) == 2


def test_dense_of_builtin_mlp_is_architectural(tmp_path):
    path = tmp_path / "r.json"
    assert (
        main(
            ["profile", "--batches", "1", "--timesteps", "5", "--json", str(path), "--no-progress"]
        )
        == 0
    )
    dense = json.loads(path.read_text())["synaptic_operations"]["total"]["dense"]
    assert dense == 5 * (20 * 256 + 256 * 256 + 256 * 256 + 256 * 35)


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"snnmetrics {sm.__version__}"


def test_help_gives_every_option_a_text_and_a_default(capsys):
    with pytest.raises(SystemExit):
        main(["profile", "--help"])
    text = capsys.readouterr().out
    assert "``" not in text and ":class:" not in text and ":func:" not in text
    options = text.split("options:")[1]
    entries = [entry for entry in options.split("\n  -") if entry.strip()]
    for entry in entries:
        flag = entry.split()[0].lstrip("-")
        if flag in ("h,", "no-progress", "traceback"):  # switches: no default to state
            continue
        assert "(default" in " ".join(entry.split()), entry


def test_no_progress_bar_when_stderr_is_not_a_terminal(capsys):
    assert main(["profile", "--batches", "2", "--timesteps", "2"]) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.skipif(os.name != "posix", reason="needs a pseudo-terminal")
def test_progress_bar_on_a_terminal():
    import fcntl
    import pty
    import struct
    import termios

    pid, fd = pty.fork()
    if pid == 0:  # the child: stdout and stderr are the terminal
        os.execv(
            sys.executable,
            [sys.executable, "-m", "snnmetrics", "profile", "--batches", "3", "--timesteps", "2"],
        )
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
    out = b""
    while True:
        try:
            data = os.read(fd, 4096)
        except OSError:
            break
        if not data:
            break
        out += data
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    text = out.decode()
    assert "3/3 [" in text and "batch/s]" in text  # tqdm: count, elapsed time, rate


def test_python_dash_m_entry_point():
    run = subprocess.run(
        [sys.executable, "-m", "snnmetrics", "profile", "--batches", "1", "--timesteps", "2"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("model     mlp (built-in example)")
    assert run.stderr == ""  # not a terminal: no progress frames written to a file
