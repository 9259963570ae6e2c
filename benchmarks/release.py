"""Benchmark: a real release against the local ECR stand-in, its rerun, and a code change.

Prints the suite's own step timings and push figures; asserts nothing. Needs what
the end-to-end tests need (root, a Docker engine that can start). Run:

    uv run --group dev python -m benchmarks.release

Figures: wall time of each command, the per-step times from the summary, how
many layers were pushed vs. already in the registry, and the image size.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from pathlib import Path

from tests.e2e.backends import StackBackend
from tests.e2e.project import Project, docker
from tests.e2e.stack import Stack


def run(project: Project, label: str, *args: str) -> None:
    start = time.perf_counter()
    done = project.inv(*args)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{label} failed: {done.stderr.strip().splitlines()[-1]}")
    lines = done.stdout.splitlines()
    steps = next((line.split(":", 1)[1].strip() for line in lines if "steps:" in line), "-")
    pushed = sum(line.endswith(": Pushed") for line in lines)
    existing = sum(line.endswith(": Layer already exists") for line in lines)
    logins = done.stderr.count("==> login")
    print(f"{label:<26} {elapsed:6.1f}s  pushed {pushed}, reused {existing}, logins {logins}")
    print(f"{'':<26} steps: {steps}")


def main() -> None:
    stack = Stack()
    info = stack.up()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            docker_config = Path(tmp) / "docker"
            docker_config.mkdir()
            repository = f"bench-{uuid.uuid4().hex[:6]}"
            project = Project.create(
                Path(tmp),
                repository=repository,
                backend=StackBackend(info),
                docker_config=docker_config,
                marker=f"bench-marker-{uuid.uuid4().hex}",
            )
            run(project, "first release v1", "release", "--version", "v1")
            run(project, "rerun v1 (already released)", "release", "--version", "v1")
            project.change_code("benchmark change")
            run(project, "code change, release v2", "release", "--version", "v2")
            size = docker("image", "inspect", "--format", "{{.Size}}", f"{repository}:v2")
            print(f"image size: {int(size) / 1e6:.1f} MB")
            for tag in ("v1", "v2"):
                docker("rmi", "-f", f"{repository}:{tag}", project.remote(tag), check=False)
    finally:
        stack.down()


if __name__ == "__main__":
    main()
