"""Command line: snnmetrics profile measures a model on Poisson spikes or on your own data."""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import sys
import sysconfig
import textwrap
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

import snnmetrics
from snnmetrics.energy import MemoryModel
from snnmetrics.examples import EXAMPLES, poisson_spikes, reset_neurons
from snnmetrics.metrics import (
    ActivationSparsity,
    ActivityProfile,
    Energy,
    FiringRate,
    HookedMetric,
    MembraneUpdates,
    NeuronOperations,
    SpikeTrainStatistics,
    SynapticOperations,
)
from snnmetrics.results import layer_order

__all__ = ["main", "poisson_batches", "profile"]

DESCRIPTION = """\
Measure what a spiking neural network costs and how it fires: synaptic and neuron
operations, membrane updates, activation sparsity, firing rates, spike-train statistics,
activity and cost per step and an energy estimate, per layer. The model runs step by step
on Bernoulli ("Poisson") spikes, or on your own data with --data (then with accuracy where
the batches carry labels)."""


class CliError(Exception):
    """A failure reported in one line with exit status 2 (the message says what to fix)."""


class UserCodeError(CliError):
    """The user's own code (a factory, an import, the model's forward) raised."""

    def __init__(self, what: str, error: BaseException) -> None:
        first = str(error).strip().splitlines()
        detail = f"{type(error).__name__}: {first[0]}" if first else type(error).__name__
        super().__init__(f"{what} raised {detail}{_where(error)}")
        self.error = error


def _library_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {paths["stdlib"], paths["purelib"], paths["platlib"], str(Path(torch.__file__).parent)}
    return (*sorted(roots), str(Path(snnmetrics.__file__).parent))


def _where(error: BaseException) -> str:
    """`` (at file.py:12)``: the innermost frame of the traceback in the user's own files."""
    roots = _library_roots()
    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        if not frame.filename.startswith(roots) and not frame.filename.startswith("<"):
            return f" (at {Path(frame.filename).name}:{frame.lineno})"
    return ""


def _user_call(what: str, function: Callable[..., Any], *args: Any) -> Any:
    """``function(*args)``; whatever it raises becomes one line naming ``what`` raised it."""
    try:
        return function(*args)
    except Exception as error:
        raise UserCodeError(what, error) from error


