"""Metrics by name (sparsey's ``MetricFactory``) and the comparisons that pick the better of
two results (sparsey's ``comparisons`` module)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from snnmetrics import metrics as _metrics

__all__ = [
    "COMPARISONS",
    "average_nested_data",
    "get_comparison",
    "get_metric",
    "max_by_layerwise_mean",
    "metric_names",
    "min_by_layerwise_mean",
]


def average_nested_data(data: Any, key: str | None = None) -> float:
    """The mean of arbitrarily nested results, each branch weighted equally.

    A tensor gives the mean of its elements (NaN entries, which mark undefined figures,
    are left out), a number itself, and a dict or sequence the mean of its items'
    averages; so a result ``{layer: value}`` averages its layers equally. With ``key``,
    every dict that holds ``key`` stands for its entry ``key`` (a per-layer dict of
    figures stands for the figure judged). NaN if nothing is defined.

    Example:
        >>> import torch
        >>> average_nested_data({"0": torch.tensor([1.0, 3.0]), "1": [4.0, torch.tensor(6.0)]})
        3.5
    """
    if isinstance(data, Tensor):
        values = data.detach().to(torch.float64)
        return float(values.nanmean()) if values.numel() else math.nan
    if isinstance(data, (bool, int, float)):
        return float(data)
    if isinstance(data, Mapping):
        if key is not None and key in data:
            return average_nested_data(data[key], key)
        items = list(data.values())
    elif isinstance(data, (list, tuple)):
        items = list(data)
    else:
        raise TypeError(f"cannot average {type(data).__name__}")
    averages = [average_nested_data(item, key) for item in items]
    defined = [value for value in averages if not math.isnan(value)]
    return sum(defined) / len(defined) if defined else math.nan


def max_by_layerwise_mean(x: Any, y: Any, key: str | None = None) -> Any:
    """``x`` or ``y``, whichever has the larger layerwise mean (:func:`average_nested_data`);
    ``x`` on a tie or when ``y``'s mean is undefined.

    Example:
        >>> import torch
        >>> max_by_layerwise_mean({"0": torch.tensor(0.2)}, {"0": torch.tensor(0.4)})
        {'0': tensor(0.4000)}
    """
    return y if average_nested_data(y, key) > average_nested_data(x, key) else x


def min_by_layerwise_mean(x: Any, y: Any, key: str | None = None) -> Any:
    """``x`` or ``y``, whichever has the smaller layerwise mean; ``x`` on a tie.

    Example:
        >>> min_by_layerwise_mean([1.0, 5.0], [2.0, 2.0])
        [2.0, 2.0]
    """
    return y if average_nested_data(y, key) < average_nested_data(x, key) else x


COMPARISONS: dict[str, Callable[..., Any]] = {
    "average_nested_data": average_nested_data,
    "max_by_layerwise_mean": max_by_layerwise_mean,
    "min_by_layerwise_mean": min_by_layerwise_mean,
}
"""sparsey's comparison functions by name."""


def _normalise(name: str) -> str:
    key = name.replace("_", "").lower()
    return key[: -len("metric")] if key.endswith("metric") and key != "metric" else key


def _metric_classes() -> dict[str, type[Metric]]:
    """Every concrete metric class that :mod:`snnmetrics.metrics` exports, by class name."""
    classes = {}
    for name in _metrics.__all__:
        value = getattr(_metrics, name)
        if isinstance(value, type) and issubclass(value, Metric) and not name.endswith("Metric"):
            classes[name] = value
    return classes


def metric_names() -> list[str]:
    """The class names :func:`get_metric` builds."""
    return sorted(_metric_classes())


def get_metric(name: str, **kwargs: Any) -> Metric:
    """Build a metric by name: ``get_metric("feature_coverage", model=net)``.

    ``name`` is a class name (``"NumActivations"``), sparsey's (``"NumActivationsMetric"``)
    or its module name (``"num_activations"``); case and underscores do not matter.
    ``kwargs`` go to the class (``model=`` for a hooked metric).

    Example:
        >>> import torch, snntorch as snn
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 2), snn.Leaky(beta=0.9, init_hidden=True))
        >>> type(get_metric("basis_set_size_increase", model=net)).__name__
        'BasisSetSizeIncrease'
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a metric name (str), got {type(name).__name__}")
    classes = {_normalise(cls_name): cls for cls_name, cls in _metric_classes().items()}
    cls = classes.get(_normalise(name))
    if cls is None:
        raise ValueError(f"name: unknown metric {name!r}; known: {metric_names()}")
    return cls(**kwargs)


def get_comparison(which: str | Metric | type[Metric]) -> Callable[..., Any]:
    """A comparison function by name (see :data:`COMPARISONS`), or the one that judges the
    results of a metric (instance or class): ``max_by_layerwise_mean`` if higher is better,
    else ``min_by_layerwise_mean``, looking at the metric's ``best_key`` figure of each
    layer. Such a function maps two results to the better one.

    Example:
        >>> from snnmetrics import FeatureCoverage
        >>> best = get_comparison(FeatureCoverage)
        >>> best({"1": 0.25}, {"1": 0.5})
        {'1': 0.5}
    """
    if isinstance(which, str):
        if which not in COMPARISONS:
            raise ValueError(f"which: unknown comparison {which!r}; known: {sorted(COMPARISONS)}")
        return COMPARISONS[which]
    cls = which if isinstance(which, type) else type(which)
    if not (isinstance(cls, type) and issubclass(cls, Metric)):
        raise TypeError(f"which must be a comparison name or a metric, got {which!r}")
    higher = getattr(cls, "higher_is_better", None)
    if higher is None:
        raise ValueError(f"which: {cls.__name__} does not say whether higher is better")
    chosen = max_by_layerwise_mean if higher else min_by_layerwise_mean
    return partial(chosen, key=getattr(cls, "best_key", None))
