"""The container's health check: ``python3 -I /app/widget_server/healthcheck.py``.

It asks ``GET /healthz`` of the server on 127.0.0.1 (port ``PORT``, default 8080) and
exits 0 on a 200 answer within 2 s. Anything else exits 1 with one line on stderr: a port
still refused after 2 s (a server that is starting gets that long to open it), no answer
in time, another status, or something that is not HTTP.

It runs on its own, by its path: it imports no part of the service and only ``socket``
of the standard library. Docker runs it every 10 s, and the release's smoke test runs it
before the version is tagged: ``urllib.request`` alone takes about 60 ms to import, this
whole check about 35 ms.
"""

from __future__ import annotations

import os
import socket
import sys
import time

TIMEOUT_SECONDS = 2.0
RETRY_SECONDS = 0.02
_MAX_STATUS_LINE = 1024


def status(port: int, host: str = "127.0.0.1", timeout: float = TIMEOUT_SECONDS) -> int:
    """The HTTP status ``GET /healthz`` answers with, within ``timeout`` seconds in all.

    Raises ``OSError`` (refused, timed out) or ``ValueError`` (not an HTTP answer).
    """
    deadline = time.monotonic() + timeout
    with _connected(host, port, deadline) as conn:
        conn.sendall(b"GET /healthz HTTP/1.0\r\nHost: " + host.encode() + b"\r\n\r\n")
        line = _status_line(conn, deadline)
    parts = line.split()
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise ValueError(f"not an HTTP answer: {line[:60]!r}")
    return int(parts[1])


def _connected(host: str, port: int, deadline: float) -> socket.socket:
    """A connection to the server; a refused one is tried again every 20 ms until the
    deadline: a server that is starting (its port not open yet) gets the check's time."""
    while True:
        try:
            return socket.create_connection((host, port), max(deadline - time.monotonic(), 0.01))
        except ConnectionRefusedError:
            if time.monotonic() + RETRY_SECONDS >= deadline:
                raise
            time.sleep(RETRY_SECONDS)


def _status_line(conn: socket.socket, deadline: float) -> bytes:
    data = b""
    while b"\n" not in data and len(data) < _MAX_STATUS_LINE:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no status line in time")
        conn.settimeout(left)
        chunk = conn.recv(256)
        if not chunk:
            break
        data += chunk
    return data.split(b"\n", 1)[0].strip()


def main() -> int:
    port = os.environ.get("PORT", "").strip() or "8080"  # as the server reads it
    try:
        code = status(int(port))
    except ValueError as exc:  # a PORT that is not a number, or an answer that is not HTTP
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"unhealthy: 127.0.0.1:{port}: {exc}", file=sys.stderr)
        return 1
    if code != 200:
        print(f"unhealthy: GET /healthz answered {code}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
