"""Shared forward hooks that publish per-module counters to the metrics."""

from snnmetrics.tracking.call import CallTap, acquire_connection_tap
from snnmetrics.tracking.connection import ConnectionTap
from snnmetrics.tracking.hub import Tap, Window, acquire, release
from snnmetrics.tracking.neuron import NeuronTap

__all__ = [
    "CallTap",
    "ConnectionTap",
    "NeuronTap",
    "Tap",
    "Window",
    "acquire",
    "acquire_connection_tap",
    "release",
]
