"""Several services in one repository, released with the real `inv` on the local sandbox:
three at once, one failing its smoke test; the plan for a CI matrix; a rerun after the
fix; the moving tags once every service has the version; a shared base pulled once."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest

from .project import Project, docker

pytestmark = pytest.mark.backends("sandbox")

RUNS = 'CMD ["python3", "-c", "import time; time.sleep(600)"]'
CRASHES = 'CMD ["python3", "-c", "import sys; print(\'no config\'); sys.exit(3)"]'


def add_service(project: Project, name: str, cmd: str, base: str = "${BASE_IMAGE}") -> None:
    folder = project.root / "services" / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "app.py").write_text(f"print({name!r})\n")
    (folder / "Dockerfile").write_text(
        f"ARG BASE_IMAGE=python:3.12-slim\nFROM {base}\nCOPY app.py /app.py\n{cmd}\n"
    )


def declare(project: Project, names: list[str], **extra: str) -> dict[str, str]:
    """The services in the project's pyproject.toml, each with its own repository; committed."""
    repositories = {name: f"{project.repository}-{name}" for name in names}
    body = "".join(
        f'[tool.ecr-release.services.{name}]\ncontext = "services/{name}"\n'
        f'repository = "{repositories[name]}"\n{extra.get(name, "")}\n'
        for name in names
    )
    (project.root / "pyproject.toml").write_text(body)
    project.commit("services")
    return repositories


@pytest.fixture
def images() -> Iterator[list[str]]:
    """Repositories whose images are removed from the engine after the test."""
    made: list[str] = []
    yield made
    listed = docker("images", "--format", "{{.Repository}}:{{.Tag}}", check=False).split()
    mine = [ref for ref in listed if any(ref.rsplit(":", 1)[0].endswith(r) for r in made)]
    if mine:
        docker("rmi", "-f", *mine, check=False)


def by_service(done: subprocess.CompletedProcess[str]) -> dict[str, dict[str, object]]:
    document = json.loads(done.stdout)
    return {entry["service"]: entry for entry in document["services"]}


def test_three_services_one_failing_its_smoke_test_then_a_rerun_after_the_fix(
    project: Project, images: list[str]
) -> None:
    for name, cmd in (("api", RUNS), ("worker", RUNS), ("broken", CRASHES)):
        add_service(project, name, cmd)
    repositories = declare(project, ["api", "worker", "broken"])
    images.extend(repositories.values())
    project.write_env(
        ECR_TAG_MUTABILITY="IMMUTABLE_WITH_EXCLUSION", ECR_TAG_MUTABILITY_EXCLUSIONS="latest"
    )

    dry = project.inv("release", "--version", "v1", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert {name: entry["result"] for name, entry in by_service(dry).items()} == {
        name: "dry run: new" for name in ("api", "worker", "broken")
    }
    assert all(project.backend.registry_tags(r) == [] for r in repositories.values())

    done = project.inv("release", "--version", "v1", "--json", "--jobs", "3")

    assert done.returncode == 8, done.stderr  # the worst of the three: the smoke test's
    found = by_service(done)
    assert found["api"]["result"] == found["worker"]["result"] == "released and verified"
    assert found["broken"]["result"] == "failed (exit 8)"
    assert "smoke test of" in str(found["broken"]["error"])
    for name in ("api", "worker"):
        assert project.backend.registry_tags(repositories[name]) == ["v1"]
        assert found[name]["digest"] == project.backend.registry_manifest_digest(
            repositories[name], "v1"
        )
    assert project.backend.registry_tags(repositories["broken"]) == []  # not even a candidate
    lines = done.stderr.splitlines()
    assert any(line.startswith("broken | ") and "no config" in line for line in lines)
    assert all(" | " in line for line in lines[1:] if not line.startswith("error: "))

    # The CI matrix: only what still needs releasing.
    planned = project.inv("plan", "--version", "v1", "--json")
    assert planned.returncode == 0, planned.stderr
    assert json.loads(planned.stdout) == {
        "include": [{"service": "broken", "repository": repositories["broken"]}]
    }
    refused = project.inv("promote", "--version", "v1", "--tag", "latest")
    assert refused.returncode == 2
    assert "v1 is not released for broken: no tag was moved" in refused.stderr
    assert "latest" not in project.backend.registry_tags(repositories["api"])

    add_service(project, "broken", RUNS)
    project.commit("fix broken")
    again = project.inv("release", "--version", "v1", "--json")

    assert again.returncode == 0, again.stderr
    found = by_service(again)
    assert found["api"]["result"] == found["worker"]["result"] == "already released"
    assert found["broken"]["result"] == "released and verified"
    assert project.backend.registry_tags(repositories["broken"]) == ["v1"]
    planned = project.inv("plan", "--version", "v1", "--json")
    assert json.loads(planned.stdout) == {"include": []}

    moved = project.inv("promote", "--version", "v1", "--tag", "latest")
    assert moved.returncode == 0, moved.stderr
    for name, repository in repositories.items():
        assert sorted(project.backend.registry_tags(repository)) == ["latest", "v1"], name


def test_two_services_sharing_a_base_image_pull_it_once(
    project: Project, images: list[str]
) -> None:
    assert project.inv("login").returncode == 0
    base = f"{project.registry_host}/{project.repository}-base:1"
    env = {"DOCKER_CONFIG": project.env["DOCKER_CONFIG"]}
    docker("tag", project.backend.base_image, base)
    subprocess.run(["docker", "push", base], env={**project.env, **env}, check=True,
                   capture_output=True)  # fmt: skip
    docker("rmi", base)  # only the name: the layers stay, the pull fetches the manifest
    for name in ("one", "two"):
        add_service(project, name, RUNS, base=base)
    repositories = declare(project, ["one", "two"], one="smoke-test = false\n",
                           two="smoke-test = false\n")  # fmt: skip
    images.extend([*repositories.values(), f"{project.repository}-base"])

    done = project.inv("release", "--version", "v1", "--jobs", "2")

    assert done.returncode == 0, done.stderr
    assert done.stdout.count("released and verified") == 2
    pulls = [line for line in done.stderr.splitlines() if "Pulling from" in line]
    assert len(pulls) == 1, pulls
