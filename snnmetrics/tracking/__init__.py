"""Shared forward hooks that publish per-module counters to the metrics."""

from snnmetrics.tracking.call import CallTap, acquire_connection_tap
from snnmetrics.tracking.code import CodeTap, InputTap
from snnmetrics.tracking.connection import ConnectionTap
from snnmetrics.tracking.hub import Tap, Window, acquire, release
from snnmetrics.tracking.neuron import NeuronTap

__all__ = [
    "CallTap",
    "CodeTap",
    "ConnectionTap",
    "InputTap",
    "NeuronTap",
    "Tap",
    "Window",
    "acquire",
    "acquire_connection_tap",
    "release",
]
