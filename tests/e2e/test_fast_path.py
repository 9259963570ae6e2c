"""The fast path for real: with docker's login still good, a release asks the registry and
nothing else. moto is stopped for these runs, so any AWS API call would fail them."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

from .project import Project, digest_from_output
from .stack import Stack

# `inv ARGS`, then the modules that were imported of boto3/botocore and of the steps only a
# new version runs (smoke test, scan gate), on stderr's last line.
IMPORTS_AFTER_RUN = """
import sys
from invoke.main import program
try:
    program.run(["inv", *sys.argv[1:]])
except SystemExit as exit:
    code = exit.code
else:
    code = 0
steps = ("ecr_release.flows.smoke", "ecr_release.flows.scan")
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("boto3", "botocore") or m in steps)
print("LOADED", loaded, file=sys.stderr)
sys.exit(code)
"""


def _inv_counting_imports(project: Project, *args: str) -> tuple[int, str, str, str]:
    done = subprocess.run(
        [sys.executable, "-c", IMPORTS_AFTER_RUN, *args],
        cwd=project.root,
        env=project.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    project.assert_no_secret(done)
    loaded = done.stderr.strip().splitlines()[-1]
    return done.returncode, done.stdout, done.stderr, loaded


def test_a_rerun_asks_aws_nothing_and_does_not_import_boto3(project: Project, stack: Stack) -> None:
    """Nor the smoke test's and the scan gate's modules: a rerun's start-up is its cost."""
    first = project.inv("release", "--version", "v1")
    assert first.returncode == 0, first.stderr
    stack.stop_moto()  # no ECR API from here on: an AWS call would fail the run
    code, out, err, loaded = _inv_counting_imports(project, "release", "--version", "v1")
    assert code == 0, err
    assert "already released" in out
    assert digest_from_output(out) == digest_from_output(first.stdout)
    assert loaded == "LOADED []"


def test_a_new_version_with_a_good_login_asks_aws_only_the_repositorys_settings(
    project: Project, stack: Stack
) -> None:
    # The rules for versions and moving tags follow the repository's own tag mutability:
    # a new version asks DescribeRepositories, and nothing else (no token, no docker login).
    assert project.inv("release", "--version", "v1").returncode == 0
    project.change_code("a code-only change")
    code, out, err, loaded = _inv_counting_imports(project, "release", "--version", "v2")
    assert code == 0, err
    assert "released and verified" in out
    assert "==> login" not in err  # docker's login was good: no token, no docker login
    assert "botocore" in loaded  # one boto3 client, for DescribeRepositories
    assert stack.registry_tags(project.repository) == ["v1", "v2"]
    assert stack.registry_manifest_digest(project.repository, "v2") == digest_from_output(out)
    # Without the ECR API, a new version stops before anything reaches the registry: the
    # repository's rules are asked beside the build, whose refusal stops it.
    stack.stop_moto()
    project.change_code("another change")
    code, out, err, loaded = _inv_counting_imports(project, "release", "--version", "v3")
    assert code == 4, err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "cannot reach the ECR API" in errors[0], err
    assert "==> push" not in err and "==> tag" not in err and "==> login" not in err
    assert stack.registry_tags(project.repository) == ["v1", "v2"]


def test_a_stale_stored_login_falls_back_to_a_fresh_one(project: Project, stack: Stack) -> None:
    assert project.inv("release", "--version", "v1").returncode == 0
    config = Path(project.env["DOCKER_CONFIG"]) / "config.json"
    stale = base64.b64encode(b"AWS:an-expired-password").decode()
    config.write_text(json.dumps({"auths": {project.registry_host: {"auth": stale}}}))
    project.change_code("released after the login went stale")
    done = project.inv("release", "--version", "v2")
    assert done.returncode == 0, done.stderr
    assert "==> login" in done.stderr  # a fresh token, and docker logged in again
    assert "error" not in done.stderr.lower() and "warning" not in done.stderr.lower()
    assert stack.registry_tags(project.repository) == ["v1", "v2"]
