"""Run every benchmark: overhead, memory, scaling and DDP compute; print tables, write JSON.

Usage (from the repository root): ``python benchmarks/run.py [--out benchmarks/results]
[--zoo]``. Writes ``overhead.json``, ``memory.json``, ``scaling.json``, ``scaling.png`` and
``ddp_compute.json`` into the output folder. Takes a few minutes on 2 cores. ``--zoo`` also
runs the model zoo (``zoo.py``, eager and compiled: ``zoo.json``, ``zoo.md``), which takes
30-60 minutes on 2 cores, most of it compiling.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--zoo", action="store_true", help="also run the model zoo")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = [
        ["overhead.py", "--repeats", str(args.repeats), "--json", str(out / "overhead.json")],
        ["memory.py", "--json", str(out / "memory.json")],
        ["scaling.py", "--repeats", "3", "--json", str(out / "scaling.json"),
         "--plot", str(out / "scaling.png")],
        ["ddp_compute.py", "--json", str(out / "ddp_compute.json")],
    ]
    if args.zoo:
        runs.append(["zoo.py", "--repeats", str(args.repeats), "--json", str(out / "zoo.json"),
                     "--markdown", str(out / "zoo.md")])
    for script, *script_args in runs:
        print(f"\n== {script}", flush=True)
        subprocess.run([sys.executable, script, *script_args], cwd=HERE, check=True)


if __name__ == "__main__":
    main()
