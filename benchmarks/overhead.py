"""Cost of snnmetrics' hooked metrics, as a ratio to a plain forward pass, next to NeuroBench.

For each regime (a compute-bound 3-conv SNN, and a GSC-like MLP SNN whose steps are cheap
so that per-call hook cost shows) three identical copies of one model run the same data:

* plain: never hooked;
* snnmetrics: the hooked metrics on, ``update()`` after every batch, ``compute()`` at the end;
* neurobench (if installed): its SynapticOperations, ActivationSparsity and MembraneUpdates
  driven the way ``Benchmark.run`` drives them.

Each configuration is timed as the minimum over interleaved repeats, with one thread and
``torch.no_grad()``. Run: ``python benchmarks/overhead.py [--repeats 5] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

import snnmetrics as sm
from snnmetrics.examples import conv_snn, mlp_snn, poisson_spikes, run_steps

REGIMES: dict[str, tuple[Callable[[], nn.Sequential], tuple[int, ...]]] = {
    "conv": (conv_snn, (16, 25, 2, 32, 32)),
    "mlp": (mlp_snn, (32, 100, 20)),
}
METRICS: tuple[Callable[[nn.Module], sm.HookedMetric], ...] = (
    sm.SynapticOperations,
    sm.NeuronOperations,
    sm.MembraneUpdates,
    sm.ActivationSparsity,
    sm.FiringRate,
)


def _plain(net: nn.Module, batches: list[torch.Tensor]) -> None:
    for x in batches:
        run_steps(net, x)


def _snnmetrics(net: nn.Module, batches: list[torch.Tensor]) -> None:
    metrics = [make(net) for make in METRICS]
    for x in batches:
        run_steps(net, x)
        for metric in metrics:
            metric.update()
    for metric in metrics:
        metric.compute()
        metric.detach()


def _neurobench(net: nn.Module, batches: list[torch.Tensor]) -> None:
    from neurobench.metrics.workload import (
        ActivationSparsity,
        MembraneUpdates,
        SynapticOperations,
    )
    from neurobench.models import SNNTorchModel

    model = SNNTorchModel(net)
    model.register_hooks()
    metrics = [SynapticOperations(), ActivationSparsity(), MembraneUpdates()]
    for x in batches:
        preds = model(x)
        for metric in metrics:
            metric(model, preds, (x, None))
        model.reset_hooks()
    model.close_hooks()


def _time(fn: Callable[[nn.Module, list[torch.Tensor]], None], net: nn.Module,
          batches: list[torch.Tensor]) -> float:
    start = time.perf_counter()
    with torch.no_grad():
        fn(net, batches)
    return time.perf_counter() - start


def run(repeats: int, n_batches: int) -> dict[str, Any]:
    torch.set_num_threads(1)
    try:
        import neurobench  # noqa: F401

        have_neurobench = True
    except ImportError:
        have_neurobench = False
    results: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "processor": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
        },
        "metrics": [m.__name__ for m in METRICS],
        "regimes": {},
    }
    for name, (factory, shape) in REGIMES.items():
        torch.manual_seed(0)
        base = factory()
        base[-1].output = True  # NeuroBench's SNNTorchModel unpacks (spikes, membrane)
        runners = {"plain": _plain, "snnmetrics": _snnmetrics}
        if have_neurobench:
            runners["neurobench"] = _neurobench
        nets = {key: copy.deepcopy(base).eval() for key in runners}
        gen = torch.Generator().manual_seed(1)
        batches = [poisson_spikes(shape, 0.1, gen) for _ in range(n_batches)]
        best = {key: float("inf") for key in runners}
        for _ in range(repeats):
            for key, fn in runners.items():
                best[key] = min(best[key], _time(fn, nets[key], batches))
        entry: dict[str, Any] = {"input_shape": list(shape), "batches": n_batches,
                                 "seconds": best}
        entry["snnmetrics_vs_plain"] = best["snnmetrics"] / best["plain"]
        if have_neurobench:
            entry["neurobench_vs_plain"] = best["neurobench"] / best["plain"]
            entry["neurobench_vs_snnmetrics"] = best["neurobench"] / best["snnmetrics"]
        results["regimes"][name] = entry
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batches", type=int, default=2)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    results = run(args.repeats, args.batches)
    print(f"metrics: {', '.join(results['metrics'])}; one thread; min of {args.repeats} repeats")
    columns = ("plain s", "ours s", "ours/plain", "NB/plain", "NB/ours")
    print(f"{'regime':<8}" + "".join(f"{column:>12}" for column in columns))
    for name, entry in results["regimes"].items():
        s = entry["seconds"]
        nb = entry.get("neurobench_vs_plain", float("nan"))
        nb_ours = entry.get("neurobench_vs_snnmetrics", float("nan"))
        print(f"{name:<8}{s['plain']:>12.3f}{s['snnmetrics']:>12.3f}"
              f"{entry['snnmetrics_vs_plain']:>12.3f}{nb:>12.2f}{nb_ours:>12.2f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
