"""Shared forward hooks that publish per-module counters to the metrics."""

from snnmetrics.tracking.connection import ConnectionTap
from snnmetrics.tracking.hub import Tap, Window, acquire, release

__all__ = ["ConnectionTap", "Tap", "Window", "acquire", "release"]
