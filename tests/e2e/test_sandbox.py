"""The local sandbox end to end, as a user meets it: no AWS account, no root.

Each test runs the real CLI in a copy of the project, as a user with a fresh HOME whose
cache directory (so, whose sandbox) and Docker config are its own: the release, then a
pull and run of what landed; ``down`` leaving nothing behind; a killed API process and a
removed registry container healed by the next run; a port taken by something else; and
isolation both ways between the sandbox and a user's AWS set-up. The tests that only read
share one user (one sandbox) per module; the ones that break or remove it have their own.
Each sandbox is taken down at teardown, whatever happened.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from ecr_release.outside.sandbox import LABEL

from .backends import SandboxBackend
from .project import Project, digest_from_output, docker, one_line_error

UP_SECONDS = 15.0  # the target is 5 s (benchmarks/sandbox.py); generous here against flakes


@dataclass
class User:
    """A user's machine as the sandbox sees it: HOME, cache, Docker config, a project."""

    tmp: Path
    sandbox: SandboxBackend
    project: Project
    repositories: list[str] = field(default_factory=list)

    @classmethod
    def make(cls, tmp: Path) -> User:
        sandbox = SandboxBackend(tmp / "cache")
        repository = f"sbx-{uuid.uuid4().hex[:8]}"
        project = Project.create(
            tmp,
            repository=repository,
            backend=sandbox,
            docker_config=tmp / "home" / ".docker",  # docker's default under the fresh HOME
            marker=f"sbx-SECRET-marker-{uuid.uuid4().hex}",
        )
        # The project names no target: each command says --sandbox itself.
        (project.root / ".env").write_text(
            f"ECR_REPOSITORY={repository}\nBASE_IMAGE={sandbox.base_image}\n"
            f"SANDBOX_REGISTRY_IMAGE={sandbox.image}\n"
        )
        return cls(tmp, sandbox, project, [repository])

    @property
    def docker_config(self) -> Path:
        return Path(self.project.env["DOCKER_CONFIG"])

    def inv(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return self.project.inv(*args, env=env)

    def logins(self) -> dict[str, Any]:
        """docker's stored logins (``auths`` of config.json), {} when it has none."""
        try:
            data = json.loads((self.docker_config / "config.json").read_text())
        except FileNotFoundError:
            return {}
        auths = data.get("auths") or {}
        assert isinstance(auths, dict)
        return auths

    def status(self) -> dict[str, str]:
        """``inv sandbox status`` in words: running, container, volume."""
        done = self.inv("sandbox", "status")
        assert done.returncode == 0, done.stderr
        words = done.stdout.split()
        return {
            "first": done.stdout.splitlines()[0],
            "container": words[words.index("(container") + 1].rstrip(","),
            "volume": words[words.index("volume") + 1].rstrip(";"),
        }

    def down(self) -> subprocess.CompletedProcess[str]:
        done = self.inv("sandbox", "down")
        listed = docker("images", "--format", "{{.Repository}}:{{.Tag}}", check=False).split()
        mine = [ref for ref in listed if ref.rsplit(":", 1)[0].split("/")[-1] in self.repositories]
        if mine:
            docker("rmi", "-f", *mine, check=False)
        return done


def _user(tmp: Path) -> Iterator[User]:
    user = User.make(tmp)
    try:
        yield user
    finally:
        done = user.down()
        assert done.returncode == 0, f"inv sandbox down: {done.stdout}{done.stderr}"


@pytest.fixture(scope="module")
def user(engine: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[User]:
    """One user and its sandbox for the module's tests that only read what they made."""
    yield from _user(tmp_path_factory.mktemp("user"))


@pytest.fixture
def own_user(engine: str, tmp_path: Path) -> Iterator[User]:
    """A user of the test's own, whose sandbox the test may break or take down."""
    yield from _user(tmp_path)


def _ecr(sandbox: SandboxBackend) -> Any:
    """boto3's ECR client on the sandbox's API (the port its state file names)."""
    return sandbox.ecr()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_gone(pid: int, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while _alive(pid):
        assert time.monotonic() < deadline, f"process {pid} is still alive"
        time.sleep(0.05)


# -- a release, then the image, as a user sees it -------------------------------------------


def test_release_on_a_fresh_home_then_pull_and_run_the_image(user: User) -> None:
    repo = user.project.repository
    done = user.inv("release", "--version", "v1", "--sandbox")
    assert done.returncode == 0, done.stderr
    assert "released and verified" in done.stdout
    for step in ("build", "ensure-repo", "login", "gates", "smoke-test"):
        assert f"{step} " in done.stdout.split("steps:")[1], done.stdout
    digest = digest_from_output(done.stdout)
    host = user.sandbox.registry_host  # 127.0.0.1:<port>, from the sandbox's state file
    remote = f"{host}/{repo}:v1"
    assert f"image:  {remote}" in done.stdout
    assert user.sandbox.registry_manifest_digest(repo, "v1") == digest

    # docker's stored login is the sandbox's: user AWS, the token as password.
    stored = base64.b64decode(user.logins()[host]["auth"]).decode()
    assert stored == f"AWS:{user.sandbox.password}"

    # The sandbox's ECR API sees the pushed image, as ECR would.
    details = _ecr(user.sandbox).describe_images(repositoryName=repo)["imageDetails"]
    assert [(d["imageDigest"], d["imageTags"]) for d in details] == [(digest, ["v1"])]

    # Pull it back with docker's stored login (none: refused), then run it.
    docker("rmi", "-f", f"{repo}:v1", remote)
    empty = user.tmp / "no-login"
    empty.mkdir()
    refused = subprocess.run(
        ["docker", "pull", remote],
        env={**os.environ, "DOCKER_CONFIG": str(empty)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode != 0
    assert "no basic auth credentials" in refused.stderr or "unauthorized" in refused.stderr
    docker("pull", remote, env={**os.environ, "DOCKER_CONFIG": str(user.docker_config)})
    repo_digests = docker("image", "inspect", "--format", "{{json .RepoDigests}}", remote)
    assert f"{host}/{repo}@{digest}" in json.loads(repo_digests)

    # As the smoke test runs it: no network but its own loopback; its HEALTHCHECK passes
    # and it answers as the widget server, version v1.
    health = json.loads(
        docker("image", "inspect", "--format", "{{json .Config.Healthcheck.Test}}", remote)
    )
    assert health[0] == "CMD"
    container = docker("run", "-d", "--network", "none", remote)
    try:
        deadline = time.monotonic() + 30
        probe = ["docker", "exec", container, *health[1:]]
        while subprocess.run(probe, capture_output=True, check=False).returncode != 0:
            assert time.monotonic() < deadline, docker("logs", container, check=False)
            time.sleep(0.2)
        answer = docker(
            "exec", container, "python3", "-c",
            "import urllib.request; "
            "print(urllib.request.urlopen('http://127.0.0.1:8080/version').read().decode())",
        )  # fmt: skip
        assert json.loads(answer) == {"version": "v1"}
    finally:
        docker("rm", "-f", container, check=False)

    again = user.inv("release", "--version", "v1", "--sandbox")
    assert again.returncode == 0, again.stderr
    assert "already released" in again.stdout
    assert digest_from_output(again.stdout) == digest


def test_promote_on_a_repository_with_latest_excluded_from_immutability(user: User) -> None:
    repo = f"{user.project.repository}-promoted"
    user.repositories.append(repo)
    env = {
        "ECR_REPOSITORY": repo,
        "ECR_TAG_MUTABILITY": "IMMUTABLE_WITH_EXCLUSION",
        "ECR_TAG_MUTABILITY_EXCLUSIONS": "latest",
    }
    digests = {}
    for version in ("v1", "v2"):
        done = user.inv("release", "--version", version, "--sandbox", env=env)
        assert done.returncode == 0, done.stderr
        digests[version] = digest_from_output(done.stdout)
        user.project.change_code(f"after {version}")
    assert digests["v1"] != digests["v2"]
    created = _ecr(user.sandbox).describe_repositories(repositoryNames=[repo])["repositories"][0]
    assert created["imageTagMutability"] == "IMMUTABLE_WITH_EXCLUSION"
    for version in ("v1", "v2", "v1"):
        done = user.inv("promote", "--version", version, "--tag", "latest", "--sandbox", env=env)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"latest -> {version} ({digests[version]})"
        assert user.sandbox.registry_manifest_digest(repo, "latest") == digests[version]
    assert user.sandbox.registry_tags(repo) == ["latest", "v1", "v2"]


def test_doctor_is_all_green_and_config_names_the_sandbox(user: User) -> None:
    # docker holds the sandbox's login (as after a release): the doctor checks it too.
    assert user.inv("login", "--sandbox").returncode == 0
    doctor = user.inv("doctor", "--sandbox")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    lines = doctor.stdout.splitlines()
    assert lines and all(line.startswith("ok ") for line in lines), doctor.stdout
    assert any("target: the local sandbox" in line for line in lines), doctor.stdout
    assert any(f"registry: {user.sandbox.registry_host} answers" in line for line in lines)

    config = user.inv("config", "--sandbox")
    assert config.returncode == 0, config.stderr
    target = (
        f"target: the local sandbox (running: ECR API {user.sandbox.api}, "
        f"registry {user.sandbox.registry_host})"
    )
    assert target in config.stdout.splitlines()
    assert config.stdout.splitlines()[-1] == "settings: valid"


# -- down, heal, ports --------------------------------------------------------------------


def test_down_leaves_no_process_container_volume_login_or_state(own_user: User) -> None:
    user = own_user
    up = user.inv("sandbox", "up")
    assert up.returncode == 0, up.stderr
    login = user.inv("login", "--sandbox")
    assert login.returncode == 0, login.stderr
    state, host = user.sandbox.state(), user.sandbox.registry_host
    pid, api_port = state["api_pid"], state["api_port"]
    assert isinstance(pid, int) and isinstance(api_port, int)
    assert host in user.logins() and _alive(pid)
    names = user.status()
    assert names["first"] == "sandbox: running"

    down = user.inv("sandbox", "down")
    assert down.returncode == 0, down.stderr
    for part in (
        f"ECR API process {pid}",
        f"container {names['container']}",
        f"volume {names['volume']}",
        f"docker's login to {host}",
    ):
        assert part in down.stdout
    _wait_gone(pid)
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", api_port)) != 0  # nobody listens there
    containers = docker("ps", "-a", "--filter", f"label={LABEL}", "--format", "{{.Names}}")
    assert names["container"] not in containers.split()
    volumes = docker("volume", "ls", "--format", "{{.Name}}").split()
    assert names["volume"] not in volumes
    assert host not in user.logins()
    left = [p.name for p in user.sandbox.directory.rglob("*")]
    assert all(name.endswith(".lock") for name in left), left

    again = user.inv("sandbox", "down")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "sandbox down: nothing was running"
    assert user.status()["first"] == "sandbox: not running"


def test_a_killed_api_and_a_removed_registry_are_healed_by_the_next_release(
    own_user: User,
) -> None:
    user, repo = own_user, own_user.project.repository
    first = user.inv("release", "--version", "v1", "--sandbox")
    assert first.returncode == 0, first.stderr
    pid = user.sandbox.state()["api_pid"]
    assert isinstance(pid, int)
    os.kill(pid, signal.SIGKILL)
    _wait_gone(pid)

    user.project.change_code("released after the API was killed")
    second = user.inv("release", "--version", "v2", "--sandbox")
    assert second.returncode == 0, second.stderr
    assert "released and verified" in second.stdout
    assert user.sandbox.state()["api_pid"] != pid
    # The new API process knows the repository (its journal) and both images (the registry).
    ecr = _ecr(user.sandbox)
    assert ecr.describe_repositories(repositoryNames=[repo])["repositories"]
    tags = sorted(t for d in ecr.describe_images(repositoryName=repo)["imageDetails"]
                  for t in d.get("imageTags", []))  # fmt: skip
    assert tags == ["v1", "v2"]

    docker("rm", "-f", user.status()["container"])
    user.project.change_code("released after the registry container was removed")
    third = user.inv("release", "--version", "v3", "--sandbox")
    assert third.returncode == 0, third.stderr
    assert user.status()["first"] == "sandbox: running"
    assert user.sandbox.registry_tags(repo) == ["v1", "v2", "v3"]  # the volume was kept
    assert user.sandbox.registry_manifest_digest(repo, "v3") == digest_from_output(third.stdout)


class _SomethingElse(BaseHTTPRequestHandler):
    """Another program on the port the sandbox wants: an HTTP server that is not ours."""

    def do_GET(self) -> None:
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def _held_port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SomethingElse)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def test_ports_taken_by_something_else_make_the_sandbox_take_others(own_user: User) -> None:
    user = own_user
    with _held_port() as registry_port, _held_port() as api_port:
        # The sandbox wants these ports: its state names them, as after an earlier run.
        user.sandbox.directory.mkdir(parents=True)
        state = {"registry_port": registry_port, "api_port": api_port}
        (user.sandbox.directory / "state.json").write_text(json.dumps(state))
        start = time.monotonic()
        up = user.inv("sandbox", "up")
        took = time.monotonic() - start
        print(f"\nsandbox up with both wanted ports taken: {took:.1f} s")
        assert up.returncode == 0, up.stdout + up.stderr
        now = user.sandbox.state()
        assert now["registry_port"] not in (registry_port, api_port, None)
        assert now["api_port"] not in (registry_port, api_port, None)
        assert user.status()["first"] == "sandbox: running"
        login = user.inv("login", "--sandbox")
        assert login.returncode == 0, login.stderr
        assert login.stdout.strip() == f"logged in to 127.0.0.1:{now['registry_port']}"
        # Whoever held the ports still holds them, undisturbed.
        for port in (registry_port, api_port):
            with socket.create_connection(("127.0.0.1", port), timeout=5):
                pass


def test_up_from_cold_is_quick(own_user: User) -> None:
    user = own_user
    start = time.monotonic()
    up = user.inv("sandbox", "up")
    took = time.monotonic() - start
    print(f"\ninv sandbox up from cold: {took:.2f} s (target 5 s)")
    assert up.returncode == 0, up.stderr
    assert up.stdout.splitlines()[0] == (
        f"sandbox up: ECR API {user.sandbox.api}, registry {user.sandbox.registry_host}"
    )
    assert took < UP_SECONDS
    start = time.monotonic()
    again = user.inv("sandbox", "up")
    print(f"inv sandbox up, already running: {time.monotonic() - start:.2f} s")
    assert again.returncode == 0 and again.stdout == up.stdout


# -- isolation, both ways -------------------------------------------------------------------


class _Recorder(BaseHTTPRequestHandler):
    """Stands for AWS: records every request; answers as AWS does to an unknown key."""

    seen: list[tuple[str, str, str]]

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.seen.append((self.command, self.path, self.headers.get("Authorization", "")))
        body = json.dumps(
            {
                "__type": "UnrecognizedClientException",
                "message": "The security token included in the request is invalid.",
            }
        ).encode()
        self.send_response(400)
        self.send_header("x-amzn-ErrorType", "UnrecognizedClientException")
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def fake_aws() -> Iterator[tuple[str, list[tuple[str, str, str]]]]:
    """An HTTP listener standing for AWS: its URL, and the requests it received."""
    seen: list[tuple[str, str, str]] = []
    handler = type("Recorder", (_Recorder,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_isolation_both_ways_between_the_sandbox_and_a_users_aws(
    own_user: User, fake_aws: tuple[str, list[tuple[str, str, str]]]
) -> None:
    user, (endpoint, seen) = own_user, fake_aws
    tag = uuid.uuid4().hex.upper()
    secrets = {
        "env": f"envSECRET{tag}",
        "dotenv": f"dotenvSECRET{tag}",
        "file": f"fileSECRET{tag}",
        "token": f"SESSIONTOKEN{tag}",
    }
    aws = {
        "AWS_ACCESS_KEY_ID": f"AKIA{tag[:16]}",
        "AWS_SECRET_ACCESS_KEY": secrets["env"],
        "AWS_SESSION_TOKEN": secrets["token"],
        "AWS_PROFILE": "prod-admin",
        "AWS_REGION": "eu-west-1",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ENDPOINT_URL_ECR": endpoint,
        "AWS_ENDPOINT_URL_STS": endpoint,
    }
    # The same set-up in .env (with its own secret) and in ~/.aws, as a user would have it.
    user.project.write_env(**{**aws, "AWS_SECRET_ACCESS_KEY": secrets["dotenv"]})
    dot_aws = Path(user.project.env["HOME"]) / ".aws"
    dot_aws.mkdir()
    (dot_aws / "credentials").write_text(
        f"[default]\naws_access_key_id = AKIA{tag[-16:]}\naws_secret_access_key = "
        f"{secrets['file']}\n[prod-admin]\naws_access_key_id = AKIA{tag[-16:]}\n"
        f"aws_secret_access_key = {secrets['file']}\n"
    )
    (dot_aws / "config").write_text(
        f"[default]\nregion = eu-west-1\nendpoint_url = {endpoint}\n"
        f"[profile prod-admin]\nregion = eu-west-1\nendpoint_url = {endpoint}\n"
    )
    for name in ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        user.project.env.pop(name)  # boto3 then reads ~/.aws, as for any user

    def shows_no_secret(done: subprocess.CompletedProcess[str]) -> None:
        for value in secrets.values():
            assert value not in done.stdout and value not in done.stderr

    done = user.inv("release", "--version", "v1", "--sandbox", env=aws)
    assert done.returncode == 0, done.stderr
    shows_no_secret(done)
    assert seen == []  # not one request reached "AWS"
    host = user.sandbox.registry_host
    pid = user.sandbox.state()["api_pid"]
    # The API process the release started holds none of the user's AWS set-up either.
    environ = Path(f"/proc/{pid}/environ").read_bytes()
    assert b"AWS_" not in environ and all(v.encode() not in environ for v in secrets.values())

    # Without --sandbox nothing of the sandbox is used: not its endpoint, nor its login.
    logins_before = user.logins()
    user.project.change_code("a release to AWS")
    real = user.inv("release", "--version", "v2", env=aws)
    line = one_line_error(real)
    assert real.returncode == 4, real.stderr
    assert seen, "the release to AWS never reached the AWS endpoint"
    user_keys = (f"AKIA{tag[:16]}", f"AKIA{tag[-16:]}")  # the environment's or the profile's
    assert all(any(key in auth for key in user_keys) for _, _, auth in seen), seen
    assert host not in real.stdout and host not in real.stderr, real.stderr
    print(f"\nwithout --sandbox: {line}")
    shows_no_secret(real)
    assert user.logins() == logins_before
    assert user.sandbox.registry_tags(user.project.repository) == ["v1"]