def _load(spec: str, option: str) -> Callable[[], Any]:
    """The function named by ``'package.module:function'`` (the current folder importable)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise CliError(f"{option} must look like 'package.module:function', got {spec!r}")
    if os.getcwd() not in sys.path:  # as `python -m` does: the user's own modules import
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name is not None and module_name.startswith(error.name):
            raise CliError(f"{option} {spec!r}: no module named {error.name!r}") from None
        raise UserCodeError(f"importing {module_name} ({option})", error) from error
    except Exception as error:
        raise UserCodeError(f"importing {module_name} ({option})", error) from error
    function = getattr(module, attr, None)
    if function is None:
        raise CliError(f"{option} {spec!r}: module {module_name!r} has no {attr!r}")
    if not callable(function):
        raise CliError(f"{option} {spec!r} is {_describe(function)}, not a function")
    return function


def _parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(part) for part in text.replace("x", ",").split(",") if part.strip())
    except ValueError:
        raise CliError(f"--input-shape must be comma-separated sizes, got {text!r}") from None
    if not shape or any(size <= 0 for size in shape):
        raise CliError(f"--input-shape must be positive sizes, got {text!r}")
    return shape


def _floats(result: Any) -> Any:
    """A metric result with every tensor turned into a float (or a list of floats)."""
    if isinstance(result, dict):
        return {key: _floats(value) for key, value in result.items()}
    if isinstance(result, Tensor):
        return result.item() if result.ndim == 0 else result.tolist()
    return result


def _defined(value: Any) -> Any:
    """``value`` (floats, nested lists, dicts) with each NaN, an undefined figure, as None:
    JSON has no NaN (``null`` instead)."""
    if isinstance(value, dict):
        return {key: _defined(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_defined(item) for item in value]
    return None if isinstance(value, float) and value != value else value


_SECTIONS: dict[str, Callable[[nn.Module], HookedMetric]] = {
    "synaptic_operations": SynapticOperations,
    "neuron_operations": NeuronOperations,
    "membrane_updates": MembraneUpdates,
    "activation_sparsity": ActivationSparsity,
    "activation_sparsity_by_layer": lambda model: ActivationSparsity(model, by_layer=True),
    "firing_rate": FiringRate,
    "spike_train_statistics": SpikeTrainStatistics,
    # made for one step, then grown to the longest batch before it runs (_longer)
    "activity_profile": lambda model: ActivityProfile(model, max_steps=1),
    "energy": Energy,
}

_ANN_COMPARISON = ("ann", "ann_macs", "ann_ratio", "spikes_per_synapse")


def _metrics(model: nn.Module) -> tuple[dict[str, HookedMetric], dict[str, str]]:
    """The metrics that apply to ``model`` and, for the others, why they do not."""
    metrics, skipped = {}, {}
    for name, make in _SECTIONS.items():
        try:
            metrics[name] = make(model)
        # nothing of that kind to watch (an ANN has no neurons); a layer that cannot be
        # watched that way (an nn.LSTM has no per-step operations)
        except (ValueError, TypeError) as err:
            skipped[name] = str(err)
    if not metrics:
        raise CliError(f"{type(model).__name__} has no layer that snnmetrics can measure")
    return metrics, skipped


def _longer(profile: ActivityProfile, steps: int) -> ActivityProfile:
    """``profile`` with room for ``steps`` steps per batch: a new metric that holds its
    state (the steps it had no room for at zero, as no sample ran them), the old one
    detached. Made between two batches, it sees every call of the next."""
    longer = ActivityProfile(profile.model, max_steps=steps).to(profile.device)
    for name, value in profile.metric_state.items():
        assert isinstance(value, Tensor)  # its states are tensors, none a list
        if name != "watch_id":  # which layers it watches, not a count
            state = getattr(longer, name)
            state[tuple(slice(0, size) for size in value.shape)] += value
    profile.detach()
    return longer


_PER_LAYER_ONLY = (
    "activation_sparsity_by_layer",
    "firing_rate",
    "spike_train_statistics",
    "activity_profile",
)


def _section(name: str, metric: HookedMetric) -> dict[str, Any]:
    """The figures of one section, as tensors."""
    if name in _PER_LAYER_ONLY:
        return {"per_layer": metric.compute()}
    section = {"total": metric.compute()}
    per_layer = getattr(metric, "compute_per_layer", None)
    if per_layer is not None:
        section["per_layer"] = per_layer()
    return section


def _report(metrics: dict[str, HookedMetric]) -> dict[str, Any]:
    report: dict[str, Any] = {}
    for name, metric in metrics.items():
        try:
            section = _section(name, metric)
        except ValueError as err:  # undefined figures: NaN spikes or inputs
            what = _SECTION_NAMES.get(name.removesuffix("_by_layer"), name)
            raise CliError(f"computing the {what}: {err}") from None
        if name == "activation_sparsity_by_layer":
            report["activation_sparsity"].update(section)
        elif name in ("spike_train_statistics", "activity_profile"):
            report[name] = _defined(_floats(section))
        else:
            report[name] = section
    return report


def poisson_batches(
    input_shape: Sequence[int],
    *,
    batches: int = 4,
    batch_size: int = 8,
    timesteps: int = 25,
    rate: float = 0.1,
    seed: int = 0,
) -> Iterator[Tensor]:
    """``batches`` tensors ``[batch_size, timesteps, *input_shape]`` of Bernoulli spikes.

    Each element fires with probability ``rate``; the draws come from a generator seeded
    with ``seed``, so the same arguments give the same spikes.
    """
    generator = torch.Generator().manual_seed(seed)
    for _ in range(batches):
        yield poisson_spikes((batch_size, timesteps, *input_shape), rate, generator)


def _describe(value: Any) -> str:
    if isinstance(value, Tensor):
        return f"a {str(value.dtype).removeprefix('torch.')} tensor of shape {list(value.shape)}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} items"
    name = type(value).__name__
    return f"{'an' if name[0].lower() in 'aeiou' else 'a'} {name}"


def _split(item: Any, index: int) -> tuple[Tensor, Tensor | None]:
    """``(x, y)`` of one batch: a tensor ``x``, or a pair ``(x, y)`` (``y`` may be None)."""
    if isinstance(item, Tensor):
        x, y = item, None
    elif isinstance(item, (tuple, list)) and len(item) in (1, 2):
        x, y = item[0], (item[1] if len(item) == 2 else None)
    else:
        raise CliError(f"--data batch {index}: expected x or (x, y), got {_describe(item)}")
    if not isinstance(x, Tensor) or x.ndim < 2:
        raise CliError(
            f"--data batch {index}: x must be a tensor [batch, time, ...], got {_describe(x)}"
        )
    if y is not None and not isinstance(y, Tensor):
        try:
            y = torch.as_tensor(y)
        except (TypeError, ValueError, RuntimeError):
            raise CliError(
                f"--data batch {index}: labels y must be a tensor, got {_describe(y)}"
            ) from None
    return (x if x.is_floating_point() else x.float()), y


def _spikes(output: Any) -> Tensor | None:
    """The output tensor of one step (snnTorch neurons may return ``(spikes, membrane)``)."""
    if isinstance(output, (tuple, list)) and output:
        output = output[0]
    return output if isinstance(output, Tensor) else None


class _Accuracy:
    """Correct predictions: argmax over the last dim of the output summed over steps."""

    rule = "argmax of the model's output summed over the steps of a sample"

    def __init__(self) -> None:
        self.correct: Tensor | None = None
        self.samples = 0
        self.problem: str | None = None

    def update(self, counts: Tensor | None, y: Tensor, index: int) -> None:
        if self.problem is not None:
            return
        batch = y.shape[0] if y.ndim else 0
        if counts is None:
            self.problem = "the model's output is not a tensor"
        elif y.ndim != 1 or y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
            self.problem = f"labels are not class indices [batch] (batch {index}: {_describe(y)})"
        elif counts.ndim != 2 or counts.shape[0] != batch:
            self.problem = (
                f"the output is not [batch, classes] (batch {index}: {list(counts.shape)})"
            )
        else:
            right = (counts.argmax(dim=-1) == y.to(counts.device)).sum()
            self.correct = right if self.correct is None else self.correct + right
            self.samples += batch

    def result(self) -> dict[str, Any]:
        correct = 0 if self.correct is None else int(self.correct)
        return {
            "value": correct / self.samples,
            "correct": correct,
            "samples": self.samples,
            "prediction": self.rule,
        }


def _run_batch(model: nn.Module, x: Tensor, count: bool) -> Tensor | None:
    """Reset the neurons and step ``model`` over ``x[:, t]``; the summed output if ``count``."""
    reset_neurons(model)
    total: Tensor | None = None
    for step in range(x.shape[1]):
        output = model(x[:, step])
        if count:
            spikes = _spikes(output)
            if spikes is None:
                return None
            total = spikes.to(torch.float64) if total is None else total + spikes
    return total


def _batches(data: Iterable[Any], limit: int | None) -> Iterator[tuple[int, Any]]:
    """``(index, item)`` of ``data`` (at most ``limit``), an error while loading one named."""
    try:
        iterator = iter(data)
    except TypeError:
        raise CliError(f"--data must give an iterable of batches, got {_describe(data)}") from None
    index = 0
    while limit is None or index < limit:
        index += 1
        try:
            item = next(iterator)
        except StopIteration:
            return
        except Exception as error:
            raise UserCodeError(f"loading --data batch {index}", error) from error
        yield index, item


def _length(data: Iterable[Any], limit: int | None) -> int | None:
    try:
        length = len(data)  # type: ignore[arg-type]
    except TypeError:
        return limit
    return length if limit is None else min(length, limit)


def profile(
    model: nn.Module,
    data: Iterable[Any],
    *,
    batches: int | None = None,
    device: str = "cpu",
    steps_per_inference: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Run ``model`` step by step on ``data`` and measure it; every figure as plain numbers.

    ``data`` gives batches ``x`` or ``(x, y)``, ``x`` shaped ``[batch, time, ...]``
    (a ``DataLoader`` or any iterable, e.g. :func:`poisson_batches`); the model's neurons
    are reset before each batch and it is called once per step with ``x[:, t]``. Where
    ``y`` holds class indices, ``accuracy`` compares them with the argmax of the output
    summed over the steps. ``batches`` stops after that many batches.

    Returns a dict with the sections ``synaptic_operations``, ``neuron_operations``,
    ``membrane_updates``, ``activation_sparsity``, ``energy`` (each with ``total`` and
    ``per_layer``; energy in joules per sample, compared with the same connection layers
    as a dense ANN run once per ``steps_per_inference`` steps, default once per sample),
    ``firing_rate`` (``per_layer`` statistics), ``spike_train_statistics`` (per layer,
    the Fano factor and CV of inter-spike intervals of each neuron and their means),
    ``activity_profile`` (per neuron layer the ``rate`` at each step, per connection
    layer the ``synops`` per sample at each step, for as many steps as the longest
    batch), ``accuracy``, ``layer_types`` and ``run`` (batches, samples, timesteps,
    device, wall time). Figures that are undefined (the Fano factor of a neuron that
    never fired) are None. Sections that do not apply (an ANN has no spiking neuron,
    data without labels has no accuracy) are left out and explained under ``skipped``.
    """
    report, _ = _measure(
        model,
        data,
        batches=batches,
        device=device,
        steps_per_inference=steps_per_inference,
        progress=progress,
    )
    return report


