"""Benchmark: a release whose build context is large, side by side with the manual flow (#22).

Prints figures; asserts nothing. Needs what the end-to-end tests need (root, a Docker
engine that can start). Run:

    uv run --group dev python -m benchmarks.scale [--runs N] [--files N] [--megabytes N]
        [--cases rerun,new,shipped,list,growth] [--growth 2000,20000,100000]

The suite runs the README's way, ``uv run inv release --version V --json`` (the project's
own environment, ``uv run --project``, from the project copy), with ``SMOKE_TEST=false``
as in ``benchmarks.compare`` (the manual flow has no smoke test). The manual flow is the
tutorial's commands (``benchmarks.compare.Manual``): describe-repositories,
get-login-password | docker login, docker build, docker tag, docker push. Each tool has a
project copy of its own, both with the same generated assets beside the service
(``assets/``, random bytes, as many files as ``--files``; git ignores them, so the tree
stays clean). Runs alternate ABBA. Cases and goals:

- rerun:   an already released version again, 20,000 files, 235 MB (suite <= 0.6 s);
- new:     a one-line change in one file, released as a new version (suite <= 0.75x);
- shipped: the shipped service alone, an already released version (suite <= 0.35x);
- list:    ``inv --list`` in the project vs. in a one-task tasks.py (<= 1.1x);
- growth:  the suite's check step on a rerun at 2,000, 20,000 and 100,000 files (the same
           bytes per file): its first walk (every file read) and the next (from the cache).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from benchmarks.compare import (
    Bench,
    Result,
    Suite,
    case_list,
    case_new,
    case_rerun,
    image_ids,
    progress,
)
from tests.e2e.project import ROOT, Project
from tests.e2e.stack import Stack
from tests.wheel import uv_binary

CASES = ("rerun", "new", "shipped", "list", "growth")
DEFAULT_RUNS = {"rerun": 7, "new": 5, "shipped": 7, "list": 21}
TITLES = {
    "rerun": "rerun, large context",
    "new": "new version, one-line change",
    "shipped": "rerun, shipped service",
    "list": "inv --list (vs one-task)",
}
GOALS = {"new": 0.75, "shipped": 0.35, "list": 1.1}
RERUN_GOAL_SECONDS = 0.6


class UvSuite(Suite):
    """``uv run inv release --version V --json`` in a project copy (the README's way): the
    project's own environment (``uv run --project``), from the copy."""

    def __init__(self, project: Project) -> None:
        super().__init__(project)
        self.argv = [uv_binary(), "run", "--project", str(ROOT), "inv"]
        self.env = {**project.env, "UV_CACHE_DIR": uv_cache_dir()}

    def inv(self, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.argv, *args],
            cwd=self.project.root,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=1800,
        )


def uv_cache_dir() -> str:
    done = subprocess.run([uv_binary(), "cache", "dir"], capture_output=True, text=True)
    return done.stdout.strip()


def make_assets(project: Project, files: int, total_bytes: int, start: int = 0) -> None:
    """``files`` files of random bytes under ``assets/`` (200 a folder), ``total_bytes`` in
    all; git ignores them (``.git/info/exclude``), so the tree stays clean."""
    size = max(total_bytes // max(files, 1), 1)
    for i in range(start, start + files):
        folder = project.root / "assets" / f"d{i // 200:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i:06d}.bin").write_bytes(os.urandom(size))
    exclude = project.root / ".git" / "info" / "exclude"
    if "/assets/" not in exclude.read_text():
        exclude.write_text(exclude.read_text() + "/assets/\n")
    past = time.time() - 3600  # as in a checkout made a while ago
    for path in (project.root / "assets").rglob("*"):
        os.utime(path, (past, past))


def share_assets(source: Project, target: Project) -> None:
    """The same assets in another copy, hard-linked (the same bytes, no second copy on disk)."""
    shutil.copytree(source.root / "assets", target.root / "assets", copy_function=os.link)
    exclude = target.root / ".git" / "info" / "exclude"
    exclude.write_text(exclude.read_text() + "/assets/\n")


# -- the cases -------------------------------------------------------------------------------


def with_uv(bench: Bench) -> Bench:
    """The bench, its suite run the README's way; v1 released with each tool (not timed:
    the suite's first walk reads every file)."""
    bench.suite = UvSuite(bench.suite.project)
    progress("warm-up: v1 with each tool (not timed)")
    bench.warm_up()
    return bench


