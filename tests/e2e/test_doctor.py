"""`inv doctor`'s checks on the real stack: a real engine, moto's server, the TLS registry at
ECR's host. The task is not wired yet, so a small `python -c` wrapper calls the entry point
the way the task layer will (the project's folder, the process environment)."""

from __future__ import annotations

import hashlib
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from ..unit.flows.test_doctor import NAMES  # the checks, in the order the doctor runs them
from .project import Project
from .stack import Stack

AWS_NAMES = NAMES[7:13]


def doctor(
    project: Project, env: Mapping[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], dict[str, str], float]:
    """`inv doctor` in the project: the process, its lines by check name, its seconds."""
    started = time.monotonic()
    done = project.inv("doctor", env=env, timeout=120)  # which checks no secret is printed
    elapsed = time.monotonic() - started
    assert "Traceback" not in done.stderr, done.stderr
    lines: dict[str, str] = {}
    for line in done.stdout.splitlines():
        mark, _, rest = line.partition(" ")
        name, _, detail = rest.strip().partition(": ")
        assert mark in ("ok", "FAIL"), line
        lines[name] = f"{mark} {detail}"
    assert list(lines) == NAMES, done.stdout
    return done, lines, elapsed


def _fingerprint(*paths: Path) -> dict[str, str]:
    """Every file under these folders, with a digest of its content."""
    found: dict[str, str] = {}
    for root in paths:
        for path in sorted(root.rglob("*")) if root.exists() else []:
            if path.is_file():
                found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def test_all_green_after_a_release_and_nothing_changes(project: Project, stack: Stack) -> None:
    released = project.inv("release", "--version", "v1")
    assert released.returncode == 0, released.stderr
    docker_config = Path(project.env["DOCKER_CONFIG"])
    cache = Path(project.env["XDG_CACHE_HOME"])
    before = _fingerprint(docker_config, cache, project.root)
    repositories = project.ecr().describe_repositories()["repositories"]

    done, lines, elapsed = doctor(project)

    assert done.returncode == 0, done.stdout
    assert all(line.startswith("ok ") for line in lines.values()), done.stdout
    print(f"\n{done.stdout}doctor on the stack, all green: {elapsed:.2f} s")
    assert elapsed < 15
    info = stack.info
    assert lines["AWS identity"].startswith(f"ok arn:aws:sts::{info.account_id}:")
    assert f"region {info.region} (AWS_REGION in .env)" in lines["AWS identity"]
    assert lines["AWS credentials"] == "ok found: AWS_ACCESS_KEY_ID in .env"
    assert lines["AWS account"] == f"ok {info.account_id}, as AWS_ACCOUNT_ID says"
    assert lines["repository"] == (
        f"ok {info.registry_host}/{project.repository} exists, as configured "
        "(IMMUTABLE, scan on push, AES256)"
    )
    assert lines["registry"] == f"ok {info.registry_host} answers over TLS (GET /v2/: HTTP 401)"
    assert lines["registry login"] == f"ok docker's login for {info.registry_host} is accepted"
    # Read-only: no file written or changed, and the repositories as they were.
    assert _fingerprint(docker_config, cache, project.root) == before
    assert project.ecr().describe_repositories()["repositories"] == repositories


def test_a_dead_docker_host_fails_fast_and_the_aws_checks_still_run(
    project: Project, stack: Stack, tmp_path: Path
) -> None:
    dead = f"unix://{tmp_path}/nothing.sock"

    done, lines, elapsed = doctor(project, {"DOCKER_HOST": dead})

    assert done.returncode == 3, done.stdout
    assert lines["docker CLI"].startswith("ok Docker ")
    assert lines["docker daemon"].startswith(f"FAIL not answering at {dead} -- start Docker")
    for name in AWS_NAMES:
        assert lines[name].startswith("ok "), done.stdout
    assert lines["repository"].startswith(f"ok {project.repository} does not exist")
    assert lines["registry"].startswith("ok ")
    assert lines["registry login"].startswith("FAIL docker holds no login for")
    print(f"\ndoctor with a dead DOCKER_HOST: {elapsed:.2f} s")
    assert elapsed < 10, elapsed
    names = [r["repositoryName"] for r in project.ecr().describe_repositories()["repositories"]]
    assert project.repository not in names


def test_a_hung_docker_host_is_cut_off(project: Project, stack: Stack, silent_socket: str) -> None:
    done, lines, elapsed = doctor(project, {"DOCKER_HOST": silent_socket})

    assert done.returncode == 3, done.stdout
    assert lines["docker CLI"].startswith("ok Docker ")  # docker --version asks no daemon
    assert "gave no answer within 5 s" in lines["docker daemon"], done.stdout
    assert lines["AWS identity"].startswith("ok ")
    print(f"\ndoctor with a hung DOCKER_HOST: {elapsed:.2f} s")
    assert elapsed < 20, elapsed


def test_no_credentials_name_the_broken_part(project: Project, stack: Stack) -> None:
    env = {
        "AWS_ACCESS_KEY_ID": "",
        "AWS_SECRET_ACCESS_KEY": "",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    # Empty in the environment no longer hides .env's keys: take them out of .env too.
    project.write_env(AWS_ACCESS_KEY_ID="", AWS_SECRET_ACCESS_KEY="")

    done, lines, elapsed = doctor(project, env)

    assert done.returncode == 4, done.stdout
    for name in NAMES[:6]:
        assert lines[name].startswith("ok "), done.stdout
    assert lines["AWS credentials"].startswith("FAIL no AWS credentials found")
    assert (
        "set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        in (lines["AWS credentials"])
    )
    for name in NAMES[8:]:
        assert lines[name] == (
            "FAIL not checked: no AWS credentials -- fix 'AWS credentials' first"
        ), done.stdout
    print(f"\n{done.stdout}doctor with no AWS credentials: {elapsed:.2f} s")
    assert elapsed < 10, elapsed