def _measure(
    model: nn.Module,
    data: Iterable[Any],
    *,
    batches: int | None,
    device: str,
    steps_per_inference: int | None,
    progress: bool,
) -> tuple[dict[str, Any], ActivityProfile | None]:
    """:func:`profile`'s report, and the activity profile it measured (detached, to
    draw it)."""
    start = time.perf_counter()
    model = model.to(device).eval()
    metrics, skipped = _metrics(model)
    accuracy = _Accuracy()
    labelled = False
    done, samples, sizes, steps = 0, 0, set(), set()
    shape: list[int] = []
    bar = tqdm(
        total=_length(data, batches),
        disable=not progress,
        unit="batch",
        file=sys.stderr,
        dynamic_ncols=True,
    )
    try:
        for metric in metrics.values():
            metric.to(device)
        with torch.no_grad():
            for index, item in _batches(data, batches):
                x, y = _split(item, index)
                x = x.to(device)
                by_step = metrics.get("activity_profile")
                if isinstance(by_step, ActivityProfile) and x.shape[1] > by_step.max_steps:
                    metrics["activity_profile"] = _longer(by_step, x.shape[1])
                labelled = labelled or y is not None
                forward = f"the model's forward on batch {index}"
                counts = _user_call(forward, _run_batch, model, x, y is not None)
                if y is not None:
                    accuracy.update(counts, y, index)
                try:
                    for metric in metrics.values():
                        metric.update(batch_size=x.shape[0])
                except (ValueError, TypeError) as err:
                    raise CliError(f"measuring batch {index}: {err}") from None
                done += 1
                samples += x.shape[0]
                shape = shape or list(x.shape[2:])
                sizes.add(x.shape[0])
                steps.add(x.shape[1])
                bar.update()
        if not samples:
            raise CliError("the data gave no batch to measure")
        if "energy" in metrics:
            energy = metrics["energy"]
            assert isinstance(energy, Energy)
            if steps_per_inference is not None:
                energy.steps_per_inference = steps_per_inference
            elif len(steps) == 1:
                energy.steps_per_inference = next(iter(steps))
        report: dict[str, Any] = _floats(_report(metrics))
        if "energy" in metrics:
            _energy_section(report, metrics["energy"], skipped, steps, steps_per_inference)
    finally:
        bar.close()
        for metric in metrics.values():
            metric.detach()
    skipped.pop("activation_sparsity_by_layer", None)
    if labelled and accuracy.problem is None:
        report["accuracy"] = accuracy.result()
    else:
        skipped["accuracy"] = accuracy.problem or "the data has no labels"
    if skipped:
        report["skipped"] = skipped
    modules = dict(model.named_modules())
    names = {name for section in report.values() for name in section.get("per_layer", {})}
    report["layer_types"] = {
        name: type(modules[name]).__name__ for name in sorted(names, key=layer_order)
    }
    report["run"] = {
        "batches": done,
        "batch_size": max(sizes),
        "samples": samples,
        "input_shape": shape,
        "timesteps": min(steps) if len(steps) == 1 else sorted(steps),
        "steps_per_inference": report.get("energy", {}).get("steps_per_inference"),
        "device": str(device),
        "wall_time_s": round(time.perf_counter() - start, 3),
    }
    by_step = metrics.get("activity_profile")
    return report, by_step if isinstance(by_step, ActivityProfile) else None


