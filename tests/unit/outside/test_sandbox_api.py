"""The sandbox's AWS API in-process, against a fake registry on loopback (no docker).

The fake registry speaks the few v2 calls the mirroring uses (tags/list with pages,
manifests by tag or digest, PUT, DELETE by digest only, as distribution 2.8) behind
basic auth ``AWS:<token>``; boto3 reaches the API through ``endpoint_url``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

pytest.importorskip("moto")
pytest.importorskip("flask")

from ecr_release.outside.ecr import lifecycle_policy
from ecr_release.outside.sandbox_api import (
    ACCESS_KEY_FILE,
    EXIT_PORT_TAKEN,
    HEALTH_PATH,
    JOURNAL_FILE,
    TOKEN_FILE,
    Journal,
    JournalEntry,
    Mirror,
    RegistryLink,
    SandboxApp,
    bind,
    build_app,
    load_config,
    make_server_on,
)

ACCOUNT = "210987654321"  # not moto's default, so the account surely comes from us
TOKEN = "s3cr3t-sandbox-registry-password-4f1c"
ACCESS_KEY = "AKIASANDBOXUNITTEST1"
REGION = "eu-west-1"
DOCKER_V2 = "application/vnd.docker.distribution.manifest.v2+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def manifest_bytes(layer: str) -> bytes:
    # Indented, with a trailing newline: any re-encoding would change the digest.
    data = {
        "schemaVersion": 2,
        "mediaType": DOCKER_V2,
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "size": 1470,
            "digest": "sha256:" + "c0" * 32,
        },
        "layers": [
            {
                "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                "size": 3370706,
                "digest": "sha256:" + layer * 32,
            }
        ],
    }
    return (json.dumps(data, indent=3) + "\n").encode()


def digest_of(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


@dataclass
class Store:
    password: str
    manifests: dict[str, dict[str, tuple[bytes, str]]] = field(default_factory=dict)
    tags: dict[str, dict[str, str]] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def push(self, name: str, tag: str, body: bytes, kind: str = DOCKER_V2) -> str:
        digest = digest_of(body)
        with self.lock:
            self.manifests.setdefault(name, {})[digest] = (body, kind)
            self.tags.setdefault(name, {})[tag] = digest
        return digest

    def untag(self, name: str, tag: str) -> None:
        with self.lock:
            del self.tags[name][tag]


class RegistryHandler(BaseHTTPRequestHandler):
    store: Store
    page = 2  # tags per page, so the listing must follow Link headers

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, code: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _route(self) -> tuple[str, str, str] | None:
        store = self.store
        path = urlsplit(self.path).path
        store.calls.append((self.command, self.path))
        wanted = "Basic " + base64.b64encode(f"AWS:{store.password}".encode()).decode()
        if self.headers.get("Authorization") != wanted:
            self._answer(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}')
            return None
        for kind in ("/tags/list", "/manifests/"):
            if path.startswith("/v2/") and kind in path:
                name, _, rest = path[len("/v2/") :].partition(kind)
                return name, kind, rest
        self._answer(404)
        return None

    def do_GET(self) -> None:
        route = self._route()
        if route is None:
            return
        name, kind, reference = route
        store = self.store
        with store.lock:
            if name not in store.tags:
                self._answer(404, b'{"errors":[{"code":"NAME_UNKNOWN"}]}')
                return
            if kind == "/tags/list":
                last = parse_qs(urlsplit(self.path).query).get("last", [""])[0]
                tags = sorted(t for t in store.tags[name] if t > last)
                headers = {"Content-Type": "application/json"}
                if len(tags) > self.page:
                    tags = tags[: self.page]
                    headers["Link"] = f'</v2/{name}/tags/list?last={tags[-1]}&n=2>; rel="next"'
                body = json.dumps({"name": name, "tags": tags or None}).encode()
                self._answer(200, body, headers)
                return
            digest = store.tags[name].get(reference, reference)
            if digest not in store.manifests[name]:
                self._answer(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}')
                return
            body, media = store.manifests[name][digest]
        self._answer(200, body, {"Content-Type": media, "Docker-Content-Digest": digest})

    do_HEAD = do_GET

    def do_PUT(self) -> None:
        route = self._route()
        if route is None:
            return
        name, _, tag = route
        body = self.rfile.read(int(self.headers["Content-Length"]))
        digest = self.store.push(name, tag, body, self.headers["Content-Type"])
        self._answer(201, headers={"Docker-Content-Digest": digest})

    def do_DELETE(self) -> None:
        route = self._route()
        if route is None:
            return
        name, _, reference = route
        store = self.store
        with store.lock:
            if not reference.startswith("sha256:"):
                self._answer(400, b'{"errors":[{"code":"UNSUPPORTED"}]}')
                return
            if reference not in store.manifests.get(name, {}):
                self._answer(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}')
                return
            del store.manifests[name][reference]
            store.tags[name] = {t: d for t, d in store.tags[name].items() if d != reference}
        self._answer(202)


@contextlib.contextmanager
def fake_registry(password: str) -> Iterator[tuple[Store, ThreadingHTTPServer]]:
    store = Store(password)
    handler = type("Handler", (RegistryHandler,), {"store": store})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    # A short poll interval: shutdown() waits up to one interval.
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield store, server
    finally:
        server.shutdown()
        server.server_close()


class Sandbox:
    """The API on a free port, in a thread; ``restart`` makes a new app on the same state."""

    def __init__(self, state: Path, registry: str) -> None:
        self.state = state
        self.registry = registry
        self.app: SandboxApp | None = None
        self._server: Any = None
        self.start()

    def start(self) -> None:
        self.app = build_app(load_config(ACCOUNT, self.registry, self.state))
        self._server = make_server_on(bind(0), self.app)
        self.port = self._server.port
        threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        assert self.app is not None
        self.app.close()

    def restart(self) -> None:
        self.stop()
        self.start()

    def client(self, service: str = "ecr", key: str | None = None) -> Any:
        make: Any = boto3.client  # its overloads want a literal service name
        return make(
            service,
            region_name=REGION,
            aws_access_key_id=key or ACCESS_KEY,
            aws_secret_access_key="anything",
            endpoint_url=f"http://127.0.0.1:{self.port}",
            # One attempt: a refused deletion (500) must not be retried into a slow test.
            config=Config(retries={"max_attempts": 1, "mode": "standard"}),
        )


@pytest.fixture
def state(tmp_path: Path) -> Path:
    path = tmp_path / "state"
    path.mkdir()
    (path / TOKEN_FILE).write_text(TOKEN + "\n")
    (path / TOKEN_FILE).chmod(0o600)
    (path / ACCESS_KEY_FILE).write_text(ACCESS_KEY + "\n")
    return path


@pytest.fixture
def registry() -> Iterator[tuple[Store, ThreadingHTTPServer]]:
    with fake_registry(TOKEN) as pair:
        yield pair


@pytest.fixture
def sandbox(
    state: Path,
    registry: tuple[Store, ThreadingHTTPServer],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Sandbox]:
    monkeypatch.delenv("MOTO_ACCOUNT_ID", raising=False)
    box = Sandbox(state, f"127.0.0.1:{registry[1].server_address[1]}")
    try:
        yield box
    finally:
        box.stop()


def tags_of(ecr: Any, name: str) -> dict[str, list[str]]:
    """digest -> sorted tags, from DescribeImages."""
    found = ecr.describe_images(repositoryName=name)["imageDetails"]
    return {d["imageDigest"]: sorted(d.get("imageTags", [])) for d in found}


# --- login and identity -------------------------------------------------------------


def test_the_token_is_the_sandbox_registrys_password_for_twelve_hours(
    sandbox: Sandbox, registry: tuple[Store, ThreadingHTTPServer]
) -> None:
    data = sandbox.client().get_authorization_token()["authorizationData"][0]

    assert base64.b64decode(data["authorizationToken"]).decode() == f"AWS:{TOKEN}"
    assert data["proxyEndpoint"] == f"http://127.0.0.1:{registry[1].server_address[1]}"
    ahead = data["expiresAt"] - datetime.now(UTC)
    assert timedelta(hours=11, minutes=59) < ahead <= timedelta(hours=12)


def test_a_repository_uri_names_the_sandbox_registry(
    sandbox: Sandbox, registry: tuple[Store, ThreadingHTTPServer]
) -> None:
    host = f"127.0.0.1:{registry[1].server_address[1]}"
    created = sandbox.client().create_repository(repositoryName="team/app")["repository"]
    assert created["repositoryUri"] == f"{host}/team/app"
    described = sandbox.client().describe_repositories(repositoryNames=["team/app"])
    assert described["repositories"][0]["repositoryUri"] == f"{host}/team/app"


def test_the_login_patch_is_undone_when_the_app_closes(sandbox: Sandbox) -> None:
    from moto.ecr.responses import ECRResponse

    patched = ECRResponse.get_authorization_token
    assert sandbox.app is not None
    sandbox.app.close()
    try:
        assert ECRResponse.get_authorization_token is not patched
        data = sandbox.client().get_authorization_token()["authorizationData"][0]
        assert base64.b64decode(data["authorizationToken"]).decode() != f"AWS:{TOKEN}"
    finally:
        sandbox.restart()


def test_sts_answers_the_sandbox_account(sandbox: Sandbox) -> None:
    assert sandbox.client("sts").get_caller_identity()["Account"] == ACCOUNT


def test_health_names_the_account_registry_and_process(sandbox: Sandbox) -> None:
    url = f"http://127.0.0.1:{sandbox.port}{HEALTH_PATH}"
    with urllib.request.urlopen(url, timeout=5) as answer:
        assert answer.status == 200
        data = json.load(answer)

    assert data == {"account": ACCOUNT, "registry": sandbox.registry, "pid": os.getpid()}


# --- images come from the registry ------------------------------------------------


def test_a_pushed_manifest_is_an_image_with_the_registrys_digest_and_bytes(
    sandbox: Sandbox, registry: tuple[Store, ThreadingHTTPServer]
) -> None:
    store = registry[0]
    body = manifest_bytes("a1")
    digest = store.push("team/widget", "1.0.0", body)
    ecr = sandbox.client()
    ecr.create_repository(repositoryName="team/widget")

    assert tags_of(ecr, "team/widget") == {digest: ["1.0.0"]}
    got = ecr.batch_get_image(repositoryName="team/widget", imageIds=[{"imageTag": "1.0.0"}])
    image = got["images"][0]
    assert image["imageId"] == {"imageDigest": digest, "imageTag": "1.0.0"}
    assert image["imageManifest"].encode() == body
    assert image["imageManifestMediaType"] == DOCKER_V2
    listed = ecr.list_images(repositoryName="team/widget")["imageIds"]
    assert listed == [{"imageDigest": digest, "imageTag": "1.0.0"}]


def test_an_index_keeps_its_media_type(
    sandbox: Sandbox, registry: tuple[Store, ThreadingHTTPServer]
) -> None:
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}).encode()
    digest = registry[0].push("multi", "v1", body, OCI_INDEX)
    ecr = sandbox.client()
    ecr.create_repository(repositoryName="multi")

    image = ecr.batch_get_image(repositoryName="multi", imageIds=[{"imageTag": "v1"}])["images"][0]
    assert image["imageId"]["imageDigest"] == digest
    assert image["imageManifestMediaType"] == OCI_INDEX


def test_a_second_tag_on_the_same_digest_is_one_image_with_two_tags(
    sandbox: Sandbox, registry: tuple[Store, ThreadingHTTPServer]
) -> None:
    store = registry[0]
    body = manifest_bytes("a1")
    digest = store.push("widget", "1.0.0", body)
    ecr = sandbox.client()
    ecr.create_repository(repositoryName="widget")
    assert tags_of(ecr, "widget") == {digest: ["1.0.0"]}

    store.push("widget", "latest", body)  # a registry-side retag, as promotion does

    assert tags_of(ecr, "widget") == {digest: ["1.0.0", "latest"]}


def test_the_registry_is_the_truth_moved_and_removed_tags_follow_it(
    sandbox: Sandbox, registry: tuple[Store, ThreadingHTTPServer]
) -> None:
    store = registry[0]
    old = store.push("widget", "latest", manifest_bytes("a1"))
    store.push("widget", "1.0.0", manifest_bytes("a1"))
    store.push("widget", "0.9.0", manifest_bytes("b2"))
    store.push("widget", "0.8.0", manifest_bytes("d4"))  # three pages of tags
    ecr = sandbox.client()
    # IMMUTABLE: moto would refuse to move a tag; the registry already moved it.
    ecr.create_repository(repositoryName="widget", imageTagMutability="IMMUTABLE")
    assert tags_of(ecr, "widget")[old] == ["1.0.0", "latest"]

    new = store.push("widget", "latest", manifest_bytes("e5"))
    store.untag("widget", "0.9.0")

    assert tags_of(ecr, "widget") == {
        old: ["1.0.0"],
        new: ["latest"],
        digest_of(manifest_bytes("d4")): ["0.8.0"],
    }


def test_a_manifest_moto_cannot_read_is_left_out_and_the_others_answer(
    sandbox: Sandbox, registry: tuple[Store, ThreadingHTTPServer], caplog: pytest.LogCaptureFixture
) -> None:
    store = registry[0]
    store.push("widget", "broken", b"not json at all", DOCKER_V2)
    digest = store.push("widget", "1.0.0", manifest_bytes("a1"))
    ecr = sandbox.client()
    ecr.create_repository(repositoryName="widget")
    caplog.set_level(logging.INFO, logger="ecr_release.outside.sandbox_api")

    assert tags_of(ecr, "widget") == {digest: ["1.0.0"]}
    assert any("widget:broken not mirrored" in r.getMessage() for r in caplog.records)


def test_a_scan_sees_a_pushed_image(
    sandbox: Sandbox, registry: tuple[Store, ThreadingHTTPServer]
) -> None:
    digest = registry[0].push("widget", "candidate", manifest_bytes("a1"))
    ecr = sandbox.client()
    ecr.create_repository(repositoryName="widget")

    started = ecr.start_image_scan(repositoryName="widget", imageId={"imageTag": "candidate"})
    found = ecr.describe_image_scan_findings(
        repositoryName="widget", imageId={"imageTag": "candidate"}
    )

    assert started["imageId"]["imageDigest"] == digest
    assert found["imageId"]["imageDigest"] == digest
    assert found["imageScanStatus"]["status"] == "COMPLETE"


# --- scanning as ECR scans on push ------------------------------------------------------


def queue_findings(sandbox: Sandbox, results: list[dict[str, Any]], key: str = ACCESS_KEY) -> int:
    """POST to moto's findings API through the sandbox, signed (by key id) as it requires."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{sandbox.port}/moto-api/static/ecr/scan-finding-results",
        data=json.dumps({"results": results}).encode(),
        method="POST",
        headers={
            "Content-Type": "application/json",
            "Authorization": f"AWS4-HMAC-SHA256 Credential={key}/20300101/{REGION}/ecr/"
            "aws4_request, SignedHeaders=host, Signature=0",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as refused:
        return int(refused.code)


def test_scan_on_push_scans_a_pushed_image_clean(
    sandbox: Sandbox, registry: tuple[Store, ThreadingHTTPServer], caplog: pytest.LogCaptureFixture
) -> None:
    ecr = sandbox.client()
    ecr.create_repository(repositoryName="widget", imageScanningConfiguration={"scanOnPush": True})
    digest = registry[0].push("widget", "candidate", manifest_bytes("a1"))
    caplog.set_level(logging.INFO, logger="ecr_release.outside.sandbox_api")

    found = ecr.describe_image_scan_findings(
        repositoryName="widget", imageId={"imageDigest": digest}
    )

    assert found["imageScanStatus"]["status"] == "COMPLETE"
    assert found["imageScanFindings"]["findings"] == []  # not moto's fake CVE-9999-9999
    assert found["imageScanFindings"].get("findingSeverityCounts", {}) == {}
    assert "imageScanCompletedAt" in found["imageScanFindings"]
    assert any(f"scan on push: widget@{digest}" in r.getMessage() for r in caplog.records)
    # A second tag on the same image is no new image: no second scan, no refusal.
    registry[0].push("widget", "v1", manifest_bytes("a1"))
    again = ecr.describe_image_scan_findings(repositoryName="widget", imageId={"imageTag": "v1"})
    assert again["imageScanStatus"]["status"] == "COMPLETE"
    assert again["imageScanFindings"]["findings"] == []


def test_without_scan_on_push_there_is_no_scan_until_one_is_started(
    sandbox: Sandbox, registry: tuple[Store, ThreadingHTTPServer]
) -> None:
    ecr = sandbox.client()
    ecr.create_repository(repositoryName="widget")
    registry[0].push("widget", "v1", manifest_bytes("a1"))

    with pytest.raises(ClientError) as caught:
        ecr.describe_image_scan_findings(repositoryName="widget", imageId={"imageTag": "v1"})
    assert caught.value.response["Error"]["Code"] == "ScanNotFoundException"
    ecr.start_image_scan(repositoryName="widget", imageId={"imageTag": "v1"})
    found = ecr.describe_image_scan_findings(repositoryName="widget", imageId={"imageTag": "v1"})
    assert found["imageScanFindings"]["findings"] == []


def test_a_refused_second_scan_leaves_the_mirroring_quiet(
    sandbox: Sandbox, registry: tuple[Store, ThreadingHTTPServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.ecr.exceptions import LimitExceededException
    from moto.ecr.models import ECRBackend

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise LimitExceededException()

    monkeypatch.setattr(ECRBackend, "start_image_scan", refuse)
    ecr = sandbox.client()
    ecr.create_repository(repositoryName="widget", imageScanningConfiguration={"scanOnPush": True})
    digest = registry[0].push("widget", "v1", manifest_bytes("a1"))

    assert tags_of(ecr, "widget") == {digest: ["v1"]}  # mirrored all the same


def test_queued_findings_are_served_by_tag_or_digest(
    sandbox: Sandbox, registry: tuple[Store, ThreadingHTTPServer]
) -> None:
    ecr = sandbox.client()
    ecr.create_repository(repositoryName="widget", imageScanningConfiguration={"scanOnPush": True})
    digest = registry[0].push("widget", "v1", manifest_bytes("a1"))
    # Mirrored after v1 (tags in order), "weekly" becomes the image's last tag, the only
    # one moto itself would match.
    registry[0].push("widget", "weekly", manifest_bytes("a1"))
    result = {
        "repositoryName": "widget",
        "imageId": {"imageTag": "v1"},
        "imageScanStatus": {"status": "COMPLETE", "description": "queued"},
        "imageScanFindings": {
            "findings": [{"name": "CVE-2024-1234", "severity": "CRITICAL"}],
            "findingSeverityCounts": {"CRITICAL": 1},
        },
    }

    # Unsigned, or signed with another key, the queue is refused.
    assert queue_findings(sandbox, [result], key="AKIASOMEONEELSE00001") == 400
    assert queue_findings(sandbox, [result]) == 201  # account and region: the sandbox's

    by_digest = ecr.describe_image_scan_findings(
        repositoryName="widget", imageId={"imageDigest": digest}
    )
    by_tag = ecr.describe_image_scan_findings(repositoryName="widget", imageId={"imageTag": "v1"})
    for found in (by_digest, by_tag):
        assert found["imageScanStatus"]["description"] == "queued"
        assert found["imageScanFindings"]["findings"][0]["name"] == "CVE-2024-1234"
    # Another image of the repository stays clean.
    other = registry[0].push("widget", "v2", manifest_bytes("b2"))
    clean = ecr.describe_image_scan_findings(
        repositoryName="widget", imageId={"imageDigest": other}
    )
    assert clean["imageScanFindings"]["findings"] == []


def test_findings_queued_without_an_image_id_go_to_the_next_image_scanned(
    sandbox: Sandbox, registry: tuple[Store, ThreadingHTTPServer]
) -> None:
    """A candidate's tag is not known before its build: a result without ``imageId`` is
    served for the next image of its repository whose scan is read, and only for it."""
    ecr = sandbox.client()
    ecr.create_repository(repositoryName="widget", imageScanningConfiguration={"scanOnPush": True})
    result = {
        "repositoryName": "widget",
        "imageScanStatus": {"status": "COMPLETE", "description": "queued"},
        "imageScanFindings": {"findings": [{"name": "CVE-2024-1234", "severity": "HIGH"}]},
    }
    assert queue_findings(sandbox, [result]) == 201
    first = registry[0].push("widget", "c1", manifest_bytes("a1"))
    found = ecr.describe_image_scan_findings(
        repositoryName="widget", imageId={"imageDigest": first}
    )
    assert found["imageScanFindings"]["findings"][0]["name"] == "CVE-2024-1234"
    second = registry[0].push("widget", "c2", manifest_bytes("b2"))
    clean = ecr.describe_image_scan_findings(
        repositoryName="widget", imageId={"imageDigest": second}
    )
    assert clean["imageScanFindings"]["findings"] == []


def test_the_scan_patch_is_undone_when_the_app_closes(sandbox: Sandbox) -> None:
    from moto.ecr.models import ECRBackend

    patched = ECRBackend.describe_image_scan_findings
    assert sandbox.app is not None
    sandbox.app.close()
    try:
        assert ECRBackend.describe_image_scan_findings is not patched
    finally:
        sandbox.restart()


def test_an_unknown_repository_is_not_found_and_the_registry_is_not_read(
    sandbox: Sandbox, registry: tuple[Store, ThreadingHTTPServer]
) -> None:
    store = registry[0]
    store.push("ghost", "1", manifest_bytes("a1"))

    with pytest.raises(ClientError) as caught:
        sandbox.client().describe_images(repositoryName="ghost")

    assert caught.value.response["Error"]["Code"] == "RepositoryNotFoundException"
    assert store.calls == []


def test_a_registry_that_does_not_answer_leaves_moto_answering(
    sandbox: Sandbox,
    registry: tuple[Store, ThreadingHTTPServer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    store, server = registry
    digest = store.push("widget", "1.0.0", manifest_bytes("a1"))
    ecr = sandbox.client()
    ecr.create_repository(repositoryName="widget")
    assert tags_of(ecr, "widget") == {digest: ["1.0.0"]}
    server.shutdown()
    server.server_close()
    caplog.set_level(logging.INFO, logger="ecr_release.outside.sandbox_api")

    assert tags_of(ecr, "widget") == {digest: ["1.0.0"]}
    lines = [r.getMessage() for r in caplog.records if "DescribeImages" in r.getMessage()]
    assert len(lines) == 1
    assert "registry not read" in lines[0]
    # A deletion that the registry cannot carry out is refused rather than undone later.
    with pytest.raises(ClientError) as caught:
        ecr.batch_delete_image(repositoryName="widget", imageIds=[{"imageTag": "1.0.0"}])
    assert caught.value.response["Error"]["Code"] == "ServerException"


# --- deleting a tag --------------------------------------------------------------


def test_deleting_a_tag_keeps_the_image_under_its_other_tags_in_both(
    sandbox: Sandbox, registry: tuple[Store, ThreadingHTTPServer]
) -> None:
    store = registry[0]
    body = manifest_bytes("a1")
    digest = store.push("widget", "candidate", body)
    store.push("widget", "1.0.0", body)
    store.push("widget", "latest", body)
    other = store.push("widget", "0.9.0", manifest_bytes("b2"))
    ecr = sandbox.client()
    ecr.create_repository(repositoryName="widget")

    answer = ecr.batch_delete_image(repositoryName="widget", imageIds=[{"imageTag": "candidate"}])

    assert answer["imageIds"] == [{"imageDigest": digest, "imageTag": "candidate"}]
    assert answer["failures"] == []
    assert store.tags["widget"] == {"1.0.0": digest, "latest": digest, "0.9.0": other}
    assert store.manifests["widget"][digest] == (body, DOCKER_V2)
    assert tags_of(ecr, "widget") == {digest: ["1.0.0", "latest"], other: ["0.9.0"]}
    deletes = [path for method, path in store.calls if method == "DELETE"]
    assert deletes == [f"/v2/widget/manifests/{digest}"]


def test_deleting_the_only_tag_removes_the_image_from_both(
    sandbox: Sandbox, registry: tuple[Store, ThreadingHTTPServer]
) -> None:
    store = registry[0]
    gone = store.push("widget", "candidate", manifest_bytes("a1"))
    kept = store.push("widget", "1.0.0", manifest_bytes("b2"))
    ecr = sandbox.client()
    ecr.create_repository(repositoryName="widget")

    ecr.batch_delete_image(repositoryName="widget", imageIds=[{"imageTag": "candidate"}])

    assert store.tags["widget"] == {"1.0.0": kept}
    assert gone not in store.manifests["widget"]
    assert tags_of(ecr, "widget") == {kept: ["1.0.0"]}


def test_deleting_by_digest_removes_every_tag_from_both(
    sandbox: Sandbox, registry: tuple[Store, ThreadingHTTPServer]
) -> None:
    store = registry[0]
    digest = store.push("widget", "1.0.0", manifest_bytes("a1"))
    store.push("widget", "latest", manifest_bytes("a1"))
    kept = store.push("widget", "0.9.0", manifest_bytes("b2"))
    ecr = sandbox.client()
    ecr.create_repository(repositoryName="widget")

    ecr.batch_delete_image(repositoryName="widget", imageIds=[{"imageDigest": digest}])

    assert store.tags["widget"] == {"0.9.0": kept}
    assert tags_of(ecr, "widget") == {kept: ["0.9.0"]}


def test_a_repository_with_pushed_images_is_deleted_only_when_forced(
    sandbox: Sandbox, registry: tuple[Store, ThreadingHTTPServer]
) -> None:
    store = registry[0]
    store.push("widget", "1.0.0", manifest_bytes("a1"))
    ecr = sandbox.client()
    ecr.create_repository(repositoryName="widget")

    with pytest.raises(ClientError) as caught:
        ecr.delete_repository(repositoryName="widget")
    assert caught.value.response["Error"]["Code"] == "RepositoryNotEmptyException"

    ecr.delete_repository(repositoryName="widget", force=True)
    assert store.tags["widget"] == {}
    ecr.create_repository(repositoryName="widget")  # a new repository starts empty
    assert tags_of(ecr, "widget") == {}


# --- the journal -------------------------------------------------------------------


def test_a_restart_keeps_repositories_their_settings_and_images(
    sandbox: Sandbox, registry: tuple[Store, ThreadingHTTPServer]
) -> None:
    store = registry[0]
    digest = store.push("widget", "1.0.0", manifest_bytes("a1"))
    ecr = sandbox.client()
    ecr.create_repository(repositoryName="widget", imageTagMutability="IMMUTABLE")
    ecr.create_repository(repositoryName="other")
    ecr.put_image_tag_mutability(repositoryName="other", imageTagMutability="IMMUTABLE")
    policy = lifecycle_policy(30)
    ecr.put_lifecycle_policy(repositoryName="widget", lifecyclePolicyText=policy)
    ecr.create_repository(repositoryName="dropped")
    ecr.delete_repository(repositoryName="dropped")
    ecr.describe_images(repositoryName="widget")  # reads are not journaled

    sandbox.restart()

    ecr = sandbox.client()
    repos = {r["repositoryName"]: r for r in ecr.describe_repositories()["repositories"]}
    assert sorted(repos) == ["other", "widget"]
    assert repos["widget"]["imageTagMutability"] == "IMMUTABLE"
    assert repos["other"]["imageTagMutability"] == "IMMUTABLE"
    assert repos["widget"]["registryId"] == ACCOUNT
    got = ecr.get_lifecycle_policy(repositoryName="widget")["lifecyclePolicyText"]
    assert json.loads(got) == json.loads(policy)
    assert tags_of(ecr, "widget") == {digest: ["1.0.0"]}
    journal = (sandbox.state / JOURNAL_FILE).read_text()
    operations = [json.loads(line)["operation"] for line in journal.splitlines()]
    assert operations == [
        "CreateRepository",
        "CreateRepository",
        "PutImageTagMutability",
        "PutLifecyclePolicy",
        "CreateRepository",
        "DeleteRepository",
    ]
    assert "Authorization" not in journal and TOKEN not in journal
    assert (sandbox.state / JOURNAL_FILE).stat().st_mode & 0o777 == 0o600


def test_a_refused_change_is_not_journaled(sandbox: Sandbox) -> None:
    ecr = sandbox.client()
    ecr.create_repository(repositoryName="widget")
    with pytest.raises(ClientError):
        ecr.create_repository(repositoryName="widget")

    lines = (sandbox.state / JOURNAL_FILE).read_text().splitlines()
    assert len(lines) == 1


def test_a_torn_last_line_is_cut_and_the_next_record_stays_whole(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    ecr = sandbox.client()
    ecr.create_repository(repositoryName="widget")
    path = sandbox.state / JOURNAL_FILE
    with path.open("a") as handle:
        handle.write('{"operation": "CreateRepository", "region": "eu-we')
    caplog.set_level(logging.INFO, logger="ecr_release.outside.sandbox_api")

    sandbox.restart()
    sandbox.client().create_repository(repositoryName="after")
    sandbox.restart()

    names = [r["repositoryName"] for r in sandbox.client().describe_repositories()["repositories"]]
    assert sorted(names) == ["after", "widget"]
    assert any("torn" in r.getMessage() for r in caplog.records)
    assert all(json.loads(line) for line in path.read_text().splitlines())


def test_a_broken_line_inside_the_journal_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / JOURNAL_FILE
    good = {"operation": "CreateRepository", "region": REGION, "body": "{}"}
    path.write_text(json.dumps(good) + "\nnot json\n" + json.dumps(good) + "\n")

    entries = list(Journal(path).entries())

    assert entries == [JournalEntry("CreateRepository", REGION, "{}")] * 2


def test_two_threads_write_whole_lines(tmp_path: Path) -> None:
    journal = Journal(tmp_path / JOURNAL_FILE)
    body = json.dumps({"repositoryName": "x" * 2000})

    def write(operation: str) -> None:
        for _ in range(100):
            journal.record(JournalEntry(operation, REGION, body))

    threads = [
        threading.Thread(target=write, args=(op,)) for op in ("TagResource", "UntagResource")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    entries = list(journal.entries())
    assert len(entries) == 200
    assert {e.operation for e in entries} == {"TagResource", "UntagResource"}
    assert all(e.body == body for e in entries)


# --- the process -------------------------------------------------------------------


def run_module(*args: str) -> list[str]:
    return [sys.executable, "-m", "ecr_release.outside.sandbox_api", *args]


def test_a_taken_port_exits_98_with_one_line(state: Path) -> None:
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen(1)
    port = held.getsockname()[1]
    try:
        args = ["--port", str(port), "--state-dir", str(state)]
        args += ["--registry", "127.0.0.1:5000", "--account", ACCOUNT]
        done = subprocess.run(run_module(*args), capture_output=True, text=True, timeout=60)
    finally:
        held.close()

    assert done.returncode == EXIT_PORT_TAKEN
    assert done.stderr.count("\n") == 1
    assert f"127.0.0.1:{port}" in done.stderr


def test_a_missing_token_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    args = ["--port", "0", "--state-dir", str(tmp_path)]
    args += ["--registry", "127.0.0.1:5000", "--account", ACCOUNT]
    done = subprocess.run(run_module(*args), capture_output=True, text=True, timeout=60)

    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "token" in done.stderr


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_process_serves_and_never_logs_the_token(
    state: Path, registry: tuple[Store, ThreadingHTTPServer]
) -> None:
    store, server = registry
    digest = store.push("widget", "candidate", manifest_bytes("a1"))
    store.push("widget", "1.0.0", manifest_bytes("a1"))
    port = free_port()
    args = ["--port", str(port), "--state-dir", str(state)]
    args += ["--registry", f"127.0.0.1:{server.server_address[1]}", "--account", ACCOUNT]
    process = subprocess.Popen(
        run_module(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        health = wait_for_health(port, process)
        assert health["pid"] == process.pid and health["account"] == ACCOUNT
        ecr = _client(port)
        data = ecr.get_authorization_token()["authorizationData"][0]
        assert base64.b64decode(data["authorizationToken"]).decode() == f"AWS:{TOKEN}"
        ecr.create_repository(repositoryName="widget")
        ecr.batch_delete_image(repositoryName="widget", imageIds=[{"imageTag": "candidate"}])
        assert tags_of(ecr, "widget") == {digest: ["1.0.0"]}
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)

    assert process.returncode == 0
    encoded = base64.b64encode(f"AWS:{TOKEN}".encode()).decode()
    assert TOKEN not in stderr and encoded not in stderr
    assert "AWS4-HMAC-SHA256" not in stderr and "Basic " not in stderr  # no auth header
    request_lines = [line for line in stderr.splitlines() if "-> " in line]
    calls = [line for line in request_lines if "/_sandbox/health" not in line]
    assert len(calls) == 4  # token, create, delete, describe: one line each (health polls aside)
    assert any("BatchDeleteImage widget -> 200" in line for line in request_lines)


def test_a_killed_process_started_again_knows_its_repositories(
    state: Path, registry: tuple[Store, ThreadingHTTPServer]
) -> None:
    store, server = registry
    digest = store.push("widget", "1.0.0", manifest_bytes("a1"))
    address = f"127.0.0.1:{server.server_address[1]}"

    def start() -> tuple[subprocess.Popen[str], Any]:
        port = free_port()
        args = ["--port", str(port), "--state-dir", str(state)]
        args += ["--registry", address, "--account", ACCOUNT]
        process = subprocess.Popen(
            run_module(*args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True
        )
        wait_for_health(port, process)
        return process, _client(port)

    first, ecr = start()
    try:
        ecr.create_repository(repositoryName="widget", imageTagMutability="IMMUTABLE")
    finally:
        first.kill()
        first.wait(timeout=30)
    second, ecr = start()
    try:
        repo = ecr.describe_repositories(repositoryNames=["widget"])["repositories"][0]
        images = tags_of(ecr, "widget")
    finally:
        second.terminate()
        second.wait(timeout=30)

    assert first.returncode == -9
    assert repo["imageTagMutability"] == "IMMUTABLE"
    assert images == {digest: ["1.0.0"]}


def wait_for_health(port: int, process: subprocess.Popen[str]) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        assert process.poll() is None, "the API process ended early"
        try:
            url = f"http://127.0.0.1:{port}{HEALTH_PATH}"
            with urllib.request.urlopen(url, timeout=2) as answer:
                data: dict[str, Any] = json.load(answer)
                return data
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_only_this_sandboxs_access_key_is_answered(sandbox: Sandbox) -> None:
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError, match="UnrecognizedClientException"):
        sandbox.client(key="AKIASOMEONEELSE00001").get_authorization_token()
    assert sandbox.client().get_authorization_token()["authorizationData"]


def test_a_web_page_and_an_unsigned_request_are_refused(sandbox: Sandbox) -> None:
    import urllib.error
    import urllib.request

    url = f"http://127.0.0.1:{sandbox.port}/"
    target = {"X-Amz-Target": "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken"}
    for method, headers in (
        ("POST", target),  # no signature at all
        ("POST", {**target, "Origin": "https://evil.example"}),
        ("OPTIONS", {"Origin": "https://evil.example"}),
    ):
        request = urllib.request.Request(url, data=b"{}", method=method, headers=headers)
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=5)
        assert caught.value.code == 400
        body = caught.value.read().decode()
        assert TOKEN not in body and "authorizationToken" not in body
        assert "Access-Control-Allow-Origin" not in caught.value.headers
    with urllib.request.urlopen(f"http://127.0.0.1:{sandbox.port}/_sandbox/health") as health:
        assert json.loads(health.read())["account"] == ACCOUNT


def _client(port: int) -> Any:
    return boto3.client(
        "ecr",
        region_name=REGION,
        endpoint_url=f"http://127.0.0.1:{port}",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key="anything",
    )


# -- the registry link: one kept connection for a listing of many tags -----------------------


class KeepAliveHandler(RegistryHandler):
    """An HTTP/1.1 registry that keeps connections open, counts them, and (``drop_after``)
    closes one without a word after that many answers, as a registry's idle timeout does."""

    protocol_version = "HTTP/1.1"
    connections: list[int]
    drop_after: int | None = None

    def setup(self) -> None:
        super().setup()
        with self.store.lock:  # each connection counts in its own place
            self.place = len(self.connections)
            self.connections.append(0)

    def parse_request(self) -> bool:  # counted before it is answered
        if not super().parse_request():
            return False
        with self.store.lock:
            self.connections[self.place] += 1
            served = self.connections[self.place]
        if self.drop_after is not None and served >= self.drop_after:
            self.close_connection = True  # after this answer, which does not say so
        return True


@contextlib.contextmanager
def keep_alive_registry(
    drop_after: int | None = None,
) -> Iterator[tuple[Store, list[int], RegistryLink]]:
    store, connections = Store(TOKEN), list[int]()
    attributes = {"store": store, "connections": connections, "drop_after": drop_after}
    handler = type("Handler", (KeepAliveHandler,), attributes)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield store, connections, RegistryLink(f"127.0.0.1:{server.server_address[1]}", TOKEN)
    finally:
        server.shutdown()
        server.server_close()


def _tagged(store: Store, count: int) -> dict[str, str]:
    return {
        f"v{i}": store.push("app", f"v{i}", json.dumps({"schemaVersion": 2, "n": i}).encode())
        for i in range(count)
    }


def test_a_listing_of_many_tags_asks_them_all_over_one_connection() -> None:
    with keep_alive_registry() as (store, connections, link):
        digests = _tagged(store, 7)
        listing = link.listing("app")
    assert {tag: manifest.digest for tag, manifest in listing.items()} == digests
    assert connections == [4 + 7]  # 4 pages of tags (2 a page), then each manifest


def test_a_kept_connection_the_registry_closed_is_replaced_and_nothing_is_lost() -> None:
    with keep_alive_registry(drop_after=3) as (store, connections, link):
        digests = _tagged(store, 5)
        listing = link.listing("app")
    assert {tag: manifest.digest for tag, manifest in listing.items()} == digests
    assert len(connections) == 3 and sum(connections) == 3 + 5  # pages, then the manifests


def test_outside_a_listing_each_call_has_its_own_connection() -> None:
    with keep_alive_registry() as (store, connections, link):
        _tagged(store, 2)
        assert link.manifest("app", "v0") is not None
        assert link.manifest("app", "v1") is not None
    assert connections == [1, 1]


def test_a_tag_deleted_as_ecr_does_keeps_the_images_other_tags_over_one_connection() -> None:
    with keep_alive_registry() as (store, connections, link):
        digest = store.push("app", "candidate", b'{"schemaVersion": 2}')
        store.push("app", "v1", b'{"schemaVersion": 2}')
        listing = link.listing("app")
        before = len(connections)
        Mirror(link, ACCOUNT).delete_images("app", [{"imageTag": "candidate"}], listing)
    assert store.tags["app"] == {"v1": digest}  # the tag gone, the image kept under v1
    assert connections[before:] == [2]  # the DELETE and the PUT back, on one connection
