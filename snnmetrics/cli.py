"""Command line: ``snnmetrics profile`` measures a model on synthetic spike input."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from snnmetrics.examples import EXAMPLES, poisson_spikes, run_steps
from snnmetrics.metrics import (
    ActivationSparsity,
    Energy,
    FiringRate,
    HookedMetric,
    MembraneUpdates,
    NeuronOperations,
    SynapticOperations,
)
from snnmetrics.plot import plot_firing_rates, plot_operations
from snnmetrics.results import layer_order

__all__ = ["main", "profile"]


class UsageError(Exception):
    """A bad command-line argument: reported in one line, exit status 2."""


def _load_factory(spec: str) -> Callable[[], nn.Module]:
    module_name, _, attr = spec.partition(":")
    if os.getcwd() not in sys.path:  # as `python -m` does: the user's own modules import
        sys.path.insert(0, os.getcwd())
    if not module_name or not attr:
        raise UsageError(f"--model must look like 'package.module:factory', got {spec!r}")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise UsageError(f"cannot load --model {spec!r}: {err}") from None
    if not callable(factory):
        raise UsageError(f"--model {spec!r} is not callable")
    return factory


def _parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(part) for part in text.replace("x", ",").split(",") if part.strip())
    except ValueError:
        raise UsageError(f"--input-shape must be comma-separated sizes, got {text!r}") from None
    if not shape or any(size <= 0 for size in shape):
        raise UsageError(f"--input-shape must be positive sizes, got {text!r}")
    return shape


def _floats(result: Any) -> Any:
    """A metric result with every tensor turned into a float (or a list of floats)."""
    if isinstance(result, dict):
        return {key: _floats(value) for key, value in result.items()}
    if isinstance(result, torch.Tensor):
        return result.item() if result.ndim == 0 else result.tolist()
    return result


_SECTIONS: dict[str, Callable[[nn.Module], HookedMetric]] = {
    "synaptic_operations": SynapticOperations,
    "neuron_operations": NeuronOperations,
    "membrane_updates": MembraneUpdates,
    "activation_sparsity": ActivationSparsity,
    "activation_sparsity_by_layer": lambda model: ActivationSparsity(model, by_layer=True),
    "firing_rate": FiringRate,
}


def _metrics(model: nn.Module, timesteps: int) -> tuple[dict[str, HookedMetric], dict[str, str]]:
    """The metrics that apply to ``model`` and, for the others, why they do not."""
    metrics, skipped = {}, {}
    # the ANN it is compared with runs once per sample, the SNN `timesteps` times
    energy = {"energy": lambda model: Energy(model, steps_per_inference=timesteps)}
    for name, make in {**_SECTIONS, **energy}.items():
        try:
            metrics[name] = make(model)
        except ValueError as err:  # nothing of that kind to watch (an ANN has no neurons)
            skipped[name] = str(err)
    if not metrics:
        raise UsageError(f"{type(model).__name__} has no layer that snnmetrics can measure")
    return metrics, skipped


def _report(metrics: dict[str, HookedMetric]) -> dict[str, Any]:
    report: dict[str, Any] = {}
    for name, metric in metrics.items():
        if name == "activation_sparsity_by_layer":
            report["activation_sparsity"]["per_layer"] = metric.compute()
        elif name == "firing_rate":
            report[name] = {"per_layer": metric.compute()}
        else:
            per_layer = getattr(metric, "compute_per_layer", None)
            report[name] = {"total": metric.compute()}
            if per_layer is not None:
                report[name]["per_layer"] = per_layer()
            if isinstance(metric, Energy):
                report[name]["table"] = metric.table.name
    return report


def profile(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    batches: int = 4,
    batch_size: int = 8,
    timesteps: int = 25,
    rate: float = 0.1,
    device: str = "cpu",
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Run ``model`` step by step on Poisson spikes; every figure, as plain numbers.

    Returns a dict with the sections ``synaptic_operations``, ``neuron_operations``,
    ``membrane_updates``, ``activation_sparsity``, ``energy`` (each with ``total`` and
    ``per_layer``; energy in joules per sample with the default table, compared with an ANN
    of the same layers run once per sample), ``firing_rate`` (``per_layer`` statistics) and
    ``run`` (the settings). Sections that do
    not apply to the model (no spiking neuron, say) are left out and explained under
    ``skipped``.
    """
    generator = torch.Generator().manual_seed(seed)
    model = model.to(device).eval()
    metrics, skipped = _metrics(model, timesteps)
    try:
        for metric in metrics.values():
            metric.to(device)
        with torch.no_grad():
            for batch in range(batches):
                spikes = poisson_spikes((batch_size, timesteps, *input_shape), rate, generator)
                spikes = spikes.to(device)
                run_steps(model, spikes)
                for metric in metrics.values():
                    metric.update()
                if progress is not None:
                    progress(batch + 1, batches)
        report: dict[str, Any] = _floats(_report(metrics))
        skipped.pop("activation_sparsity_by_layer", None)
        if skipped:
            report["skipped"] = skipped
    finally:
        for metric in metrics.values():
            metric.detach()
    report["run"] = {
        "batches": batches,
        "batch_size": batch_size,
        "timesteps": timesteps,
        "rate": rate,
        "device": device,
        "seed": seed,
    }
    return report


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if abs(value) < 10 and value != int(value):
        return f"{value:.4f}"
    return f"{value:,.1f}"