def case_growth(bench: Bench, sizes: Sequence[int], bytes_per_file: int) -> list[str]:
    """The check step of a rerun, at each size: the first walk after the files appeared
    (every file read and hashed) and the next one (the cache's)."""
    lines = []
    project = bench.project("growth")
    suite = UvSuite(project)
    made = 0
    suite.release("v1")  # released without assets: each size's first rerun is then refused
    for files in sorted(sizes):
        make_assets(project, files - made, (files - made) * bytes_per_file, start=made)
        made = files
        version = f"g{files}"
        first = suite.release(version)  # a new version: walks every file, releases
        again = [suite.release(version) for _ in range(3)]  # reruns: from the cache
        check = statistics.median(steps.get("check", 0.0) for _, steps, _ in again)
        wall = statistics.median(total for total, _, _ in again)
        mb = files * bytes_per_file / 1e6
        lines.append(
            f"  {files:>7} files {mb:7.0f} MB   check: first walk {first[1].get('check', 0):6.2f}s,"
            f" rerun {check:6.3f}s   (rerun wall {wall:5.2f}s)"
        )
        progress(lines[-1].strip())
    return lines


# -- the report ----------------------------------------------------------------------------


def report(results: Sequence[Result], growth: Sequence[str], files: int, megabytes: int) -> None:
    sys.stderr.flush()
    print(
        f"\npython {sys.version.split()[0]}, {os.cpu_count()} CPUs; large context: {files} "
        f"files, {megabytes} MB; the suite through `uv run inv` (uv {uv_version()})"
    )
    head = f"{'case':<30} {'suite':>8} {'manual':>8} {'ratio':>6} {'goal':>9}  {'':<7}  N"
    print(head)
    print("-" * len(head))
    for r in results:
        ratio = r.suite.median / r.manual.median
        if r.case == "rerun":
            goal, met = f"<={RERUN_GOAL_SECONDS}s", r.suite.median <= RERUN_GOAL_SECONDS
        else:
            goal, met = f"<={GOALS[r.case]:.2f}", ratio <= GOALS[r.case]
        n = f"{len(r.suite.totals)}+{len(r.manual.totals)}"
        print(
            f"{TITLES[r.case]:<30} {r.suite.median:7.2f}s {r.manual.median:7.2f}s {ratio:6.2f} "
            f"{goal:>9}  {'met' if met else 'NOT met':<7}  {n}"
        )
    print("\nmedians per step (suite: its --json steps; manual: each command's wall time)")
    for r in results:
        if r.case == "list":
            continue
        print(f"  {r.case:<8} suite   {r.suite.breakdown()}")
        print(f"  {'':<8} manual  {r.manual.breakdown()}")
    if growth:
        print("\nthe check step as the context grows (medians of 3 reruns):")
        print("\n".join(growth))


def uv_version() -> str:
    done = subprocess.run([uv_binary(), "--version"], capture_output=True, text=True)
    return done.stdout.split()[1] if done.stdout else "?"


def _sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, help="timed runs per tool in every case")
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--megabytes", type=int, default=235)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--growth", default="2000,20000,100000")
    args = parser.parse_args(argv)
    cases = [c for c in CASES if c in args.cases.split(",")]
    if not cases:
        parser.error(f"--cases: know {','.join(CASES)}")
    signal.signal(signal.SIGTERM, _sigterm)
    stack = Stack()
    info = stack.up()
    images_before = image_ids()
    bench: Bench | None = None
    results: list[Result] = []
    growth: list[str] = []
    total_bytes = args.megabytes * 1_000_000
    try:
        with tempfile.TemporaryDirectory(prefix="ecr-scale-") as tmp:
            bench = Bench(Path(tmp), info, stack)
            runs = {c: args.runs or n for c, n in DEFAULT_RUNS.items()}
            if {"rerun", "new"} & set(cases):
                progress(f"generating {args.files} files, {args.megabytes} MB, in each copy")
                make_assets(bench.suite.project, args.files, total_bytes)
                share_assets(bench.suite.project, bench.manual.project)
                with_uv(bench)
                if "rerun" in cases:
                    results.append(case_rerun(bench, runs["rerun"]))
                if "new" in cases:
                    results.append(case_new(bench, runs["new"]))
            if "shipped" in cases:
                shipped = with_uv(Bench(Path(tmp) / "shipped", info, stack))
                results.append(case_rerun(shipped, runs["shipped"], "shipped"))
            if "list" in cases:
                results.append(case_list(bench, runs["list"]))
            if "growth" in cases:
                sizes = [int(size) for size in args.growth.split(",") if size]
                growth = case_growth(bench, sizes, total_bytes // args.files)
            report(results, growth, args.files, args.megabytes)
    finally:
        if bench is not None:
            bench.remove_images()
            left = image_ids() - images_before
            if left:
                progress(f"note: {len(left)} image(s) appeared in the engine during this run")
        stack.down()


if __name__ == "__main__":
    main()
