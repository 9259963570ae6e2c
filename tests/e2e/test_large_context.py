"""A build context far larger than what the Dockerfile copies: docker is given only what
`COPY` reads (the classic builder would upload all of it first), the image is complete, and
a rerun reads no file again."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from .backends import Backend
from .project import Project, docker

pytestmark = pytest.mark.backends("stack", "sandbox")

ASSETS = 300  # files of 64 KiB: about 19 MB beside the service


def _assets(project: Project) -> None:
    for i in range(ASSETS):
        folder = project.root / "assets" / f"d{i // 100}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i:04d}.bin").write_bytes(os.urandom(64 * 1024))
    exclude = project.root / ".git" / "info" / "exclude"
    exclude.write_text(exclude.read_text() + "/assets/\n")  # the tree stays clean


def _sent_bytes(output: str) -> float:
    """What docker's classic builder says it sent ("Sending build context to Docker
    daemon  12.29kB"), in bytes."""
    found = re.search(r"Sending build context to Docker daemon\s+([\d.]+)([kMG]?B)", output)
    assert found, output
    scale = {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}[found.group(2)]
    return float(found.group(1)) * scale


def test_only_what_copy_reads_is_sent_and_the_image_is_whole(
    project: Project, backend: Backend, tmp_path: Path
) -> None:
    _assets(project)
    done = project.inv("release", "--version", "v1")
    assert done.returncode == 0, done.stderr
    output = done.stdout + done.stderr
    assert re.search(r"==> build \S+ \(sending \d+ of \d+ context entries", output), output
    assert _sent_bytes(output) < 1e6  # the service's few files, not 19 MB of assets
    # The image holds the service as the Dockerfile copies it, and it ran: the smoke test.
    local = f"{project.repository}:v1"
    listed = docker("run", "--rm", "--entrypoint", "ls", local, "/app/widget_server")
    assert set(os.listdir(project.root / "widget_server")) - {"__pycache__"} <= set(listed.split())
    assert "smoke test" in output
    # Nothing of the folder handed to docker is left behind.
    build = Path(project.env["XDG_CACHE_HOME"]) / "ecr-release" / "build"
    assert not build.exists() or list(build.iterdir()) == []
    # The rerun: the same inputs, from the cache of file digests.
    again = project.inv("release", "--version", "v1")
    assert again.returncode == 0, again.stderr
    assert "already released" in again.stdout
