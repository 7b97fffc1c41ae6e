"""Turning metric results into loggable scalars."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

__all__ = ["layer_order", "scalars"]


def scalars(name: str, result: Any) -> dict[str, Tensor]:
    """Flatten a metric result into ``{"name/key/...": scalar tensor}`` for logging.

    Nested dicts become ``/``-separated names; tensors with more than one element
    (per-neuron rates, histograms) are left out, since loggers take scalars.

    Example:
        >>> import torch
        >>> scalars("synops", {"synops": torch.tensor(3.0), "dense": torch.tensor(9.0)})
        {'synops/synops': tensor(3.), 'synops/dense': tensor(9.)}
    """
    if isinstance(result, Mapping):
        flat: dict[str, Tensor] = {}
        for key, value in result.items():
            flat.update(scalars(f"{name}/{key}", value))
        return flat
    if isinstance(result, Tensor) and result.numel() == 1:
        return {name: result.reshape(())}
    return {}


def layer_order(name: str) -> tuple[int, ...]:
    """Sort key that puts ``named_modules`` names ("2", "10", "3.recurrent") in model order."""
    return tuple(int(part) if part.isdigit() else -1 for part in name.split("."))