def _energy_section(
    report: dict[str, Any],
    energy: HookedMetric,
    skipped: dict[str, str],
    steps: set[int],
    steps_per_inference: int | None,
) -> None:
    """The energy table's name, and the ANN comparison where the model spikes."""
    assert isinstance(energy, Energy)
    section = report["energy"]
    section["table"] = energy.table.name
    if "firing_rate" in skipped:
        why = "the model has no spiking neuron: it is an ANN itself"
    elif len(steps) > 1 and steps_per_inference is None:
        why = f"batches have {min(steps)} to {max(steps)} steps: give --steps-per-inference"
    else:
        why = ""
        section["steps_per_inference"] = energy.steps_per_inference
        energy.memory = MemoryModel()
        with_memory = energy.compute()
        energy.memory = None
        section["with_memory"] = {
            key: float(with_memory[key]) for key in ("total", "memory", "ann", "ann_ratio")
        }
    if why:
        skipped["ann_comparison"] = why
        for figures in (section["total"], *section["per_layer"].values()):
            for key in _ANN_COMPARISON:
                figures.pop(key, None)


# ---------------------------------------------------------------- the printed report


def _label(name: str, types: dict[str, str]) -> str:
    label = f"{name} {types.get(name, '')}".strip()
    return label if len(label) <= 30 else "..." + label[-27:]


def _count(value: Any) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _fraction(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}"


def _joules(value: Any) -> str:
    return "-" if value is None else f"{value:.3e}"


Column = tuple[str, str, Callable[[Any], str]]
_WIDTH = 100  # columns of the printed report


def _table(
    title: str, columns: Sequence[Column], rows: dict[str, dict[str, Any]], types: dict[str, str]
) -> str:
    """A table with one row per layer (then ``total``); ``columns``: (header, key, format)."""
    columns = [column for column in columns if any(column[1] in row for row in rows.values())]
    labels = [_label(name, types) for name in rows]
    cells = [[fmt(row.get(key)) for _, key, fmt in columns] for row in rows.values()]
    first = max(len("layer"), *(len(label) for label in labels))
    widths = [
        max(len(head), *(len(line[i]) for line in cells)) for i, (head, _, _) in enumerate(columns)
    ]
    header = f"{'layer':<{first}}" + "".join(
        f"  {head:>{width}}" for (head, _, _), width in zip(columns, widths, strict=True)
    )
    lines = [title, header, "-" * len(header)]
    for label, line in zip(labels, cells, strict=True):
        lines.append(
            f"{label:<{first}}"
            + "".join(f"  {cell:>{width}}" for cell, width in zip(line, widths, strict=True))
        )
    return "\n".join(lines)


def _ordered(rows: dict[str, Any]) -> dict[str, Any]:
    return dict(sorted(rows.items(), key=lambda item: layer_order(item[0])))


def _header(report: dict[str, Any]) -> str:
    run = report["run"]
    steps = run["timesteps"]
    steps_text = f"{steps}" if isinstance(steps, int) else f"{steps[0]} to {steps[-1]}"
    shape = "x".join(str(size) for size in run["input_shape"])
    if run["input"] == "poisson":
        source = f"Poisson spikes, rate {run['rate']:g}, seed {run['seed']}"
    else:
        source = f"--data {run['input']}"
    sizes = f"{run['batches']} batches x {run['batch_size']}"
    if run["samples"] != run["batches"] * run["batch_size"]:
        sizes = f"{run['batches']} batches of up to {run['batch_size']}"
    lines = [
        f"model     {run['model']}",
        f"input     {source}; {shape} per step, {steps_text} timesteps",
        f"samples   {sizes} = {run['samples']}",
        f"run       device {run['device']}, {run['wall_time_s']:.2f} s, "
        f"snnmetrics {run['snnmetrics']}, torch {run['torch']}",
    ]
    if "accuracy" in report:
        acc = report["accuracy"]
        lines.append(
            f"accuracy  {acc['value']:.4f} ({acc['correct']} of {acc['samples']}; prediction: "
            "argmax of the output summed over steps)"
        )
    return "\n".join(lines)


