"""The stack itself works: the tutorial's manual flow with boto3 and the docker CLI.

No product code here: these prove that moto, the registry and the engine fit
together, so that a failure in the product's own e2e tests means the product.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest

from .stack import Stack

if TYPE_CHECKING:
    from mypy_boto3_ecr import ECRClient

pytestmark = pytest.mark.e2e

DIGEST_LINE = re.compile(r"^\S+: digest: (sha256:[0-9a-f]{64}) size: \d+$", re.MULTILINE)


def docker(
    *args: str, docker_config: Path, stdin: str | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DOCKER_CONFIG": str(docker_config)}
    return subprocess.run(
        ["docker", *args],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def ok(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode == 0, f"{res.args} exited {res.returncode}:\n{res.stdout}\n{res.stderr}"
    return res.stdout


def ecr_client(stack: Stack) -> ECRClient:
    return boto3.client(
        "ecr",
        endpoint_url=stack.info.moto_endpoint,
        region_name=stack.info.region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@dataclass
class Repo:
    """A repository made in moto, and a docker config logged in to its registry."""

    name: str
    uri: str
    docker_config: Path

    def docker(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return docker(*args, docker_config=self.docker_config, timeout=timeout)


@pytest.fixture
def repo(stack: Stack, ecr_repo_name: str, docker_config: Path) -> Repo:
    """CreateRepository + GetAuthorizationToken + docker login, as the tutorial does them."""
    ecr = ecr_client(stack)
    uri = ecr.create_repository(repositoryName=ecr_repo_name)["repository"]["repositoryUri"]
    auth = ecr.get_authorization_token()["authorizationData"][0]
    user, _, password = base64.b64decode(auth["authorizationToken"]).decode().partition(":")
    host = auth["proxyEndpoint"].removeprefix("https://")
    assert user == "AWS"
    assert host == stack.info.registry_host
    assert uri == f"{host}/{ecr_repo_name}"
    ok(
        docker(
            "login", "--username", user, "--password-stdin", host,
            docker_config=docker_config, stdin=password,
        )
    )  # fmt: skip
    return Repo(ecr_repo_name, uri, docker_config)


def build_image(stack: Stack, tmp_path: Path, tag: str, docker_config: Path) -> str:
    """A tiny image on the local base image, with a unique file so each build is new."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    content = uuid.uuid4().hex
    (ctx / "hello.txt").write_text(content + "\n")
    (ctx / "Dockerfile").write_text(f"FROM {stack.info.base_image}\nCOPY hello.txt /hello.txt\n")
    ok(docker("build", "-t", tag, str(ctx), docker_config=docker_config))
    return content


def test_manual_flow_push_pull_run(
    stack: Stack, repo: Repo, tmp_path: Path, docker_images_to_remove: list[str]
) -> None:
    local = f"e2e-local/{repo.name}:build"
    remote = f"{repo.uri}:v1"
    docker_images_to_remove += [local, remote]
    content = build_image(stack, tmp_path, local, repo.docker_config)
    ok(repo.docker("tag", local, remote))

    out = ok(repo.docker("push", remote))
    match = DIGEST_LINE.search(out)
    assert match, out
    digest = match.group(1)
    assert stack.registry_manifest_digest(repo.name, "v1") == digest
    assert stack.registry_tags(repo.name) == ["v1"]
    assert stack.registry_manifest_digest(repo.name, "nope") is None

    ok(repo.docker("rmi", local, remote))
    by_digest = f"{repo.uri}@{digest}"
    docker_images_to_remove.append(by_digest)
    ok(repo.docker("pull", by_digest))
    out = ok(
        repo.docker(
            "run", "--rm", by_digest, "python3", "-c",
            "print(1); print(open('/hello.txt').read().strip())",
        )
    )  # fmt: skip
    assert out.split() == ["1", content]


def test_push_fails_while_registry_is_stopped(
    stack: Stack, repo: Repo, tmp_path: Path, docker_images_to_remove: list[str]
) -> None:
    remote = f"{repo.uri}:v1"
    docker_images_to_remove.append(remote)
    build_image(stack, tmp_path, remote, repo.docker_config)

    stack.stop_registry()
    res = repo.docker("push", remote, timeout=120)
    assert res.returncode != 0, res.stdout

    stack.start_registry()
    ok(repo.docker("push", remote))
    assert stack.registry_tags(repo.name) == ["v1"]


def test_registry_password_can_be_changed(stack: Stack, docker_config: Path) -> None:
    host = stack.info.registry_host
    login = ("login", "--username", "AWS", "--password-stdin", host)
    stack.set_registry_password("something-else")
    res = docker(*login, docker_config=docker_config, stdin=stack.default_password)
    assert res.returncode != 0
    ok(docker(*login, docker_config=docker_config, stdin="something-else"))
    stack.set_registry_password(None)
    ok(docker(*login, docker_config=docker_config, stdin=stack.default_password))
