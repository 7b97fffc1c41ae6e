"""Time of one synced compute() of every hooked metric with 2 gloo ranks on the CPU.

Each rank runs the GSC-like MLP SNN on its own batch, updates all metrics, then times
``compute()`` (which all-reduces the states) as the minimum over repeats, next to the
same ``compute()`` without a process group. Run: ``python benchmarks/ddp_compute.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from overhead import METRICS  # type: ignore[import-not-found]

from snnmetrics.examples import mlp_snn, poisson_spikes, run_steps


def _computes(repeats: int) -> dict[str, float]:
    torch.manual_seed(0)
    net = mlp_snn()
    metrics = [make(net) for make in METRICS]
    rank = dist.get_rank() if dist.is_initialized() else 0
    x = poisson_spikes((16, 20, 20), 0.1, torch.Generator().manual_seed(rank))
    with torch.no_grad():
        run_steps(net, x)
    for metric in metrics:
        metric.update()
    best = {}
    for metric in metrics:
        times = []
        for _ in range(repeats):
            metric._computed = None  # no cached result
            start = time.perf_counter()
            metric.compute()
            times.append(time.perf_counter() - start)
        best[type(metric).__name__] = min(times)
    return best


def _worker(rank: int, world_size: int, port: int, repeats: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    best = _computes(repeats)
    if rank == 0:
        with open(out, "w", encoding="utf-8") as handle:
            json.dump(best, handle)
    dist.barrier()  # no rank tears gloo down while another still talks to it
    dist.destroy_process_group()


def run(repeats: int) -> dict[str, Any]:
    import socket
    import tempfile

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.NamedTemporaryFile(suffix=".json") as handle:
        mp.spawn(_worker, args=(2, port, repeats, handle.name), nprocs=2)
        with open(handle.name, encoding="utf-8") as result:
            synced = json.load(result)
    torch.set_num_threads(1)
    local = _computes(repeats)
    return {"seconds_2_ranks": synced, "seconds_1_process": local}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    results = run(args.repeats)
    print(f"{'metric':<22}{'2 gloo ranks ms':>18}{'1 process ms':>16}")
    for name, seconds in results["seconds_2_ranks"].items():
        alone = results["seconds_1_process"][name]
        print(f"{name:<22}{seconds * 1e3:>18.2f}{alone * 1e3:>16.2f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
