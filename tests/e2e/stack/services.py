"""The stack's three services: dockerd, moto_server and docker-registry.

dockerd is started here (only when no engine answers); moto and the registry are the
stack's fault switches, started and stopped by the Stack, and waited for and asked
here. Every pid is recorded in the state and saved as soon as the process exists,
before any wait, so an interrupted start is still stopped by ``down``.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from email.message import Message
from pathlib import Path

from .errors import StackError, StackUnavailable
from .processes import alive, last_line, log, reap, run, spawn, tail
from .state import StackState

REGISTRY_PORT = 443
DOCKERD_DEADLINE = 60.0
SERVICE_DEADLINE = 30.0

MANIFEST_ACCEPT = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    ]
)


# ---------------------------------------------------------------- dockerd


def docker_answers(timeout: float = 10.0) -> bool:
    try:
        res = run(["docker", "info", "--format", "{{.ServerVersion}}"], timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return res.returncode == 0 and bool(res.stdout.strip())


def ensure_dockerd(state: StackState, dockerd_args: list[str]) -> None:
    """Start dockerd unless an engine answers already (then it is not ours to stop)."""
    if docker_answers():
        return
    log_path = Path(state.state_dir) / "dockerd.log"
    log_path.write_bytes(b"")
    log("starting dockerd")
    try:
        pid = spawn(["dockerd", *dockerd_args], log_path)
    except OSError as exc:
        raise StackUnavailable(f"cannot start dockerd: {exc}") from exc
    state.dockerd_pid, state.dockerd_started = pid, True
    state.save()
    end = time.monotonic() + DOCKERD_DEADLINE
    while time.monotonic() < end:
        if docker_answers(timeout=5):
            if not alive(pid):
                # another dockerd won the race; it's not ours to stop
                state.dockerd_pid, state.dockerd_started = None, False
                state.save()
            return
        if not alive(pid):
            reap(pid)
            if docker_answers():
                continue
            raise StackUnavailable(f"dockerd exited at start: {tail(log_path, 3)}")
        time.sleep(0.5)
    raise StackUnavailable(
        f"dockerd did not answer within {DOCKERD_DEADLINE:.0f}s: {tail(log_path, 3)}"
    )


def wait_engine_reaches_registry(state: StackState) -> None:
    """`docker login` through the engine: it resolves the host, trusts the CA, and
    authenticates. A daemon that was already running may serve /etc/hosts from a cache
    for a few seconds (Go's resolver re-reads it at most every 5 s), hence the retries."""
    end = time.monotonic() + 20
    with tempfile.TemporaryDirectory(prefix="e2e-stack-docker-") as cfg:
        env = {**os.environ, "DOCKER_CONFIG": cfg}
        argv = ["docker", "login", "--username", state.registry_user, "--password-stdin"]
        while True:
            res = run([*argv, state.registry_host], input=state.registry_password, env=env)
            if res.returncode == 0:
                return
            if time.monotonic() > end:
                raise StackError(
                    f"the Docker engine cannot log in to {state.registry_host}: "
                    f"{last_line(res.stderr)}"
                )
            time.sleep(0.5)


# ---------------------------------------------------------------- moto_server


def wait_moto(state: StackState) -> None:
    """Wait until the moto_server just started answers (its state starts empty)."""
    assert state.moto_pid is not None
    pid, port = state.moto_pid, state.moto_port
    log_path = Path(state.state_dir) / "moto.log"
    end = time.monotonic() + SERVICE_DEADLINE
    while time.monotonic() < end:
        if not alive(pid):
            raise StackError(f"moto_server exited: {tail(log_path)}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=2).close()
            return
        except urllib.error.HTTPError:
            return  # it answered
        except OSError:
            time.sleep(0.2)
    raise StackError(f"moto_server did not answer on port {port}: {tail(log_path)}")


# ---------------------------------------------------------------- docker-registry


def write_registry_config(state: StackState, crt: Path, key: Path) -> None:
    """The registry's YAML: TLS on 127.0.0.1:443, htpasswd auth, deletes enabled."""
    Path(state.registry_config_path).write_text(
        "version: 0.1\n"
        "log:\n  level: info\n"
        "storage:\n"
        f"  filesystem:\n    rootdirectory: {json.dumps(state.registry_storage_dir)}\n"
        "  delete:\n    enabled: true\n"
        "http:\n"
        f"  addr: 127.0.0.1:{REGISTRY_PORT}\n"
        f"  secret: {secrets.token_hex(16)}\n"
        f"  tls:\n    certificate: {json.dumps(str(crt))}\n    key: {json.dumps(str(key))}\n"
        "  headers:\n    X-Content-Type-Options: [nosniff]\n"
        "auth:\n"
        f"  htpasswd:\n    realm: ecr-e2e-stack\n    path: {json.dumps(state.htpasswd_path)}\n"
    )


def wait_registry(state: StackState) -> None:
    """Wait until the docker-registry just started answers ``GET /v2/``."""
    assert state.registry_pid is not None
    pid, log_path = state.registry_pid, Path(state.registry_log_path)
    end = time.monotonic() + SERVICE_DEADLINE
    while time.monotonic() < end:
        if not alive(pid):
            reap(pid)
            raise StackError(f"docker-registry exited: {tail(log_path)}")
        try:
            status, _, _ = registry_request(state, "GET", "/v2/", auth=False, timeout=2)
        except OSError:
            time.sleep(0.2)
            continue
        if status in (200, 401):
            return
        raise StackError(f"docker-registry answered {status} to GET /v2/")
    raise StackError(f"docker-registry did not answer on port {REGISTRY_PORT}: {tail(log_path)}")


def ssl_context(state: StackState) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=state.ca_path)


def registry_request(
    state: StackState,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    *,
    auth: bool = True,
    timeout: float = 10,
) -> tuple[int, Message, bytes]:
    req = urllib.request.Request(
        f"https://{state.registry_host}{path}", method=method, headers=headers or {}
    )
    if auth:
        cred = f"{state.registry_user}:{state.registry_password}".encode()
        req.add_header("Authorization", "Basic " + base64.b64encode(cred).decode())
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ssl_context(state)) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def registry_tags(state: StackState, repo: str) -> list[str]:
    """Tags of ``repo`` in the registry (empty when the repository is unknown)."""
    status, _, body = registry_request(state, "GET", f"/v2/{repo}/tags/list")
    if status == 404:
        return []
    if status != 200:
        raise StackError(f"registry answered {status} to tags/list for {repo}: {body[:200]!r}")
    return sorted(json.loads(body).get("tags") or [])


def registry_manifest_digest(state: StackState, repo: str, tag: str) -> str | None:
    """The manifest digest the registry serves for ``repo:tag`` (None when absent)."""
    status, headers, _ = registry_request(
        state, "HEAD", f"/v2/{repo}/manifests/{tag}", {"Accept": MANIFEST_ACCEPT}
    )
    if status == 404:
        return None
    if status != 200:
        raise StackError(f"registry answered {status} to HEAD manifest {repo}:{tag}")
    return headers.get("Docker-Content-Digest")
