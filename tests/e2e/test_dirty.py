"""Provenance: a release from uncommitted changes says so, and CI refuses it (issue 21)."""

from __future__ import annotations

import json

import pytest

from .backends import Backend
from .project import Project, docker, one_line_error

pytestmark = pytest.mark.backends("sandbox")


def test_a_dirty_release_at_a_desk_is_labelled_and_said(
    project: Project, backend: Backend, docker_images_to_remove: list[str]
) -> None:
    app = project.root / "widget_server" / "__init__.py"
    app.write_text(app.read_text() + "\n# not committed\n")
    done = project.inv("release", "--version", "v1", "--json")
    assert done.returncode == 0, done.stderr
    assert "warning: releasing uncommitted changes: widget_server/__init__.py" in done.stderr
    document = json.loads(done.stdout)
    head = project.head()
    assert document["dirty"] is True and document["revision"] == f"{head}-dirty"
    assert document["uncommitted"] == ["widget_server/__init__.py"]

    # Read back from the registry: pulled by digest, its labels say what it was built from.
    by_digest = f"{project.registry_host}/{project.repository}@{document['digest']}"
    docker("rmi", "-f", f"{project.repository}:v1", project.remote("v1"))
    docker_images_to_remove.append(by_digest)
    docker("pull", by_digest, env={"PATH": project.env["PATH"], **_docker_env(project)})
    labels = json.loads(
        docker("image", "inspect", "--format", "{{json .Config.Labels}}", by_digest)
    )
    assert labels["org.opencontainers.image.revision"] == f"{head}-dirty"
    assert labels["io.ecr-release.uncommitted"].startswith("sha256:")


def test_ci_refuses_a_dirty_tree_before_anything_is_built(
    project: Project, backend: Backend
) -> None:
    (project.root / "widget_server" / "extra.py").write_text("X = 1\n")  # untracked
    images = docker("images", "-q", project.repository)
    done = project.inv("release", "--version", "v1", env={"CI": "true"})
    line = one_line_error(done)
    assert done.returncode == 2
    assert "uncommitted changes that reach the image (widget_server/extra.py)" in line
    assert docker("images", "-q", project.repository) == images  # nothing built
    assert backend.registry_tags(project.repository) == []
    allowed = project.inv("release", "--version", "v1", "--allow-dirty", env={"CI": "true"})
    assert allowed.returncode == 0, allowed.stderr
    assert "tree:   dirty, --allow-dirty" in allowed.stdout


def _docker_env(project: Project) -> dict[str, str]:
    return {"DOCKER_CONFIG": project.env["DOCKER_CONFIG"]}
