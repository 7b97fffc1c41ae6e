"""Lightning integration: per-stage, per-epoch snnmetrics figures from a callback.

Requires the ``lightning`` extra (``pip install snnmetrics[lightning]``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import lightning.pytorch as pl
from torch import nn

from snnmetrics.metrics.base import HookedMetric
from snnmetrics.results import scalars

__all__ = ["SNNMetricsCallback"]

_STAGES = ("train", "val", "test")


class SNNMetricsCallback(pl.Callback):
    """Attach hooked metrics to a LightningModule's network and log them every epoch.

    One set of metrics is made per stage (``train``, ``val``, ``test``). For each batch of
    a stage the callback forgets whatever the hooks saw outside that batch, so forwards of
    one stage never leak into another's figures, then calls ``update()`` at the batch
    end. At the stage's epoch end it logs every scalar of ``compute()`` as
    ``"{stage}/{name}/{key}"`` (already reduced over all DDP ranks) and resets. The hooks
    are removed at teardown.

    Args:
        metrics: name -> factory taking the network, e.g.
            ``{"synops": SynapticOperations}`` or
            ``{"synops_all": lambda net: SynapticOperations(net, skip_zero_weights=False)}``.
        network: attribute of the LightningModule that holds the network (default: the
            LightningModule itself).
        stages: which of ``"train"``, ``"val"``, ``"test"`` to measure.

    Example:
        >>> from snnmetrics import SynapticOperations
        >>> from snnmetrics.integrations.lightning import SNNMetricsCallback
        >>> callback = SNNMetricsCallback({"synops": SynapticOperations}, network="net")
    """

    def __init__(
        self,
        metrics: Mapping[str, Callable[[nn.Module], HookedMetric]],
        network: str | None = None,
        stages: Sequence[str] = _STAGES,
    ) -> None:
        if not metrics:
            raise ValueError("metrics must name at least one metric factory")
        unknown = set(stages) - set(_STAGES)
        if unknown:
            raise ValueError(f"stages must be among {_STAGES}, got {sorted(unknown)}")
        self.factories = dict(metrics)
        self.network = network
        self.stages = tuple(stages)
        self.metrics: dict[str, dict[str, HookedMetric]] = {}

    def _network(self, pl_module: pl.LightningModule) -> nn.Module:
        if self.network is None:
            return pl_module
        net = getattr(pl_module, self.network, None)
        if not isinstance(net, nn.Module):
            raise ValueError(
                f"{type(pl_module).__name__} has no nn.Module attribute {self.network!r}"
            )
        return net

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.metrics:
            return
        net = self._network(pl_module)
        self.metrics = {
            stage_name: {name: make(net) for name, make in self.factories.items()}
            for stage_name in self.stages
        }

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        for stage_metrics in self.metrics.values():
            for metric in stage_metrics.values():
                metric.detach()
        self.metrics = {}

    def _epoch_start(self, stage: str, pl_module: pl.LightningModule) -> None:
        for metric in self.metrics.get(stage, {}).values():
            metric.to(pl_module.device)
            metric.reset()

    def _batch_start(self, stage: str) -> None:
        for metric in self.metrics.get(stage, {}).values():
            metric.discard_pending()

    def _batch_end(self, stage: str) -> None:
        for metric in self.metrics.get(stage, {}).values():
            metric.update()

    def _epoch_end(self, stage: str, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        stage_metrics = self.metrics.get(stage, {})
        if trainer.sanity_checking or not stage_metrics:
            return
        logged: dict[str, object] = {}
        for name, metric in stage_metrics.items():
            logged.update(scalars(f"{stage}/{name}", metric.compute()))
        pl_module.log_dict(logged)  # type: ignore[arg-type]

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_start("train", pl_module)

    def on_validation_epoch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule
    ) -> None:
        self._epoch_start("val", pl_module)

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_start("test", pl_module)

    def on_train_batch_start(self, *args: object, **kwargs: object) -> None:
        self._batch_start("train")

    def on_validation_batch_start(self, *args: object, **kwargs: object) -> None:
        self._batch_start("val")

    def on_test_batch_start(self, *args: object, **kwargs: object) -> None:
        self._batch_start("test")

    def on_train_batch_end(self, *args: object, **kwargs: object) -> None:
        self._batch_end("train")

    def on_validation_batch_end(self, *args: object, **kwargs: object) -> None:
        self._batch_end("val")

    def on_test_batch_end(self, *args: object, **kwargs: object) -> None:
        self._batch_end("test")

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_end("train", trainer, pl_module)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_end("val", trainer, pl_module)

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_end("test", trainer, pl_module)
