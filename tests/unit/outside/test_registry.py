"""The registry v2 reader against a real local HTTPS server with a throwaway CA."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import cast

import pytest

pytest.importorskip("cryptography")

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ecr_release.errors import RegistryError
from ecr_release.outside.registry import (
    Registry,
    _parse_manifest,
    directory_trust,
)

PASSWORD = "eyJwYXlsb2FkIjoiczNjcjN0LXJlZ2lzdHJ5LXBhc3N3b3JkIn0="
CONFIG_DIGEST = "sha256:" + "c0" * 32
HEADER_DIGEST = "sha256:" + "d1" * 32
MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "size": 1470,
            "digest": CONFIG_DIGEST,
        },
        "layers": [
            {
                "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                "size": 3370706,
                "digest": "sha256:" + "e2" * 32,
            }
        ],
    },
    indent=3,
).encode()
MANIFEST_SHA = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()
CONFIG = json.dumps(
    {"architecture": "amd64", "config": {"Labels": {"io.example.a": "1", "b": "two"}}}
).encode()
CONFIG_SHA = "sha256:" + hashlib.sha256(CONFIG).hexdigest()


# -- certificates ------------------------------------------------------------------------


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _make_certs(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for ``localhost`` signed by it."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("test registry CA"))
        .issuer_name(_name("test registry CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = (
        directory / "ca.crt",
        directory / "srv.crt",
        directory / "srv.key",
    )
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_path, cert_path, key_path


# -- the server --------------------------------------------------------------------------


@dataclass
class Seen:
    method: str
    path: str
    authorization: str | None
    accept: str | None


@dataclass
class FakeRegistry:
    host: str
    ca: Path
    seen: list[Seen] = field(default_factory=list)


class _Server(ThreadingHTTPServer):
    """The fake registry's server: it remembers every request."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen: list[Seen] = []
        self.s3 = ""  # where blobs of repository "s3" are redirected: another server's URL


