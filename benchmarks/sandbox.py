"""Benchmark: the local sandbox's speed (issue #18), against the root stack.

Prints figures; asserts nothing. Needs a Docker engine that answers, holding the e2e base
image and the sandbox's registry image (as root: ``python -m tests.e2e.stack images``);
the root stack's figures need root too (without it only the sandbox's are printed). Run:

    uv run --group dev python -m benchmarks.sandbox [--runs N]

Figures and goals:

- ``inv sandbox up`` from cold: ``inv sandbox down`` (not timed), then ``inv sandbox up``,
  N times; the median, with the registry image present (goal <= 5 s).
- A release of the shipped service with ``--sandbox`` (``SANDBOX=true`` in its ``.env``)
  against the same release on the root stack: per target, one warm-up release (not timed:
  the repository exists, docker is logged in, the base layers are pushed), then N releases
  of a new version after a code-only change, smoke test on, as ``benchmarks.release`` does.
  The runs alternate (sandbox, stack, stack, sandbox, ...) so that a machine getting busier
  weighs on both alike; the medians and their ratio (goal sandbox / stack <= 1.2).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType

from benchmarks.compare import Series, parse_summary
from tests.e2e.backends import Backend, SandboxBackend, StackBackend
from tests.e2e.project import Project
from tests.e2e.stack import Stack
from tests.e2e.stack.machine import BASE_IMAGE, REGISTRY_IMAGE, image_exists
from tests.e2e.stack.services import docker_answers

UP_GOAL = 5.0
RATIO_GOAL = 1.2


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def cold_ups(sandbox: SandboxBackend, home: Path, docker_config: Path, runs: int) -> list[float]:
    """``inv sandbox up`` from cold, ``runs`` times (each after an untimed ``down``)."""
    times = []
    for i in range(runs):
        down = sandbox.cli("sandbox", "down", home=home, docker_config=docker_config)
        if down.returncode != 0:
            raise SystemExit(f"inv sandbox down failed: {down.stderr.strip()}")
        start = time.perf_counter()
        up = sandbox.cli("sandbox", "up", home=home, docker_config=docker_config)
        times.append(time.perf_counter() - start)
        if up.returncode != 0:
            raise SystemExit(f"inv sandbox up failed: {up.stderr.strip()}")
        progress(f"  up from cold #{i + 1}: {times[-1]:.2f}s")
    return times


def release(project: Project, version: str) -> tuple[float, dict[str, float]]:
    """``inv release --version V --json`` (smoke test on): wall time and its steps."""
    start = time.perf_counter()
    done = project.inv("release", "--version", version, "--json")
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise SystemExit(f"{project.backend.name}: release {version} failed: {last}")
    steps, already = parse_summary(done.stdout)
    if already or "smoke-test" not in steps:
        raise SystemExit(f"{project.backend.name}: {version} was not a full release: {steps}")
    return elapsed, steps


def alternating(names: Sequence[str], runs: int) -> Iterator[tuple[int, str]]:
    """ABBA: (0, a), (0, b), (1, b), (1, a), (2, a), ..."""
    for i in range(runs):
        for name in names if i % 2 == 0 else list(reversed(names)):
            yield i, name


def make_project(tmp: Path, backend: Backend) -> Project:
    where = tmp / backend.name
    (where / "docker").mkdir(parents=True)
    return Project.create(
        where,
        repository=f"bench-{backend.name}-{uuid.uuid4().hex[:6]}",
        backend=backend,
        docker_config=where / "docker",
        marker=f"bench-marker-{uuid.uuid4().hex}",
    )


def releases(projects: dict[str, Project], runs: int) -> dict[str, Series]:
    series = {name: Series() for name in projects}
    progress("warm-up: one release per target (not timed)")
    for project in projects.values():
        release(project, "v0")
    for i, name in alternating(list(projects), runs):
        project = projects[name]
        project.change_code(f"benchmark change {i} {uuid.uuid4().hex}")
        elapsed, steps = release(project, f"v{i + 1}")
        series[name].add(elapsed, steps)
        progress(f"  {name:<7} v{i + 1}: {elapsed:.2f}s")
    return series


def report(ups: list[float], series: dict[str, Series]) -> None:
    sys.stderr.flush()
    up = statistics.median(ups)
    print()
    print(
        f"inv sandbox up from cold: median {up:.2f}s over {len(ups)} runs "
        f"(min {min(ups):.2f}s, max {max(ups):.2f}s); goal <= {UP_GOAL:.0f}s: "
        f"{'met' if up <= UP_GOAL else 'NOT met'}"
    )
    print()
    print("release of a new version after a code-only change (smoke test on), medians:")
    for name, s in series.items():
        print(f"  {name:<7} {s.median:6.2f}s over {len(s.totals)} runs   {s.breakdown()}")
    if "stack" in series:
        ratio = series["sandbox"].median / series["stack"].median
        met = "met" if ratio <= RATIO_GOAL else "NOT met"
        print(f"  ratio sandbox / stack: {ratio:.2f} (goal <= {RATIO_GOAL}: {met})")
    else:
        print("  root stack: not run (needs root)")


def _sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def require_engine() -> None:
    """A Docker engine that answers, with the e2e base and registry images; SIGTERM then
    ends a benchmark as Ctrl-C does (its clean-up runs)."""
    if not docker_answers():
        raise SystemExit("no Docker engine answers")
    missing = [image for image in (BASE_IMAGE, REGISTRY_IMAGE) if not image_exists(image)]
    if missing:
        raise SystemExit(f"missing {', '.join(missing)}: as root, python -m tests.e2e.stack images")
    signal.signal(signal.SIGTERM, _sigterm)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each figure")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    require_engine()
    stack = Stack() if os.geteuid() == 0 else None
    projects: dict[str, Project] = {}
    with tempfile.TemporaryDirectory(prefix="ecr-bench-sandbox-") as tmp:
        sandbox = SandboxBackend(Path(tmp) / "cache")
        home, docker_config = Path(tmp) / "home", Path(tmp) / "docker"
        home.mkdir()
        docker_config.mkdir()
        try:
            progress(f"python {sys.version.split()[0]}, {os.cpu_count()} cores; {args.runs} runs")
            ups = cold_ups(sandbox, home, docker_config, args.runs)
            projects["sandbox"] = make_project(Path(tmp), sandbox)
            if stack is not None:
                projects["stack"] = make_project(Path(tmp), StackBackend(stack.up()))
            report(ups, releases(projects, args.runs))
        finally:
            for project in projects.values():
                project.remove_images()
            sandbox.cli("sandbox", "down", home=home, docker_config=docker_config)
            if stack is not None:
                stack.down()


if __name__ == "__main__":
    main()
