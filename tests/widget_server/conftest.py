"""Fixtures for the widget_server tests: a server in a thread, and one in a subprocess.

Both are spoken to over real HTTP on 127.0.0.1 with ephemeral ports.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest

from widget_server import WidgetServer, make_server

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 10.0


@dataclass
class Reply:
    """A complete HTTP response."""

    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        assert self.headers.get("Content-Type") == "application/json"
        return json.loads(self.body)

    @property
    def error(self) -> str:
        payload = self.json()
        assert set(payload) == {"error"}, payload
        assert isinstance(payload["error"], str)
        return payload["error"]


def read_reply(sock: socket.socket, method: str = "GET") -> Reply:
    """Read one response from a socket on which a request has been written."""
    response = http.client.HTTPResponse(sock, method=method)
    response.begin()
    try:
        return Reply(response.status, response.headers, response.read())
    finally:
        response.close()


class Api:
    """A small HTTP client bound to one server port."""

    def __init__(self, port: int) -> None:
        self.port = port

    def request(
        self,
        method: str,
        path: str,
        json_body: object = None,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """Send a request; json_body is encoded with Content-Type application/json."""
        all_headers = dict(headers or {})
        if json_body is not None:
            body = json.dumps(json_body).encode()
            all_headers.setdefault("Content-Type", "application/json")
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request(method, path, body=body, headers=all_headers)
            response = conn.getresponse()
            return Reply(response.status, response.headers, response.read())
        finally:
            conn.close()

    def raw(self, data: bytes, method: str = "GET") -> Reply:
        """Send bytes exactly as given (for framing errors http.client would not produce)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(data)
            return read_reply(sock, method)

    @staticmethod
    def read_reply(sock: socket.socket, method: str = "GET") -> Reply:
        return read_reply(sock, method)

    def create(self, name: str = "bolt", quantity: int = 3) -> dict[str, Any]:
        reply = self.request("POST", "/widgets", {"name": name, "quantity": quantity})
        assert reply.status == 201, reply.body
        widget: dict[str, Any] = reply.json()
        return widget


@pytest.fixture
def server() -> Iterator[WidgetServer]:
    """A server on an ephemeral port, serving from a thread of this process."""
    srv = make_server("127.0.0.1", 0, version="test")
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.01})
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=5)


@pytest.fixture
def api(server: WidgetServer) -> Api:
    return Api(server.port)


class Trickler:
    """A client that sends `head` at once, then `data` one byte every `interval` seconds.

    It is the slow (or hostile) client that holds a connection open without
    ever completing its request: give it data that never completes one. It
    stops sending at the end of the data or once the server closes the
    connection.
    """

    def __init__(self, port: int, data: bytes, *, head: bytes = b"", interval: float = 0.3) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.connected = time.monotonic()
        self.sock.sendall(head)
        self.sent = 0
        self._data = data
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for byte in self._data:
            try:
                self.sock.sendall(bytes([byte]))
            except OSError:
                return  # The server has closed the connection.
            self.sent += 1
            if self._stop.wait(self._interval):
                return

    def wait_until_sent(self, count: int, timeout: float = 5.0) -> None:
        """Wait until `count` bytes are out: the request has started and is unfinished."""
        deadline = time.monotonic() + timeout
        while self.sent < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"only {self.sent} bytes sent in {timeout} s")
            time.sleep(0.01)

    def reply(self) -> Reply:
        """The server's response (the socket's 5 s timeout bounds the wait)."""
        return read_reply(self.sock)

    def wait_closed(self) -> bytes:
        """Wait until the server closes the connection; return whatever it sent first."""
        received = b""
        try:
            while chunk := self.sock.recv(4096):
                received += chunk
        except ConnectionResetError:
            pass  # Closed with some of our bytes unread: a reset rather than a FIN.
        except TimeoutError:
            raise AssertionError("the server kept the connection open") from None
        return received

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


