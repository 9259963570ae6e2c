"""Moving tags on the registry side and the lifecycle policy, on the root stack and the sandbox."""

from __future__ import annotations

import json
import subprocess

import pytest

from ecr_release.outside.ecr import lifecycle_policy

from .backends import Backend
from .project import Project, digest_from_output, docker, one_line_error

pytestmark = pytest.mark.backends("stack", "sandbox")


def _release(project: Project, version: str, *args: str) -> str:
    done = project.inv("release", "--version", version, *args)
    assert done.returncode == 0, done.stderr
    return digest_from_output(done.stdout)


def test_promote_moves_latest_between_versions_without_pulling(
    project: Project, backend: Backend
) -> None:
    project.write_env(
        ECR_TAG_MUTABILITY="IMMUTABLE_WITH_EXCLUSION", ECR_TAG_MUTABILITY_EXCLUSIONS="latest"
    )
    v1 = _release(project, "v1")
    project.change_code("the second version")
    v2 = _release(project, "v2")
    project.remove_images()  # promote needs no local image: nothing is pulled or pushed
    for version, digest in (("v1", v1), ("v2", v2)):
        done = project.inv("promote", "--version", version, "--tag", "latest")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"latest -> {version} ({digest})"
        assert backend.registry_manifest_digest(project.repository, "latest") == digest
    assert docker("images", "-q", f"{project.remote('latest')}") == ""  # nothing pulled
    assert backend.registry_tags(project.repository) == ["latest", "v1", "v2"]


def test_promote_on_an_immutable_repository_is_refused(project: Project, backend: Backend) -> None:
    digest = _release(project, "v1")  # the default: IMMUTABLE
    done = project.inv("promote", "--version", "v1", "--tag", "latest")
    assert "is IMMUTABLE: tag latest could never move again" in one_line_error(done)
    assert done.returncode == 6
    assert backend.registry_tags(project.repository) == ["v1"]
    assert backend.registry_manifest_digest(project.repository, "v1") == digest


def test_also_tag_points_latest_at_the_release(project: Project, backend: Backend) -> None:
    project.write_env(
        ECR_TAG_MUTABILITY="IMMUTABLE_WITH_EXCLUSION", ECR_TAG_MUTABILITY_EXCLUSIONS="latest"
    )
    done = project.inv("release", "--version", "v1", "--also-tag", "latest", "--json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["tags"] == ["v1", "latest"]
    assert backend.registry_manifest_digest(project.repository, "latest") == document["digest"]


def test_ensure_repo_sets_the_lifecycle_policy(project: Project, backend: Backend) -> None:
    project.write_env(ECR_EXPIRE_UNTAGGED_DAYS="14")
    done = project.inv("ensure-repo")
    assert done.returncode == 0, done.stderr
    answer = project.ecr().get_lifecycle_policy(repositoryName=project.repository)
    assert json.loads(answer["lifecyclePolicyText"]) == json.loads(lifecycle_policy(14))
    project.write_env(ECR_EXPIRE_UNTAGGED_DAYS="30")
    again = project.inv("ensure-repo")
    assert again.returncode == 0, again.stderr
    assert "another lifecycle policy than ECR_EXPIRE_UNTAGGED_DAYS=30 (left unchanged)" in (
        again.stderr
    )


def test_a_released_version_is_never_moved_even_on_a_mutable_repository(
    project: Project, backend: Backend
) -> None:
    project.write_env(ECR_TAG_MUTABILITY="MUTABLE")
    m1 = _release(project, "m1")
    project.change_code("the second version")
    m2 = _release(project, "m2")
    done = project.inv("promote", "--version", "m1", "--tag", "m2")
    assert done.returncode == 2, done.stderr
    assert "tag m2 of" in one_line_error(done) and "is the released version m2" in done.stderr
    project.change_code("the third version")
    again = project.inv("release", "--version", "m3", "--also-tag", "m1")
    assert again.returncode == 2, again.stderr
    assert "is the released version m1" in one_line_error(again)
    assert "==> build" not in again.stderr  # refused before anything ran
    assert backend.registry_manifest_digest(project.repository, "m1") == m1
    assert backend.registry_manifest_digest(project.repository, "m2") == m2
    assert backend.registry_tags(project.repository) == ["m1", "m2"]


def test_a_rerun_of_an_old_release_leaves_latest_where_it_moved(
    project: Project, backend: Backend
) -> None:
    project.write_env(
        ECR_TAG_MUTABILITY="IMMUTABLE_WITH_EXCLUSION", ECR_TAG_MUTABILITY_EXCLUSIONS="latest"
    )
    first = project.head()
    _release(project, "x1", "--also-tag", "latest")
    project.change_code("the second version")
    x2 = _release(project, "x2", "--also-tag", "latest")
    subprocess.run(["git", "-C", str(project.root), "checkout", "-q", first], check=True)
    done = project.inv("release", "--version", "x1", "--also-tag", "latest")  # an old job, rerun
    assert done.returncode == 0, done.stderr
    assert "left alone (a rerun never moves a tag back" in done.stderr
    assert backend.registry_manifest_digest(project.repository, "latest") == x2
