"""``snnmetrics profile``: spike-train statistics and activity per step, against figures
worked out here from the spike times, and the metrics run by hand."""

from __future__ import annotations

import json
import math
import statistics

import pytest
import snntorch as snn
import torch

import snnmetrics as sm
import snnmetrics.metrics.activity
from snnmetrics.cli import main
from snnmetrics.examples import mlp_snn, reset_neurons

# Spike times per sample and channel: a batch of 3 samples of 6 steps, then one of 2 samples
# of 8 steps (the profile grows to 8 steps). Channel 2 never fires (no Fano factor, no CV);
# channel 1 has single intervals in three samples.
TIMES = [
    [[0, 2, 4], [1, 5], []],
    [[0, 1, 5], [3], []],
    [[2], [], []],
    [[0, 3, 7], [2, 6], []],
    [[1, 2, 3, 4], [0, 7], []],
]
BATCHES = [(0, 3, 6), (3, 5, 8)]  # first sample, end, steps


def relay() -> torch.nn.Module:
    """Linear(3, 3) with the identity as weights, then a Leaky neuron with no leak, no reset
    and threshold 0.5: it fires exactly where its input is 1 (its spikes are the input)."""
    net = torch.nn.Sequential(
        torch.nn.Linear(3, 3, bias=False),
        snn.Leaky(beta=0.0, threshold=0.5, reset_mechanism="none", init_hidden=True),
    )
    with torch.no_grad():
        net[0].weight.copy_(torch.eye(3))
    return net


def timed_spikes() -> list[torch.Tensor]:
    batches = []
    for first, end, steps in BATCHES:
        x = torch.zeros(end - first, steps, 3)
        for i in range(first, end):
            for channel, times in enumerate(TIMES[i]):
                x[i - first, times, channel] = 1.0
        batches.append(x)
    return batches


def _steps(i: int) -> int:
    return next(steps for first, end, steps in BATCHES if first <= i < end)


def _run(tmp_path, *args: str) -> dict:
    path = tmp_path / "report.json"
    assert main(["profile", "--no-progress", "--json", str(path), *args]) == 0
    text = path.read_text()
    assert "NaN" not in text  # undefined figures are null: the file is strict JSON
    return json.loads(text)


RELAY = ("--model", "tests.test_cli_activity:relay", "--data", "tests.test_cli_activity:")


def test_spike_train_statistics_by_hand(tmp_path, capsys):
    report = _run(tmp_path, *RELAY[:3], RELAY[3] + "timed_spikes")
    fano, cv = [], []
    for channel in range(3):
        counts = [len(sample[channel]) for sample in TIMES]
        mean = statistics.fmean(counts)
        fano.append(statistics.pvariance(counts) / mean if mean else None)
        intervals = [
            later - earlier
            for sample in TIMES
            for earlier, later in zip(sample[channel], sample[channel][1:], strict=False)
        ]
        defined = len(intervals) >= 2
        cv.append(statistics.pstdev(intervals) / statistics.fmean(intervals) if defined else None)
    assert fano[2] is None and cv[2] is None and None not in cv[:2]
    layer = report["spike_train_statistics"]["per_layer"]["1"]
    assert layer["fano_factor"] == pytest.approx(fano)
    assert layer["cv_isi"] == pytest.approx(cv)
    assert layer["mean_fano_factor"] == pytest.approx((fano[0] + fano[1]) / 2)
    assert layer["mean_cv_isi"] == pytest.approx((cv[0] + cv[1]) / 2)
    assert list(report["spike_train_statistics"]["per_layer"]) == ["1"]
    # the printed row: 3 neurons, the means and how many neurons have each
    row = f"1 Leaky        3  {layer['mean_fano_factor']:>16.4f}  {2:>16}  "
    row += f"{layer['mean_cv_isi']:>14.4f}  {2:>16}"
    assert row in capsys.readouterr().out.splitlines()


def test_activity_profile_by_hand(tmp_path, capsys):
    report = _run(tmp_path, *RELAY[:3], RELAY[3] + "timed_spikes")
    steps = max(steps for _, _, steps in BATCHES)
    rate, synops = [], []
    for t in range(steps):
        ran = [i for i in range(len(TIMES)) if t < _steps(i)]  # the samples that ran step t
        firing = [sum(t in times for times in TIMES[i]) / 3 for i in ran]
        rate.append(statistics.fmean(firing))
        # each input spike meets one nonzero weight; per sample of all samples
        synops.append(sum(t in times for sample in TIMES for times in sample) / len(TIMES))
    per_layer = report["activity_profile"]["per_layer"]
    assert per_layer == {"0": {"synops": pytest.approx(synops)}, "1": {"rate": pytest.approx(rate)}}
    # the steps sum to the synaptic operations of the run
    total = report["synaptic_operations"]["per_layer"]["0"]["synops"]
    assert sum(per_layer["0"]["synops"]) == pytest.approx(total)
    # every step fits in 100 columns here: the tables show them all, in the JSON's figures
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert rows.count(["layer", *(f"t={t}" for t in range(steps))]) == 2  # rate, synops
    assert ["1", "Leaky", *(f"{value:.4f}" for value in rate)] in rows
    assert ["0", "Linear", *(f"{value:,.1f}" for value in synops)] in rows


