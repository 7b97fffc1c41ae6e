"""How the cost of the hooked metrics scales: overhead ratio vs timesteps, batch, width.

The GSC-like MLP SNN (20-W-W-W-35, Leaky neurons) is run with all hooked metrics on and
plain, interleaved, one thread, ``torch.no_grad()``, minimum of repeats; one parameter
varies at a time from the base point T=100, B=32, W=256. Run:
``python benchmarks/scaling.py [--repeats 3] [--json PATH] [--plot PATH]``.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import torch
from overhead import METRICS, _plain, _snnmetrics, compare  # type: ignore[import-not-found]

from snnmetrics.examples import mlp_snn, poisson_spikes

BASE = {"timesteps": 100, "batch": 32, "width": 256}
SWEEPS = {"timesteps": (10, 50, 100, 200), "batch": (8, 32, 128), "width": (64, 256, 1024)}


def _ratio(timesteps: int, batch: int, width: int, repeats: int) -> float:
    torch.manual_seed(0)
    x = [poisson_spikes((batch, timesteps, 20), 0.1, torch.Generator().manual_seed(1))]
    best = compare({"plain": _plain, "snnmetrics": _snnmetrics}, mlp_snn(width=width), x, repeats)
    return best["snnmetrics"] / best["plain"]


def run(repeats: int) -> dict[str, Any]:
    torch.set_num_threads(1)
    results: dict[str, Any] = {"base": BASE, "metrics": [m.__name__ for m in METRICS]}
    for name, values in SWEEPS.items():
        results[name] = {
            str(value): _ratio(**{**BASE, name: value}, repeats=repeats) for value in values
        }
    return results


def plot(results: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(SWEEPS), figsize=(4 * len(SWEEPS), 3.5), sharey=True)
    for ax, name in zip(axes, SWEEPS, strict=True):
        xs = [int(value) for value in results[name]]
        ax.plot(xs, list(results[name].values()), marker="o")
        ax.set_xscale("log")
        ax.set_xlabel(name)
        ax.axhline(1.0, color="grey", linewidth=0.8)
    axes[0].set_ylabel("time with all metrics / plain forward")
    fig.suptitle(f"MLP SNN, base T={BASE['timesteps']}, B={BASE['batch']}, W={BASE['width']}")
    fig.savefig(path, dpi=120, bbox_inches="tight")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--plot", help="draw the ratios into this PNG")
    args = parser.parse_args()
    results = run(args.repeats)
    for name in SWEEPS:
        cells = ", ".join(f"{value}: {ratio:.2f}x" for value, ratio in results[name].items())
        print(f"{name:<10} {cells}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)
    if args.plot:
        plot(results, args.plot)


if __name__ == "__main__":
    main()