class _Handler(BaseHTTPRequestHandler):
    """Repositories: app (normal), nohead (no digest header), denied (401), forbidden (403),
    broken (500), list (a body that is not an object); tag v1 only; anything else is 404."""

    def setup(self) -> None:
        self.request.do_handshake()
        super().setup()

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _answer(self) -> None:
        cast(_Server, self.server).seen.append(
            Seen(
                self.command,
                self.path,
                self.headers.get("Authorization"),
                self.headers.get("Accept"),
            )
        )
        parts = self.path.split("?")[0].split("/")
        if parts[1] == "s3":  # a pre-signed S3 URL: anyone holding it may read
            self._reply(200, {}, CONFIG)
            return
        if parts[-2:] == ["tags", "list"]:  # /v2/<repo>/tags/list
            repo = "/".join(parts[2:-2])
            bodies = {"app": b'{"name": "app", "tags": ["v1"]}', "emptyrepo": b'{"tags": null}'}
            bodies["notobject"] = b"[1, 2]"
            found = bodies.get(repo)
            code = b'{"errors":[{"code":"NAME_UNKNOWN"}]}'
            self._reply(200 if found else 404, {}, found or code)
            return
        if parts[-2] == "blobs":  # /v2/<repo>/blobs/<digest>
            self._blob("/".join(parts[2:-2]), parts[-1])
            return
        # /v2/<repo>/manifests/<tag>
        repo, tag = "/".join(parts[2:-2]), parts[-1]
        status, headers, body = 404, {}, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}'
        if repo in BROKEN_OFF:
            self._break_off(repo)
            return
        if repo in ODD_MANIFESTS:
            body = json.dumps(ODD_MANIFESTS[repo]).encode()
            status, headers["Docker-Content-Digest"] = 200, HEADER_DIGEST
            if repo == "baddigest":
                headers["Docker-Content-Digest"] = "sha256:<script>"
        elif repo == "denied":
            status = 401
        elif repo == "forbidden":
            status = 403
        elif repo == "broken":
            status, body = 500, b"internal error"
        elif repo == "immutable":
            status, body = (
                400,
                json.dumps({"errors": [{"code": "TAG_INVALID", "message": TAKEN}]}).encode(),
            )
        elif tag == "v1" and repo in ("app", "team/app", "nohead", "notjson", "notobject"):
            status = 200
            body = {"notjson": b"this is not json", "notobject": b"[1, 2]"}.get(repo, MANIFEST)
            headers["Content-Type"] = "application/vnd.docker.distribution.manifest.v2+json"
            if repo != "nohead":
                headers["Docker-Content-Digest"] = HEADER_DIGEST
        self._reply(status, headers, body)

    def _blob(self, repo: str, digest: str) -> None:
        s3 = cast(_Server, self.server).s3
        if repo == "app" and digest == CONFIG_SHA:
            self._reply(200, {}, CONFIG)
        elif repo == "s3":  # as ECR does
            self._reply(307, {"Location": f"{s3}/s3/blob?X-Amz-Signature=abc"}, b"")
        elif repo == "plain":
            location = f"{s3.replace('https://', 'http://')}/s3/blob?X-Amz-Signature=abc"
            self._reply(307, {"Location": location}, b"")
        elif repo == "tampered":
            self._reply(200, {}, CONFIG + b" ")
        elif repo == "notobject":
            self._reply(200, {}, b"[]")
        else:
            self._reply(404, {}, b'{"errors":[{"code":"BLOB_UNKNOWN"}]}')

    def _reply(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(body)

    def _break_off(self, how: str) -> None:
        """200 with Content-Length 4000, then 62 bytes and: close, reset, or silence."""
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.docker.distribution.manifest.v2+json")
        self.send_header("Content-Length", "4000")
        self.end_headers()
        self.wfile.write(MANIFEST[:62])
        self.wfile.flush()
        if how == "slow":
            time.sleep(2)  # the client's timeout (1 s) passes first
        elif how == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        self.close_connection = True

    do_GET = _answer
    do_HEAD = _answer


BROKEN_OFF = ("short", "reset", "slow")
ODD_MANIFESTS: dict[str, object] = {
    "badconfig": {"schemaVersion": 2, "config": "x"},
    "nodigest": {"schemaVersion": 2, "config": {"size": 3}},
    "baddigest": {"schemaVersion": 2, "config": {"digest": CONFIG_DIGEST}},
    "badmediatype": {"schemaVersion": 2, "mediaType": 7, "config": {"digest": CONFIG_DIGEST}},
}


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return _make_certs(tmp_path_factory.mktemp("pki"))


@contextlib.contextmanager
def _serve(certs: tuple[Path, Path, Path]) -> Iterator[_Server]:
    _, cert, key = certs
    httpd = _Server()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    # The handshake happens in each connection's own thread (the handler's setup), never
    # in the accept loop, where one slow or refused client would hold up the next.
    httpd.socket = context.wrap_socket(
        httpd.socket, server_side=True, do_handshake_on_connect=False
    )
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture(scope="module")
def s3_server(certs: tuple[Path, Path, Path]) -> Iterator[_Server]:
    """Another host (another port) that plays S3 for the registry's redirects."""
    with _serve(certs) as httpd:
        yield httpd


@pytest.fixture(scope="module")
def server(certs: tuple[Path, Path, Path], s3_server: _Server) -> Iterator[FakeRegistry]:
    with _serve(certs) as httpd:
        httpd.s3 = f"https://localhost:{s3_server.server_address[1]}"
        yield FakeRegistry(f"localhost:{httpd.server_address[1]}", certs[0], httpd.seen)


@pytest.fixture(autouse=True)
def _empty_system_trust_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Only the CA in ``certs_dir`` can vouch for the server (and no system store is loaded)."""
    (tmp_path / "system-ca").mkdir()
    (tmp_path / "system-ca.pem").write_text("")
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "system-ca.pem"))
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path / "system-ca"))


@pytest.fixture
def fake(server: FakeRegistry) -> FakeRegistry:
    server.seen.clear()
    return server


def _certs_dir(tmp_path: Path, host: str, ca: Path | None) -> Path:
    certs_dir = tmp_path / "certs.d"
    (certs_dir / host).mkdir(parents=True)
    if ca is not None:
        (certs_dir / host / "ca.crt").write_bytes(ca.read_bytes())
    return certs_dir


@pytest.fixture
def registry(fake: FakeRegistry, tmp_path: Path) -> Registry:
    return Registry(
        fake.host, "AWS", PASSWORD, timeout=5, certs_dir=_certs_dir(tmp_path, fake.host, fake.ca)
    )


# -- tests -----------------------------------------------------------------------------------


def test_requests_carry_basic_auth_and_the_manifest_types(
    registry: Registry, fake: FakeRegistry
) -> None:
    registry.manifest("app", "v1")
    assert [s.method for s in fake.seen] == ["GET"]
    expected = "Basic " + base64.b64encode(f"AWS:{PASSWORD}".encode()).decode()
    for seen in fake.seen:
        assert seen.authorization == expected
        assert seen.accept is not None
        accepted = [part.strip() for part in seen.accept.split(",")]
        assert "application/vnd.docker.distribution.manifest.v2+json" in accepted
        assert "application/vnd.oci.image.manifest.v1+json" in accepted


def test_manifest_reads_the_config_digest(registry: Registry, fake: FakeRegistry) -> None:
    manifest = registry.manifest("app", "v1")
    assert manifest is not None
    assert manifest.digest == HEADER_DIGEST
    assert manifest.config_digest == CONFIG_DIGEST
    assert manifest.media_type == "application/vnd.docker.distribution.manifest.v2+json"


def test_repository_names_with_a_slash(registry: Registry, fake: FakeRegistry) -> None:
    manifest = registry.manifest("team/app", "v1")
    assert manifest is not None and manifest.digest == HEADER_DIGEST
    assert fake.seen[0].path == "/v2/team/app/manifests/v1"


def test_get_without_digest_hashes_the_exact_body(registry: Registry) -> None:
    manifest = registry.manifest("nohead", "v1")
    assert manifest is not None
    assert manifest.digest == MANIFEST_SHA
    assert manifest.config_digest == CONFIG_DIGEST


@pytest.mark.parametrize(("repo", "tag"), [("app", "v2"), ("missing", "v1")])
def test_absent_tag_or_repository_is_none(registry: Registry, repo: str, tag: str) -> None:
    assert registry.manifest(repo, tag) is None


@pytest.mark.parametrize(("repo", "code"), [("denied", 401), ("forbidden", 403)])
def test_refused_login_is_a_registry_error(
    registry: Registry, fake: FakeRegistry, repo: str, code: int
) -> None:
    with pytest.raises(RegistryError) as info:
        registry.manifest(repo, "v1")
    message = info.value.message
    assert fake.host in message
    assert f"HTTP {code}" in message
    assert repo in message
    assert PASSWORD not in message
    assert base64.b64encode(f"AWS:{PASSWORD}".encode()).decode() not in message
    assert info.value.exit_code == 5


def test_server_error_is_a_registry_error(registry: Registry, fake: FakeRegistry) -> None:
    with pytest.raises(RegistryError) as info:
        registry.manifest("broken", "v1")
    assert info.value.message == f"registry {fake.host} answered HTTP 500 for broken:v1"


TAKEN = (
    "The image tag 'v1' already exists in the 'immutable' repository and cannot be "
    "overwritten because the repository is immutable."
)


def test_an_error_says_what_the_registry_said(registry: Registry, fake: FakeRegistry) -> None:
    with pytest.raises(RegistryError) as info:
        registry.manifest("immutable", "v1")
    assert info.value.message == (
        f"registry {fake.host} answered HTTP 400 for immutable:v1 (TAG_INVALID: {TAKEN})"
    )


@pytest.mark.parametrize("repo", ["notjson", "notobject"])
def test_a_manifest_that_is_not_a_json_object(
    registry: Registry, fake: FakeRegistry, repo: str
) -> None:
    with pytest.raises(RegistryError, match="not a JSON object") as info:
        registry.manifest(repo, "v1")
    assert fake.host in info.value.message


def test_registry_not_running(tmp_path: Path, certs: tuple[Path, Path, Path]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    host = f"localhost:{port}"
    registry = Registry(
        host, "AWS", PASSWORD, timeout=5, certs_dir=_certs_dir(tmp_path, host, certs[0])
    )
    with pytest.raises(RegistryError) as info:
        registry.manifest("app", "v1")
    assert info.value.message.startswith(f"cannot reach registry {host}")
    assert PASSWORD not in info.value.message


@pytest.mark.parametrize("with_dir", [True, False])
def test_tls_is_verified_without_the_ca(tmp_path: Path, fake: FakeRegistry, with_dir: bool) -> None:
    certs_dir = _certs_dir(tmp_path, fake.host, None) if with_dir else tmp_path / "nowhere"
    registry = Registry(fake.host, "AWS", PASSWORD, timeout=5, certs_dir=certs_dir)
    with pytest.raises(RegistryError) as info:
        registry.manifest("app", "v1")
    assert "certificate verify failed" in info.value.message
    assert PASSWORD not in info.value.message
    assert fake.seen == []


def test_a_ca_for_another_host_is_not_used(tmp_path: Path, fake: FakeRegistry) -> None:
    certs_dir = _certs_dir(tmp_path, "localhost:1", fake.ca)
    registry = Registry(fake.host, "AWS", PASSWORD, timeout=5, certs_dir=certs_dir)
    with pytest.raises(RegistryError, match="certificate verify failed"):
        registry.manifest("app", "v1")


def test_repr_hides_the_password(tmp_path: Path) -> None:
    registry = Registry("localhost:5000", "AWS", PASSWORD, certs_dir=tmp_path)
    assert PASSWORD not in repr(registry)
    assert "localhost:5000" in repr(registry)
    assert PASSWORD not in str(registry)


@pytest.mark.parametrize("how", BROKEN_OFF)
def test_an_answer_broken_off_is_one_line(tmp_path: Path, fake: FakeRegistry, how: str) -> None:
    registry = Registry(
        fake.host, "AWS", PASSWORD, timeout=1, certs_dir=_certs_dir(tmp_path, fake.host, fake.ca)
    )
    with pytest.raises(RegistryError) as info:
        registry.manifest(how, "v1")
    message = info.value.message
    assert message.startswith(f"registry {fake.host} broke off its answer for {how}:v1 (")
    assert "check the network and try again" in message
    assert "\n" not in message and PASSWORD not in message
    assert info.value.exit_code == 5


@pytest.mark.parametrize(
    ("repo", "problem"),
    [
        ("badconfig", "has a config that is not an object"),
        ("nodigest", "has a config without a valid digest"),
        ("baddigest", "has the digest 'sha256:<script>'"),
        ("badmediatype", "has a mediaType that is not a string"),
    ],
)
def test_a_manifest_of_the_wrong_shape_is_one_line(
    registry: Registry, fake: FakeRegistry, repo: str, problem: str
) -> None:
    with pytest.raises(RegistryError) as info:
        registry.manifest(repo, "v1")
    assert info.value.message.startswith(
        f"registry {fake.host} returned a manifest for {repo}:v1 that {problem}: "
    )


# -- image configs (blobs) ------------------------------------------------------------------


def test_a_config_is_read_and_checked_against_its_digest(
    registry: Registry, fake: FakeRegistry
) -> None:
    assert registry.labels("app", CONFIG_SHA) == {"io.example.a": "1", "b": "two"}
    assert fake.seen[0].path == f"/v2/app/blobs/{CONFIG_SHA}"
    assert fake.seen[0].authorization is not None


def test_an_s3_redirect_is_followed_without_the_authorization_header(
    registry: Registry, fake: FakeRegistry, s3_server: _Server
) -> None:
    s3_server.seen.clear()
    assert registry.labels("s3", CONFIG_SHA) == {"io.example.a": "1", "b": "two"}
    assert [s.path for s in fake.seen] == [f"/v2/s3/blobs/{CONFIG_SHA}"]
    assert [s.path for s in s3_server.seen] == ["/s3/blob?X-Amz-Signature=abc"]
    assert s3_server.seen[0].authorization is None


def test_a_redirect_to_plain_http_is_refused_and_not_named(
    registry: Registry, s3_server: _Server
) -> None:
    s3_server.seen.clear()
    with pytest.raises(RegistryError) as info:
        registry.labels("plain", CONFIG_SHA)
    assert "not https; refused" in info.value.message
    assert "X-Amz-Signature" not in info.value.message
    assert s3_server.seen == []


@pytest.mark.parametrize(
    ("repo", "problem"),
    [
        ("tampered", "does not match its digest"),
        ("notobject", "is not a JSON object"),
        ("missing", "has no config blob"),
    ],
)
def test_a_bad_config_is_one_line(registry: Registry, repo: str, problem: str) -> None:
    digest = CONFIG_SHA if repo != "notobject" else "sha256:" + hashlib.sha256(b"[]").hexdigest()
    with pytest.raises(RegistryError, match=problem) as info:
        registry.labels(repo, digest)
    assert info.value.exit_code == 5


def test_an_index_lists_its_image_manifests_without_attestations() -> None:
    image, attestation = "sha256:" + "a1" * 32, "sha256:" + "b2" * 32
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {"digest": image, "platform": {"os": "linux", "architecture": "amd64"}},
                {"digest": attestation, "platform": {"os": "unknown", "architecture": "unknown"}},
                {"digest": "not a digest"},
            ],
        }
    ).encode()
    manifest = _parse_manifest(body, MANIFEST_SHA, "", lambda problem: RegistryError(problem))
    assert manifest.config_digest is None and manifest.images == (image,)


def test_tags_lists_a_repository_and_none_is_unknown(registry: Registry) -> None:
    assert registry.tags("app") == ["v1"]
    assert registry.tags("emptyrepo") == []
    assert registry.tags("missing") is None
    assert registry.repository_exists("app") and not registry.repository_exists("missing")
    with pytest.raises(RegistryError, match="tag list for notobject that is not one"):
        registry.tags("notobject")


def test_a_loopback_registry_is_spoken_to_in_plain_http_and_a_name_always_with_tls() -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from ecr_release.outside.registry import is_loopback

    class Plain(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b'{"name": "app", "tags": ["v1"]}'
            self.send_response(200 if self.headers.get("Authorization") else 401)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Plain)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host = f"127.0.0.1:{server.server_address[1]}"
        plain = Registry(host, "AWS", "token")
        proxy = {"http_proxy": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
        os.environ.update(proxy)  # a proxy that answers nothing: never used for loopback
        assert plain.base_url == f"http://{host}"
        assert plain.tags("app") == ["v1"] and plain.api_status(login=False) == 401
    finally:
        for key in ("http_proxy", "HTTP_PROXY"):
            os.environ.pop(key, None)
        server.shutdown()
        server.server_close()
    assert Registry("localhost:5000", "AWS", "x").base_url == "https://localhost:5000"
    assert Registry("123456789012.dkr.ecr.eu-west-1.amazonaws.com", "AWS", "x").base_url.startswith(
        "https://"
    )
    assert [is_loopback(h) for h in ("127.0.0.1:1", "127.9.9.9", "[::1]:5000", "10.0.0.1:1")] == [
        True,
        True,
        True,
        False,
    ]


def test_api_status_asks_once_more_after_a_dropped_tls_handshake(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ssl
    import urllib.error

    calls: list[str] = []

    class Answer:
        status = 401

        def __enter__(self) -> Answer:
            return self

        def __exit__(self, *args: object) -> None:
            pass

    def open_(request: object, timeout: float) -> Answer:
        calls.append("open")
        if len(calls) == 1:
            raise urllib.error.URLError(ssl.SSLEOFError(8, "EOF occurred in violation of protocol"))
        return Answer()

    client = Registry("registry.example:443", "", "", timeout=2)
    monkeypatch.setattr(client, "_opener", type("Opener", (), {"open": staticmethod(open_)}))
    assert client.api_status(login=False) == 401
    assert calls == ["open", "open"]
    calls.clear()

    def always(request: object, timeout: float) -> Answer:
        calls.append("open")
        raise urllib.error.URLError(ssl.SSLEOFError(8, "EOF occurred in violation of protocol"))

    monkeypatch.setattr(client, "_opener", type("Opener", (), {"open": staticmethod(always)}))
    with pytest.raises(RegistryError, match=r"cannot reach registry registry\.example:443: .*EOF"):
        client.api_status(login=False)
    assert calls == ["open", "open"]  # once more, not forever


def test_the_ca_directory_is_read_on_demand_not_the_bundle(
    certs: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certs[0]))  # the bundle: one CA
    assert ssl.create_default_context().cert_store_stats()["x509_ca"] == 1
    ours = directory_trust()
    assert ours.cert_store_stats()["x509_ca"] == 0  # nothing loaded up front
    assert (ours.verify_mode, ours.check_hostname) == (ssl.CERT_REQUIRED, True)
    # No directory, or a list of several (OpenSSL's own syntax, which Python does not
    # name): the default context itself, bundle and all.
    for where in [tmp_path / "no-such-directory", f"{tmp_path}{os.pathsep}{tmp_path}"]:
        monkeypatch.setenv("SSL_CERT_DIR", str(where))
        assert directory_trust().cert_store_stats()["x509_ca"] == 1


def test_a_ca_only_the_system_bundle_holds_is_trusted_on_a_second_try(
    tmp_path: Path, fake: FakeRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first handshake looks in the CA directory only; one that fails there is tried once
    more with the whole bundle loaded, as ``ssl.create_default_context()`` would trust it."""
    monkeypatch.setenv("SSL_CERT_FILE", str(fake.ca))
    registry = Registry(
        fake.host, "AWS", PASSWORD, timeout=5, certs_dir=_certs_dir(tmp_path, fake.host, None)
    )
    assert registry.manifest("app", "v1") is not None
    assert len(fake.seen) == 1  # the refused handshake sent nothing
    assert registry.manifest("app", "v1") is not None  # and the bundle stays loaded
    assert len(fake.seen) == 2


def _serve_once(reply: bytes) -> int:
    """A registry on loopback that answers one request with ``reply``, then hangs up."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def answer() -> None:
        connection, _ = server.accept()
        connection.recv(65536)
        connection.sendall(reply)
        connection.close()
        server.close()

    threading.Thread(target=answer, daemon=True).start()
    return int(server.getsockname()[1])


@pytest.mark.parametrize("code", [500, 404])
def test_an_error_whose_body_is_cut_short_is_still_one_line(tmp_path: Path, code: int) -> None:
    reply = f"HTTP/1.1 {code} X\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".encode()
    registry = Registry(
        f"127.0.0.1:{_serve_once(reply)}", "AWS", "pw", timeout=5, certs_dir=tmp_path
    )
    if code == 404:  # not there: the body is not even read
        assert registry.manifest("app", "v1") is None
        return
    with pytest.raises(RegistryError, match=r"answered HTTP 500 for app:v1$"):
        registry.manifest("app", "v1")
