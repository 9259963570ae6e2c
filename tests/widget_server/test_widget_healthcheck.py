"""The container's health check script against servers that answer well, badly or not."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator

import pytest

from widget_server import WidgetServer, healthcheck

from .conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "widget_server" / "healthcheck.py"


@pytest.fixture
def answering() -> Iterator[Callable[[bytes], int]]:
    """A one-connection TCP server on 127.0.0.1 that reads the request, then sends the
    given bytes (or nothing, b"", and keeps the connection open); its port."""
    servers: list[tuple[socket.socket, threading.Event]] = []

    def start(reply: bytes) -> int:
        listener = socket.create_server(("127.0.0.1", 0))
        done = threading.Event()

        def serve() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(1024)
                if reply:
                    conn.sendall(reply)
                done.wait(5)

        threading.Thread(target=serve, daemon=True).start()
        servers.append((listener, done))
        return int(listener.getsockname()[1])

    yield start
    for listener, done in servers:
        done.set()
        listener.close()


def run(port: int | str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-I", str(SCRIPT)],
        env={"PORT": str(port)},
        capture_output=True,
        text=True,
        timeout=10,
    )


def test_a_200_from_the_service_is_healthy(server: WidgetServer) -> None:
    assert healthcheck.status(server.port) == 200
    done = run(server.port)
    assert (done.returncode, done.stderr) == (0, "")


def test_another_status_is_unhealthy(answering: Callable[[bytes], int]) -> None:
    port = answering(b"HTTP/1.0 503 Service Unavailable\r\n\r\n")
    done = run(port)
    assert done.returncode == 1
    assert done.stderr == "unhealthy: GET /healthz answered 503\n"


def test_an_answer_that_is_not_http_is_unhealthy(answering: Callable[[bytes], int]) -> None:
    port = answering(b"SSH-2.0-OpenSSH_9.2\r\n")
    done = run(port)
    assert done.returncode == 1
    assert done.stderr.startswith("unhealthy: not an HTTP answer: b'SSH-2.0")


def test_a_server_that_never_answers_is_unhealthy_within_the_timeout(
    answering: Callable[[bytes], int],
) -> None:
    port = answering(b"")  # accepts, reads, says nothing
    with pytest.raises(TimeoutError):
        healthcheck.status(port, timeout=0.3)


def test_a_port_that_is_not_a_number_is_unhealthy() -> None:
    done = run("http")
    assert done.returncode == 1
    assert done.stderr.startswith("unhealthy: invalid literal for int()")


@pytest.mark.parametrize("value", [None, "", "  "])
def test_an_unset_or_empty_port_is_8080_as_for_the_server(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    asked: list[int] = []

    def status(port: int) -> int:
        asked.append(port)
        return 200

    monkeypatch.setattr(healthcheck, "status", status)
    if value is None:
        monkeypatch.delenv("PORT", raising=False)
    else:
        monkeypatch.setenv("PORT", value)
    assert healthcheck.main() == 0
    assert asked == [8080]
