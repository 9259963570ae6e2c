"""Benchmark: how fast the command line starts, and what it imports to do so.

Prints figures; asserts nothing (timing asserts flake on a busy machine). Run:

    uv run --group dev python -m benchmarks.startup [--runs N]

`inv --list` and `inv --help release` must not import boto3, botocore or dotenv:
the figures show the modules loaded and the median wall time of each command.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INV = Path(sys.executable).with_name("inv")

PROBE = """
import sys, time
start = time.perf_counter()
from invoke.main import program
sys.argv = ["inv", *{argv!r}]
try:
    program.run()
except SystemExit:
    pass
elapsed = time.perf_counter() - start
top = {{m.split(".")[0] for m in sys.modules}}
heavy = sorted(top & {{"boto3", "botocore", "dotenv"}})
print("PROBE", len(sys.modules), elapsed, ",".join(heavy) or "-", file=sys.stderr)
"""


def wall(argv: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([str(INV), *argv], cwd=ROOT, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return times


def probe(argv: list[str]) -> tuple[int, float, str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(argv=argv)], cwd=ROOT, capture_output=True, text=True
    )
    line = next(x for x in done.stderr.splitlines() if x.startswith("PROBE"))
    _, modules, elapsed, heavy = line.split()
    return int(modules), float(elapsed), heavy


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    runs = parser.parse_args().runs
    print(f"{'command':<28} {'median':>8} {'min':>8} {'modules':>8}  heavy loaded")
    for argv in (["--list"], ["--help", "release"]):
        times = wall(argv, runs)
        modules, _, heavy = probe(argv)
        print(
            f"{'inv ' + ' '.join(argv):<28} {statistics.median(times) * 1000:>6.0f}ms "
            f"{min(times) * 1000:>6.0f}ms {modules:>8}  {heavy}"
        )
    base = wall(["--version"], runs)
    print(
        f"{'inv --version (invoke only)':<28} {statistics.median(base) * 1000:>6.0f}ms "
        f"{min(base) * 1000:>6.0f}ms"
    )


if __name__ == "__main__":
    main()
