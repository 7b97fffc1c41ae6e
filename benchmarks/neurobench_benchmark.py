"""``Benchmark.run()`` of snnmetrics against NeuroBench 2.3.0's, on the same script.

The script is a NeuroBench evaluation: an snnTorch network in NeuroBench's
``SNNTorchModel``, a DataLoader of Poisson spikes (rate 0.1) and labels, the postprocessor
``spikes.sum(1).argmax(1)``, the static metrics footprint, connection sparsity and
parameter count, and the workload metrics classification accuracy, activation sparsity,
synaptic operations, membrane updates and neuron operations. The only difference between
the two runs is the import of ``Benchmark``. "plain" is snnmetrics' ``run()`` with no
metric: the same loop, wrapper and postprocessor under ``torch.no_grad()``, no hook (the
model's own cost, for scale).

Each (tool, regime) runs in a fresh process, one torch thread: peak resident memory
growth (``ru_maxrss``) during the first ``run()``, from a baseline taken after the data,
the network and one plain batch exist; then wall and CPU time of ``run()``, the minimum
over the repeats (``Benchmark`` construction and NeuroBench's hook cleanup not timed).
The parent checks that both tools return the same dict.
Run: ``python benchmarks/neurobench_benchmark.py [--repeats 3] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from snnmetrics.examples import conv_snn, mlp_snn, poisson_spikes, run_steps

# name -> (network, (samples, steps, *input shape), batch size, classes)
REGIMES: dict[str, tuple[Callable[[], nn.Sequential], tuple[int, ...], int, int]] = {
    "mlp": (mlp_snn, (256, 100, 20), 32, 35),
    "conv": (conv_snn, (64, 25, 2, 32, 32), 16, 11),
}
METRICS = [
    ["footprint", "connection_sparsity", "parameter_count"],
    [
        "classification_accuracy",
        "activation_sparsity",
        "synaptic_operations",
        "membrane_updates",
        "neuron_operations",
    ],
]


def choose_max_count(spikes: torch.Tensor) -> torch.Tensor:
    return spikes.sum(1).argmax(1)


def _peak_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _setup(regime: str) -> tuple[nn.Module, DataLoader]:
    make, shape, batch_size, classes = REGIMES[regime]
    torch.manual_seed(0)
    net = make()
    net[-1].output = True  # SNNTorchModel takes (spikes, membrane) from every step
    gen = torch.Generator().manual_seed(1)
    x = poisson_spikes(shape, 0.1, gen)
    y = torch.randint(0, classes, (shape[0],), generator=gen)
    return net, DataLoader(TensorDataset(x, y), batch_size=batch_size)


def _measure(tool: str, regime: str, repeats: int) -> dict[str, Any]:
    """Runs in the child process."""
    from neurobench.benchmarks import Benchmark as NeuroBenchBenchmark
    from neurobench.models import SNNTorchModel

    from snnmetrics import Benchmark

    torch.set_num_threads(1)
    net, loader = _setup(regime)
    with torch.no_grad():
        run_steps(net, next(iter(loader))[0])  # a plain batch: allocator and neuron states
    base = _peak_kib()
    walls, cpus, growth, results = [], [], 0, None
    for repeat in range(repeats):
        tool_benchmark = NeuroBenchBenchmark if tool == "neurobench" else Benchmark
        metrics = [[], []] if tool == "plain" else METRICS
        bench = tool_benchmark(SNNTorchModel(net), loader, [], [choose_max_count], metrics)
        wall, cpu = time.perf_counter(), time.process_time()
        results = bench.run(quiet=True)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
        if repeat == 0:
            growth = _peak_kib() - base
        if tool == "neurobench":
            bench.workload_metric_manager.cleanup_hooks(bench.model)
    return {"wall_s": min(walls), "cpu_s": min(cpus), "growth_kib": growth, "results": results}


def _in_child(tool: str, regime: str, repeats: int) -> dict[str, Any]:
    code = (
        "import json, sys; sys.path.insert(0, 'benchmarks'); import neurobench_benchmark as b; "
        f"print(json.dumps(b._measure({tool!r}, {regime!r}, {repeats})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def run(repeats: int, regimes: list[str]) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for regime in regimes:
        entry = {
            tool: _in_child(tool, regime, repeats) for tool in ("plain", "neurobench", "snnmetrics")
        }
        entry["same_results"] = entry["neurobench"]["results"] == entry["snnmetrics"]["results"]
        figures[regime] = entry
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--regimes", nargs="+", default=list(REGIMES), choices=list(REGIMES))
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    try:
        import neurobench  # noqa: F401
    except ImportError:
        sys.exit("needs NeuroBench 2.3.0: pip install --no-deps neurobench==2.3.0 tqdm")
    figures = run(args.repeats, args.regimes)
    print("| regime | tool | run() wall s | run() CPU s | peak RSS growth MiB | same dict |")
    print("|---|---|---|---|---|---|")
    for regime, entry in figures.items():
        for tool in ("plain", "neurobench", "snnmetrics"):
            e = entry[tool]
            same = entry["same_results"] if tool != "plain" else ""
            print(
                f"| {regime} | {tool} | {e['wall_s']:.3f} | {e['cpu_s']:.3f} | "
                f"{e['growth_kib'] / 1024:.1f} | {same} |"
            )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(figures, handle, indent=2)


if __name__ == "__main__":
    main()
