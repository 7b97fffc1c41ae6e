"""A pool of gloo worker processes for DDP tests, reused by every test of a module.

Tasks are module-level functions ``fn(rank, world_size, *args)``; each worker runs the
task in an initialised process group and sends back its return value. Expected values are
computed in the test process, never inside a worker: a reference computed after a sync
would agree with a wrong metric too.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import socket
import traceback
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist

TIMEOUT_S = 120


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _worker(rank: int, world_size: int, port: int, tasks: Any, results: Any) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size
    )
    while True:
        task = tasks.get()
        if task is None:
            break
        fn, args = task
        try:
            results.put((rank, True, fn(rank, world_size, *args)))
        except BaseException:
            results.put((rank, False, traceback.format_exc()))
    dist.barrier()  # no rank tears gloo down while another still talks to it
    dist.destroy_process_group()


class WorkerPool:
    def __init__(self, world_size: int) -> None:
        ctx = mp.get_context("spawn")
        port = _free_port()
        self.world_size = world_size
        self._tasks = [ctx.Queue() for _ in range(world_size)]
        self._results = ctx.Queue()
        self._procs = [
            ctx.Process(
                target=_worker,
                args=(rank, world_size, port, self._tasks[rank], self._results),
                daemon=True,
            )
            for rank in range(world_size)
        ]
        for proc in self._procs:
            proc.start()

    def run(self, fn: Callable[..., Any], *args: Any) -> list[Any]:
        """Run ``fn(rank, world_size, *args)`` on every rank; results ordered by rank."""
        for tasks in self._tasks:
            tasks.put((fn, args))
        results: dict[int, Any] = {}
        failures = []
        for _ in range(self.world_size):
            try:
                rank, ok, value = self._results.get(timeout=TIMEOUT_S)
            except queue.Empty:
                raise TimeoutError(f"a DDP worker did not answer within {TIMEOUT_S} s") from None
            if ok:
                results[rank] = value
            else:
                failures.append(f"rank {rank}:\n{value}")
        if failures:
            raise AssertionError("DDP task failed\n" + "\n".join(failures))
        return [results[rank] for rank in range(self.world_size)]

    def close(self) -> None:
        for tasks in self._tasks:
            tasks.put(None)
        for proc in self._procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
