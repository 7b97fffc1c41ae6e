"""Memory of the metrics: resident set size is flat in batches and timesteps for snnmetrics.

Each configuration runs in a fresh process and reports how much its peak resident memory
(``ru_maxrss``) grew while the metrics ran, from a baseline taken after one plain batch
(so what the metrics allocate on first use counts too):

* batches: a small SNN for 10 and for 1000 batches, all hooked metrics updated per batch;
* timesteps: the GSC-like MLP SNN for one batch of 32 samples at 50 and at 500 steps.

The baseline is taken after one plain batch, before any metric exists, so what the metrics
allocate on their first batch counts too.

NeuroBench (if installed) runs the same, driven like ``Benchmark.run``: its hooks keep
every step's layer inputs and outputs until the batch ends, so its peak grows with the
number of steps. Run: ``python benchmarks/memory.py [--json PATH]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from typing import Any

import snntorch as snn
import torch
from overhead import METRICS  # type: ignore[import-not-found]
from torch import nn

from snnmetrics.examples import mlp_snn, poisson_spikes, run_steps


def _small_snn() -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(20, 64), snn.Leaky(beta=0.9, init_hidden=True),
        nn.Linear(64, 10), snn.Leaky(beta=0.9, init_hidden=True, output=True),
    )


def _peak_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _measure(tool: str, experiment: str, size: int) -> dict[str, Any]:
    """Runs in the child process: one configuration, peak RSS growth in KiB."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    if experiment == "batches":
        net, shape, n_batches = _small_snn(), (8, 10, 20), size
    else:
        net, shape, n_batches = mlp_snn(), (32, size, 20), 1
        net[-1].output = True
    gen = torch.Generator().manual_seed(1)
    x = poisson_spikes(shape, 0.1, gen)

    with torch.no_grad():
        run_steps(net, x)  # a plain batch first: the allocator and the neuron states exist
        base = _peak_kib()
        if tool == "snnmetrics":
            metrics = [make(net) for make in METRICS]
            for _ in range(n_batches):
                run_steps(net, x)
                for metric in metrics:
                    metric.update()
            for metric in metrics:
                metric.compute()
        else:
            _neurobench_batches(net, x, n_batches)
    return {"growth_kib": _peak_kib() - base}


def _neurobench_batches(net: nn.Module, x: torch.Tensor, n_batches: int) -> None:
    """NeuroBench's metrics driven the way ``Benchmark.run`` drives them."""
    from neurobench.metrics.workload import ActivationSparsity, MembraneUpdates, SynapticOperations
    from neurobench.models import SNNTorchModel

    model = SNNTorchModel(net)
    model.register_hooks()
    metrics = [SynapticOperations(), ActivationSparsity(), MembraneUpdates()]
    for _ in range(n_batches):
        preds = model(x)
        for metric in metrics:
            metric(model, preds, (x, None))
        model.reset_hooks()


def _in_child(tool: str, experiment: str, size: int) -> dict[str, Any]:
    code = (
        "import json, sys; sys.path.insert(0, 'benchmarks'); import memory; "
        f"print(json.dumps(memory._measure({tool!r}, {experiment!r}, {size})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def run() -> dict[str, Any]:
    tools = ["snnmetrics"]
    try:
        import neurobench  # noqa: F401

        tools.append("neurobench")
    except ImportError:
        pass
    results: dict[str, Any] = {}
    for experiment, sizes in (("batches", (10, 1000)), ("timesteps", (50, 500))):
        for tool in tools:
            for size in sizes:
                key = f"{experiment}={size}"
                results.setdefault(tool, {})[key] = _in_child(tool, experiment, size)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    results = run()
    print("peak resident memory growth (KiB) while the metrics ran")
    header = f"{'tool':<12}" + "".join(f"{key:>18}" for key in next(iter(results.values())))
    print(header)
    for tool, entries in results.items():
        print(f"{tool:<12}" + "".join(f"{e['growth_kib']:>18,}" for e in entries.values()))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