def mlp_varying_steps() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Labelled random spikes for the built-in MLP: 4 samples of 5 steps, then 3 of 7."""
    generator = torch.Generator().manual_seed(11)
    return [
        ((torch.rand(4, 5, 20, generator=generator) < 0.3).float(), torch.tensor([0, 1, 2, 3])),
        ((torch.rand(3, 7, 20, generator=generator) < 0.3).float(), torch.tensor([4, 5, 6])),
    ]


def _nan_as_none(value):
    if isinstance(value, dict):
        return {key: _nan_as_none(item) for key, item in value.items()}
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    if isinstance(value, list):
        return [_nan_as_none(item) for item in value]
    return None if math.isnan(value) else value


def test_sections_equal_the_metrics_run_by_hand(tmp_path):
    """The built-in MLP on batches of 5 and then 7 steps: the two sections equal
    SpikeTrainStatistics and ActivityProfile(max_steps=7) run over the same batches."""
    report = _run(tmp_path, "--data", "tests.test_cli_activity:mlp_varying_steps", "--seed", "2")

    torch.manual_seed(2)  # the CLI seeds torch before the factories
    net = mlp_snn()
    trains, by_step = sm.SpikeTrainStatistics(net), sm.ActivityProfile(net, max_steps=7)
    with torch.no_grad():
        for x, _ in mlp_varying_steps():
            reset_neurons(net)
            for t in range(x.shape[1]):
                net(x[:, t])
            trains.update()
            by_step.update()
    assert report["spike_train_statistics"]["per_layer"] == _nan_as_none(trains.compute())
    per_layer = report["activity_profile"]["per_layer"]
    assert per_layer == _nan_as_none(by_step.compute())
    assert {len(values) for figures in per_layer.values() for values in figures.values()} == {7}
    assert report["run"]["timesteps"] == [5, 7]


def test_an_ann_has_no_spike_trains_but_operations_per_step(tmp_path, capsys):
    """identity_ann of test_cli_data on its labelled data: synops at step t = the input
    spikes at t per sample; no spiking neuron, so no spike trains and no rate."""
    from tests.test_cli_data import COUNTS, STEPS

    report = _run(
        tmp_path,
        "--model",
        "tests.test_cli_data:identity_ann",
        "--data",
        "tests.test_cli_data:labelled",
    )
    assert "spike_train_statistics" not in report
    assert report["skipped"]["spike_train_statistics"] == (
        "Sequential has no spiking neuron to watch (snnTorch neurons, or a type registered "
        "with snnmetrics.register_neuron)"
    )
    # channel c of sample i spikes at its first COUNTS[i][c] steps
    synops = [sum(t < count for row in COUNTS for count in row) / len(COUNTS) for t in range(STEPS)]
    assert report["activity_profile"]["per_layer"] == {"0": {"synops": pytest.approx(synops)}}
    out = capsys.readouterr().out
    assert "Spike trains" not in out and "Rate at step t" not in out
    assert "Synaptic operations per sample at step t" in out
    reasons = " ".join(out.split())
    assert "Not measured: neuron operations, membrane updates, firing rates, spike-train " in (
        reasons
    )


def lstm_net() -> torch.nn.Module:
    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = torch.nn.LSTM(3, 4, batch_first=True)
            self.fc = torch.nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out, _ = self.lstm(x.unsqueeze(1))
            return self.fc(out[:, -1])

    return Net()


def test_a_layer_with_no_per_step_count_gives_the_reason(tmp_path, capsys):
    folder = tmp_path / "figs"
    args = ["--model", "tests.test_cli_activity:lstm_net", "--input-shape", "3"]
    report = _run(tmp_path, *args, "--batches", "1", "--timesteps", "2", "--plots", str(folder))
    assert "activity_profile" not in report
    assert report["skipped"]["activity_profile"].startswith(
        "layer 'lstm' (LSTM) runs all its steps in one call"
    )
    out = " ".join(capsys.readouterr().out.split())
    assert "Not measured: activity per step: layer 'lstm' (LSTM)" in out
    assert "Not drawn: activity_profile.png: layer 'lstm' (LSTM)" in out
    assert not (folder / "activity_profile.png").exists()


def test_the_plot_is_the_metrics_own_of_the_json_figures(tmp_path, monkeypatch):
    drawn = []
    plot = snnmetrics.metrics.activity.ActivityProfile.plot

    def recording(self, val=None, ax=None):
        drawn.append((self, val))
        return plot(self, val, ax)

    monkeypatch.setattr(snnmetrics.metrics.activity.ActivityProfile, "plot", recording)
    folder = tmp_path / "figs"
    report = _run(tmp_path, *RELAY[:3], RELAY[3] + "timed_spikes", "--plots", str(folder))
    data = (folder / "activity_profile.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    [(metric, val)] = drawn
    assert isinstance(metric, sm.ActivityProfile) and metric.max_steps == 8
    assert _nan_as_none(val) == report["activity_profile"]["per_layer"]


def test_nothing_to_draw_per_step_is_said(tmp_path, capsys):
    """An ANN on silent input: no rate (no spiking neuron) and no operation at any step."""
    folder = tmp_path / "figs"
    args = ["profile", "--no-progress", "--model", "tests.test_cli:tiny_model"]
    args += ["--input-shape", "3", "--batches", "1", "--timesteps", "2", "--rate", "0"]
    assert main([*args, "--plots", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "Not drawn: activity_profile.png: no layer fired or operated at any step" in out
    assert not (folder / "activity_profile.png").exists()