def _synaptic_table(report: dict[str, Any], types: dict[str, str]) -> str:
    synops = report["synaptic_operations"]
    return _table(
        "Synaptic operations per sample (summed over timesteps)",
        [
            ("synops", "synops", _count),
            ("effective ACs", "effective_acs", _count),
            ("effective MACs", "effective_macs", _count),
            ("dense", "dense", _count),
        ],
        {**_ordered(synops["per_layer"]), "total": synops["total"]},
        types,
    )


def _neuron_table(report: dict[str, Any], types: dict[str, str]) -> str | None:
    rows: dict[str, dict[str, Any]] = {}
    totals: dict[str, Any] = {}
    if "neuron_operations" in report:
        for name, figures in report["neuron_operations"]["per_layer"].items():
            rows.setdefault(name, {}).update(figures)
        totals.update(report["neuron_operations"]["total"])
    if "membrane_updates" in report:
        for name, value in report["membrane_updates"]["per_layer"].items():
            rows.setdefault(name, {})["membrane"] = value
        totals["membrane"] = report["membrane_updates"]["total"]
    if not rows:
        return None
    return _table(
        "Neuron operations and membrane updates per sample (summed over timesteps)",
        [
            ("neuron ops", "effective", _count),
            ("dense neuron ops", "dense", _count),
            ("membrane updates", "membrane", _count),
        ],
        {**_ordered(rows), "total": totals},
        types,
    )


def _activity_table(report: dict[str, Any], types: dict[str, str]) -> str | None:
    rows: dict[str, dict[str, Any]] = {}
    totals: dict[str, Any] = {}
    if "activation_sparsity" in report:
        for name, value in report["activation_sparsity"]["per_layer"].items():
            rows.setdefault(name, {})["sparsity"] = value
        totals["sparsity"] = report["activation_sparsity"]["total"]
    for name, stats in report.get("firing_rate", {}).get("per_layer", {}).items():
        rows.setdefault(name, {}).update(
            {f"rate_{key}": stats[key] for key in ("mean", "std", "median", "max")}
        )
    if not rows:
        return None
    title = "Activity, fractions: sparsity = zeros / outputs"
    if "firing_rate" in report:
        title += "; rate = a neuron's spikes / steps, over neurons"
    return _table(
        title,
        [
            ("sparsity", "sparsity", _fraction),
            ("rate mean", "rate_mean", _fraction),
            ("rate std", "rate_std", _fraction),
            ("rate median", "rate_median", _fraction),
            ("rate max", "rate_max", _fraction),
        ],
        {**_ordered(rows), "total": totals},
        types,
    )


def _integer(value: Any) -> str:
    return "-" if value is None else f"{value:,}"


def _flat(values: Any) -> list[Any]:
    """The numbers of a (nested) list, in order."""
    if isinstance(values, list):
        return [item for value in values for item in _flat(value)]
    return [values]


def _spike_train_table(report: dict[str, Any], types: dict[str, str]) -> str | None:
    rows = {}
    for name, stats in report.get("spike_train_statistics", {}).get("per_layer", {}).items():
        fano, cv = _flat(stats["fano_factor"]), _flat(stats["cv_isi"])
        rows[name] = {
            "neurons": len(fano),
            "fano": stats["mean_fano_factor"],
            "fano_of": sum(value is not None for value in fano),
            "cv": stats["mean_cv_isi"],
            "cv_of": sum(value is not None for value in cv),
        }
    if not rows:
        return None
    return _table(
        "Spike trains (a neuron's output over a sample's steps): Fano factor of the spike "
        "count over\n"
        "samples, CV of the inter-spike intervals; means over the neurons that "
        "have one",
        [
            ("neurons", "neurons", _integer),
            ("mean Fano factor", "fano", _fraction),
            ("neurons with one", "fano_of", _integer),
            ("mean CV of ISI", "cv", _fraction),
            ("neurons with one", "cv_of", _integer),
        ],
        _ordered(rows),
        types,
    )


def _every(steps: int, stride: int) -> list[int]:
    """Every ``stride``-th step of ``0 .. steps - 1``, and the last one."""
    chosen = list(range(0, steps, stride))
    return chosen if chosen[-1] == steps - 1 else [*chosen, steps - 1]


