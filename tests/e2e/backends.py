"""Where an e2e test releases to: the root stack, or the local sandbox. One harness, two targets.

- ``StackBackend``: the root-only stand-in (``tests/e2e/stack``): ECR's exact host name over
  TLS on 127.0.0.1:443, moto's server, and fault switches on both. The project's ``.env``
  names moto's endpoint and fake AWS keys, as a user's would name AWS.
- ``SandboxBackend``: the product's own local sandbox (``inv sandbox up``, ``--sandbox``),
  which needs no root: a registry container on a loopback port (plain HTTP, basic auth
  ``AWS:<token>``) and moto in a process of the sandbox's. The project's ``.env`` says
  ``SANDBOX=true``; it also holds fake AWS keys and an AWS endpoint where nothing listens,
  which a sandbox run must never use. One sandbox serves a whole pytest session (its
  ``XDG_CACHE_HOME`` is shared); each test still has its own repository.

Both answer the questions the tests ask of what landed: the registry's tags and digests
(asked of the registry itself, not through the product), and an ECR client. Not for:
starting or healing either target (``conftest.py`` does that).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from .stack import services
from .stack.machine import BASE_IMAGE, REGISTRY_IMAGE

if TYPE_CHECKING:
    from mypy_boto3_ecr import ECRClient

    from .stack import StackState

INV = Path(sys.executable).with_name("inv")
# An AWS endpoint where nothing listens (the discard port): a sandbox run never goes there.
NOWHERE = "http://127.0.0.1:9"


class Backend(Protocol):
    """What a test needs to know about the target it releases to."""

    @property
    def name(self) -> str: ...

    @property
    def base_image(self) -> str: ...

    @property
    def region(self) -> str: ...

    @property
    def shared_cache(self) -> Path | None:
        """The test's XDG_CACHE_HOME when it must be the backend's (the sandbox lives there)."""
        ...

    @property
    def registry_host(self) -> str: ...

    @property
    def password(self) -> str:
        """The registry password: never printed by the CLI."""
        ...

    def dotenv(self, repository: str, marker: str) -> dict[str, str]:
        """The project's ``.env`` for this target (``marker``: the fake AWS secret)."""
        ...

    def registry_tags(self, repo: str) -> list[str]: ...

    def registry_manifest_digest(self, repo: str, tag: str) -> str | None: ...

    def ecr(self) -> ECRClient: ...


@dataclass
class StackBackend:
    """The root stack: moto's server and a TLS registry at ECR's host name."""

    info: StackState
    name: str = "stack"
    shared_cache: Path | None = None

    @property
    def base_image(self) -> str:
        return self.info.base_image

    @property
    def region(self) -> str:
        return self.info.region

    @property
    def registry_host(self) -> str:
        return self.info.registry_host

    @property
    def password(self) -> str:
        return f"{self.info.account_id}-auth-token"

    def dotenv(self, repository: str, marker: str) -> dict[str, str]:
        return {
            "AWS_REGION": self.info.region,
            "AWS_ENDPOINT_URL": self.info.moto_endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": marker,
            "AWS_ACCOUNT_ID": self.info.account_id,
            "ECR_REPOSITORY": repository,
            "BASE_IMAGE": self.info.base_image,
        }

    def registry_tags(self, repo: str) -> list[str]:
        return services.registry_tags(self.info, repo)

    def registry_manifest_digest(self, repo: str, tag: str) -> str | None:
        return services.registry_manifest_digest(self.info, repo, tag)

    def ecr(self) -> ECRClient:
        return _ecr_client(self.info.moto_endpoint, self.info.region, "testing")