class Trickle(Protocol):
    """The `trickle` fixture: start a Trickler against a port."""

    def __call__(self, port: int, data: bytes, *, head: bytes = b"") -> Trickler: ...


@pytest.fixture
def trickle() -> Iterator[Trickle]:
    """Start Tricklers; they stop and close at the end of the test."""
    started: list[Trickler] = []

    def _trickle(port: int, data: bytes, *, head: bytes = b"") -> Trickler:
        trickler = Trickler(port, data, head=head)
        started.append(trickler)
        return trickler

    yield _trickle
    for trickler in started:
        trickler.close()


class ServerProcess:
    """`python -m widget_server` in a subprocess, with its stdout collected line by line
    and its stdin a pipe (see send_line).

    With `script`, that file is run instead (a test's variant of the entry point),
    with the repository on its import path.
    """

    def __init__(self, env: Mapping[str, str], script: Path | None = None) -> None:
        full_env = {k: v for k, v in os.environ.items() if k not in {"APP_VERSION", "PORT", "HOST"}}
        full_env.update({"HOST": "127.0.0.1", "PORT": "0", "PYTHONUNBUFFERED": "1"})
        if script is None:
            args = ["-m", "widget_server"]
        else:
            args = [str(script)]
            inherited = full_env.get("PYTHONPATH")
            full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), inherited]))
        full_env.update(env)
        self.proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=REPO_ROOT,
            env=full_env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.port = 0
        self.api = Api(0)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for_line(self, pattern: str, timeout: float = STARTUP_TIMEOUT) -> re.Match[str]:
        """Wait for an output line matching pattern (new lines only, in order)."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no line matching {pattern!r} in {self.lines}")
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"output ended without {pattern!r}: {self.lines}")
            self.lines.append(line)
            match = regex.search(line)
            if match:
                return match

    def wait_until_started(self) -> None:
        match = self.wait_for_line(r"listening on http://127\.0\.0\.1:(\d+) ")
        self.port = int(match.group(1))
        self.api = Api(self.port)

    def output(self) -> list[str]:
        """Every line, once the process has exited."""
        self._reader.join(timeout=5)
        while not self._queue.empty():
            line = self._queue.get_nowait()
            if line is not None:
                self.lines.append(line)
        return self.lines

    def thread_count(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/task"))

    def wait_for_threads(self, count: int, timeout: float = 5.0) -> None:
        """Wait until the process runs `count` threads (main + handlers), i.e. has accepted."""
        deadline = time.monotonic() + timeout
        while self.thread_count() < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"the server never reached {count} threads")
            time.sleep(0.01)

    def wait_until_refusing(self, timeout: float = 2.0) -> None:
        """Wait until the listening socket is closed, i.e. the server stopped accepting."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            except (ConnectionRefusedError, ConnectionResetError):
                # Refused: no listener. Reset: the probe was still queued in the
                # backlog when the listener closed. Either way, no more accepts.
                return
            time.sleep(0.01)
        raise AssertionError("the server kept accepting connections")

    def send_line(self, line: str = "") -> None:
        """Write a line to the process's stdin (which the real server never reads)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=5)
        # The reader sees EOF once the process is gone; close the pipe only then.
        self._reader.join(timeout=5)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


class Spawn(Protocol):
    """The `spawn` fixture: start a server process (and wait for it, unless told not to)."""

    def __call__(
        self, wait: bool = True, *, script: Path | None = None, **env: str
    ) -> ServerProcess: ...


@pytest.fixture
def spawn() -> Iterator[Spawn]:
    """Start `python -m widget_server` subprocesses; any still running are killed at the end."""
    started: list[ServerProcess] = []

    def _spawn(wait: bool = True, *, script: Path | None = None, **env: str) -> ServerProcess:
        process = ServerProcess(env, script)
        started.append(process)
        if wait:
            process.wait_until_started()
        return process

    yield _spawn
    for process in started:
        with contextlib.suppress(Exception):
            process.stop()
