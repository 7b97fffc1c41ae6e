"""Cost of snnmetrics' hooked metrics, as a ratio to a plain forward pass, next to NeuroBench.

For each regime (a compute-bound 3-conv SNN, and a GSC-like MLP SNN whose steps are cheap
so that per-call hook cost shows) three identical copies of one model run the same data:

* plain: never hooked;
* snnmetrics: the hooked metrics on, ``update()`` after every batch;
* neurobench (if installed): its SynapticOperations, ActivationSparsity and MembraneUpdates
  driven the way ``Benchmark.run`` drives them;
* with ``--activity``, also ``SpikeTrainStatistics`` alone and ``ActivityProfile`` alone
  (``max_steps`` = the batches' timesteps), each on its own copy, ``update()`` after every
  batch (the default comparison is then interleaved with two more configurations).

Hooks are attached and warmed up by one batch before timing (once per training run);
each configuration is then timed (CPU time of the process, one thread,
``torch.no_grad()``) as the minimum over interleaved repeats of the same batches, in an
order that rotates from one repeat to the next.
Run: ``python benchmarks/overhead.py [--repeats 15] [--activity] [--json PATH]``.
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


Epoch = Callable[[list[torch.Tensor]], None]
Runner = Callable[[nn.Module], tuple[Epoch, Callable[[], None]]]


def _plain(net: nn.Module) -> tuple[Epoch, Callable[[], None]]:
    def epoch(batches: list[torch.Tensor]) -> None:
        for x in batches:
            run_steps(net, x)

    return epoch, lambda: None


# the three metrics the NeuroBench runner computes, for a like-for-like comparison
AS_NEUROBENCH = (sm.SynapticOperations, sm.ActivationSparsity, sm.MembraneUpdates)


def _snnmetrics(
    net: nn.Module, makers: tuple[Callable[[nn.Module], sm.HookedMetric], ...] = METRICS
) -> tuple[Epoch, Callable[[], None]]:
    metrics = [make(net) for make in makers]

    def epoch(batches: list[torch.Tensor]) -> None:
        for x in batches:
            run_steps(net, x)
            for metric in metrics:
                metric.update()

    def close() -> None:
        for metric in metrics:
            metric.detach()

    return epoch, close


def _neurobench(net: nn.Module) -> tuple[Epoch, Callable[[], None]]:
    from neurobench.metrics.workload import (
        ActivationSparsity,
        MembraneUpdates,
        SynapticOperations,
    )
    from neurobench.models import SNNTorchModel

    model = SNNTorchModel(net)
    model.register_hooks()
    metrics = [SynapticOperations(), ActivationSparsity(), MembraneUpdates()]

    def epoch(batches: list[torch.Tensor]) -> None:
        for x in batches:
            preds = model(x)
            for metric in metrics:
                metric(model, preds, (x, None))
            model.reset_hooks()

    return epoch, model.close_hooks


def _time(epoch: Epoch, batches: list[torch.Tensor]) -> float:
    # CPU time of this process: on a shared VM, time stolen by other tenants is left out
    start = time.process_time()
    with torch.no_grad():
        epoch(batches)
    return time.process_time() - start


def compare(
    runners: dict[str, Runner],
    base: nn.Module,
    batches: list[torch.Tensor],
    repeats: int,
) -> dict[str, float]:
    """Best time of each runner on its own copy of ``base``, repeats interleaved.

    Metrics are made (hooks attached) and warmed up by one epoch before timing, as they
    would be once per training run; every timed epoch includes the per-batch updates.
    The order of the runners rotates from one repeat to the next.
    """
    epochs, closers = {}, []
    for key, make in runners.items():
        epochs[key], close = make(copy.deepcopy(base).eval())
        closers.append(close)
        _time(epochs[key], batches[:1])
    best = {key: float("inf") for key in runners}
    keys = list(epochs)
    for repeat in range(repeats):
        # rotate the order: a configuration timed right after another one runs measurably
        # faster or slower on this VM (2-5% in an A/A test), so no runner keeps one place
        shift = repeat % len(keys)
        for key in keys[shift:] + keys[:shift]:
            best[key] = min(best[key], _time(epochs[key], batches))
    for close in closers:
        close()
    return best


ACTIVITY = ("spike_trains", "activity_profile")  # --activity: each metric alone


def _activity_runners(steps: int) -> dict[str, Runner]:
    """SpikeTrainStatistics and ActivityProfile (room for ``steps`` steps), each alone."""

    def profile(net: nn.Module) -> sm.HookedMetric:
        return sm.ActivityProfile(net, max_steps=steps)

    makers = ((sm.SpikeTrainStatistics,), (profile,))
    return {
        key: lambda net, make=make: _snnmetrics(net, make)
        for key, make in zip(ACTIVITY, makers, strict=True)
    }


def run(repeats: int, n_batches: int, activity: bool = False) -> dict[str, Any]:
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
            runners["snnmetrics_3"] = lambda net: _snnmetrics(net, AS_NEUROBENCH)
            runners["neurobench"] = _neurobench
        if activity:
            runners.update(_activity_runners(shape[1]))  # batches are [B, T, ...]
        gen = torch.Generator().manual_seed(1)
        batches = [poisson_spikes(shape, 0.1, gen) for _ in range(n_batches)]
        best = compare(runners, base, batches, repeats)
        entry: dict[str, Any] = {"input_shape": list(shape), "batches": n_batches,
                                 "seconds": best}
        entry["snnmetrics_vs_plain"] = best["snnmetrics"] / best["plain"]
        if have_neurobench:
            entry["neurobench_vs_plain"] = best["neurobench"] / best["plain"]
            entry["neurobench_vs_snnmetrics"] = best["neurobench"] / best["snnmetrics"]
            entry["snnmetrics_3_vs_plain"] = best["snnmetrics_3"] / best["plain"]
            entry["neurobench_vs_snnmetrics_3"] = best["neurobench"] / best["snnmetrics_3"]
        for key in ACTIVITY if activity else ():
            entry[f"{key}_vs_plain"] = best[key] / best["plain"]
        results["regimes"][name] = entry
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--batches", type=int, default=2)
    parser.add_argument(
        "--activity",
        action="store_true",
        help="also time SpikeTrainStatistics and ActivityProfile, each alone",
    )
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    results = run(args.repeats, args.batches, args.activity)
    print(f"metrics: {', '.join(results['metrics'])}; one thread; min of {args.repeats} repeats")
    print("ours: all five metrics; ours3: the three NeuroBench runs (SynOps, sparsity, membrane)")
    columns = ("plain s", "ours/plain", "ours3/plain", "NB/plain", "NB/ours", "NB/ours3")
    print(f"{'regime':<8}" + "".join(f"{column:>12}" for column in columns))
    for name, entry in results["regimes"].items():
        cells = [entry["seconds"]["plain"], entry["snnmetrics_vs_plain"]]
        cells += [entry.get(key, float("nan")) for key in (
            "snnmetrics_3_vs_plain", "neurobench_vs_plain", "neurobench_vs_snnmetrics",
            "neurobench_vs_snnmetrics_3")]
        print(f"{name:<8}" + "".join(f"{cell:>12.3f}" for cell in cells))
    if args.activity:
        print("each alone: SpikeTrainStatistics (trains), ActivityProfile (profile)")
        print(f"{'regime':<8}{'trains/plain':>14}{'profile/plain':>14}")
        for name, entry in results["regimes"].items():
            ratios = (entry["spike_trains_vs_plain"], entry["activity_profile_vs_plain"])
            print(f"{name:<8}" + "".join(f"{ratio:>14.3f}" for ratio in ratios))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
