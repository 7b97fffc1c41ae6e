"""Command line: ``snnmetrics profile`` measures a model on synthetic spike input."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from snnmetrics.examples import EXAMPLES, poisson_spikes
from snnmetrics.metrics import SynapticOperations

__all__ = ["main", "profile"]


class UsageError(Exception):
    """A bad command-line argument: reported in one line, exit status 2."""


def _load_factory(spec: str) -> Callable[[], nn.Module]:
    module_name, _, attr = spec.partition(":")
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


def _reset_state(model: nn.Module) -> None:
    """Clear hidden state between batches (snnTorch neurons with init_hidden=True)."""
    for module in model.modules():
        reset = getattr(module, "reset_mem", None)
        if callable(reset) and getattr(module, "init_hidden", False):
            reset()


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
    """Run ``model`` step by step on Poisson spikes and return the figures as plain numbers."""
    generator = torch.Generator().manual_seed(seed)
    model = model.to(device).eval()
    synops = SynapticOperations(model).to(device)
    with synops, torch.no_grad():
        for batch in range(batches):
            spikes = poisson_spikes((batch_size, timesteps, *input_shape), rate, generator)
            spikes = spikes.to(device)
            _reset_state(model)
            for step in range(timesteps):
                model(spikes[:, step])
            synops.update()
            if progress is not None:
                progress(batch + 1, batches)
        totals = synops.compute()
        per_layer = synops.compute_per_layer()
    return {
        "synaptic_operations": {
            "total": {key: float(value) for key, value in totals.items()},
            "per_layer": {
                name: {key: float(value) for key, value in figures.items()}
                for name, figures in per_layer.items()
            },
        },
        "run": {
            "batches": batches,
            "batch_size": batch_size,
            "timesteps": timesteps,
            "rate": rate,
            "device": device,
            "seed": seed,
        },
    }


def _format_table(report: dict[str, Any]) -> str:
    synops = report["synaptic_operations"]
    header = f"{'layer':<16}{'synops':>16}{'effective ACs':>16}{'effective MACs':>16}{'dense':>16}"
    rows = [header, "-" * len(header)]
    for name, figures in [*synops["per_layer"].items(), ("total", synops["total"])]:
        rows.append(
            f"{name:<16}{figures['synops']:>16,.1f}{figures['effective_acs']:>16,.1f}"
            f"{figures['effective_macs']:>16,.1f}{figures['dense']:>16,.1f}"
        )
    return "\n".join(["Synaptic operations per sample", *rows])


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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``snnmetrics`` console script."""
    args = _parser().parse_args(argv)
    try:
        report = _run_profile(args)
        if args.json:
            with open(args.json, "w", encoding="utf-8") as handle:
                json.dump(report, handle, indent=2)
    except UsageError as err:
        print(f"snnmetrics: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"snnmetrics: error: cannot write {args.json}: {err.strerror}", file=sys.stderr)
        return 2
    print(_format_table(report))
    return 0
