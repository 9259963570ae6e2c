"""Benchmark: how fast the command line starts, and what it imports to do so.

Prints figures; asserts nothing (timing asserts flake on a busy machine). Run:

    uv run --group dev python -m benchmarks.startup [--runs N]

`inv --list` and `inv --help release` must not import boto3, botocore or dotenv:
the figures show the modules loaded and the median wall time of each command.

Then where the import time goes (``python -X importtime``, .pyc files written first):
invoke's own imports (``invoke.main``: what any tasks.py pays), apart from ours, for
``inv --list`` (``tasks.py``) and for a rerun of ``inv release`` (the modules a rerun
loads besides, python-dotenv and dockerfile-parse among them), with our slowest modules.
"""

from __future__ import annotations

import argparse
import os
import re
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


# What a rerun of `inv release --version V` imports besides tasks.py: what the session
# imports to load the settings and wire the run (cli/session.py), and what reading .env
# and the Dockerfile imports. The markers split the import-time log into its parts.
RERUN_MODULES = (
    "ecr_release.model.settings",
    "ecr_release.cli.report",
    "ecr_release.flows.published",
    "ecr_release.flows.release",
    "ecr_release.flows.scan",
    "ecr_release.flows.smoke",
    "ecr_release.outside.ecr",
    "ecr_release.outside.docker",
    "ecr_release.outside.localstate",
    "ecr_release.outside.process",
    "ecr_release.outside.registry",
    "dotenv",
    "dockerfile_parse",
)
IMPORTS = f"""
import importlib, sys
sys.stderr.write("MARK invoke\\n")
import invoke.main
sys.stderr.write("MARK list\\n")
import tasks
sys.stderr.write("MARK rerun\\n")
for name in {RERUN_MODULES!r}:
    importlib.import_module(name)
sys.stderr.write("MARK end\\n")
"""
LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( +)(\S+)")


def import_times() -> tuple[dict[str, float], dict[str, float]]:
    """One run's import time in ms: per part (the top-level imports' cumulative time), and
    per module of ours (its self time)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", IMPORTS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    parts: dict[str, float] = {}
    ours: dict[str, float] = {}
    part = "python"
    for line in done.stderr.splitlines():
        if line.startswith("MARK "):
            part = line.split()[1]
            continue
        found = LINE.match(line)
        if found is None:
            continue
        self_us, total_us, indent, name = found.groups()
        if len(indent) == 1:  # a top-level import: its cumulative time holds its subtree
            parts[part] = parts.get(part, 0.0) + int(total_us) / 1000
        if name == "tasks" or name.startswith("ecr_release"):
            ours[name] = int(self_us) / 1000
    return parts, ours


def show_import_times(runs: int) -> None:
    import_times()  # writes the .pyc files: the runs measure imports, not compilation
    samples = [import_times() for _ in range(runs)]

    def median(part: str) -> float:
        return statistics.median(s[0].get(part, 0.0) for s in samples)

    invoke, listing, rerun = median("invoke"), median("list"), median("rerun")
    print(f"\nimport time (python -X importtime, median of {runs})")
    print(f"  {'invoke (invoke.main)':<44} {invoke:>6.0f}ms  any tasks.py pays it")
    print(f"  {'ours: inv --list (tasks.py)':<44} {listing:>6.0f}ms")
    print(f"  {'ours: a rerun of release (tasks.py and more)':<44} {listing + rerun:>6.0f}ms")
    print(
        f"  {'total: inv --list / a rerun':<44} {invoke + listing:>6.0f}ms / "
        f"{invoke + listing + rerun:.0f}ms"
    )
    own = {n: statistics.median(s[1].get(n, 0.0) for s in samples) for n in samples[0][1]}
    slowest = sorted(own, key=lambda n: -own[n])[:6]
    shown = ", ".join(f"{n.removeprefix('ecr_release.')} {own[n]:.1f}" for n in slowest)
    print(f"  our slowest modules (self ms): {shown}")


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
    show_import_times(runs)


if __name__ == "__main__":
    main()
