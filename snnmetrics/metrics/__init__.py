"""Stateful metrics (``torchmetrics.Metric`` subclasses)."""

from snnmetrics.metrics.base import HookedMetric
from snnmetrics.metrics.synaptic import SynapticOperations, SynOps

__all__ = ["HookedMetric", "SynOps", "SynapticOperations"]