def _step_tables(report: dict[str, Any], types: dict[str, str]) -> list[str]:
    """The rate and the synaptic operations of each layer at each step, as many steps as
    fit in the width (always the first and the last)."""
    per_layer = _ordered(report.get("activity_profile", {}).get("per_layer", {}))
    families = [
        (
            "rate",
            "Rate at step t: the fraction of a layer's neurons firing, mean over samples",
            _fraction,
        ),
        ("synops", "Synaptic operations per sample at step t", _count),
    ]
    series = {
        key: {name: figures[key] for name, figures in per_layer.items() if key in figures}
        for key, _, _ in families
    }
    steps = max((len(values) for rows in series.values() for values in rows.values()), default=0)
    tables: list[str] = []
    for stride in range(1, steps + 1):
        chosen = _every(steps, stride)
        tables = [
            _table(
                title,
                [(f"t={step}", str(step), fmt) for step in chosen],
                {
                    name: {str(step): values[step] for step in chosen}
                    for name, values in series[key].items()
                },
                types,
            )
            for key, title, fmt in families
            if series[key]
        ]
        if all(len(line) <= _WIDTH for table in tables for line in table.splitlines()):
            break
    if tables and len(chosen) < steps:
        tables[-1] += (
            f"\n({len(chosen)} of {steps} steps shown; all of them in --json and in the "
            "--plots activity_profile.png)"
        )
    return tables


def _energy_table(report: dict[str, Any], types: dict[str, str]) -> str:
    energy = report["energy"]
    total = energy["total"]
    columns: list[Column] = [
        ("total", "total", _joules),
        ("synaptic", "synaptic", _joules),
        ("neuron", "neuron", _joules),
    ]
    if "ann" in total:
        columns.append(("dense ANN", "ann", _joules))
    text = _table(
        f"Energy, J per sample: operation counts x {energy['table']} costs (memory not priced)",
        columns,
        {**_ordered(energy["per_layer"]), "total": total},
        types,
    )
    if "ann" not in total:
        return text
    memory = energy["with_memory"]
    steps = energy["steps_per_inference"]
    return (
        f"{text}\n\nCompared with an ANN of the same connection layers, dense, one ANN pass per "
        f"{steps} SNN step{'s' if steps != 1 else ''}\n(--steps-per-inference):\n"
        f"  SNN / ANN energy    {total['ann_ratio']:.3f} arithmetic only; "
        f"{memory['ann_ratio']:.3f} with memory accesses (10 pJ each)\n"
        f"  spikes per synapse  {total['spikes_per_synapse']:.3f} per ANN pass; studies that "
        "price memory accesses put\n"
        "                      the break-even at about 0.15 to 1.7 (above it an ANN tends to win)"
    )


_SECTION_NAMES = {
    "synaptic_operations": "synaptic operations",
    "neuron_operations": "neuron operations",
    "membrane_updates": "membrane updates",
    "activation_sparsity": "activation sparsity",
    "firing_rate": "firing rates",
    "spike_train_statistics": "spike-train statistics",
    "activity_profile": "activity per step",
    "energy": "energy",
    "ann_comparison": "SNN / ANN comparison",
    "accuracy": "accuracy",
}


def _not_measured(skipped: dict[str, str]) -> str:
    """One line per reason: ``not measured: a, b (reason)``."""
    by_reason: dict[str, list[str]] = {}
    for name, why in skipped.items():
        by_reason.setdefault(why, []).append(_SECTION_NAMES.get(name, name))
    return "\n".join(
        _wrap(f"Not measured: {', '.join(names)}: {why}") for why, names in by_reason.items()
    )


def _wrap(line: str) -> str:
    return textwrap.fill(line, width=_WIDTH, subsequent_indent="  ", break_on_hyphens=False)


def format_report(report: dict[str, Any]) -> str:
    """The printed report: the run header, then one table per section."""
    types = report.get("layer_types", {})
    parts = [_header(report)]
    if "synaptic_operations" in report:
        parts.append(_synaptic_table(report, types))
    parts += [
        table
        for table in (
            _neuron_table(report, types),
            _activity_table(report, types),
            _spike_train_table(report, types),
        )
        if table is not None
    ]
    parts += _step_tables(report, types)
    if "energy" in report:
        parts.append(_energy_table(report, types))
    if report.get("skipped"):
        parts.append(_not_measured(report["skipped"]))
    return "\n\n".join(parts)


# ---------------------------------------------------------------- options


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


