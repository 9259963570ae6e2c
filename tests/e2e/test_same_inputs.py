"""Same inputs, same release, on any machine: CI reruns on a fresh runner, changed inputs
refused, the machine-readable result, and the build context exactly as Docker sends it."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from ecr_release.model.buildcontext import DockerIgnore, walk_context

from .backends import Backend
from .project import Project, digest_from_output, docker, one_line_error

pytestmark = pytest.mark.backends("stack", "sandbox")


def _released(project: Project, backend: Backend, version: str) -> str:
    done = project.inv("release", "--version", version)
    assert done.returncode == 0, done.stderr
    digest = digest_from_output(done.stdout)
    assert backend.registry_manifest_digest(project.repository, version) == digest
    return digest


def test_a_rerun_on_a_fresh_runner_is_a_no_op(
    project: Project, backend: Backend, tmp_path: Path
) -> None:
    digest = _released(project, backend, "v5")
    project.remove_images()  # the job reruns on a new runner: no image of ours is here
    runner = project.second_checkout(tmp_path / "runner")
    again = runner.inv("release", "--version", "v5")
    assert again.returncode == 0, again.stderr
    assert "already released" in again.stdout
    assert "released from identical inputs (commit " in again.stderr
    assert digest_from_output(again.stdout) == digest
    assert "==> build" not in again.stderr and "==> push" not in again.stderr
    assert docker("images", "-q", f"{project.repository}:v5") == ""  # nothing was built
    assert backend.registry_tags(project.repository) == ["v5"]


def test_a_rerun_on_a_fresh_runner_with_one_changed_file_is_refused(
    project: Project, backend: Backend, tmp_path: Path
) -> None:
    digest = _released(project, backend, "v5")
    project.remove_images()
    runner = project.second_checkout(tmp_path / "runner")
    runner.change_code("one changed file on the rerun")  # committed: VCS_REF changes too
    refused = runner.inv("release", "--version", "v5")
    line = one_line_error(refused)
    assert refused.returncode == 6
    assert (
        "and the build context and the build arguments differ from the one released as v5 "
        "(commit " in line
    )
    assert "choose a new --version" in line
    assert "==> build" not in refused.stderr
    assert backend.registry_manifest_digest(project.repository, "v5") == digest


def test_changed_code_on_the_same_machine_is_refused_without_a_rebuild(
    project: Project, backend: Backend
) -> None:
    digest = _released(project, backend, "v5")
    # The image released as v5 is still here under its tag; only the code changed.
    (project.root / "widget_server" / "__init__.py").write_text("# changed, not released\n")
    refused = project.inv("release", "--version", "v5")
    assert refused.returncode == 6
    line = one_line_error(refused)
    # The context differs, and so does the revision (the commit, with -dirty): a build arg.
    assert "the build context and the build arguments differ" in line
    assert line.endswith("(this tree has uncommitted changes: widget_server/__init__.py)")
    assert backend.registry_manifest_digest(project.repository, "v5") == digest


def test_json_result_and_github_files(project: Project, backend: Backend, tmp_path: Path) -> None:
    output, summary = tmp_path / "github_output", tmp_path / "step_summary.md"
    env = {"GITHUB_OUTPUT": str(output), "GITHUB_STEP_SUMMARY": str(summary)}
    done = project.inv("release", "--version", "v6", "--json", env=env)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)  # stdout is exactly one JSON document
    digest = backend.registry_manifest_digest(project.repository, "v6")
    image = project.remote("v6")
    assert document["ok"] is True
    assert (document["image"], document["digest"], document["tags"]) == (image, digest, ["v6"])
    assert document["registry"] == project.registry_host
    assert document["already_released"] is False and document["dry_run"] is False
    assert set(document["steps"]) == {
        *("check", "build", "ensure-repo", "login", "gates", "smoke-test")
    }
    candidate = document["candidate"]
    assert candidate.startswith("ecr-release-candidate-") and document["candidate_removed"]
    assert candidate not in backend.registry_tags(project.repository)  # removed, by tag only
    assert document["smoke_test"].startswith("health check passed")
    assert (document["scan"]["status"], document["scan"]["counts"]) == ("COMPLETE", {})
    assert document["fingerprint"]["digest"].startswith("sha256:")
    assert "The push refers to repository" in done.stderr  # docker's progress: stderr
    assert output.read_text().splitlines() == [
        f"image={image}",
        f"digest={digest}",
        f"registry={project.registry_host}",
        "tags=v6",
        f"candidate={candidate}",
        f"smoke_test={document['smoke_test']}",
        "scan=COMPLETE, no findings",
    ]
    assert f"| `{image}` | `{digest}` |" in summary.read_text()
    for written in (output.read_text(), summary.read_text()):
        assert project.marker not in written and project.password not in written
    # The pushed image carries its fingerprint and the OCI base labels.
    labels = json.loads(docker("image", "inspect", "--format", "{{json .Config.Labels}}", image))
    assert labels["io.ecr-release.fingerprint"] == document["fingerprint"]["digest"]
    assert labels["org.opencontainers.image.base.name"] == backend.base_image

    rerun = project.inv("push", "--version", "v6", "--json")
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout)["already_released"] is True

    unwritable = {"GITHUB_OUTPUT": str(tmp_path / "no-such-dir" / "output")}
    late = project.inv("push", "--version", "v6", "--json", env=unwritable)
    line = one_line_error(late)
    assert late.returncode == 9
    assert f"the image was released as {image}@{digest} (nothing was undone)" in line
    document = json.loads(late.stdout)  # still exactly one JSON document: the error's
    assert document["ok"] is False and document["exit_code"] == 9
    assert backend.registry_manifest_digest(project.repository, "v6") == digest


# A .dockerignore whose corners a simple glob gets wrong, and the files it meets.
TRICKY_IGNORE = """\
# comments only at the start of a line
*.log
!keep.log
build
!build/keep/
**/cache
docs/*.md
!docs/README.md
secret?/
a\\*b
[^x]y.txt
/rooted.txt
logs
!**/inside.log
"""
TRICKY_FILES = [
    "app.log", "keep.log", "build/out", "build/keep/a", "x/cache/y", "a/b/cache/z",
    "docs/guide.md", "docs/README.md", "docs/sub/n.md", "secret1/s", "a*b", "axb",
    "zy.txt", "xy.txt", "rooted.txt", "sub/rooted.txt", "logs/inside.log", "src/main.py",
]  # fmt: skip


def test_the_context_walk_is_what_docker_sends(engine: str, tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    for name in TRICKY_FILES:
        (context / name).parent.mkdir(parents=True, exist_ok=True)
        (context / name).write_text(name)
    (context / ".dockerignore").write_text(TRICKY_IGNORE)
    (context / "Dockerfile").write_text(f"FROM {engine}\nCOPY . /ctx/\n")
    tag = f"e2e-context-{uuid.uuid4().hex[:8]}:probe"
    docker("build", "-q", "-t", tag, str(context))
    try:
        listing = docker(
            "run", "--rm", "--entrypoint", "python3", tag, "-c",
            "import os\nfor d, _, fs in os.walk('/ctx'):\n"
            "    for f in fs: print(os.path.relpath(os.path.join(d, f), '/ctx'))",
        )  # fmt: skip
    finally:
        docker("rmi", "-f", tag, check=False)
    in_image = set(listing.split("\n"))
    ignore = DockerIgnore.for_build(context, context / "Dockerfile")
    walked = {entry.relpath for entry in walk_context(context, ignore) if entry.is_file}
    assert walked == in_image
    assert {"keep.log", "build/keep/a", "docs/README.md", "axb", "xy.txt"} <= walked
    assert not {"app.log", "x/cache/y", "a/b/cache/z", "logs/inside.log", "a*b"} & walked