def _joules(value: Any) -> str:
    return "-" if value is None else f"{value:.3e}"


def _table(
    title: str,
    columns: Sequence[tuple[str, str]],
    rows: dict[str, dict[str, Any]],
    cell: Callable[[Any], str] = _cell,
) -> str:
    """A fixed-width table: ``columns`` are (header, key) pairs read from each row."""
    header = f"{'layer':<12}" + "".join(f"{head:>15}" for head, _ in columns)
    lines = [title, header, "-" * len(header)]
    for name, row in rows.items():
        lines.append(f"{name:<12}" + "".join(f"{cell(row.get(key)):>15}" for _, key in columns))
    return "\n".join(lines)


def _format_report(report: dict[str, Any]) -> str:
    tables = []
    if "synaptic_operations" in report:
        synops = report["synaptic_operations"]
        tables.append(
            _table(
                "Synaptic operations per sample",
                [
                    ("synops", "synops"),
                    ("effective ACs", "effective_acs"),
                    ("effective MACs", "effective_macs"),
                    ("dense", "dense"),
                ],
                {**synops["per_layer"], "total": synops["total"]},
            )
        )
    rows: dict[str, dict[str, Any]] = {}
    totals: dict[str, Any] = {}
    if "neuron_operations" in report:
        for name, figures in report["neuron_operations"]["per_layer"].items():
            rows.setdefault(name, {}).update(
                {"neuron_ops": figures["effective"], "neuron_dense": figures["dense"]}
            )
        total = report["neuron_operations"]["total"]
        totals.update({"neuron_ops": total["effective"], "neuron_dense": total["dense"]})
    for section, key in (("membrane_updates", "membrane"), ("activation_sparsity", "sparsity")):
        if section in report:
            for name, value in report[section]["per_layer"].items():
                rows.setdefault(name, {})[key] = value
            totals[key] = report[section]["total"]
    for name, stats in report.get("firing_rate", {}).get("per_layer", {}).items():
        rows.setdefault(name, {}).update(
            {f"rate_{key}": stats[key] for key in ("mean", "std", "median", "max")}
        )
    if rows:
        rows["total"] = totals
        tables.append(
            _table(
                "Neurons and activations, per sample (rates in spikes per sample-step)",
                [
                    ("neuron ops", "neuron_ops"),
                    ("dense", "neuron_dense"),
                    ("membrane upd.", "membrane"),
                    ("sparsity", "sparsity"),
                    ("rate mean", "rate_mean"),
                    ("rate std", "rate_std"),
                    ("rate median", "rate_median"),
                    ("rate max", "rate_max"),
                ],
                rows,
            )
        )
    if "energy" in report:
        energy = report["energy"]
        total = energy["total"]
        tables.append(
            _table(
                f"Energy per sample, joules (estimate: operations x {energy['table']} costs)",
                [
                    ("total", "total"),
                    ("synaptic", "synaptic"),
                    ("neuron", "neuron"),
                    ("same as ANN", "ann"),
                ],
                {
                    **dict(sorted(energy["per_layer"].items(), key=lambda kv: layer_order(kv[0]))),
                    "total": total,
                },
                cell=_joules,
            )
            + f"\nSNN / ANN energy: {total['ann_ratio']:.4f}; spikes per synapse: "
            f"{total['spikes_per_synapse']:.4f} (break-even about 0.15 to 1.7)"
        )
    tables += [f"{name}: not measured ({why})" for name, why in report.get("skipped", {}).items()]
    return "\n\n".join(tables)