@dataclass
class SandboxBackend:
    """The local sandbox whose state lives under ``cache`` (an ``XDG_CACHE_HOME``).

    Its ports and token are read from the sandbox's state directory at each question: a
    sandbox that healed itself may answer on another port.
    """

    cache: Path
    image: str = REGISTRY_IMAGE
    base_image: str = BASE_IMAGE
    region: str = "us-east-1"  # the sandbox's default (its .env sets no region)
    name: str = "sandbox"

    @property
    def shared_cache(self) -> Path:
        return self.cache

    @property
    def directory(self) -> Path:
        return self.cache / "ecr-release" / "sandbox"

    def state(self) -> dict[str, object]:
        """The sandbox's ``state.json`` ({} when there is none)."""
        try:
            found = json.loads((self.directory / "state.json").read_text())
        except (OSError, ValueError):
            return {}
        return found if isinstance(found, dict) else {}

    def port(self, part: str) -> int:
        """``api`` or ``registry``: the port the state file names (the sandbox must be up)."""
        value = self.state().get(f"{part}_port")
        if not isinstance(value, int):
            raise AssertionError(f"the sandbox's state names no {part} port: {self.state()}")
        return value

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.port('api')}"

    @property
    def registry_host(self) -> str:
        return f"127.0.0.1:{self.port('registry')}"

    @property
    def password(self) -> str:
        """The token (the registry's password), or "" when the sandbox has none (down)."""
        try:
            return (self.directory / "token").read_text().strip()
        except FileNotFoundError:
            return ""

    def dotenv(self, repository: str, marker: str) -> dict[str, str]:
        return {
            "SANDBOX": "true",
            "SANDBOX_REGISTRY_IMAGE": self.image,
            "ECR_REPOSITORY": repository,
            "BASE_IMAGE": self.base_image,
            # A user's AWS set-up beside it, which the sandbox must neither read nor send.
            "AWS_ENDPOINT_URL": NOWHERE,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": marker,
        }

    def env(self, home: Path, docker_config: Path) -> dict[str, str]:
        """A small environment for the CLI with this sandbox's cache."""
        env = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOME": str(home),
            "DOCKER_CONFIG": str(docker_config),
            "XDG_CACHE_HOME": str(self.cache),
            "SANDBOX_REGISTRY_IMAGE": self.image,
            "AWS_CONFIG_FILE": "/nonexistent",
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        if os.environ.get("DOCKER_HOST"):
            env["DOCKER_HOST"] = os.environ["DOCKER_HOST"]
        return env

    def cli(
        self, *args: str, home: Path, docker_config: Path, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """``inv ARGS`` (e.g. ``sandbox up``) with this sandbox's cache, from a folder that
        holds only the shipped ``tasks.py`` and an empty ``.env``."""
        where = self.cache.parent / f"{self.cache.name}-cli"
        if not (where / "tasks.py").exists():
            where.mkdir(parents=True, exist_ok=True)
            (where / "tasks.py").write_bytes((Path(__file__).parents[2] / "tasks.py").read_bytes())
            (where / ".env").write_text("")
        return subprocess.run(
            [str(INV), *args],
            cwd=where,
            env=self.env(home, docker_config),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    # -- what landed -------------------------------------------------------------

    def _registry(self, method: str, path: str, accept: str | None = None) -> tuple[int, str, str]:
        """(status, Docker-Content-Digest, body) of a plain-HTTP request to the registry."""
        auth = base64.b64encode(f"AWS:{self.password}".encode()).decode()
        headers = {"Authorization": f"Basic {auth}"}
        if accept:
            headers["Accept"] = accept
        url = f"http://{self.registry_host}{path}"
        request = urllib.request.Request(url, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return (
                    answer.status,
                    answer.headers.get("Docker-Content-Digest", ""),
                    (answer.read().decode()),
                )
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, "", exc.read().decode(errors="replace")

    def registry_tags(self, repo: str) -> list[str]:
        status, _, body = self._registry("GET", f"/v2/{repo}/tags/list")
        if status == 404:
            return []
        if status != 200:
            raise AssertionError(f"sandbox registry answered {status} to tags/list: {body[:200]}")
        return sorted(json.loads(body).get("tags") or [])

    def registry_manifest_digest(self, repo: str, tag: str) -> str | None:
        accept = services.MANIFEST_ACCEPT
        status, digest, body = self._registry("HEAD", f"/v2/{repo}/manifests/{tag}", accept)
        if status == 404:
            return None
        if status != 200:
            raise AssertionError(f"sandbox registry answered {status} to HEAD manifest: {body}")
        return digest or None

    def ecr(self) -> ECRClient:
        """boto3 on the sandbox's API, signed with its access key id (the only one it takes)."""
        key = (self.directory / "access-key").read_text().strip()
        return _ecr_client(self.api, self.region, key)


def _ecr_client(endpoint: str, region: str, key: str) -> ECRClient:
    import boto3

    return boto3.client(
        "ecr",
        region_name=region,
        endpoint_url=endpoint,
        aws_access_key_id=key,
        aws_secret_access_key=key,
    )
