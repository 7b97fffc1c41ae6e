"""snnmetrics: exact, streaming, DDP-ready metrics for spiking neural networks."""

from snnmetrics import functional
from snnmetrics.connections import ConnectionRule, register_connection
from snnmetrics.metrics import HookedMetric, SynapticOperations, SynOps

__version__ = "0.1.0"

__all__ = [
    "ConnectionRule",
    "HookedMetric",
    "SynOps",
    "SynapticOperations",
    "__version__",
    "functional",
    "register_connection",
]
