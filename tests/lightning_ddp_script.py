"""Run by tests/test_lightning.py: validate with strategy="ddp" on 2 CPU processes.

Lightning re-launches this script for the second rank, so it must be a plain script.
Usage: python tests/lightning_ddp_script.py OUTPUT.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning.pytorch as pl
import torch.distributed

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from snnmetrics.integrations.lightning import SNNMetricsCallback
from tests.test_lightning import METRICS, SpikingClassifier, _loader

if __name__ == "__main__":
    callback = SNNMetricsCallback(METRICS, network="net", stages=("val",))
    trainer = pl.Trainer(
        accelerator="cpu", devices=2, strategy="ddp", logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[callback],
    )
    trainer.validate(SpikingClassifier(), _loader(2, 8), verbose=False)
    logged = {key: float(value) for key, value in trainer.callback_metrics.items()}
    Path(sys.argv[1]).with_suffix(f".rank{trainer.global_rank}.json").write_text(
        json.dumps(logged)
    )
    # shut gloo down together, before the interpreter does (a rank exiting with its
    # process group alive can abort in a gloo thread)
    trainer.strategy.barrier()
    torch.distributed.destroy_process_group()
