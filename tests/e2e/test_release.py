"""`inv release` for real: a real engine, a real registry and moto as the ECR API, on the root
stack (the registry at ECR's host) and on the local sandbox (a loopback registry)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from .backends import Backend
from .project import (
    Project,
    digest_from_output,
    docker,
    fails_then_heals,
    http_get,
    image_files_containing,
    one_line_error,
)
from .stack import Stack
from .stack.processes import free_port

pytestmark = pytest.mark.backends("stack", "sandbox")


def test_release_builds_pushes_and_the_image_runs(
    project: Project, backend: Backend, tmp_path: Path, docker_images_to_remove: list[str]
) -> None:
    done = project.inv("release", "--version", "v1")
    assert done.returncode == 0, done.stderr
    assert "released and verified" in done.stdout
    digest = digest_from_output(done.stdout)
    assert f"image:  {project.remote('v1')}" in done.stdout
    assert backend.registry_manifest_digest(project.repository, "v1") == digest
    assert backend.registry_tags(project.repository) == ["v1"]

    # The repository exists in moto with the configured settings.
    repo = project.ecr().describe_repositories(repositoryNames=[project.repository])[
        "repositories"
    ][0]
    assert repo["imageScanningConfiguration"] == {"scanOnPush": True}
    assert repo["imageTagMutability"] == "IMMUTABLE"
    assert repo["encryptionConfiguration"]["encryptionType"] == "AES256"

    # Remove it locally, pull it back by digest, run it.
    local = f"{project.repository}:v1"
    docker("rmi", "-f", local, project.remote("v1"))
    by_digest = f"{project.registry_host}/{project.repository}@{digest}"
    docker_images_to_remove.append(by_digest)
    docker(
        "pull",
        by_digest,
        env={"PATH": project.env["PATH"], "DOCKER_CONFIG": project.env["DOCKER_CONFIG"]},
    )
    labels = docker("image", "inspect", "--format", "{{json .Config.Labels}}", by_digest)
    assert '"org.opencontainers.image.version":"v1"' in labels
    assert f'"org.opencontainers.image.revision":"{project.head()}"' in labels
    assert docker("image", "inspect", "--format", "{{.Config.User}}", by_digest) == "10001:10001"
    assert (
        docker(
            "run",
            "--rm",
            "--entrypoint",
            "python3",
            by_digest,
            "-c",
            "import os; print(os.getuid())",
        )
        == "10001"
    )

    # Host networking: the engine here may run without a bridge (no -p publishing).
    port = free_port()
    container = docker(
        "run", "-d", "--network", "host", "-e", "HOST=127.0.0.1", "-e", f"PORT={port}", by_digest
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                status, body = http_get(f"http://127.0.0.1:{port}/healthz")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert (status, body) == (200, {"status": "ok"})
        assert http_get(f"http://127.0.0.1:{port}/version") == (200, {"version": "v1"})
    finally:
        docker("rm", "-f", container, check=False)

    # No layer carries .env or the secret; the command never printed it (Project.inv checks).
    # The shipped code is searched alongside as a control: the search does see into layers.
    marker = project.marker.encode()
    found = image_files_containing(
        by_digest, [marker, b"def make_server"], [".env", "app.py"], tmp_path
    )
    assert any(hit.endswith("widget_server/app.py") for hit in found), found
    assert any("b'def make_server'" in hit for hit in found), found
    leaks = [hit for hit in found if repr(marker) in hit or hit.endswith(("/.env", ":.env"))]
    assert leaks == []


def test_code_change_pushes_only_the_changed_layer(project: Project, backend: Backend) -> None:
    first = project.inv("release", "--version", "v1")
    assert first.returncode == 0, first.stderr
    project.change_code("a code-only change")
    second = project.inv("release", "--version", "v2")
    assert second.returncode == 0, second.stderr
    pushed = [line for line in second.stdout.splitlines() if line.endswith(": Pushed")]
    existing = [
        line for line in second.stdout.splitlines() if line.endswith(": Layer already exists")
    ]
    assert len(pushed) == 1, second.stdout
    assert len(existing) >= 1, second.stdout
    assert backend.registry_tags(project.repository) == ["v1", "v2"]


def test_steps_one_by_one_reach_the_same_result(project: Project, backend: Backend) -> None:
    for step in (
        ["build", "--version", "v3"],
        ["ensure-repo"],
        ["login"],
        ["tag", "--version", "v3"],
    ):
        done = project.inv(*step)
        assert done.returncode == 0, f"{step}: {done.stderr}"
        if step == ["ensure-repo"]:
            assert done.stdout.strip() == f"{project.registry_host}/{project.repository}"
        if step == ["login"]:
            assert done.stdout.strip() == f"logged in to {project.registry_host}"
    pushed = project.inv("push", "--version", "v3")
    assert pushed.returncode == 0, pushed.stderr
    digest = pushed.stdout.strip().splitlines()[-1]
    assert digest.startswith("sha256:")
    assert backend.registry_manifest_digest(project.repository, "v3") == digest
    assert backend.registry_tags(project.repository) == ["v3"]


@pytest.mark.backends("stack")  # the sandbox ignores AWS_ACCOUNT_ID: it has one account
def test_wrong_account_id_is_one_line(project: Project, stack: Stack) -> None:
    project.write_env(AWS_ACCOUNT_ID="000000000000")
    done = project.inv("release", "--version", "v1")
    assert "not account 000000000000" in one_line_error(done)
    assert stack.registry_tags(project.repository) == []


@pytest.mark.backends("stack")  # a --sandbox run heals a stopped sandbox registry
def test_stopped_registry_is_one_line_then_a_rerun_succeeds(project: Project, stack: Stack) -> None:
    stack.stop_registry()
    fails_then_heals(project, stack, "cannot reach registry", code=5, heal=stack.start_registry)


@pytest.mark.parametrize(
    ("argv", "folder"),
    [
        (["release", "--version", "v1", "--dry-run"], "."),
        (["--dry", "release", "--version", "v1"], "."),
        # From a subfolder: .env, the Dockerfile and the context come from the project folder.
        (["release", "--version", "v1", "--dry-run"], "widget_server"),
    ],
)
def test_dry_run_changes_nothing(
    project: Project, backend: Backend, argv: list[str], folder: str
) -> None:
    done = project.inv(*argv, cwd=project.root / folder)
    assert done.returncode == 0, done.stderr
    assert "password on stdin: ***" in done.stderr
    assert f"-f {project.root}/Dockerfile" in done.stderr
    names = [r["repositoryName"] for r in project.ecr().describe_repositories()["repositories"]]
    assert project.repository not in names
    assert backend.registry_tags(project.repository) == []
    assert docker("images", "-q", f"{project.repository}:v1") == ""
    assert not (Path(project.env["DOCKER_CONFIG"]) / "config.json").exists()


def test_the_readme_chain_in_one_command(project: Project, backend: Backend) -> None:
    chain = [
        "build",
        "--version",
        "v4",
        "ensure-repo",
        "login",
        "tag",
        "--version",
        "v4",
        "push",
        "--version",
        "v4",
    ]
    done = project.inv(*chain)
    assert done.returncode == 0, done.stderr
    assert backend.registry_tags(project.repository) == ["v4"]
    assert backend.registry_manifest_digest(project.repository, "v4") == done.stdout.split()[-1]
