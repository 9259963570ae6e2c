"""`python -m widget_server` as a real process: configuration, logs, and graceful shutdown."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import socket
import time
from pathlib import Path

import pytest

from widget_server.__main__ import port_from_env

from .conftest import Spawn, Trickle
from .gated_server import GATED_LINE, GATED_NAME

# A variant of the entry point that holds a request to create a widget named GATED_NAME
# in flight, logging GATED_LINE, until a line is sent to its stdin (see that file).
GATED_SERVER = Path(__file__).with_name("gated_server.py")

# The brief the service is built to: `docker stop` must see it exit 0 this fast.
STOP_BOUND_SECONDS = 2.0

needs_proc = pytest.mark.skipif(
    not Path("/proc/self/task").is_dir(), reason="watches the server's threads through /proc"
)

ACCESS_LINE = (
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO widget_server\.access "
    r"method=(?P<method>\S+) path=(?P<path>\S+) status=(?P<status>\d{3}) "
    r"duration_ms=(?P<ms>\d+\.\d\d) client=127\.0\.0\.1$"
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serves_then_exits_zero_promptly_on_signal(spawn: Spawn, signum: signal.Signals) -> None:
    server = spawn()  # without APP_VERSION
    assert server.api.request("GET", "/healthz").json() == {"status": "ok"}
    assert server.api.request("GET", "/version").json() == {"version": "dev"}

    sent = time.monotonic()
    server.proc.send_signal(signum)
    assert server.proc.wait(timeout=STOP_BOUND_SECONDS) == 0
    assert time.monotonic() - sent < STOP_BOUND_SECONDS
    output = server.output()
    assert any(f"received {signum.name}, shutting down" in line for line in output)
    assert output[-1].endswith("INFO widget_server stopped")


def test_port_and_app_version_come_from_the_environment(spawn: Spawn) -> None:
    port = _free_port()
    server = spawn(PORT=str(port), APP_VERSION="1.2.3-rc.1")
    assert server.port == port
    assert server.api.request("GET", "/version").json() == {"version": "1.2.3-rc.1"}
    assert any(line.endswith(f":{port} version=1.2.3-rc.1") for line in server.lines)


def test_one_access_line_per_request_on_stdout(spawn: Spawn) -> None:
    server = spawn()
    api = server.api
    # A handler logs its line after sending the response, so the next request's
    # line could come first on a busy machine: wait for each before the next.
    api.request("GET", "/healthz")
    server.wait_for_line("widget_server.access ")
    api.request("POST", "/widgets", {"name": "secret-name", "quantity": 1})
    server.wait_for_line("widget_server.access ")
    api.request("DELETE", "/widgets/7")
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=STOP_BOUND_SECONDS) == 0

    output = server.output()
    access = [line for line in output if "widget_server.access" in line]
    assert len(access) == 3
    matches = [re.match(ACCESS_LINE, line) for line in access]
    assert all(matches), access
    assert [(m["method"], m["path"], m["status"]) for m in matches if m] == [
        ("GET", "/healthz", "200"),
        ("POST", "/widgets", "201"),
        ("DELETE", "/widgets/7", "404"),
    ]
    assert not any("secret-name" in line for line in output)


@pytest.mark.parametrize(
    ("value", "expected"), [(None, 8080), ("", 8080), (" 9000 ", 9000), ("0", 0), ("65535", 65535)]
)
def test_port_from_env(monkeypatch: pytest.MonkeyPatch, value: str | None, expected: int) -> None:
    if value is None:
        monkeypatch.delenv("PORT", raising=False)
    else:
        monkeypatch.setenv("PORT", value)
    assert port_from_env() == expected


@pytest.mark.parametrize("value", ["http", "70000", "-1", "8080.0", "\u0668"])
def test_port_from_env_rejects_invalid_ports(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("PORT", value)
    with pytest.raises(ValueError, match="PORT must be an integer from 0 to 65535"):
        port_from_env()


def test_an_invalid_port_exits_2_with_a_reason(spawn: Spawn) -> None:
    server = spawn(wait=False, PORT="http")
    assert server.proc.wait(timeout=10) == 2
    assert any("PORT must be an integer from 0 to 65535" in line for line in server.output())


def test_a_port_in_use_exits_1(spawn: Spawn) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = spawn(wait=False, PORT=str(taken.getsockname()[1]))
        assert server.proc.wait(timeout=10) == 1
    assert any("cannot listen on 127.0.0.1:" in line for line in server.output())


@needs_proc
def test_sigterm_with_a_trickling_client_exits_promptly_and_finishes_the_request_in_flight(
    spawn: Spawn, trickle: Trickle
) -> None:
    server = spawn(script=GATED_SERVER)
    # Request headers one byte every 0.3 s, never finished: each read is quick,
    # so no per-read timeout ever fires for this connection.
    trickler = trickle(server.port, b"GET /healthz HTTP/1.0\r\nX-Slow: " + b"x" * 100)
    body = json.dumps({"name": GATED_NAME, "quantity": 4}).encode()
    head = (
        "POST /widgets HTTP/1.0\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as in_flight:
        in_flight.sendall(head + body)
        server.wait_for_line(GATED_LINE)  # fully received, and its handler is running
        trickler.wait_until_sent(3)

        sent = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        server.wait_for_line("received SIGTERM", timeout=STOP_BOUND_SECONDS)
        server.wait_until_refusing()
        # The server, still running for the request in flight, has cut the
        # trickler off without an answer: it had not sent a whole request.
        assert trickler.wait_closed() == b""
        assert server.proc.poll() is None

        server.send_line()  # let the request in flight finish
        reply = server.api.read_reply(in_flight, "POST")
        assert server.proc.wait(timeout=STOP_BOUND_SECONDS) == 0
        stopped_in = time.monotonic() - sent

    assert reply.status == 201
    assert reply.json() == {"id": 1, "name": GATED_NAME, "quantity": 4}
    assert stopped_in < STOP_BOUND_SECONDS
    output = server.output()
    assert any("method=POST path=/widgets status=201" in line for line in output)
    assert any("dropped the unfinished request from 127.0.0.1" in line for line in output)


@needs_proc
def test_a_request_still_sending_its_body_at_sigterm_is_dropped(spawn: Spawn) -> None:
    server = spawn()
    body = json.dumps({"name": "slow", "quantity": 4}).encode()
    head = (
        "POST /widgets HTTP/1.0\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(head + body[:5])
        # A second thread next to the main one: the request has been accepted
        # and its handler is now waiting for the rest of the body.
        server.wait_for_threads(2)

        sent = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=STOP_BOUND_SECONDS) == 0
        assert time.monotonic() - sent < STOP_BOUND_SECONDS
        # Closed without an answer: nothing was stored, so the client can
        # safely send the request again (to another instance).
        # (A reset is a close too: the server may not have read every byte sent.)
        with contextlib.suppress(ConnectionResetError):
            assert sock.recv(1) == b""

    output = server.output()
    assert not any("method=POST" in line for line in output)
    assert any("dropped the unfinished request from 127.0.0.1" in line for line in output)


@needs_proc
def test_an_idle_connection_does_not_hold_up_shutdown(spawn: Spawn) -> None:
    server = spawn()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as idle:
        server.wait_for_threads(2)  # accepted, and waiting for a request line

        sent = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=STOP_BOUND_SECONDS) == 0
        assert time.monotonic() - sent < STOP_BOUND_SECONDS
        # Closed cleanly by the server (FIN, not a reset), with nothing sent.
        assert idle.recv(1) == b""
