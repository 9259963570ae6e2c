"""Every image a build reads is an input, and FROM is expanded as Docker expands it: an image
that COPY --from reads, rebuilt, makes a rerun "other inputs"; ``FROM ${BASE_IMAGE:-...}``
with BASE_IMAGE unset builds on the default."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from .backends import Backend
from .project import Project, digest_from_output, docker, one_line_error

pytestmark = pytest.mark.backends("stack", "sandbox")

SHIPPED_FROM = "ARG BASE_IMAGE=python:3.12-slim\nFROM ${BASE_IMAGE}\n"


def _commit(project: Project, message: str) -> None:
    git = ["git", "-C", str(project.root), "-c", "user.name=e2e", "-c", "user.email=e2e@x.invalid"]
    subprocess.run([*git, "commit", "-qam", message], check=True)


def _edit_dockerfile(project: Project, old: str, new: str) -> None:
    dockerfile = project.root / "Dockerfile"
    text = dockerfile.read_text()
    assert old in text
    dockerfile.write_text(text.replace(old, new, 1))
    _commit(project, "Dockerfile changed")


@pytest.fixture
def side_images(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """A tag for a small local side image, and the IDs built under it (removed after)."""
    tag = f"side-{uuid.uuid4().hex[:10]}:1"
    built: list[str] = []
    yield tag, built
    docker("rmi", "-f", tag, *built, check=False)


def _build_side(base: str, tag: str, content: str, work: Path) -> str:
    work.mkdir(parents=True)
    (work / "side.txt").write_text(content)
    (work / "Dockerfile").write_text(f"FROM {base}\nCOPY side.txt /side.txt\n")
    return docker("build", "-q", "-t", tag, str(work))


def test_a_rebuilt_copy_from_image_makes_a_rerun_other_inputs(
    project: Project,
    backend: Backend,
    tmp_path: Path,
    side_images: tuple[str, list[str]],
) -> None:
    tag, built = side_images
    built.append(_build_side(backend.base_image, tag, "one\n", tmp_path / "side-1"))
    _edit_dockerfile(
        project,
        "COPY widget_server/ /app/widget_server/\n",
        f"COPY --from={tag} /side.txt /side.txt\nCOPY widget_server/ /app/widget_server/\n",
    )
    done = project.inv("release", "--version", "v1")
    assert done.returncode == 0, done.stderr
    digest = digest_from_output(done.stdout)
    image = project.remote("v1")
    side = docker("run", "--rm", "--entrypoint", "cat", image, "/side.txt")
    assert side == "one"
    labels = json.loads(docker("image", "inspect", "--format", "{{json .Config.Labels}}", image))
    assert labels["org.opencontainers.image.base.name"] == backend.base_image  # not the side

    again = project.inv("release", "--version", "v1")  # the same side image: a no-op
    assert again.returncode == 0, again.stderr
    assert "released from identical inputs" in again.stderr

    built.append(_build_side(backend.base_image, tag, "two\n", tmp_path / "side-2"))
    assert built[0] != built[1]
    refused = project.inv("release", "--version", "v1")
    line = one_line_error(refused)
    assert refused.returncode == 6
    assert (
        f"{project.repository}:v1 is already released as {digest} and the images the build "
        "reads differ from the one released as v1 (commit "
    ) in line
    assert "choose a new --version" in line
    assert "==> build" not in refused.stderr and "==> push" not in refused.stderr
    assert backend.registry_manifest_digest(project.repository, "v1") == digest


def test_from_with_a_default_and_base_image_unset_builds_on_the_default(
    project: Project, backend: Backend
) -> None:
    project.write_env(BASE_IMAGE="")  # unset: the Dockerfile's default applies
    _edit_dockerfile(project, SHIPPED_FROM, f"FROM ${{BASE_IMAGE:-{backend.base_image}}}\n")
    done = project.inv("release", "--version", "v1")
    assert done.returncode == 0, done.stderr
    digest = digest_from_output(done.stdout)
    assert backend.registry_manifest_digest(project.repository, "v1") == digest
    image = project.remote("v1")
    labels = json.loads(docker("image", "inspect", "--format", "{{json .Config.Labels}}", image))
    assert labels["org.opencontainers.image.base.name"] == backend.base_image
    base = json.loads(docker("image", "inspect", "--format", "{{json .}}", backend.base_image))
    identities = {base["Id"], *(d.rsplit("@", 1)[1] for d in base.get("RepoDigests") or [])}
    assert labels["org.opencontainers.image.base.digest"] in identities
