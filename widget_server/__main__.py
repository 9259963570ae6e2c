"""Entry point: ``python -m widget_server``.

Configuration comes from the environment:

``HOST``
    Address to listen on, default ``0.0.0.0``.
``PORT``
    Port to listen on, default ``8080`` (``0`` picks a free port, which the
    startup log line reports).
``APP_VERSION``
    What ``GET /version`` reports, default ``dev``.

Logs go to stdout, one line per request, and nothing is written to disk.
SIGTERM (what ``docker stop`` sends) and SIGINT stop the server gracefully:
it stops accepting, closes the connections that have not sent a whole
request (however slowly they are still sending one), lets requests in flight
finish, and exits 0.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from types import FrameType

from widget_server.app import make_server

# Inside a container the service must accept connections arriving from
# outside its own network namespace, so all interfaces is the right default;
# set HOST=127.0.0.1 to keep it local when run on a workstation.
DEFAULT_HOST = "0.0.0.0"  # noqa: S104
DEFAULT_PORT = 8080

# Between the server loop's checks for a shutdown request; it bounds how long
# a SIGTERM waits before the server stops accepting.
POLL_INTERVAL_SECONDS = 0.2

log = logging.getLogger("widget_server")


def configure_logging() -> None:
    """Log to stdout (the container runtime collects it), UTC timestamps."""
    formatter = logging.Formatter(
        "%(asctime)s.%(msecs)03dZ %(levelname)s %(name)s %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
    )
    formatter.converter = time.gmtime
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


def port_from_env() -> int:
    """PORT as an int; ValueError with a readable message if it is not a valid port."""
    raw = os.environ.get("PORT", "").strip() or str(DEFAULT_PORT)
    if not raw.isascii() or not raw.isdigit() or int(raw) > 65535:
        raise ValueError(f"PORT must be an integer from 0 to 65535, got {raw!r}")
    return int(raw)


def main() -> int:
    """Run the server until SIGTERM or SIGINT; return the process exit status."""
    configure_logging()
    host = os.environ.get("HOST", "").strip() or DEFAULT_HOST
    try:
        port = port_from_env()
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    try:
        server = make_server(host, port)
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", host, port, exc)
        return 1

    stopping = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        if stopping.is_set():
            return  # Already draining; a repeated signal must not start a second shutdown.
        stopping.set()
        log.info("received %s, shutting down", signal.Signals(signum).name)
        # shutdown() blocks until serve_forever() returns, and serve_forever()
        # runs on this very thread (signal handlers run on the main thread),
        # so calling it here directly would deadlock.
        threading.Thread(target=server.shutdown, name="shutdown", daemon=True).start()

    # Installed explicitly: as PID 1 in a container a process gets no default
    # action for SIGTERM, so without a handler `docker stop` would wait out
    # its timeout and SIGKILL us.
    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    log.info(
        "listening on http://%s:%d version=%s",
        host if ":" not in host else f"[{host}]",
        server.port,
        server.app_version,
    )
    try:
        server.serve_forever(poll_interval=POLL_INTERVAL_SECONDS)
    finally:
        # Closes the listening socket, then waits for in-flight requests.
        server.server_close()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
