"""The version appears last: a candidate first, the gates, then the version (issue 19).

On the sandbox, whose API serves scan findings queued through moto's static API (the
root stack's moto cannot be told what a scan finds).
"""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from pathlib import Path

import pytest

from ecr_release.flows.smoke import SMOKE_LABEL

from .backends import Backend, SandboxBackend
from .project import Project, docker, one_line_error

pytestmark = pytest.mark.backends("sandbox")

HIGH: dict[str, object] = {
    "name": "CVE-2026-4242",
    "severity": "HIGH",
    "attributes": [
        {"key": "package_name", "value": "openssl"},
        {"key": "package_version", "value": "3.0.1"},
    ],
}


def queue_findings(backend: Backend, repository: str, findings: list[dict[str, object]]) -> None:
    """The next scan read in ``repository`` finds ``findings`` (README: the sandbox)."""
    assert isinstance(backend, SandboxBackend)
    key = (backend.directory / "access-key").read_text().strip()
    result = {
        "repositoryName": repository,
        "imageScanStatus": {"status": "COMPLETE", "description": "queued by the test"},
        "imageScanFindings": {
            "findings": findings,
            "findingSeverityCounts": {"HIGH": len(findings)},
            "imageScanCompletedAt": "2026-11-30T00:00:00Z",
        },
    }
    request = urllib.request.Request(
        f"{backend.api}/moto-api/static/ecr/scan-finding-results",
        data=json.dumps({"results": [result]}).encode(),
        method="POST",
        headers={
            "Authorization": f"AWS4-HMAC-SHA256 Credential={key}/20261130/{backend.region}/ecr/"
            "aws4_request, SignedHeaders=host, Signature=0"
        },
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 201


def test_a_failing_scan_gate_leaves_an_immutable_version_free(
    project: Project, backend: Backend, tmp_path: Path
) -> None:
    project.write_env(ECR_TAG_MUTABILITY="IMMUTABLE", SCAN_FAIL_ON="HIGH")
    assert project.inv("ensure-repo").returncode == 0
    queue_findings(backend, project.repository, [HIGH])

    github = {"GITHUB_OUTPUT": str(tmp_path / "out"), "GITHUB_STEP_SUMMARY": str(tmp_path / "sum")}
    done = project.inv("release", "--version", "v1", "--json", env=github)
    line = one_line_error(done)
    assert done.returncode == 10, done.stderr
    assert "1 finding at HIGH or above (worst: CVE-2026-4242 HIGH" in line
    assert "CVE-2026-4242" in done.stderr and "openssl 3.0.1" in done.stderr  # the table
    assert backend.registry_tags(project.repository) == []  # no version, no candidate
    # What the gate found is in the failure's JSON and GitHub's files too.
    document = json.loads(done.stdout)
    assert document["ok"] is False and document["exit_code"] == 10
    assert document["candidate"].startswith("ecr-release-candidate-")
    assert document["candidate_removed"] is True and document["scan"]["counts"] == {"HIGH": 1}
    assert f"candidate={document['candidate']}\n" in (tmp_path / "out").read_text()
    step_summary = (tmp_path / "sum").read_text()
    assert step_summary.startswith(f"### Not released: {project.repository}:v1\n")
    assert "| CVE-2026-4242 | HIGH | openssl 3.0.1 |" in step_summary

    # Fixed upstream (the next scan is clean): the same version is still free to release.
    again = project.inv("release", "--version", "v1", "--json")
    assert again.returncode == 0, again.stderr
    document = json.loads(again.stdout)
    assert document["scan"]["status"] == "COMPLETE" and document["scan"]["counts"] == {}
    assert backend.registry_tags(project.repository) == ["v1"]


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "killed"])
def test_an_interrupted_release_leaves_its_candidate_and_the_rerun_reuses_it(
    project: Project, backend: Backend, how: signal.Signals
) -> None:
    """Ctrl-C, or a CI job killed mid-release (no clean-up ran), after the candidate was
    pushed, during the smoke test: the rerun of the same inputs reuses the candidate, no
    second push."""
    dockerfile = project.root / "Dockerfile"
    slow = 'CMD ["sh", "-c", "sleep 6; exec python3 -m widget_server"]'
    text = dockerfile.read_text()
    assert 'CMD ["python3", "-m", "widget_server"]' in text
    dockerfile.write_text(text.replace('CMD ["python3", "-m", "widget_server"]', slow, 1))
    project.write_env(SMOKE_TIMEOUT="60")

    run = project.popen("release", "--version", "v1")
    deadline = time.monotonic() + 240
    candidates: list[str] = []
    while not candidates:
        assert run.poll() is None, run.communicate()
        assert time.monotonic() < deadline, "the candidate was never pushed"
        tags = (
            backend.registry_tags(project.repository) if project_has_repo(backend, project) else []
        )
        candidates = [t for t in tags if t.startswith("ecr-release-candidate-")]
        time.sleep(0.2)
    run.send_signal(how)
    _, stderr = run.communicate(timeout=60)
    if how == signal.SIGINT:
        assert run.returncode == 130, stderr
        assert f"interrupted: the candidate tag {candidates[0]} stays" in stderr
        assert docker("ps", "-aq", "--filter", f"label={SMOKE_LABEL}=1") == ""  # cleaned up
    _remove_smoke_containers()  # what a killed run could not
    assert backend.registry_tags(project.repository) == candidates  # left behind, no version

    done = project.inv("release", "--version", "v1", "--json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["candidate"] == candidates[0] and document["candidate_reused"] is True
    assert "The push refers to repository" not in done.stderr  # no second push
    assert f"reusing candidate {project.remote(candidates[0])}" in done.stderr
    assert backend.registry_tags(project.repository) == ["v1"]  # and the candidate is gone


def project_has_repo(backend: Backend, project: Project) -> bool:
    names = [r["repositoryName"] for r in backend.ecr().describe_repositories()["repositories"]]
    return project.repository in names


def _remove_smoke_containers() -> None:
    left = docker("ps", "-aq", "--filter", f"label={SMOKE_LABEL}=1").split()
    if left:
        docker("rm", "-f", *left)
