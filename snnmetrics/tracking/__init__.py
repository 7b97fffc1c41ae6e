"""Shared forward hooks that publish per-module counters to the metrics."""

from snnmetrics.tracking.connection import ConnectionTap
from snnmetrics.tracking.hub import Tap, Window, acquire, release
from snnmetrics.tracking.neuron import NeuronTap

__all__ = ["ConnectionTap", "NeuronTap", "Tap", "Window", "acquire", "release"]