POISSON_DEFAULTS: dict[str, Any] = {"batches": 4, "batch_size": 8, "timesteps": 25, "rate": 0.1}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="snnmetrics",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version", action="version", version=f"snnmetrics {snnmetrics.__version__}"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    prof = commands.add_parser(
        "profile",
        help="profile a model on Poisson spikes or on your own data",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    prof.add_argument(
        "--model",
        metavar="NAME",
        default="mlp",
        help=f"a built-in example ({', '.join(EXAMPLES)}) or 'module:function' returning an "
        "nn.Module that takes one step [batch, ...] per call (default: mlp)",
    )
    prof.add_argument(
        "--data",
        metavar="MODULE:FUNCTION",
        help="a function returning a DataLoader or iterable of batches x or (x, y), x shaped "
        "[batch, time, ...], y class indices (default: Poisson spikes)",
    )
    prof.add_argument(
        "--input-shape",
        metavar="SHAPE",
        help="Poisson input: per-step input shape, e.g. 20 or 2,32,32 (default: the built-in "
        "example's; required with a 'module:function' --model)",
    )
    prof.add_argument(
        "--batches",
        metavar="N",
        type=_positive,
        help="number of batches (default: 4 with Poisson input, every batch of --data)",
    )
    prof.add_argument(
        "--batch-size",
        metavar="N",
        type=_positive,
        help=f"Poisson input: samples per batch (default: {POISSON_DEFAULTS['batch_size']})",
    )
    prof.add_argument(
        "--timesteps",
        metavar="N",
        type=_positive,
        help=f"Poisson input: steps per sample (default: {POISSON_DEFAULTS['timesteps']})",
    )
    prof.add_argument(
        "--rate",
        metavar="P",
        type=_rate,
        help="Poisson input: spike probability of each input element per step "
        f"(default: {POISSON_DEFAULTS['rate']})",
    )
    prof.add_argument(
        "--steps-per-inference",
        type=_positive,
        metavar="N",
        help="SNN steps that one pass of the dense ANN it is compared with stands for "
        "(default: all timesteps of a sample, one ANN pass per sample)",
    )
    prof.add_argument(
        "--device", default="cpu", help="torch device to run on, e.g. cuda:0 (default: cpu)"
    )
    prof.add_argument(
        "--seed",
        metavar="N",
        type=int,
        default=0,
        help="seeds torch before the factories run and the Poisson input (default: 0)",
    )
    prof.add_argument(
        "--json", metavar="PATH", help="also write every figure as JSON to PATH (default: none)"
    )
    prof.add_argument(
        "--plots",
        metavar="DIR",
        help="also draw firing_rates.png, operations.png and activity_profile.png into DIR "
        "(default: none; needs matplotlib: pip install 'snnmetrics[plot]')",
    )
    prof.add_argument(
        "--no-progress",
        action="store_true",
        help="hide the progress bar (it shows only when stderr is a terminal)",
    )
    prof.add_argument(
        "--traceback",
        action="store_true",
        help="on an error in your code, also print its full traceback",
    )
    return parser


# ---------------------------------------------------------------- checks before the run


def _check_output_file(path: str) -> None:
    """Fail now, not after the run, if ``path`` cannot be written."""
    if not path:
        raise CliError("--json needs a file name")
    target = Path(path)
    if target.is_dir():
        raise CliError(f"cannot write --json {path}: it is a folder")
    existed = target.exists()
    try:
        with open(target, "a", encoding="utf-8"):
            pass
    except OSError as err:
        raise CliError(f"cannot write --json {path}: {err.strerror or err}") from None
    if not existed:
        target.unlink()