def _progress_bar(done: int, total: int) -> None:
    width = 30
    filled = width * done // total
    end = "\n" if done == total else ""
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] batch {done}/{total}{end}")
    sys.stderr.flush()


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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="snnmetrics", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    prof = commands.add_parser("profile", help="profile a model on synthetic spike input")
    prof.add_argument(
        "--model",
        default="mlp",
        help=f"built-in example ({', '.join(EXAMPLES)}) or 'module:factory' (default: mlp)",
    )
    prof.add_argument("--input-shape", help="per-step input shape, e.g. 20 or 2,32,32")
    prof.add_argument("--batches", type=_positive, default=4)
    prof.add_argument("--batch-size", type=_positive, default=8)
    prof.add_argument("--timesteps", type=_positive, default=25)
    prof.add_argument("--rate", type=_rate, default=0.1, help="input spike probability per step")
    prof.add_argument("--device", default="cpu")
    prof.add_argument("--seed", type=int, default=0, help="seeds the weights and the input")
    prof.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    prof.add_argument(
        "--plots", metavar="DIR", help="also draw firing_rates.png and operations.png in DIR"
    )
    prof.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def _run_profile(args: argparse.Namespace) -> dict[str, Any]:
    if args.model in EXAMPLES:
        factory, shape = EXAMPLES[args.model]
    else:
        factory, shape = _load_factory(args.model), ()
    if args.input_shape:
        shape = _parse_shape(args.input_shape)
    if not shape:
        raise UsageError("--input-shape is required with a custom --model")
    try:
        device = str(torch.device(args.device))
    except RuntimeError:
        raise UsageError(f"unknown --device {args.device!r}") from None
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {args.device} requested but CUDA is not available")
    torch.manual_seed(args.seed)  # reproducible initial weights too
    model = factory()
    if not isinstance(model, nn.Module):
        raise UsageError(f"--model factory returned {type(model).__name__}, not an nn.Module")
    try:
        return profile(
            model,
            shape,
            batches=args.batches,
            batch_size=args.batch_size,
            timesteps=args.timesteps,
            rate=args.rate,
            device=device,
            seed=args.seed,
            progress=None if args.no_progress else _progress_bar,
        )
    except (ValueError, TypeError, RuntimeError) as err:
        raise UsageError(f"profiling failed: {err}".splitlines()[0]) from None


def _draw(report: dict[str, Any], folder: Path) -> None:
    """Write the firing-rate box plot and the per-layer operations chart into ``folder``."""
    try:
        import matplotlib

        matplotlib.use("Agg")
    except ImportError:
        raise UsageError("--plots needs matplotlib: pip install 'snnmetrics[plot]'") from None
    folder.mkdir(parents=True, exist_ok=True)
    rates = {
        name: {"rates": torch.tensor(stats["rates"])}
        for name, stats in report["firing_rate"]["per_layer"].items()
    }
    for name, (fig, _) in (
        ("firing_rates.png", plot_firing_rates(rates)),
        ("operations.png", plot_operations(report)),
    ):
        fig.savefig(folder / name, dpi=120, bbox_inches="tight")
        fig.clear()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``snnmetrics`` console script."""
    args = _parser().parse_args(argv)
    try:
        report = _run_profile(args)
        if args.json:
            with open(args.json, "w", encoding="utf-8") as handle:
                json.dump(report, handle, indent=2)
        if args.plots:
            _draw(report, Path(args.plots))
    except UsageError as err:
        print(f"snnmetrics: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"snnmetrics: error: cannot write {err.filename}: {err.strerror}", file=sys.stderr)
        return 2
    print(_format_report(report))
    return 0
