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
from pathlib import Path

import boto3
import pytest

from .stack import Stack

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


def ecr_client(stack: Stack):  # type: ignore[no-untyped-def]
    assert stack.info is not None
    return boto3.client(
        "ecr",
        endpoint_url=stack.info.moto_endpoint,
        region_name=stack.info.region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def create_repo_and_login(stack: Stack, repo: str, docker_config: Path) -> tuple[str, str]:
    """CreateRepository + GetAuthorizationToken + docker login; returns (host, repository URI)."""
    ecr = ecr_client(stack)
    uri = ecr.create_repository(repositoryName=repo)["repository"]["repositoryUri"]
    auth = ecr.get_authorization_token()["authorizationData"][0]
    user, _, password = base64.b64decode(auth["authorizationToken"]).decode().partition(":")
    host = auth["proxyEndpoint"].removeprefix("https://")
    assert stack.info is not None
    assert user == "AWS"
    assert host == stack.info.registry_host
    assert uri == f"{host}/{repo}"
    ok(
        docker(
            "login", "--username", user, "--password-stdin", host,
            docker_config=docker_config, stdin=password,
        )
    )  # fmt: skip
    return host, uri


def build_image(stack: Stack, tmp_path: Path, tag: str, docker_config: Path) -> str:
    """A tiny image on the local base image, with a unique file so each build is new."""
    assert stack.info is not None
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    content = uuid.uuid4().hex
    (ctx / "hello.txt").write_text(content + "\n")
    (ctx / "Dockerfile").write_text(f"FROM {stack.info.base_image}\nCOPY hello.txt /hello.txt\n")
    ok(docker("build", "-t", tag, str(ctx), docker_config=docker_config))
    return content


def test_manual_flow_push_pull_run(
    stack: Stack,
    ecr_repo_name: str,
    docker_config: Path,
    tmp_path: Path,
    docker_images_to_remove: list[str],
) -> None:
    _, uri = create_repo_and_login(stack, ecr_repo_name, docker_config)
    local = f"e2e-local/{ecr_repo_name}:build"
    remote = f"{uri}:v1"
    docker_images_to_remove += [local, remote]
    content = build_image(stack, tmp_path, local, docker_config)
    ok(docker("tag", local, remote, docker_config=docker_config))

    out = ok(docker("push", remote, docker_config=docker_config))
    match = DIGEST_LINE.search(out)
    assert match, out
    digest = match.group(1)
    assert stack.registry_manifest_digest(ecr_repo_name, "v1") == digest
    assert stack.registry_tags(ecr_repo_name) == ["v1"]
    assert stack.registry_manifest_digest(ecr_repo_name, "nope") is None

    ok(docker("rmi", local, remote, docker_config=docker_config))
    by_digest = f"{uri}@{digest}"
    docker_images_to_remove.append(by_digest)
    ok(docker("pull", by_digest, docker_config=docker_config))
    out = ok(
        docker(
            "run", "--rm", by_digest, "python3", "-c",
            "print(1); print(open('/hello.txt').read().strip())",
            docker_config=docker_config,
        )
    )  # fmt: skip
    assert out.split() == ["1", content]


def test_push_fails_while_registry_is_stopped(
    stack: Stack,
    ecr_repo_name: str,
    docker_config: Path,
    tmp_path: Path,
    docker_images_to_remove: list[str],
) -> None:
    _, uri = create_repo_and_login(stack, ecr_repo_name, docker_config)
    remote = f"{uri}:v1"
    docker_images_to_remove.append(remote)
    build_image(stack, tmp_path, remote, docker_config)

    stack.stop_registry()
    res = docker("push", remote, docker_config=docker_config, timeout=120)
    assert res.returncode != 0, res.stdout

    stack.start_registry()
    ok(docker("push", remote, docker_config=docker_config))
    assert stack.registry_tags(ecr_repo_name) == ["v1"]


def test_registry_password_can_be_changed(stack: Stack, docker_config: Path) -> None:
    assert stack.info is not None
    host = stack.info.registry_host
    login = ("login", "--username", "AWS", "--password-stdin", host)
    stack.set_registry_password("something-else")
    res = docker(*login, docker_config=docker_config, stdin=stack.default_password)
    assert res.returncode != 0
    ok(docker(*login, docker_config=docker_config, stdin="something-else"))
    stack.set_registry_password(None)
    ok(docker(*login, docker_config=docker_config, stdin=stack.default_password))
