"""A real lightning.Trainer fit on CPU logs the same figures as the metrics in a plain loop."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import snntorch as snn
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import snnmetrics as sm
from snnmetrics import SynapticOperations
from snnmetrics.integrations.lightning import SNNMetricsCallback

METRICS = {
    "synops": sm.SynapticOperations,
    "neuron_ops": sm.NeuronOperations,
    "membrane": sm.MembraneUpdates,
    "sparsity": sm.ActivationSparsity,
    "firing": sm.FiringRate,
}

STEPS = 5


def _network() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(6, 8), snn.Leaky(beta=0.8, init_hidden=True),
        nn.Linear(8, 3), snn.Leaky(beta=0.8, init_hidden=True),
    )


def _forward(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    for module in net.modules():
        if isinstance(module, snn.SpikingNeuron):
            module.reset_mem()
    return sum(net(x[:, t]) for t in range(x.shape[1]))  # type: ignore[return-value]


class SpikingClassifier(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = _network()

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(_forward(self.net, x), y)

    def validation_step(self, batch, batch_idx):
        _forward(self.net, batch[0])

    def test_step(self, batch, batch_idx):
        _forward(self.net, batch[0])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)


def _data(seed: int, n: int) -> TensorDataset:
    gen = torch.Generator().manual_seed(seed)
    x = (torch.rand(n, STEPS, 6, generator=gen) < 0.5).float()
    return TensorDataset(x, torch.randint(0, 3, (n,), generator=gen))


def _loader(seed: int, n: int) -> DataLoader:
    return DataLoader(_data(seed, n), batch_size=4, shuffle=False)


def _plain_loop() -> dict[str, torch.Tensor]:
    """The same training, by hand: one epoch of SGD, then validation, then test."""
    net = _network()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.5)
    stages = {stage: {n: make(net) for n, make in METRICS.items()}
              for stage in ("train", "val", "test")}
    for x, y in _loader(1, 10):
        for metric in stages["train"].values():
            metric.discard_pending()
        loss = nn.functional.cross_entropy(_forward(net, x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        for metric in stages["train"].values():
            metric.update()
    for stage, seed, n in (("val", 2, 6), ("test", 3, 7)):
        for metric in stages[stage].values():
            metric.discard_pending()
        with torch.no_grad():
            for x, _ in _loader(seed, n):
                _forward(net, x)
                for metric in stages[stage].values():
                    metric.update()
    logged = {}
    for stage, metrics in stages.items():
        for name, metric in metrics.items():
            logged.update(sm.scalars(f"{stage}/{name}", metric.compute()))
    return logged


def test_fit_logs_the_plain_loop_figures_per_stage():
    expected = _plain_loop()
    module = SpikingClassifier()
    callback = SNNMetricsCallback(METRICS, network="net")
    trainer = pl.Trainer(
        max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=2,
        callbacks=[callback],
    )
    trainer.fit(module, _loader(1, 10), _loader(2, 6))
    logged = dict(trainer.callback_metrics)
    trainer.test(module, _loader(3, 7), verbose=False)
    logged.update(trainer.callback_metrics)
    assert set(logged) == set(expected)
    for key, value in expected.items():
        torch.testing.assert_close(logged[key], value, rtol=0, atol=0, msg=key)
    assert float(expected["train/synops/synops"]) != float(expected["val/synops/synops"])
    assert len(expected) > 40  # every scalar of every metric, per stage
    # hooks are gone after the run; the metric added nothing to the module's state
    assert all(not m._forward_pre_hooks for m in module.net.modules())
    assert not any(key.startswith("synops") for key in module.state_dict())


def test_metric_attribute_adds_no_weights_to_the_lightning_module():
    module = SpikingClassifier()
    module.synops = SynapticOperations(module.net)
    metric_keys = {k for k in module.state_dict() if k.startswith("synops.")}
    assert metric_keys == {
        "synops.samples", "synops.effective_acs", "synops.effective_macs", "synops.dense",
        "synops.nonfinite",
    }
    assert sum(p.numel() for p in module.parameters()) == sum(
        p.numel() for p in module.net.parameters()
    )


def test_unknown_stage_and_missing_network_are_rejected():
    with pytest.raises(ValueError, match="stages"):
        SNNMetricsCallback({"s": SynapticOperations}, stages=("training",))
    with pytest.raises(ValueError, match="at least one"):
        SNNMetricsCallback({})
    callback = SNNMetricsCallback({"s": SynapticOperations}, network="nope")
    with pytest.raises(ValueError, match="nope"):
        callback.setup(None, SpikingClassifier(), "fit")  # type: ignore[arg-type]


def test_two_process_ddp_validation_logs_the_single_process_figures(tmp_path):
    # 8 samples in batches of 2: each rank validates 4, and no sample is padded in twice
    net = _network()
    metrics = {name: make(net) for name, make in METRICS.items()}
    with torch.no_grad():
        for x, _ in _loader(2, 8):
            _forward(net, x)
            for metric in metrics.values():
                metric.update()
    expected = {}
    for name, metric in metrics.items():
        for key, value in sm.scalars(f"val/{name}", metric.compute()).items():
            expected[key] = float(value)

    script = Path(__file__).with_name("lightning_ddp_script.py")
    out = tmp_path / "logged.json"
    run = subprocess.run([sys.executable, str(script), str(out)], capture_output=True,
                         text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    for rank in (0, 1):
        logged = json.loads(out.with_suffix(f".rank{rank}.json").read_text())
        assert logged == pytest.approx(expected, rel=1e-12)
