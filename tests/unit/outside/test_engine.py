"""The Docker Engine API client, against a fake engine on a Unix socket (the real engine:
tests/e2e/test_smoke.py), and which socket it picks, as the docker CLI would."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import shutil
import socket
import socketserver
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

import ecr_release.outside.docker as docker_module
import ecr_release.outside.engine as engine_module
from ecr_release.errors import DockerError
from ecr_release.outside.docker import TIMED_OUT, Docker, Result
from ecr_release.outside.engine import (
    HOSTS,
    OUTPUT_BYTES,
    EngineDeclined,
    LocalEngine,
    local_engine,
)

ID = "c0ffee" * 10 + "abcd"


class FakeRunner:
    """The docker CLI: records each argument list, answers exit 0."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, args: Sequence[str], **limits: object) -> Result:
        self.calls.append(list(args))
        return Result(0, "")


Answer = Callable[[http.server.BaseHTTPRequestHandler], None]


def frame(stream: int, data: bytes) -> bytes:
    """One frame of docker's multiplexed stream."""
    return bytes([stream, 0, 0, 0]) + len(data).to_bytes(4, "big") + data


def reply(status: int, body: object = b"") -> Answer:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()

    def answer(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    return answer


def stream(data: bytes) -> Answer:
    """A hijacked stream, as the engine answers an exec's start: no length, then closed."""

    def answer(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/vnd.docker.raw-stream")
        handler.end_headers()
        handler.wfile.write(data)

    return answer


class FakeEngine:
    """Answers each (method, path) from ``answers`` (a list is used up in order), and
    records every request: (method, path with its query, JSON body or None)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.scratch = Path(path).parent / "scratch"  # where hosts files are written
        self.answers: dict[tuple[str, str], Answer | list[Answer]] = {}
        self.requests: list[tuple[str, str, object]] = []
        self.release = threading.Event()  # lets a hanging answer go at the end
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                fake.answer(self)

            do_POST = do_PUT = do_DELETE = do_GET

        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True

            def handle_error(self, request: object, client_address: object) -> None:
                pass  # a client that gave up (what the limit tests do) is not news

            def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
                sock, _ = super().get_request()
                return sock, ("local", 0)  # http.server logs client_address[0]

        self.server = Server(path, Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True).start()

    def answer(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        size = int(handler.headers.get("Content-Length") or 0)
        data = handler.rfile.read(size) if size else b""
        json_body = handler.headers.get("Content-Type") == "application/json"
        body = json.loads(data) if data and json_body else (data or None)
        self.requests.append((handler.command, handler.path, body))
        key = (handler.command, handler.path.split("?", 1)[0])
        found = self.answers.get(key)
        if isinstance(found, list):
            found = found.pop(0)
        (found or reply(404, {"message": f"no route {key}"}))(handler)

    def engine(self) -> LocalEngine:
        return LocalEngine(self.path, self.scratch)

    def hang(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        self.release.wait(10)

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory whose socket paths fit in AF_UNIX's 108 bytes (tmp_path's may not)."""
    path = Path(tempfile.mkdtemp(prefix="eng-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def fake(short_dir: Path) -> Iterator[FakeEngine]:
    engine = FakeEngine(str(short_dir / "docker.sock"))
    yield engine
    engine.close()


def started(fake: FakeEngine) -> None:
    fake.answers[("POST", "/containers/create")] = reply(201, {"Id": ID, "Warnings": []})
    fake.answers[("POST", "/containers/box/start")] = reply(204)


def exec_answers(fake: FakeEngine, output: bytes, *states: dict[str, object]) -> None:
    fake.answers[("POST", "/containers/box/exec")] = reply(201, {"Id": "e1"})
    fake.answers[("POST", "/exec/e1/start")] = stream(output)
    fake.answers[("GET", "/exec/e1/json")] = [reply(200, state) for state in states]


# -- starting a container ----------------------------------------------------------------


def test_a_container_is_created_with_networking_disabled_given_hosts_and_started(
    fake: FakeEngine,
) -> None:
    mounted: list[str] = []

    def create(handler: http.server.BaseHTTPRequestHandler) -> None:
        reply(201, {"Id": ID, "Warnings": []})(handler)
        source = fake.requests[-1][2]["HostConfig"]["Mounts"][0]["Source"]  # type: ignore[index]
        mounted.append(Path(source).read_text())  # as the daemon reads it, at create
        mounted.append(oct(Path(source).stat().st_mode & 0o777))  # any user may read it

    started(fake)
    fake.answers[("POST", "/containers/create")] = create
    result = fake.engine().run_detached(
        "box", "widgets:v1", labels={"io.ecr-release.smoke": "1"}, timeout=5
    )
    assert result == Result(0, f"{ID}\n")
    (method, path, config), start = fake.requests
    assert (method, path) == ("POST", "/containers/create?name=box")
    assert isinstance(config, dict)
    # Docker writes no /etc/hosts without a network sandbox: `none`'s is mounted instead.
    (mount,) = config["HostConfig"].pop("Mounts")
    assert config == {
        "Image": "widgets:v1",
        "Labels": {"io.ecr-release.smoke": "1"},
        "NetworkDisabled": True,  # no network hook: the point of the API
        "HostConfig": {"NetworkMode": "none"},
    }
    assert (mount["Type"], mount["Target"]) == ("bind", "/etc/hosts")
    assert Path(mount["Source"]).parent == fake.scratch
    assert mounted == [HOSTS, "0o644"]
    assert HOSTS.startswith("127.0.0.1\tlocalhost\n::1\tlocalhost ")
    assert list(fake.scratch.iterdir()) == []  # unlinked once mounted
    assert start == ("POST", "/containers/box/start", None)


def test_no_hosts_file_no_api(fake: FakeEngine) -> None:
    fake.scratch.write_text("a file where the folder should be")
    with pytest.raises(EngineDeclined, match="no hosts file under"):
        fake.engine().run_detached("box", "widgets:v1", labels={}, timeout=5)
    assert fake.requests == []


def test_a_hosts_file_that_cannot_be_finished_is_not_left(
    fake: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(path: str, mode: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "chmod", refuse)
    with pytest.raises(EngineDeclined, match="Operation not permitted"):
        fake.engine().run_detached("box", "widgets:v1", labels={}, timeout=5)
    assert list(fake.scratch.iterdir()) == []


def test_an_image_the_engine_will_not_create_is_left_to_the_cli(fake: FakeEngine) -> None:
    fake.answers[("POST", "/containers/create")] = reply(
        404, {"message": "No such image: widgets:v1"}
    )
    with pytest.raises(EngineDeclined, match="No such image: widgets:v1"):
        fake.engine().run_detached("box", "widgets:v1", labels={}, timeout=5)
    assert len(fake.requests) == 1  # nothing was made: nothing to remove


def test_a_container_that_will_not_start_is_removed_and_left_to_the_cli(
    fake: FakeEngine,
) -> None:
    why = 'OCI runtime create failed: exec: "/app": stat /app: no such file or directory'
    started(fake)
    fake.answers[("POST", "/containers/box/start")] = reply(400, {"message": why})
    fake.answers[("DELETE", "/containers/box")] = reply(204)
    with pytest.raises(EngineDeclined) as info:
        fake.engine().run_detached("box", "widgets:v1", labels={}, timeout=5)
    assert str(info.value) == f"the daemon refused it ({why}); it is removed"
    assert fake.requests[-1] == ("DELETE", "/containers/box?force=1", None)
    assert list(fake.scratch.iterdir()) == []


@pytest.mark.parametrize("removal", ["refused", "no-answer"])
def test_a_container_the_daemon_will_neither_start_nor_remove_is_not_left_to_the_cli(
    fake: FakeEngine, removal: str
) -> None:
    started(fake)
    fake.answers[("POST", "/containers/box/start")] = reply(400, {"message": "no /app"})
    fake.answers[("DELETE", "/containers/box")] = (
        reply(500, {"message": "device or resource busy"}) if removal == "refused" else fake.hang
    )
    runner = FakeRunner()
    docker = Docker(runner, engine=fake.engine())
    start = time.monotonic()
    with pytest.raises(DockerError) as info:
        docker.containers.run_detached(
            "box", "widgets:v1", labels={}
        ) if removal == "refused" else fake.engine().run_detached(
            "box", "widgets:v1", labels={}, timeout=0.5
        )
    assert time.monotonic() - start < 3
    said = "device or resource busy" if removal == "refused" else "no answer in time"
    assert str(info.value) == (
        f"the Docker daemon at unix://{fake.path} refused to start container box (no /app) "
        f"and to remove it ({said}); check Docker, then run it again"
    )
    assert runner.calls == []  # no `docker run --name box` beside the one left there


def test_a_refusal_without_json_says_its_text(fake: FakeEngine) -> None:
    fake.answers[("POST", "/containers/create")] = reply(500, b"engine on fire")
    with pytest.raises(EngineDeclined, match="create: engine on fire"):
        fake.engine().run_detached("box", "widgets:v1", labels={}, timeout=5)


# -- running a command in it ---------------------------------------------------------------


def test_an_exec_gives_its_exit_code_and_both_streams(fake: FakeEngine) -> None:
    output = frame(1, b"out\n") + frame(2, b"err: not ready\n")
    exec_answers(fake, output, {"Running": False, "ExitCode": 3})
    result = fake.engine().exec("box", ["python3", "-c", "x"], timeout=5)
    assert result == Result(3, "out\nerr: not ready\n")
    assert fake.requests[0] == (
        "POST",
        "/containers/box/exec",
        {"Cmd": ["python3", "-c", "x"], "AttachStdout": True, "AttachStderr": True},
    )
    assert fake.requests[1] == ("POST", "/exec/e1/start", {"Detach": False, "Tty": False})


def test_an_exec_not_yet_reaped_is_asked_again_for_its_exit_code(fake: FakeEngine) -> None:
    exec_answers(
        fake,
        b"",
        {"Running": True, "ExitCode": 0},
        {"Running": False, "ExitCode": None},
        {"Running": False, "ExitCode": 0},
    )
    assert fake.engine().exec("box", ["true"], timeout=5) == Result(0, "")
    assert [request[1] for request in fake.requests].count("/exec/e1/json") == 3


def test_an_exec_in_a_stopped_container_is_refused_as_docker_exec_is(fake: FakeEngine) -> None:
    fake.answers[("POST", "/containers/box/exec")] = reply(
        409, {"message": "Container box is not running"}
    )
    result = fake.engine().exec("box", ["true"], timeout=5)
    assert result == Result(1, "Error response from daemon: Container box is not running\n")


def test_an_exec_whose_container_went_away_meanwhile_is_refused(fake: FakeEngine) -> None:
    exec_answers(fake, frame(1, b"partial"))
    fake.answers[("GET", "/exec/e1/json")] = reply(404, {"message": "No such exec instance: e1"})
    result = fake.engine().exec("box", ["true"], timeout=5)
    assert result == Result(1, "partialError response from daemon: No such exec instance: e1\n")


def test_a_long_output_keeps_its_end_without_the_frames(fake: FakeEngine) -> None:
    lines = b"".join(frame(1 + i % 2, f"line {i}\n".encode()) for i in range(30000))
    exec_answers(fake, lines, {"Running": False, "ExitCode": 1})
    result = fake.engine().exec("box", ["true"], timeout=5)
    assert len(result.output.encode()) <= OUTPUT_BYTES
    assert result.output.endswith("line 29998\nline 29999\n")
    assert "\x00" not in result.output and "\x01" not in result.output


def test_a_frame_cut_short_keeps_its_bytes_not_its_header(fake: FakeEngine) -> None:
    exec_answers(fake, frame(1, b"ok\n") + frame(2, b"cut off")[:11], {"ExitCode": 1})
    assert fake.engine().exec("box", ["true"], timeout=5).output == "ok\ncut"


def test_frames_split_anywhere_read_the_same(fake: FakeEngine) -> None:
    demux = engine_module._Demux()
    data = frame(1, b"out\n") + frame(2, b"") + frame(2, b"err\n") * 3
    for i in range(len(data)):
        demux.feed(data[i : i + 1])
    assert demux.value() == b"out\nerr\nerr\nerr\n"


def test_a_stream_that_is_not_framed_is_taken_as_text(fake: FakeEngine) -> None:
    exec_answers(fake, b"plain text\n", {"Running": False, "ExitCode": 0})
    assert fake.engine().exec("box", ["true"], timeout=5).output == "plain text\n"


# -- limits and a daemon that is not there ----------------------------------------------------


def test_a_command_that_does_not_return_is_stopped_at_its_limit(fake: FakeEngine) -> None:
    fake.answers[("POST", "/containers/box/exec")] = reply(201, {"Id": "e1"})
    fake.answers[("POST", "/exec/e1/start")] = fake.hang
    start = time.monotonic()
    result = fake.engine().exec("box", ["sleep", "600"], timeout=0.5)
    assert time.monotonic() - start < 3
    assert result.returncode == TIMED_OUT
    assert result.stopped == "gave no answer within 0.5 s"
    assert result.limit == "timeout"


def test_the_limit_covers_the_call_not_each_request(fake: FakeEngine) -> None:
    def slow_create(handler: http.server.BaseHTTPRequestHandler) -> None:
        time.sleep(1.0)
        reply(201, {"Id": ID})(handler)

    fake.answers[("POST", "/containers/create")] = slow_create
    fake.answers[("POST", "/containers/box/start")] = fake.hang
    start = time.monotonic()
    result = fake.engine().run_detached("box", "widgets:v1", labels={}, timeout=1.2)
    assert result.timed_out
    assert time.monotonic() - start < 1.9  # each request on its own limit: 2.2 s


def test_a_command_that_keeps_printing_is_still_stopped_at_its_limit(fake: FakeEngine) -> None:
    def chatty(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.end_headers()
        until = time.monotonic() + 5  # a broken limit fails the test, not hangs it
        while not fake.release.is_set() and time.monotonic() < until:
            try:
                handler.wfile.write(frame(1, b"still going\n"))
                handler.wfile.flush()
            except OSError:  # the client gave up: what the test waits for
                return
            time.sleep(0.05)

    fake.answers[("POST", "/containers/box/exec")] = reply(201, {"Id": "e1"})
    fake.answers[("POST", "/exec/e1/start")] = chatty
    start = time.monotonic()
    result = fake.engine().exec("box", ["yes"], timeout=0.5)
    assert time.monotonic() - start < 2
    assert result.returncode == TIMED_OUT
    assert result.output.startswith("still going\n")  # what it printed is kept
    assert result.output.endswith("the Docker Engine API gave no answer within 0.5 s\n")


def test_an_answer_that_breaks_off_is_one_line_naming_the_daemon(fake: FakeEngine) -> None:
    def cut(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.wfile.write(b'HTTP/1.1 201 Created\r\nContent-Length: 100\r\n\r\n{"Id"')
        handler.close_connection = True

    fake.answers[("POST", "/containers/create")] = cut
    with pytest.raises(DockerError) as info:
        fake.engine().run_detached("box", "widgets:v1", labels={}, timeout=5)
    message = str(info.value)
    assert message.startswith(
        f"the Docker daemon at unix://{fake.path} stopped answering (POST /containers/create: "
    )
    assert message.endswith("check Docker, then run it again") and "\n" not in message


def test_a_daemon_that_goes_away_after_the_first_request_is_not_left_to_the_cli(
    fake: FakeEngine,
) -> None:
    def created_then_gone(handler: http.server.BaseHTTPRequestHandler) -> None:
        Path(fake.path).unlink()  # no new connection from now on
        reply(201, {"Id": ID})(handler)

    fake.answers[("POST", "/containers/create")] = created_then_gone
    with pytest.raises(DockerError, match=r"stopped answering \(POST /containers/box/start: "):
        fake.engine().run_detached("box", "widgets:v1", labels={}, timeout=5)


def test_a_socket_that_takes_no_connection_is_unreachable(short_dir: Path) -> None:
    path = short_dir / "dead.sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))  # a socket file nobody listens on
    sock.close()
    with pytest.raises(EngineDeclined, match=r"dead\.sock"):
        LocalEngine(str(path), short_dir).run_detached("box", "widgets:v1", labels={}, timeout=5)
    with pytest.raises(EngineDeclined):
        LocalEngine(str(short_dir / "gone.sock"), short_dir).exec("box", ["true"], timeout=5)


# -- the smoke test's container commands with an engine ---------------------------------------


def test_the_containers_go_through_the_engine_when_there_is_one(fake: FakeEngine) -> None:
    started(fake)
    exec_answers(fake, b"", {"Running": False, "ExitCode": 0})
    runner = FakeRunner()
    docker = Docker(runner, engine=fake.engine())
    assert docker.containers.run_detached("box", "a:v1", labels={"k": "1"}).returncode == 0
    assert docker.containers.exec("box", ["true"], timeout=5).returncode == 0
    docker.containers.remove_container("box")
    # Only what the API is not needed for goes through the CLI.
    assert runner.calls == [["docker", "rm", "-f", "box"]]


def test_an_engine_that_does_not_answer_is_one_line_naming_the_command(
    fake: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.answers[("POST", "/containers/create")] = fake.hang
    monkeypatch.setattr(docker_module, "LOGIN_SECONDS", 0.3)
    docker = Docker(FakeRunner(), engine=fake.engine(), environ={})
    with pytest.raises(DockerError) as info:
        docker.containers.run_detached("box", "a:v1", labels={})
    assert str(info.value) == (
        "`docker run` gave no answer within 0.3 s: the Docker daemon at "
        "unix:///var/run/docker.sock (the default socket) is hung or unreachable; restart "
        "Docker (or fix DOCKER_HOST) and try again"
    )


def test_a_declined_container_is_left_to_the_cli_from_then_on(fake: FakeEngine) -> None:
    fake.answers[("POST", "/containers/create")] = reply(400, {"message": "No command specified"})
    runner = FakeRunner()
    docker = Docker(runner, engine=fake.engine())
    docker.containers.run_detached("box", "a:v1", labels={"k": "1"})
    docker.containers.exec("box", ["true"], timeout=5)
    assert docker.containers.engine is None
    assert [args[1] for args in runner.calls] == ["run", "exec"]
    assert len(fake.requests) == 1


def test_an_unreachable_engine_leaves_the_work_to_the_cli_from_then_on(short_dir: Path) -> None:
    runner = FakeRunner()
    docker = Docker(runner, engine=LocalEngine(str(short_dir / "gone.sock"), short_dir))
    docker.containers.run_detached("box", "a:v1", labels={"k": "1"})
    docker.containers.exec("box", ["true"], timeout=5)
    assert docker.containers.engine is None
    assert [args[1] for args in runner.calls] == ["run", "exec"]
    assert runner.calls[0][:5] == ["docker", "run", "-d", "--network", "none"]


# -- which socket: the docker CLI's own order ----------------------------------------------------


def a_socket(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.close()
    return str(path)


def a_context(config: Path, name: str, host: str) -> None:
    meta = config / "contexts" / "meta" / hashlib.sha256(name.encode()).hexdigest()
    meta.mkdir(parents=True)
    endpoint = {"docker": {"Host": host, "SkipTLSVerify": False}}
    (meta / "meta.json").write_text(json.dumps({"Name": name, "Endpoints": endpoint}))


@pytest.fixture
def default_socket(short_dir: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    path = a_socket(short_dir / "default.sock")
    monkeypatch.setattr(engine_module, "DEFAULT_SOCKET", path)
    monkeypatch.setattr(engine_module, "SELINUX_ENFORCE", short_dir / "no-selinux")
    return path


@pytest.mark.parametrize(("enforce", "through_api"), [("1\n", False), ("0\n", True)])
def test_where_selinux_enforces_the_cli_runs_it(
    default_socket: str,
    short_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    enforce: str,
    through_api: bool,
) -> None:
    (short_dir / "enforce").write_text(enforce)
    monkeypatch.setattr(engine_module, "SELINUX_ENFORCE", short_dir / "enforce")
    found = engine_path({"DOCKER_CONFIG": str(short_dir / "none")})
    assert found == (default_socket if through_api else None)


def test_an_error_without_words_is_named_by_its_kind() -> None:
    said = str(
        engine_module._Call("/run/d.sock", 1)._gone("POST", "/x?y=1", ConnectionResetError())
    )
    assert "(POST /x: ConnectionResetError)" in said


def engine_path(environ: dict[str, str]) -> str | None:
    found = local_engine(environ, Path("/scratch"))
    return found.path if found is not None else None


def test_without_settings_it_is_the_default_socket(default_socket: str, short_dir: Path) -> None:
    assert engine_path({"DOCKER_CONFIG": str(short_dir / "none")}) == default_socket


def test_docker_host_comes_first(default_socket: str, short_dir: Path) -> None:
    mine = a_socket(short_dir / "rootless.sock")
    config = short_dir / "config"
    a_context(config, "desktop", f"unix://{default_socket}")
    environ = {"DOCKER_HOST": f"unix://{mine}", "DOCKER_CONTEXT": "desktop"}
    assert engine_path({**environ, "DOCKER_CONFIG": str(config)}) == mine


@pytest.mark.parametrize(
    "host",
    ["tcp://10.0.0.5:2376", "ssh://me@build-box", "npipe:////./pipe/docker_engine", "unix://", ""],
)
def test_a_daemon_not_on_a_local_socket_is_left_to_the_cli(default_socket: str, host: str) -> None:
    assert local_engine({"DOCKER_HOST": host}, Path("/scratch")) is None


def test_a_path_that_is_not_a_socket_is_left_to_the_cli(short_dir: Path) -> None:
    (short_dir / "file").write_text("")
    assert engine_path({"DOCKER_HOST": f"unix://{short_dir / 'file'}"}) is None
    assert engine_path({"DOCKER_HOST": f"unix://{short_dir / 'missing'}"}) is None


@pytest.mark.parametrize("how", ["DOCKER_CONTEXT", "currentContext"])
def test_a_named_context_is_read_from_the_clis_store(
    default_socket: str, short_dir: Path, how: str
) -> None:
    desktop = a_socket(short_dir / "desktop.sock")
    config = short_dir / "config"
    a_context(config, "desktop-linux", f"unix://{desktop}")
    environ = {"DOCKER_CONFIG": str(config)}
    if how == "DOCKER_CONTEXT":
        environ["DOCKER_CONTEXT"] = "desktop-linux"
    else:
        (config / "config.json").write_text(json.dumps({"currentContext": "desktop-linux"}))
    assert engine_path(environ) == desktop


def test_the_default_context_by_name_is_the_default_socket(
    default_socket: str, short_dir: Path
) -> None:
    config = short_dir / "config"
    config.mkdir()
    (config / "config.json").write_text(json.dumps({"currentContext": "default"}))
    assert engine_path({"DOCKER_CONFIG": str(config)}) == default_socket


@pytest.mark.parametrize("context", ["remote", "unknown"])
def test_a_context_that_is_remote_or_unreadable_is_left_to_the_cli(
    default_socket: str, short_dir: Path, context: str
) -> None:
    config = short_dir / "config"
    a_context(config, "remote", "ssh://me@build-box")
    (config / "contexts" / "meta" / "junk").mkdir()
    environ = {"DOCKER_CONFIG": str(config), "DOCKER_CONTEXT": context}
    assert engine_path(environ) is None


def test_a_broken_config_json_is_the_default_socket_as_for_the_cli(
    default_socket: str, short_dir: Path
) -> None:
    config = short_dir / "config"
    config.mkdir()
    (config / "config.json").write_text("{not json")
    assert engine_path({"DOCKER_CONFIG": str(config)}) == default_socket
