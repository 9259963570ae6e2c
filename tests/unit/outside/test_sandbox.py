"""The sandbox's manager: its state, token, registry container and API process, healing, down.

Docker is a fake runner whose ``docker run -d`` starts a tiny registry stand-in (an HTTP
server answering 401, as a registry with htpasswd auth does) on the port the options
name; the API process is a small script that answers ``/_sandbox/health`` as the real
one does. No daemon, no moto: the real ones are the end-to-end tests' business.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from ecr_release.errors import DockerError
from ecr_release.outside.docker import Docker
from ecr_release.outside.process import Result
from ecr_release.outside.sandbox import (
    Sandbox,
    State,
    _htpasswd,
    _password,
    _registry_options,
    _secret,
)

FAKE_API = """
import argparse, json, os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
parser = argparse.ArgumentParser()
parser.add_argument("-m")
parser.add_argument("--port", type=int)
parser.add_argument("--state-dir")
parser.add_argument("--registry")
parser.add_argument("--account")
args = parser.parse_args()
class Health(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"pid": os.getpid(), "registry": args.registry}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
try:
    server = HTTPServer(("127.0.0.1", args.port), Health)
except OSError:
    sys.exit(98)
server.serve_forever()
"""


class _Registry(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.headers.get("Authorization") else 401)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


class FakeDocker:
    """The docker CLI: records argument lists; ``run -d`` serves a registry stand-in."""

    def __init__(self, *, bridge: bool = False, image: bool = True) -> None:
        self.calls: list[list[str]] = []
        self.servers: dict[str, ThreadingHTTPServer] = {}
        self.bridge = bridge
        self.image = image
        self.taken_once = False  # the first start finds its port taken
        self.lock = threading.Lock()
        self.volumes: set[str] = set()

    def __call__(self, args: Sequence[str], **_: Any) -> Result:
        args = list(args)
        with self.lock:
            self.calls.append(args)
        verb = args[1]
        if args[1:3] == ["image", "inspect"]:
            if not self.image:
                return Result(1, "Error: No such image: registry:2")
            return Result(0, json.dumps({"id": "sha256:" + "1" * 64}))
        if verb == "pull":
            return Result(1, "Error response from daemon: Get https://registry-1.docker.io: EOF")
        if args[1:3] == ["network", "inspect"]:
            return Result(0 if self.bridge else 1, "")
        if args[1:3] == ["volume", "inspect"]:
            return Result(0 if args[-1] in self.volumes else 1, "")
        if args[1:3] == ["volume", "rm"]:
            self.volumes.discard(args[-1])
            return Result(0, "")
        if verb == "run":
            return self._run(args)
        if verb == "rm":
            server = self.servers.pop(args[-1], None)
            if server is not None:
                server.shutdown()
                server.server_close()
            if server is None:  # docker 23+: `rm -f` of a missing container exits 0
                return Result(0, f"Error response from daemon: No such container: {args[-1]}")
            return Result(0, f"{args[-1]}\n")
        return Result(0, "")  # volume rm, logout

    def _run(self, args: list[str]) -> Result:
        if self.taken_once:
            self.taken_once = False
            return Result(125, "Error: bind: address already in use")
        port = next(
            int(a.rsplit(":", 1)[1]) if a.startswith("REGISTRY_HTTP_ADDR") else int(a.split(":")[1])
            for a in args
            if a.startswith("REGISTRY_HTTP_ADDR=") or a.startswith("127.0.0.1:")
        )
        server = ThreadingHTTPServer(("127.0.0.1", port), _Registry)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.servers[args[args.index("--name") + 1]] = server
        self.volumes.add(args[args.index("-v") + 1].split(":")[0])
        return Result(0, "c0ffee\n")

    def starts(self) -> int:
        return sum(1 for call in self.calls if call[1] == "run")


@pytest.fixture
def fake_api(tmp_path: Path) -> str:
    script = tmp_path / "fake-python"
    script.write_text(f"#!{sys.executable}\n{FAKE_API}")
    script.chmod(0o755)
    return str(script)


@pytest.fixture
def docker() -> Iterator[FakeDocker]:
    fake = FakeDocker()
    yield fake
    for server in fake.servers.values():
        server.shutdown()
        server.server_close()


def _sandbox(tmp_path: Path, docker: FakeDocker, python: str) -> Sandbox:
    return Sandbox(tmp_path / "sandbox", Docker(docker), python=python)


@pytest.fixture
def sandbox(tmp_path: Path, docker: FakeDocker, fake_api: str) -> Iterator[Sandbox]:
    box = _sandbox(tmp_path, docker, fake_api)
    yield box
    box.down()


def test_state_round_trip_and_a_corrupt_file_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    State(api_port=1, api_pid=2, registry_port=3, image="registry:2", network="host").save(path)
    assert State.load(path) == State(1, 2, 3, "registry:2", "host")
    path.write_text("{not json")
    assert State.load(path) == State()
    assert State.load(tmp_path / "missing.json") == State()


def test_the_token_is_made_once_and_only_the_user_reads_it(tmp_path: Path) -> None:
    path = tmp_path / "token"
    token = _secret(path, _password)
    assert len(token) >= 32 and _secret(path, _password) == token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_the_htpasswd_line_holds_the_token_at_the_least_bcrypt_cost() -> None:
    import bcrypt

    user, hashed = _htpasswd("AWS", "a-token").rstrip("\n").split(":", 1)
    assert user == "AWS" and bcrypt.checkpw(b"a-token", hashed.encode())
    assert not bcrypt.checkpw(b"another", hashed.encode())
    # The registry pays this cost on every request of a push: 2^4 rounds, not 2^10.
    assert hashed.startswith("$2b$04$")


def test_registry_options_publish_on_loopback_or_bind_it_with_host_networking() -> None:
    bridge = _registry_options("vol", Path("/auth"), "bridge", 5055)
    assert bridge[-2:] == ["-p", "127.0.0.1:5055:5000"] and "--network" not in bridge
    host = _registry_options("vol", Path("/auth"), "host", 5055)
    assert host[-4:] == ["--network", "host", "-e", "REGISTRY_HTTP_ADDR=127.0.0.1:5055"]
    for options in (bridge, host):
        assert "REGISTRY_AUTH=htpasswd" in options and "vol:/var/lib/registry" in options
        assert "REGISTRY_STORAGE_DELETE_ENABLED=true" in options


def test_up_starts_both_parts_and_a_second_up_starts_nothing(
    sandbox: Sandbox, docker: FakeDocker
) -> None:
    target = sandbox.up()
    assert target.api.startswith("http://127.0.0.1:") and target.registry.startswith("127.0.0.1:")
    assert sandbox.status().running
    htpasswd = (sandbox.directory / "auth" / "htpasswd").read_text()
    assert (
        htpasswd.startswith("AWS:$2")
        and _secret(sandbox.directory / "token", _password) not in htpasswd
    )
    assert sandbox.up() == target
    assert docker.starts() == 1
    lines = "\n".join(sandbox.status().lines())
    assert "sandbox: running" in lines and "network host" in lines and sandbox.volume in lines


def test_a_killed_api_process_is_healed_and_the_registry_left_alone(
    sandbox: Sandbox, docker: FakeDocker
) -> None:
    first = sandbox.up()
    pid = State.load(sandbox.directory / "state.json").api_pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    _reap(pid)
    assert not sandbox.status().running
    again = sandbox.up()
    assert State.load(sandbox.directory / "state.json").api_pid != pid
    assert again.registry == first.registry and docker.starts() == 1


def test_a_removed_registry_container_is_started_again(
    sandbox: Sandbox, docker: FakeDocker
) -> None:
    sandbox.up()
    docker(["docker", "rm", "-f", sandbox.container])  # someone removed it
    assert not sandbox.status().registry_alive
    target = sandbox.up()
    assert docker.starts() == 2 and sandbox.status().running
    assert target.registry.startswith("127.0.0.1:")


def test_a_taken_port_makes_the_registry_take_another(sandbox: Sandbox, docker: FakeDocker) -> None:
    docker.taken_once = True
    sandbox.up()
    assert docker.starts() == 2 and sandbox.status().running


def test_a_bridge_daemon_publishes_the_registry_port(tmp_path: Path, fake_api: str) -> None:
    fake = FakeDocker(bridge=True)
    box = _sandbox(tmp_path, fake, fake_api)
    try:
        target = box.up()
        run = next(call for call in fake.calls if call[1] == "run")
        assert f"{target.registry}:5000" in run and "--network" not in run
    finally:
        box.down()


def test_two_ups_at_once_start_one_sandbox(tmp_path: Path, fake_api: str) -> None:
    fake = FakeDocker()
    boxes = [_sandbox(tmp_path, fake, fake_api) for _ in range(2)]
    targets: list[object] = []
    threads = [threading.Thread(target=lambda b=box: targets.append(b.up())) for box in boxes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    try:
        assert len(targets) == 2 and targets[0] == targets[1]
        assert fake.starts() == 1
    finally:
        boxes[0].down()


def test_down_removes_everything_and_is_idempotent(sandbox: Sandbox, docker: FakeDocker) -> None:
    target = sandbox.up()
    pid = State.load(sandbox.directory / "state.json").api_pid
    # A release's login lock and pull lock, under the sandbox's local state (flock files).
    locks = sandbox.directory / "local" / "locks"
    locks.mkdir(parents=True)
    (locks / "login_127.0.0.1-0123456789abcdef.lock").touch()
    removed = sandbox.down()
    assert f"container {sandbox.container}" in removed and f"volume {sandbox.volume}" in removed
    assert any(line.startswith("ECR API process") for line in removed)
    assert pid is not None and not _running(pid)
    assert ["docker", "logout", target.registry] in docker.calls
    assert [p.suffix for p in sandbox.directory.iterdir()] == [".lock"]
    assert not sandbox.status().running
    assert sandbox.down() == []


def test_a_missing_registry_image_that_cannot_be_pulled_says_what_to_do(
    tmp_path: Path, fake_api: str
) -> None:
    box = _sandbox(tmp_path, FakeDocker(image=False), fake_api)
    with pytest.raises(DockerError) as caught:
        box.up()
    message = caught.value.message
    assert "registry image registry:2 is not on this machine and could not be pulled" in message
    assert "SANDBOX_REGISTRY_IMAGE" in message and "\n" not in message
    box.down()


def test_a_pid_reused_by_another_process_is_never_killed(sandbox: Sandbox) -> None:
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        sandbox.directory.mkdir(parents=True)
        State(api_port=1, api_pid=stranger.pid).save(sandbox.directory / "state.json")
        sandbox.down()
        assert stranger.poll() is None  # not ours: left alone
    finally:
        stranger.kill()
        stranger.wait()


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").exists() and " Z " not in Path(f"/proc/{pid}/stat").read_text()


def _reap(pid: int) -> None:
    deadline = time.monotonic() + 5
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def test_a_folder_that_cannot_be_used_is_one_line(tmp_path: Path, fake_api: str) -> None:
    from ecr_release.errors import SettingsError

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    box = Sandbox(blocker / "sandbox", Docker(FakeDocker()), python=fake_api)
    with pytest.raises(SettingsError, match="set XDG_CACHE_HOME") as caught:
        box.up()
    assert "\n" not in caught.value.message
