"""Benchmark: three services released at once against one after another (issue #20).

Prints figures; asserts nothing. Needs a Docker engine that answers, holding the e2e base
image and the sandbox's registry image (as root: ``python -m tests.e2e.stack images``);
releases to a local sandbox of its own (no root). Run:

    uv run --group dev python -m benchmarks.services [--runs N] [--jobs J]

A project declares three small services (``services/a``, ``b``, ``c``: a file copied onto
the e2e base image, a process that keeps running, so each smoke test takes its 3 s).
After one warm-up release of all three (not timed: repositories, login, base layers),
each run changes every service's code (committed) and releases a new version:

- sequential: ``inv release --version sN --service a``, then ``b``, then ``c``: the suite
  releasing them one after another, three commands;
- parallel: ``inv release --version pN --jobs J`` (default 3): one command, the services
  at once.

The runs alternate (sequential, parallel, parallel, sequential, ...). Medians, their
ratio (goal parallel / sequential <= 0.6) and the machine's CPU count are printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from benchmarks.sandbox import alternating, progress, require_engine
from tests.e2e.backends import SandboxBackend
from tests.e2e.project import Project, remove_images

GOAL = 0.6
SERVICES = ("a", "b", "c")
DOCKERFILE = (
    "ARG BASE_IMAGE=python:3.12-slim\nFROM ${BASE_IMAGE}\nCOPY app.py /app.py\n"
    'CMD ["python3", "-c", "import time; time.sleep(600)"]\n'
)


def make_project(tmp: Path, sandbox: SandboxBackend) -> Project:
    (tmp / "docker").mkdir(parents=True)
    project = Project.create(
        tmp,
        repository=f"bench-svc-{uuid.uuid4().hex[:6]}",
        backend=sandbox,
        docker_config=tmp / "docker",
        marker=f"bench-marker-{uuid.uuid4().hex}",
    )
    declaration = ""
    for name in SERVICES:
        folder = project.root / "services" / name
        folder.mkdir(parents=True)
        (folder / "Dockerfile").write_text(DOCKERFILE)
        (folder / "app.py").write_text(f"print({name!r})\n")
        declaration += (
            f'[tool.ecr-release.services.{name}]\ncontext = "services/{name}"\n'
            f'repository = "{project.repository}-{name}"\n\n'
        )
    (project.root / "pyproject.toml").write_text(declaration)
    project.commit("three services")
    return project


def change_every_service(project: Project, run: str) -> None:
    for name in SERVICES:
        app = project.root / "services" / name / "app.py"
        app.write_text(app.read_text() + f"# {run} {uuid.uuid4().hex}\n")
    project.commit(f"change {run}")


def timed(project: Project, *argv: str) -> float:
    start = time.perf_counter()
    done = project.inv(*argv)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise SystemExit(f"inv {' '.join(argv)} failed: {last}")
    if "released and verified" not in done.stdout:
        raise SystemExit(f"inv {' '.join(argv)} released nothing new: {done.stdout}")
    return elapsed


def run(project: Project, runs: int, jobs: int) -> dict[str, list[float]]:
    progress("warm-up: one release of the three services (not timed)")
    timed(project, "release", "--version", "v0", "--jobs", str(jobs))
    times: dict[str, list[float]] = {"sequential": [], "parallel": []}
    for i, how in alternating(["sequential", "parallel"], runs):
        change_every_service(project, f"{how} {i}")
        if how == "sequential":
            elapsed = sum(
                timed(project, "release", "--version", f"s{i}", "--service", name)
                for name in SERVICES
            )
        else:
            elapsed = timed(project, "release", "--version", f"p{i}", "--jobs", str(jobs))
        times[how].append(elapsed)
        progress(f"  {how:<10} #{i + 1}: {elapsed:.2f}s")
    return times


def report(times: dict[str, list[float]], jobs: int) -> None:
    sequential = statistics.median(times["sequential"])
    parallel = statistics.median(times["parallel"])
    ratio = parallel / sequential
    print()
    print(f"three services, a new version each, smoke test on; {os.cpu_count()} CPUs")
    print(f"  one after another (3 x inv release --service): median {sequential:6.2f}s")
    print(f"  at once (inv release --jobs {jobs}):              median {parallel:6.2f}s")
    print(f"  ratio: {ratio:.2f} (goal <= {GOAL}: {'met' if ratio <= GOAL else 'NOT met'})")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each way")
    parser.add_argument("--jobs", type=int, default=3, help="services at once")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    require_engine()
    with tempfile.TemporaryDirectory(prefix="ecr-bench-services-") as tmp:
        sandbox = SandboxBackend(Path(tmp) / "cache")
        home, docker_config = Path(tmp) / "home", Path(tmp) / "docker"
        home.mkdir()
        docker_config.mkdir()
        project = None
        try:
            progress(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; {args.runs} runs")
            up = sandbox.cli("sandbox", "up", home=home, docker_config=docker_config)
            if up.returncode != 0:
                raise SystemExit(f"inv sandbox up failed: {up.stderr.strip()}")
            project = make_project(Path(tmp) / "project", sandbox)
            report(run(project, args.runs, args.jobs), args.jobs)
        finally:
            if project is not None:
                for name in SERVICES:
                    remove_images(f"{project.repository}-{name}")
            sandbox.cli("sandbox", "down", home=home, docker_config=docker_config)


if __name__ == "__main__":
    main()
