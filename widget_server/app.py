"""The HTTP layer: routing, request validation, JSON responses and the access log.

`make_server(host, port)` returns a `WidgetServer`, a `ThreadingHTTPServer`
whose `server_close()` waits for requests in flight and drops the connections
that have not sent a whole request, so that a SIGTERM handler can stop it
gracefully and promptly (see `widget_server.__main__`).

Routes::

    GET  /healthz              200 {"status": "ok"}
    GET  /version              200 {"version": "..."}
    GET  /widgets              200 [widget, ...] ordered by id
    POST /widgets              201 widget, Location: /widgets/<id>
    GET  /widgets/<id>         200 widget
    PUT  /widgets/<id>         200 widget (full replacement)
    DELETE /widgets/<id>       204

Every error is a JSON object ``{"error": "..."}``.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable, Mapping
from functools import partial
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Final, NoReturn
from urllib.parse import urlsplit

from widget_server.store import WidgetStore

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

MAX_BODY_BYTES: Final = 1024 * 1024
NAME_MAX_CHARS: Final = 100
WIDGET_FIELDS: Final = ("name", "quantity")

# A client has this long from connecting to send its whole request (request
# line, headers and body), or it is answered 408. The limit is on the request
# as a whole, not on each read: a client trickling a byte a second never
# stalls a single read, and would otherwise hold a handler thread for as long
# as it liked. It also bounds each write of a response.
REQUEST_TIMEOUT_SECONDS: Final = 10.0

# How often a connection that is waiting for (more of) its request checks its
# deadline and whether the server is draining. Short enough that neither a
# 408 nor a shutdown is held up noticeably.
POLL_SECONDS: Final = 0.1

# Methods the server recognises; anything else is 501, while a recognised
# method on a route that does not support it is 405.
KNOWN_METHODS: Final = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"}
)

# The order the Allow header lists methods in, for stable, readable headers.
_ALLOW_ORDER: Final = ("GET", "HEAD", "POST", "PUT", "DELETE")
_WIDGET_PATH: Final = re.compile(r"/widgets/([0-9]{1,18})")
_CONTENT_LENGTH: Final = re.compile(r"[0-9]{1,18}")

log = logging.getLogger("widget_server")
access_log = logging.getLogger("widget_server.access")


class RequestError(Exception):
    """An error answer: its status, a message for the client, and extra headers."""

    def __init__(
        self, status: HTTPStatus, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers: Mapping[str, str] = headers or {}


def validate_widget(payload: object) -> tuple[str, int]:
    """Check a decoded request body and return (name, quantity), or raise a 400."""
    if not isinstance(payload, dict):
        raise _bad_request("the body must be a JSON object")
    unknown = sorted(str(key) for key in payload if key not in WIDGET_FIELDS)
    if unknown:
        shown = ", ".join(_shorten(key) for key in unknown)
        raise _bad_request(f"unknown field(s): {shown}; only name and quantity are allowed")
    missing = [field for field in WIDGET_FIELDS if field not in payload]
    if missing:
        raise _bad_request(f"missing required field(s): {', '.join(missing)}")

    name = payload["name"]
    if not isinstance(name, str):
        raise _bad_request("name must be a string")
    if not 1 <= len(name) <= NAME_MAX_CHARS:
        raise _bad_request(f"name must be 1 to {NAME_MAX_CHARS} characters long, got {len(name)}")

    quantity = payload["quantity"]
    # bool is a subclass of int in Python, but JSON true is not a quantity.
    if isinstance(quantity, bool) or not isinstance(quantity, int):
        raise _bad_request("quantity must be an integer")
    if quantity < 0:
        raise _bad_request(f"quantity must be >= 0, got {quantity}")
    return name, quantity


def _bad_request(message: str) -> RequestError:
    return RequestError(HTTPStatus.BAD_REQUEST, message)


def _shorten(text: str, limit: int = 40) -> str:
    # Error messages echo client input; keep a hostile 1 MiB key out of them.
    return text if len(text) <= limit else text[:limit] + "..."


def _reject_constant(name: str) -> NoReturn:
    # json.loads accepts NaN and Infinity by default; they are not JSON.
    raise ValueError(f"{name} is not valid JSON")


def _log_safe(text: str) -> str:
    # The method and path come from the client: escape control characters,
    # spaces and non-ASCII so that a request cannot forge or break log lines.
    return "".join(ch if " " < ch < "\x7f" else f"\\x{ord(ch):02x}" for ch in text)


class ServerDraining(ConnectionAbortedError):
    """The server began to drain while the client was still sending its request."""


class RequestReader(io.RawIOBase):
    """The client's socket as a raw stream that reads under a deadline for the whole request.

    It waits for data in slices of POLL_SECONDS, so that a read notices both
    the request's deadline (TimeoutError) and the server starting to drain
    (ServerDraining), however slowly the bytes trickle in. Between reads the
    socket keeps `write_timeout`, which is what writing a response uses.
    """

    def __init__(
        self,
        sock: socket.socket,
        deadline: float,
        draining: threading.Event,
        write_timeout: float | None,
    ) -> None:
        super().__init__()
        self._sock = sock
        self._deadline = deadline
        self._draining = draining
        self._write_timeout = write_timeout

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        while True:
            # Checked before every read, not only when one times out: a client
            # trickling bytes faster than POLL_SECONDS never times out a read.
            if self._draining.is_set():
                raise ServerDraining("the server is shutting down")
            remaining = self._deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("the request was not received in time")
            self._sock.settimeout(min(POLL_SECONDS, remaining))
            try:
                return self._sock.recv_into(buffer)
            except TimeoutError:
                continue
            finally:
                self._sock.settimeout(self._write_timeout)


class WidgetServer(ThreadingHTTPServer):
    """A threading HTTP server that finishes in-flight requests when it is closed."""

    # ThreadingHTTPServer makes its threads daemons, which server_close() does
    # not wait for and which die mid-response at exit. Non-daemon threads are
    # joined by server_close(), so in-flight requests complete.
    daemon_threads = False
    block_on_close = True
    # socketserver's default backlog of 5 drops connections under a burst.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], store: WidgetStore, version: str) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.store = store
        self.app_version = version
        # Set once the server stops accepting: connections that have not sent
        # a whole request then close instead of waiting for the rest of it.
        self.draining = threading.Event()
        super().__init__(address, WidgetHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, a DNS lookup that
        # can stall startup for seconds in a container without DNS; the name
        # is only used by CGI handlers, which this server does not have.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def server_close(self) -> None:
        """Stop listening, drop unfinished requests, and wait for those in flight."""
        self.draining.set()
        super().server_close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError):
            # The client went away mid-response: nothing to fix on our side.
            log.info("client %s disconnected: %s", client_address[0], exc)
            return
        log.exception("unhandled error serving %s", client_address[0])

    @property
    def port(self) -> int:
        """The bound port (useful when the server was asked for port 0)."""
        return int(self.server_address[1])


class WidgetHandler(BaseHTTPRequestHandler):
    """One instance per connection, and so per request (see protocol_version)."""

    # HTTP/1.0: one request per connection. Without keep-alive an idle
    # connection is never a finished request waiting for the next one, which
    # keeps graceful shutdown simple, and a response sent before the body was
    # read (411, 413, 415) cannot desynchronise a reused connection.
    protocol_version = "HTTP/1.0"
    server_version = "widget-server"
    # The deadline for the whole request, counted from the connection being
    # accepted (see RequestReader); also the socket timeout for each write.
    timeout = REQUEST_TIMEOUT_SECONDS

    server: WidgetServer
    _deadline: float
    _status: int | None
    _started: float

    # -- connection handling ------------------------------------------------

    def setup(self) -> None:
        super().setup()
        limit = self.timeout if self.timeout is not None else REQUEST_TIMEOUT_SECONDS
        self._deadline = time.monotonic() + limit
        # The stdlib's rfile applies the socket timeout to each read only;
        # this one applies the deadline and notices draining. The stdlib's is
        # closed so that it does not keep the socket from closing later.
        self.rfile.close()
        self.rfile = io.BufferedReader(
            RequestReader(self.connection, self._deadline, self.server.draining, self.timeout)
        )

    def handle_one_request(self) -> None:
        """Read, answer and log one request (replaces the stdlib version)."""
        if not self._wait_for_request():
            self.close_connection = True
            return
        self._status = None
        self._started = time.perf_counter()
        # parse_request() sets these; a request that times out or is
        # malformed before that still needs them to be answered and logged.
        self.command = self.path = self.requestline = ""
        self.request_version = "HTTP/1.0"
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if not self.raw_requestline:
                self.close_connection = True
                return
            if len(self.raw_requestline) > 65536:
                self.requestline = self.request_version = ""
                self.command = ""
                self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
                return
            if not self.parse_request():
                return  # parse_request has sent the error already.
            self._respond()
            self.wfile.flush()
        except ServerDraining:
            # Not a whole request yet, so nothing has been done for it and the
            # client may send it again (to whatever replaces this server).
            # Waiting for the rest would let a slow client hold up the
            # shutdown; it is closed without an answer, like a connection
            # that has sent nothing.
            self.close_connection = True
            log.info(
                "shutting down: dropped the unfinished request from %s", self.client_address[0]
            )
        except TimeoutError:
            self.close_connection = True
            if self._status is None:
                self._try_send_error(HTTPStatus.REQUEST_TIMEOUT, "timed out reading the request")
        finally:
            self._log_access()

    def _wait_for_request(self) -> bool:
        """Wait for the first byte of a request; False if there will be none to serve.

        A connection that has sent nothing is not a request in flight: once the
        server drains, or the request's deadline passes, it is closed without
        an answer rather than allowed to hold up shutdown.
        """
        sock = self.connection
        sock.settimeout(POLL_SECONDS)
        try:
            while True:
                try:
                    # b"" means the client closed without sending anything.
                    return bool(sock.recv(1, socket.MSG_PEEK))
                except TimeoutError:
                    if self.server.draining.is_set() or time.monotonic() >= self._deadline:
                        return False
                except OSError:
                    return False
        finally:
            sock.settimeout(self.timeout)

    def _respond(self) -> None:
        try:
            self._dispatch()
        except RequestError as exc:
            self._send_json(exc.status, {"error": exc.message}, exc.headers)
        except OSError:
            # Connection trouble, not a bug: handle_one_request answers a
            # timeout with 408 and drops a request cut short by a shutdown,
            # and a reset client cannot be answered at all.
            raise
        except Exception:
            log.exception("unhandled error in %s %s", self.command, _log_safe(self.path))
            if self._status is None:
                self._send_json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "internal error"})
            else:
                self.close_connection = True

    # -- routing ------------------------------------------------------------

    def _dispatch(self) -> None:
        if self.command not in KNOWN_METHODS:
            raise RequestError(
                HTTPStatus.NOT_IMPLEMENTED, f"method {_shorten(self.command)} is not supported"
            )
        path = urlsplit(self.path).path
        handlers: dict[str, Callable[[], None]]
        widget_match = _WIDGET_PATH.fullmatch(path)
        if path == "/healthz":
            handlers = {"GET": self._get_health}
        elif path == "/version":
            handlers = {"GET": self._get_version}
        elif path == "/widgets":
            handlers = {"GET": self._list_widgets, "POST": self._create_widget}
        elif widget_match is not None:
            widget_id = int(widget_match.group(1))
            handlers = {
                "GET": partial(self._get_widget, widget_id),
                "PUT": partial(self._replace_widget, widget_id),
                "DELETE": partial(self._delete_widget, widget_id),
            }
        else:
            raise RequestError(HTTPStatus.NOT_FOUND, f"no such resource: {_shorten(path)}")

        if "GET" in handlers:
            # HEAD is GET without a body; _send_json leaves the body out.
            handlers["HEAD"] = handlers["GET"]
        handler = handlers.get(self.command)
        if handler is None:
            allowed = ", ".join(method for method in _ALLOW_ORDER if method in handlers)
            raise RequestError(
                HTTPStatus.METHOD_NOT_ALLOWED,
                f"method {self.command} is not allowed on {_shorten(path)}; allowed: {allowed}",
                {"Allow": allowed},
            )
        handler()

    # -- endpoints ----------------------------------------------------------

    def _get_health(self) -> None:
        self._send_json(HTTPStatus.OK, {"status": "ok"})

    def _get_version(self) -> None:
        self._send_json(HTTPStatus.OK, {"version": self.server.app_version})

    def _list_widgets(self) -> None:
        widgets = self.server.store.list_widgets()
        self._send_json(HTTPStatus.OK, [widget.to_dict() for widget in widgets])

    def _create_widget(self) -> None:
        name, quantity = validate_widget(self._read_json_body())
        widget = self.server.store.add(name, quantity)
        self._send_json(HTTPStatus.CREATED, widget.to_dict(), {"Location": f"/widgets/{widget.id}"})

    def _get_widget(self, widget_id: int) -> None:
        widget = self.server.store.get(widget_id)
        if widget is None:
            raise _widget_not_found(widget_id)
        self._send_json(HTTPStatus.OK, widget.to_dict())

    def _replace_widget(self, widget_id: int) -> None:
        name, quantity = validate_widget(self._read_json_body())
        widget = self.server.store.replace(widget_id, name, quantity)
        if widget is None:
            raise _widget_not_found(widget_id)
        self._send_json(HTTPStatus.OK, widget.to_dict())

    def _delete_widget(self, widget_id: int) -> None:
        if not self.server.store.delete(widget_id):
            raise _widget_not_found(widget_id)
        self._send_json(HTTPStatus.NO_CONTENT, None)

    # -- request bodies -----------------------------------------------------

    def _read_json_body(self) -> object:
        """Check the framing headers, then read and decode a JSON body.

        Everything that can be refused from the headers alone is refused
        before a byte of the body is read, so an oversized upload costs the
        server nothing.
        """
        if self.headers.get("Transfer-Encoding") is not None:
            raise RequestError(
                HTTPStatus.LENGTH_REQUIRED,
                "Transfer-Encoding is not supported; send a Content-Length",
            )
        lengths = {value.strip() for value in self.headers.get_all("Content-Length") or []}
        if not lengths:
            raise RequestError(HTTPStatus.LENGTH_REQUIRED, "a Content-Length header is required")
        if len(lengths) > 1:
            raise _bad_request("conflicting Content-Length headers")
        raw_length = lengths.pop()
        if not raw_length.isascii() or not raw_length.isdigit():
            raise _bad_request("Content-Length must be a non-negative integer")
        if not _CONTENT_LENGTH.fullmatch(raw_length) or int(raw_length) > MAX_BODY_BYTES:
            raise RequestError(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"the body must be at most {MAX_BODY_BYTES} bytes",
            )
        length = int(raw_length)

        # get_content_type() lowercases and drops parameters; it also reports
        # text/plain when the header is absent, which is refused the same way.
        if self.headers.get_content_type() != "application/json":
            raise RequestError(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "the Content-Type must be application/json"
            )
        charset = self.headers.get_content_charset()
        if charset not in (None, "utf-8", "utf8"):
            raise RequestError(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "JSON bodies must be encoded as utf-8"
            )

        body = self.rfile.read(length)
        if len(body) < length:
            raise _bad_request("the body is shorter than its Content-Length")
        try:
            return json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
        except (UnicodeDecodeError, ValueError) as exc:
            raise _bad_request(f"the body is not valid JSON: {exc}") from None
        except RecursionError:
            raise _bad_request("the body is not valid JSON: nested too deeply") from None

    # -- responses ----------------------------------------------------------

    def _send_json(
        self, status: HTTPStatus, payload: object | None, headers: Mapping[str, str] | None = None
    ) -> None:
        body = b"" if payload is None else (json.dumps(payload) + "\n").encode("utf-8")
        if self.request_version == "HTTP/0.9":
            # The stdlib assumes HTTP/0.9 for a request line it cannot parse
            # (and for "GET /path"), and then writes neither status line nor
            # headers. No client alive expects that; answer with HTTP/1.0.
            self.request_version = "HTTP/1.0"
        self.send_response(status)
        if payload is not None:
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors raised by the stdlib parser (bad request line, huge headers) as JSON too."""
        status = HTTPStatus(code)
        self.close_connection = True
        self._send_json(status, {"error": message or status.phrase})

    def _try_send_error(self, status: HTTPStatus, message: str) -> None:
        try:
            self._send_json(status, {"error": message})
            self.wfile.flush()
        except OSError:
            pass  # The client is gone; the access log still records the attempt.

    # -- logging ------------------------------------------------------------

    def version_string(self) -> str:
        # Without this the Server header advertises the exact Python version.
        return self.server_version

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # Called by send_response: remember the status for the access line,
        # which is written once the response is complete (see _log_access).
        self._status = int(code)

    def log_message(self, format: str, *args: Any) -> None:
        log.warning("%s %s", self.client_address[0], _log_safe(format % args))

    def _log_access(self) -> None:
        if self._status is None:
            return
        duration_ms = (time.perf_counter() - self._started) * 1000
        # Only the request line's method and path: bodies may hold anything.
        access_log.info(
            "method=%s path=%s status=%d duration_ms=%.2f client=%s",
            _log_safe(self.command or "-"),
            _log_safe(urlsplit(self.path).path or "-"),
            self._status,
            duration_ms,
            self.client_address[0],
        )


def _widget_not_found(widget_id: int) -> RequestError:
    return RequestError(HTTPStatus.NOT_FOUND, f"widget {widget_id} not found")


def make_server(
    host: str,
    port: int,
    *,
    store: WidgetStore | None = None,
    version: str | None = None,
) -> WidgetServer:
    """Bind a server to host:port (0 picks a free port); call serve_forever() to run it.

    The version reported by /version defaults to the APP_VERSION environment
    variable, or "dev" when it is unset or empty.
    """
    if version is None:
        version = os.environ.get("APP_VERSION") or "dev"
    return WidgetServer((host, port), store if store is not None else WidgetStore(), version)


__all__ = ["MAX_BODY_BYTES", "WidgetHandler", "WidgetServer", "make_server", "validate_widget"]