def _check_plot_folder(path: str) -> None:
    if not path:
        raise CliError("--plots needs a folder name")
    try:
        import matplotlib
    except ImportError:
        raise CliError("--plots needs matplotlib: pip install 'snnmetrics[plot]'") from None
    matplotlib.use("Agg")
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise CliError(f"cannot write --plots {path}: it is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".snnmetrics-write-test"
        probe.touch()
        probe.unlink()
    except OSError as err:
        raise CliError(f"cannot write --plots {path}: {err.strerror or err}") from None


def _device(text: str) -> str:
    try:
        device = torch.device(text)
    except RuntimeError:
        raise CliError(f"unknown --device {text!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CliError(f"--device {text} requested but CUDA is not available")
    return str(device)


def _prepare(args: argparse.Namespace) -> tuple[nn.Module, Iterable[Any], str, dict[str, Any]]:
    """Everything that can fail before the first batch: the model, the data, the outputs."""
    poisson_only = ("input_shape", "batch_size", "timesteps", "rate")
    given = [f"--{name.replace('_', '-')}" for name in poisson_only if getattr(args, name)]
    if args.data is not None and given:
        raise CliError(f"{', '.join(given)} set the Poisson input; with --data the batches do")
    if args.model in EXAMPLES:
        factory, shape = EXAMPLES[args.model]
        model_name = f"{args.model} (built-in example)"
    else:
        factory, shape = _load(args.model, "--model"), ()
        model_name = args.model
    if args.input_shape:
        shape = _parse_shape(args.input_shape)
    if not shape and args.data is None:
        raise CliError("--input-shape is required with a 'module:function' --model")
    device = _device(args.device)
    if args.json is not None:
        _check_output_file(args.json)
    if args.plots is not None:
        _check_plot_folder(args.plots)
    make_data = _load(args.data, "--data") if args.data is not None else None
    torch.manual_seed(args.seed)  # reproducible initial weights (and random data)
    model = _user_call(f"--model {args.model}", factory)
    if not isinstance(model, nn.Module):
        raise CliError(f"--model {args.model} returned {_describe(model)}, not an nn.Module")
    run: dict[str, Any] = {"model": model_name, "seed": args.seed}
    data: Iterable[Any]
    if make_data is None:
        settings = {
            key: default if getattr(args, key) is None else getattr(args, key)
            for key, default in POISSON_DEFAULTS.items()
        }
        run.update(input="poisson", rate=settings["rate"])
        data = poisson_batches(
            shape,
            batches=settings["batches"],
            batch_size=settings["batch_size"],
            timesteps=settings["timesteps"],
            rate=settings["rate"],
            seed=args.seed,
        )
        data = _Sized(data, settings["batches"])
    else:
        data = _user_call(f"--data {args.data}", make_data)
        run.update(input=args.data)
    return model, data, device, run


class _Sized:
    """An iterator with a known length, for the progress bar."""

    def __init__(self, items: Iterator[Any], length: int) -> None:
        self.items, self.length = items, length

    def __iter__(self) -> Iterator[Any]:
        return self.items

    def __len__(self) -> int:
        return self.length


def _run(args: argparse.Namespace) -> tuple[dict[str, Any], ActivityProfile | None]:
    """The report, and the activity profile metric for its plot."""
    model, data, device, run = _prepare(args)
    show = not args.no_progress and sys.stderr.isatty()
    report, by_step = _measure(
        model,
        data,
        batches=args.batches,
        device=device,
        steps_per_inference=args.steps_per_inference,
        progress=show,
    )
    run = {**run, **report.pop("run")}
    run.update(snnmetrics=snnmetrics.__version__, torch=torch.__version__.split("+")[0])
    if run["input"] == "poisson":  # random spikes have no labels: nothing to report
        skipped = report.get("skipped", {})
        skipped.pop("accuracy", None)
        if not skipped:
            report.pop("skipped", None)
    return {"run": run, **report}, by_step


def _write_json(report: dict[str, Any], path: str) -> None:
    try:
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2)
    except OSError as err:
        raise CliError(f"cannot write --json {path}: {err.strerror or err}") from None


def _draw(report: dict[str, Any], folder: Path, by_step: ActivityProfile | None) -> None:
    """Write the firing-rate box plot, the per-layer operations chart and the activity
    per step (drawn by ``by_step.plot()``, the metric that measured it) into ``folder``."""
    from snnmetrics.plot import plot_firing_rates, plot_operations

    run = report["run"]
    source = f"Poisson rate {run['rate']:g}" if run["input"] == "poisson" else run["input"]
    caption = (
        f"{run['model']}; {source}; {run['timesteps']} steps; {run['samples']} samples; "
        f"seed {run['seed']}"
    )
    types = report["layer_types"]
    figures = []
    if "firing_rate" in report:
        rates = {
            name: {"rates": torch.tensor(stats["rates"])}
            for name, stats in report["firing_rate"]["per_layer"].items()
        }
        figures.append(("firing_rates.png", plot_firing_rates(rates, layer_types=types)))
    if _operations_drawn(report):
        figures.append(("operations.png", plot_operations(report, layer_types=types)))
    if by_step is not None and _steps_drawn(report):
        per_layer = report["activity_profile"]["per_layer"]
        result = {
            name: {
                key: torch.tensor(
                    [math.nan if value is None else value for value in values],
                    dtype=torch.float64,
                )
                for key, values in series.items()
            }
            for name, series in per_layer.items()
        }
        figures.append(("activity_profile.png", by_step.plot(result)))
    for name, (fig, ax) in figures:
        ax.set_title(f"{ax.get_title()}\n{caption}", fontsize="medium")
        try:
            fig.savefig(folder / name, dpi=120, bbox_inches="tight")
        except OSError as err:
            raise CliError(f"cannot write {folder / name}: {err.strerror or err}") from None
        finally:
            fig.clear()


def _operations_drawn(report: dict[str, Any]) -> bool:
    return any(section in report for section in ("synaptic_operations", "neuron_operations"))


def _steps_drawn(report: dict[str, Any]) -> bool:
    """Whether any step has a figure to draw: a layer that fired or operated."""
    per_layer = report.get("activity_profile", {}).get("per_layer", {})
    return any(
        value is not None and (key == "rate" or value != 0)
        for figures in per_layer.values()
        for key, values in figures.items()
        for value in values
    )


def _plot_notes(report: dict[str, Any]) -> str:
    """Which plots are left out, and why (as sections are)."""
    notes = []
    if "firing_rate" not in report:
        why = report.get("skipped", {}).get("firing_rate", "no firing rates")
        notes.append(_wrap(f"Not drawn: firing_rates.png: {why}"))
    if not _operations_drawn(report):
        notes.append("Not drawn: operations.png: no connection or neuron layer")
    if "activity_profile" not in report:
        why = report.get("skipped", {}).get("activity_profile", "no activity per step")
        notes.append(_wrap(f"Not drawn: activity_profile.png: {why}"))
    elif not _steps_drawn(report):
        notes.append("Not drawn: activity_profile.png: no layer fired or operated at any step")
    return "\n".join(notes)


def _fail(message: str, error: BaseException | None, show_traceback: bool) -> int:
    if show_traceback and error is not None:
        traceback.print_exception(error)
    print(f"snnmetrics: error: {message}", file=sys.stderr)
    return 2


def _print(text: str) -> None:
    """Print ``text``; a reader that stopped reading (``| head``) ends the program quietly."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        # Python would complain at exit while flushing stdout again: point it at devnull
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise SystemExit(141) from None  # 128 + SIGPIPE, as a shell reports for `cat`


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``snnmetrics`` console script."""
    args = _parser().parse_args(argv)
    try:
        report, by_step = _run(args)
        text = format_report(report)
        if args.plots is not None:
            notes = _plot_notes(report)
            text = f"{text}\n{notes}" if notes else text
        _print(text)
        if args.json is not None:
            _write_json(report, args.json)
        if args.plots is not None:
            _draw(report, Path(args.plots), by_step)
    except UserCodeError as err:
        return _fail(str(err), err.error, args.traceback)
    except CliError as err:
        return _fail(str(err), None, False)
    except KeyboardInterrupt:
        print("snnmetrics: interrupted", file=sys.stderr)
        return 130
    return 0
