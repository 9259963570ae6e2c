"""The HTTP API over real HTTP, against a server running in a thread of the test process."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from widget_server import WidgetServer, make_server
from widget_server.app import MAX_BODY_BYTES, WidgetHandler

from .conftest import Api, Trickle

JSON = {"Content-Type": "application/json"}


# -- health and version ------------------------------------------------------


def test_healthz(api: Api) -> None:
    reply = api.request("GET", "/healthz")
    assert reply.status == 200
    assert reply.json() == {"status": "ok"}
    assert reply.headers["Cache-Control"] == "no-store"


def test_head_is_get_without_a_body(api: Api) -> None:
    get = api.request("GET", "/healthz")
    head = api.request("HEAD", "/healthz")
    assert head.status == 200
    assert head.body == b""
    assert head.headers["Content-Length"] == str(len(get.body))


def test_server_header_does_not_reveal_the_python_version(api: Api) -> None:
    reply = api.request("GET", "/healthz")
    assert reply.headers["Server"] == "widget-server"


def test_version_comes_from_the_server(api: Api) -> None:
    assert api.request("GET", "/version").json() == {"version": "test"}


@pytest.mark.parametrize(
    ("env_value", "expected"), [(None, "dev"), ("", "dev"), ("1.4.2", "1.4.2")]
)
def test_make_server_reads_app_version_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, env_value: str | None, expected: str
) -> None:
    if env_value is None:
        monkeypatch.delenv("APP_VERSION", raising=False)
    else:
        monkeypatch.setenv("APP_VERSION", env_value)
    srv = make_server("127.0.0.1", 0)
    try:
        assert srv.app_version == expected
    finally:
        srv.server_close()


# -- the widget resource ----------------------------------------------------


def test_list_is_empty_at_first(api: Api) -> None:
    reply = api.request("GET", "/widgets")
    assert reply.status == 200
    assert reply.json() == []


def test_create_returns_the_widget_and_its_location(api: Api) -> None:
    reply = api.request("POST", "/widgets", {"name": "bolt", "quantity": 3})
    assert reply.status == 201
    widget = reply.json()
    assert widget == {"id": widget["id"], "name": "bolt", "quantity": 3}
    assert isinstance(widget["id"], int)
    assert reply.headers["Location"] == f"/widgets/{widget['id']}"
    assert api.request("GET", reply.headers["Location"]).json() == widget


def test_list_is_ordered_by_id(api: Api) -> None:
    created = [api.create(name, quantity) for name, quantity in [("c", 1), ("a", 2), ("b", 0)]]
    api.request("DELETE", f"/widgets/{created[1]['id']}")
    api.request("PUT", f"/widgets/{created[0]['id']}", {"name": "z", "quantity": 9})
    listed = api.request("GET", "/widgets").json()
    assert [w["id"] for w in listed] == sorted(w["id"] for w in created if w is not created[1])
    assert listed[0] == {"id": created[0]["id"], "name": "z", "quantity": 9}


def test_query_string_does_not_change_the_route(api: Api) -> None:
    api.create()
    assert len(api.request("GET", "/widgets?page=2").json()) == 1


def test_put_replaces_every_field(api: Api) -> None:
    widget = api.create("bolt", 3)
    path = f"/widgets/{widget['id']}"
    reply = api.request("PUT", path, {"name": "nut", "quantity": 0})
    assert reply.status == 200
    assert reply.json() == {"id": widget["id"], "name": "nut", "quantity": 0}
    assert api.request("GET", path).json() == reply.json()


def test_delete_then_gone(api: Api) -> None:
    widget = api.create()
    path = f"/widgets/{widget['id']}"
    reply = api.request("DELETE", path)
    assert reply.status == 204
    assert reply.body == b""
    assert "Content-Type" not in reply.headers
    assert api.request("GET", path).status == 404
    assert api.request("DELETE", path).status == 404
    assert api.request("GET", "/widgets").json() == []


def test_ids_are_not_reused_after_delete(api: Api) -> None:
    first = api.create()
    api.request("DELETE", f"/widgets/{first['id']}")
    assert api.create()["id"] != first["id"]


@pytest.mark.parametrize(
    "payload",
    [
        {"name": "x" * 100, "quantity": 0},
        {"name": "é" * 100, "quantity": 10**12},  # 100 characters, 200 bytes
        {"name": " ", "quantity": 1},
    ],
    ids=["100-chars-zero", "multibyte-100-chars", "one-space"],
)
def test_boundary_values_are_accepted(api: Api, payload: dict[str, object]) -> None:
    reply = api.request("POST", "/widgets", payload)
    assert reply.status == 201, reply.body
    assert {k: reply.json()[k] for k in payload} == payload


# -- validation -------------------------------------------------------------

BAD_BODIES = [
    pytest.param(b'{"quantity": 1}', "name", id="missing-name"),
    pytest.param(b'{"name": "x"}', "quantity", id="missing-quantity"),
    pytest.param(b'{"name": 5, "quantity": 1}', "name must be a string", id="name-int"),
    pytest.param(b'{"name": null, "quantity": 1}', "name must be a string", id="name-null"),
    pytest.param(b'{"name": "x", "quantity": "3"}', "quantity must be an integer", id="qty-str"),
    pytest.param(b'{"name": "x", "quantity": 1.5}', "quantity must be an integer", id="qty-float"),
    pytest.param(b'{"name": "x", "quantity": 1.0}', "quantity must be an integer", id="qty-1.0"),
    pytest.param(b'{"name": "x", "quantity": true}', "quantity must be an integer", id="qty-bool"),
    pytest.param(b'{"name": "x", "quantity": -1}', "quantity must be >= 0", id="qty-negative"),
    pytest.param(b'{"name": "", "quantity": 1}', "name must be 1 to 100", id="name-empty"),
    pytest.param(json.dumps({"name": "x" * 101, "quantity": 1}).encode(), "got 101", id="name-101"),
    pytest.param(b'{"name": "x", "quantity": 1', "not valid JSON", id="not-json"),
    pytest.param(b"", "not valid JSON", id="empty-body"),
    pytest.param(b'{"name": "x", "quantity": NaN}', "not valid JSON", id="nan"),
    pytest.param(b'{"name": "\xff", "quantity": 1}', "not valid JSON", id="not-utf8"),
    pytest.param(b'[{"name": "x", "quantity": 1}]', "JSON object", id="array"),
    pytest.param(b'"widget"', "JSON object", id="string"),
    pytest.param(b"null", "JSON object", id="null"),
    pytest.param(b"[" * 100_000 + b"]" * 100_000, "not valid JSON", id="deeply-nested"),
    pytest.param(
        b'{"name": "x", "quantity": 1, "colour": "red"}', "unknown field(s): colour", id="extra"
    ),
]


@pytest.mark.parametrize(("body", "message"), BAD_BODIES)
def test_post_rejects_bad_bodies(api: Api, body: bytes, message: str) -> None:
    reply = api.request("POST", "/widgets", body=body, headers=JSON)
    assert reply.status == 400
    assert message in reply.error
    assert api.request("GET", "/widgets").json() == []


@pytest.mark.parametrize(("body", "message"), BAD_BODIES)
def test_put_rejects_bad_bodies_and_keeps_the_widget(api: Api, body: bytes, message: str) -> None:
    widget = api.create("bolt", 3)
    reply = api.request("PUT", f"/widgets/{widget['id']}", body=body, headers=JSON)
    assert reply.status == 400
    assert message in reply.error
    assert api.request("GET", f"/widgets/{widget['id']}").json() == widget


def test_a_body_of_exactly_the_limit_is_accepted(api: Api) -> None:
    payload = b'{"name": "big", "quantity": 1}'
    body = payload + b" " * (MAX_BODY_BYTES - len(payload))
    reply = api.request("POST", "/widgets", body=body, headers=JSON)
    assert reply.status == 201


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=utf-8", "Application/JSON", "application/json;x=1"]
)
def test_json_content_type_with_parameters_is_accepted(api: Api, content_type: str) -> None:
    reply = api.request(
        "POST",
        "/widgets",
        body=b'{"name": "x", "quantity": 1}',
        headers={"Content-Type": content_type},
    )
    assert reply.status == 201


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1"],
)
def test_other_content_types_are_415(api: Api, content_type: str | None) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}
    reply = api.request("POST", "/widgets", body=b'{"name": "x", "quantity": 1}', headers=headers)
    assert reply.status == 415
    assert "application/json" in reply.error or "utf-8" in reply.error


def test_missing_content_length_is_411(api: Api) -> None:
    reply = api.raw(b"POST /widgets HTTP/1.0\r\nContent-Type: application/json\r\n\r\n")
    assert reply.status == 411
    assert "Content-Length" in reply.error


def test_chunked_body_is_411(api: Api) -> None:
    reply = api.raw(
        b"POST /widgets HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    assert reply.status == 411


@pytest.mark.parametrize("length", [MAX_BODY_BYTES + 1, 10**30])
def test_oversized_content_length_is_413_before_any_body_is_sent(api: Api, length: int) -> None:
    # No body follows the headers: a server that tried to read it would hang
    # until the client's 5 s timeout instead of answering.
    reply = api.raw(
        b"POST /widgets HTTP/1.0\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % length
    )
    assert reply.status == 413
    assert str(MAX_BODY_BYTES) in reply.error


@pytest.mark.parametrize("value", [b"-1", b"ten", b"1e3"])
def test_invalid_content_length_is_400(api: Api, value: bytes) -> None:
    reply = api.raw(
        b"POST /widgets HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: "
        + value
        + b"\r\n\r\n"
    )
    assert reply.status == 400
    assert "Content-Length" in reply.error


# -- unknown resources and methods ------------------------------------------


@pytest.mark.parametrize(
    "path", ["/", "/nope", "/widgets/", "/widgets/abc", "/widgets/1/parts", "/healthz/x"]
)
def test_unknown_path_is_404(api: Api, path: str) -> None:
    reply = api.request("GET", path)
    assert reply.status == 404
    assert reply.error


@pytest.mark.parametrize(
    ("method", "json_body"),
    [("GET", None), ("PUT", {"name": "x", "quantity": 1}), ("DELETE", None)],
)
def test_unknown_widget_id_is_404(api: Api, method: str, json_body: object) -> None:
    api.create()
    reply = api.request(method, "/widgets/999", json_body)
    assert reply.status == 404
    assert reply.error == "widget 999 not found"


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PATCH", "/widgets", "GET, HEAD, POST"),
        ("DELETE", "/widgets", "GET, HEAD, POST"),
        ("POST", "/widgets/1", "GET, HEAD, PUT, DELETE"),
        ("PATCH", "/widgets/1", "GET, HEAD, PUT, DELETE"),
        ("POST", "/healthz", "GET, HEAD"),
        ("PUT", "/version", "GET, HEAD"),
        ("OPTIONS", "/widgets", "GET, HEAD, POST"),
    ],
)
def test_wrong_method_is_405_with_allow(api: Api, method: str, path: str, allow: str) -> None:
    reply = api.request(method, path, body=b"{}", headers=JSON)
    assert reply.status == 405
    assert reply.headers["Allow"] == allow
    assert method in reply.error


def test_unknown_method_is_501_json(api: Api) -> None:
    reply = api.raw(b"BREW /widgets HTTP/1.0\r\n\r\n")
    assert reply.status == 501
    assert "BREW" in reply.error


def test_malformed_request_line_is_400_json(api: Api) -> None:
    reply = api.raw(b"GARBAGE\r\n\r\n")
    assert reply.status == 400
    assert reply.error


@pytest.mark.parametrize(
    "partial",
    [
        b"GET /heal",
        b"GET /healthz HTTP/1.0\r\nHost: x\r\n",
        b"POST /widgets HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: 30\r\n\r\n{",
    ],
    ids=["request-line", "headers", "body"],
)
def test_a_stalled_client_gets_408(
    monkeypatch: pytest.MonkeyPatch, api: Api, partial: bytes
) -> None:
    monkeypatch.setattr(WidgetHandler, "timeout", 0.2)
    reply = api.raw(partial)
    assert reply.status == 408
    assert "timed out" in reply.error


@pytest.mark.parametrize(
    ("head", "trickled"),
    [
        (b"", b"GET /healthz HTTP/1.0\r\nX-Slow: " + b"x" * 100),
        (
            b"POST /widgets HTTP/1.0\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n",
            b" " * 100,
        ),
    ],
    ids=["headers", "body"],
)
def test_a_trickling_client_gets_408_once_the_whole_request_is_late(
    monkeypatch: pytest.MonkeyPatch,
    server: WidgetServer,
    trickle: Trickle,
    head: bytes,
    trickled: bytes,
) -> None:
    # One byte every 0.3 s never stalls a single read for as long as the
    # timeout: only a deadline on the request as a whole stops this client.
    monkeypatch.setattr(WidgetHandler, "timeout", 1.0)
    client = trickle(server.port, trickled, head=head)
    reply = client.reply()
    elapsed = time.monotonic() - client.connected

    assert reply.status == 408
    assert "timed out" in reply.error
    assert 3 <= client.sent < len(trickled)  # it was answered mid-trickle
    assert 0.9 <= elapsed < 2.5


def test_a_connection_that_never_sends_is_closed_after_the_timeout(
    monkeypatch: pytest.MonkeyPatch, server: WidgetServer
) -> None:
    monkeypatch.setattr(WidgetHandler, "timeout", 0.2)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as idle:
        assert idle.recv(1) == b""  # closed without a response: there was no request


# -- concurrency ------------------------------------------------------------


def test_fifty_concurrent_creates_get_fifty_distinct_ids(api: Api) -> None:
    start = threading.Barrier(50)

    def create(i: int) -> int:
        start.wait(timeout=5)
        return int(api.create(f"w{i}", i)["id"])

    with ThreadPoolExecutor(max_workers=50) as pool:
        ids = list(pool.map(create, range(50)))

    assert len(set(ids)) == 50
    listed = api.request("GET", "/widgets").json()
    assert len(listed) == 50
    assert [w["id"] for w in listed] == sorted(ids)
    assert {w["name"] for w in listed} == {f"w{i}" for i in range(50)}


# -- access log -------------------------------------------------------------


def _access_lines(server: WidgetServer, caplog: pytest.LogCaptureFixture) -> list[str]:
    # A client has its response before the handler thread writes the log
    # line; closing the server joins the handler threads, so every line is in.
    server.shutdown()
    server.server_close()
    return [r.getMessage() for r in caplog.records if r.name == "widget_server.access"]


def _wait_for_access_lines(caplog: pytest.LogCaptureFixture, count: int) -> None:
    deadline = time.monotonic() + 5
    while sum(r.name == "widget_server.access" for r in caplog.records) < count:
        assert time.monotonic() < deadline, "the access line was never written"
        time.sleep(0.01)


def test_one_access_line_per_request(
    server: WidgetServer, api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="widget_server")
    api.create("bolt", 1)
    # The next request's line could otherwise come first on a busy machine.
    _wait_for_access_lines(caplog, 1)
    api.request("GET", "/nope")
    lines = _access_lines(server, caplog)
    assert len(lines) == 2
    assert lines[0].startswith("method=POST path=/widgets status=201 duration_ms=")
    assert lines[1].startswith("method=GET path=/nope status=404 duration_ms=")
    assert lines[1].endswith(" client=127.0.0.1")


def test_access_log_leaves_out_bodies_and_query_strings(
    server: WidgetServer, api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="widget_server")
    api.request("POST", "/widgets?token=hunter2", {"name": "s3cr3t-name", "quantity": 1})
    assert len(_access_lines(server, caplog)) == 1
    text = caplog.text  # every record, not only the access line
    assert "s3cr3t-name" not in text
    assert "hunter2" not in text
    assert "path=/widgets " in text


def test_access_log_escapes_control_characters(
    server: WidgetServer, api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="widget_server")
    api.raw(b"GET /\x1b[31mred\x7f HTTP/1.0\r\n\r\n")
    (line,) = _access_lines(server, caplog)
    assert "\x1b" not in line
    assert "\x7f" not in line
    assert "path=/\\x1b[31mred\\x7f status=404" in line


def test_parser_errors_are_logged_too(
    server: WidgetServer, api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="widget_server")
    api.raw(b"GARBAGE\r\n\r\n")
    (line,) = _access_lines(server, caplog)
    assert line.startswith("method=- path=- status=400 ")
