"""The sandbox's AWS API: moto's ECR and STS, kept in step with the sandbox's registry.

The local sandbox (``inv release --sandbox``) needs no AWS account: a real registry
container on a loopback port stands in for ECR's registry, and this process stands in
for ECR's and STS's APIs. The sandbox manager starts it as

    python -m ecr_release.outside.sandbox_api --port P --state-dir DIR \\
        --registry 127.0.0.1:R --account 123456789012

It serves moto's server app on 127.0.0.1:P only, with six differences from plain moto:

1. Login. ``GetAuthorizationToken`` answers user ``AWS`` with the registry's password
   (read from ``DIR/token``), ``proxyEndpoint`` ``http://127.0.0.1:R`` and an expiry
   twelve hours on, as ECR does for its own registry.
2. Images come from the registry. Before an operation that reads or deletes a
   repository's images, the repository is mirrored from the registry (``tags/list``,
   then each tag's manifest), so the API describes exactly what was pushed, with the
   registry's digests and byte-exact manifests. The registry is the truth for images:
   a tag the registry no longer has leaves moto too.
3. Deleting one tag (``BatchDeleteImage`` by ``imageTag``) works as on ECR, in the
   registry too: distribution 2.8 can only delete a manifest with all its tags, so the
   manifest is deleted by digest and put back under its other tags.
4. Repositories survive a restart. Repository-level changes that succeeded are kept as
   JSON lines in ``DIR/journal.jsonl`` and replayed at start-up; images come back
   through the mirroring.
5. ``GET /_sandbox/health`` tells the manager which process answers.
6. Images are scanned as ECR scans them on push. When the mirroring registers a new
   image in a repository whose ``imageScanningConfiguration.scanOnPush`` is true, it
   starts moto's scan (moto answers ``DescribeImageScanFindings`` only after
   ``StartImageScan``; its refusal of a second scan the same day is taken quietly). A
   scan finds nothing (moto's would find a fixed fake CVE-9999-9999, HIGH), unless
   findings were queued through moto's API: ``POST /moto-api/static/ecr/scan-finding-results``
   with ``{"results": [<a whole DescribeImageScanFindings answer>]}`` (``"region"`` and
   ``"account_id"`` default to the request's signed region and the sandbox's account),
   served for the image whose repository and tag or digest match, asked by tag or digest.

Every request, ``/moto-api/...`` ones included, must carry an AWS signature header naming
the sandbox's access key id (the state directory's ``access-key`` file):
``Authorization: AWS4-HMAC-SHA256 Credential=<key id>/<yyyymmdd>/<region>/ecr/aws4_request,
...`` (only the key id is checked, and the region read); a request with an ``Origin``
header (a web page) is refused.

The manager may call :func:`main` (the command line), or :func:`load_config`,
:func:`bind`, :func:`build_app` and :func:`make_server_on` to run it in-process.

Not for: anything but loopback; the registry container, state directory, ports and
locks (the manager's job); ``PutImage`` through the ECR API (moto records it, the
registry never sees it: the sandbox pushes through the registry); scanning beyond the
above (registry-level scanning rules are stored, never run; no enhanced scanning).
Importing this module has no side effect: moto is imported and patched by
:func:`build_app`.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import http.client
import io
import json
import logging
import os
import re
import signal
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from moto.ecr.models import ECRBackend, Image
    from werkzeug.serving import BaseWSGIServer

EXIT_PORT_TAKEN = 98
EXIT_BAD_SETUP = 2
HEALTH_PATH = "/_sandbox/health"
# moto's API to queue the findings DescribeImageScanFindings answers.
SCAN_RESULTS_PATH = "/moto-api/static/ecr/scan-finding-results"
ACCESS_KEY_FILE = "access-key"
TOKEN_FILE = "token"  # noqa: S105 (a file name, not a secret)
JOURNAL_FILE = "journal.jsonl"
TOKEN_HOURS = 12
REGISTRY_TIMEOUT = 5.0
DEFAULT_REGION = "us-east-1"
LOOPBACK = "127.0.0.1"

ECR_TARGET = "AmazonEC2ContainerRegistry_V20150921."
# Operations that read or delete a repository's images: the repository is mirrored
# from the registry first. DeleteRepository too, so that it refuses a repository with
# pushed images unless forced, as ECR does.
MIRRORED = frozenset(
    {
        "DescribeImages",
        "ListImages",
        "BatchGetImage",
        "DescribeImageScanFindings",
        "StartImageScan",
        "BatchDeleteImage",
        "DeleteRepository",
    }
)
# Changes to repositories (and the registry's settings) that are replayed at start-up.
JOURNALED = frozenset(
    {
        "CreateRepository",
        "DeleteRepository",
        "PutLifecyclePolicy",
        "DeleteLifecyclePolicy",
        "PutImageTagMutability",
        "PutImageScanningConfiguration",
        "SetRepositoryPolicy",
        "DeleteRepositoryPolicy",
        "TagResource",
        "UntagResource",
        "PutRegistryPolicy",
        "DeleteRegistryPolicy",
        "PutRegistryScanningConfiguration",
        "PutReplicationConfiguration",
    }
)
MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
)

log = logging.getLogger(__name__)

# SigV4: "AWS4-HMAC-SHA256 Credential=<key id>/<date>/<region>/<service>/aws4_request, ..."
_SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/([A-Za-z0-9-]+)/")
_ACCOUNT = re.compile(r"\d{12}")
_ADDRESS = re.compile(r"[A-Za-z0-9.-]+:\d{1,5}")


class SetupError(Exception):
    """The process cannot start as asked (a missing token file, a bad argument)."""


class RegistryTrouble(Exception):
    """The registry did not answer, or answered something unexpected (one line, no secret)."""


@dataclass(frozen=True)
class SandboxConfig:
    account: str
    registry: str  # host:port of the sandbox registry, plain HTTP
    state_dir: Path
    token: str = field(repr=False)
    # The only access key id the API answers (requests are not checked further: the key
    # keeps other local users and web pages out, as the token keeps them off the registry).
    access_key: str = field(default="", repr=False)

    @property
    def proxy_endpoint(self) -> str:
        return f"http://{self.registry}"

    @property
    def journal_path(self) -> Path:
        return self.state_dir / JOURNAL_FILE


def load_config(account: str, registry: str, state_dir: Path) -> SandboxConfig:
    """The configuration, with the registry password read from ``state_dir/token``."""
    if not _ACCOUNT.fullmatch(account):
        raise SetupError(f"--account must be 12 digits, not {account!r}")
    if not _ADDRESS.fullmatch(registry):
        raise SetupError(f"--registry must be HOST:PORT, not {registry!r}")
    path = state_dir / TOKEN_FILE
    try:
        token = path.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise SetupError(f"cannot read the registry password {path}: {exc.strerror}") from exc
    if not token:
        raise SetupError(f"the registry password file {path} is empty")
    key_path = state_dir / ACCESS_KEY_FILE
    try:
        access_key = key_path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise SetupError(f"cannot read the access key {key_path}: {exc.strerror}") from exc
    if not access_key:
        raise SetupError(f"the access key file {key_path} is empty")
    return SandboxConfig(account, registry, state_dir, token, access_key)


@dataclass(frozen=True)
class Manifest:
    digest: str
    body: bytes
    media_type: str


class RegistryLink:
    """The few registry v2 calls the mirroring needs, with basic auth ``AWS:<token>``."""

    def __init__(
        self,
        address: str,
        token: str,
        timeout: float = REGISTRY_TIMEOUT,
        *,
        user: str = "AWS",
        tls: ssl.SSLContext | None = None,  # HTTPS with it (the e2e stack's); plain HTTP without
    ) -> None:
        host, _, port = address.rpartition(":")
        self._host, self._port, self._timeout, self._tls = host, int(port), timeout, tls
        self._local = threading.local()  # a kept connection is one thread's (see kept)
        self._auth = "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()

    def listing(self, name: str) -> dict[str, Manifest]:
        """Every tag of a repository with its manifest; an unknown repository has none.
        The list and each manifest are asked over one kept connection: a repository of
        many tags costs one TCP (and TLS) handshake, not one per tag."""
        found: dict[str, Manifest] = {}
        with self.kept():
            for tag in self.tags(name):
                manifest = self.manifest(name, tag)
                if manifest is not None:  # deleted since the listing: not there
                    found[tag] = manifest
        return found

    def tags(self, name: str) -> list[str]:
        tags: list[str] = []
        path: str | None = f"/v2/{name}/tags/list"
        while path is not None:
            status, headers, body = self._call("GET", path)
            if status == 404:  # NAME_UNKNOWN: nothing was ever pushed there
                return tags
            self._expect(status, (200,), "GET", path)
            tags.extend(json.loads(body).get("tags") or [])
            path = _next_page(headers.get("Link", ""))
        return tags

    def manifest(self, name: str, reference: str) -> Manifest | None:
        path = f"/v2/{name}/manifests/{reference}"
        status, headers, body = self._call("GET", path, accept=", ".join(MANIFEST_TYPES))
        if status == 404:
            return None
        self._expect(status, (200,), "GET", path)
        digest = headers.get("Docker-Content-Digest") or _sha256(body)
        media_type = (headers.get("Content-Type") or "").split(";")[0].strip()
        if not media_type:
            media_type = json.loads(body).get("mediaType") or MANIFEST_TYPES[0]
        return Manifest(digest=digest, body=body, media_type=media_type)

    def delete(self, name: str, digest: str) -> None:
        """Deletes a manifest and every tag on it (the only deletion distribution has)."""
        path = f"/v2/{name}/manifests/{digest}"
        status, _, _ = self._call("DELETE", path)
        if status != 404:  # already gone is what was wanted
            self._expect(status, (200, 202), "DELETE", path)

    def put(self, name: str, tag: str, manifest: Manifest) -> None:
        path = f"/v2/{name}/manifests/{tag}"
        status, headers, _ = self._call("PUT", path, body=manifest.body, kind=manifest.media_type)
        self._expect(status, (200, 201), "PUT", path)
        answered = headers.get("Docker-Content-Digest")
        if answered and answered != manifest.digest:
            raise RegistryTrouble(f"PUT {path} stored {answered}, not {manifest.digest}")

    @contextlib.contextmanager
    def kept(self) -> Iterator[None]:
        """The calls of this thread inside share one connection (the outermost closes it)."""
        if getattr(self._local, "kept", None) is not None:
            yield
            return
        self._local.kept = []
        try:
            yield
        finally:
            for connection in self._local.kept:
                connection.close()
            self._local.kept = None

    def _connect(self) -> http.client.HTTPConnection:
        if self._tls is not None:
            return http.client.HTTPSConnection(
                self._host, self._port, timeout=self._timeout, context=self._tls
            )
        return http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)

    def _call(
        self, method: str, path: str, *, accept: str = "", body: bytes | None = None, kind: str = ""
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        headers = {"Authorization": self._auth}
        if accept:
            headers["Accept"] = accept
        if kind:
            headers["Content-Type"] = kind
        kept: list[http.client.HTTPConnection] | None = getattr(self._local, "kept", None)
        while True:
            reused = bool(kept)
            connection = kept.pop() if kept else self._connect()
            try:
                connection.request(method, path, body=body, headers=headers)
                response = connection.getresponse()
                answer = response.status, response.headers, response.read()
            except (OSError, http.client.HTTPException) as exc:
                connection.close()
                if reused and isinstance(exc, ConnectionError):  # it closed a kept connection
                    continue  # once more, on a new one
                raise RegistryTrouble(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
            if kept is not None and not response.will_close:
                kept.append(connection)
            else:
                connection.close()
            return answer

    def _expect(self, status: int, wanted: tuple[int, ...], method: str, path: str) -> None:
        if status not in wanted:
            raise RegistryTrouble(f"{method} {path} answered {status}")


def _next_page(link: str) -> str | None:
    match = re.match(r'\s*<([^>]+)>\s*;\s*rel="?next"?', link)
    return match.group(1) if match else None


def _sha256(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


class Mirror:
    """Keeps moto's images of a repository equal to the registry's, and deletes in both."""

    def __init__(self, registry: RegistryLink, account: str) -> None:
        self._registry = registry
        self._account = account

    def backend(self, region: str) -> ECRBackend | None:
        from moto.ecr.models import ecr_backends

        try:
            return ecr_backends[self._account][region]
        except KeyError:  # a region moto does not know
            return None

    def knows(self, region: str, name: str) -> bool:
        backend = self.backend(region)
        return backend is not None and name in backend.repositories

    def sync(self, region: str, name: str, notes: list[str]) -> dict[str, Manifest] | None:
        """Mirrors one repository moto knows; the registry's listing, or None if unknown
        to moto or the registry did not answer (then moto answers from what it has)."""
        from moto.ecr.exceptions import ImageAlreadyExistsException

        backend = self.backend(region)
        if backend is None or name not in backend.repositories:
            return None
        try:
            listing = self._registry.listing(name)
        except (RegistryTrouble, ValueError) as exc:
            notes.append(f"registry not read, answering from moto: {exc}")
            return None
        known = {
            tag: image.get_image_digest()
            for image in backend.repositories[name].images
            for tag in image.image_tags
        }
        # Tags that left the registry or moved go first, so that a moved tag is put back
        # whatever the repository's mutability says (the registry already holds it).
        gone = [
            tag
            for tag, digest in known.items()
            if tag not in listing or listing[tag].digest != digest
        ]
        for tag in gone:
            backend.batch_delete_image(repository_name=name, image_ids=[{"imageTag": tag}])
        added = 0
        for tag, manifest in sorted(listing.items()):
            if known.get(tag) == manifest.digest:
                continue
            try:
                image = backend.put_image(
                    name, manifest.body.decode("utf-8"), tag, manifest.media_type, manifest.digest
                )
                added += 1
            except ImageAlreadyExistsException:
                pass
            except Exception as exc:  # moto refuses the manifest: the other tags still count
                notes.append(f"{name}:{tag} not mirrored: {type(exc).__name__}: {exc}")
            else:
                self._scan_on_push(backend, name, image, notes)
        if gone or added:
            notes.append(f"mirrored {name}: +{added} -{len(gone)} tags")
        return listing

    @staticmethod
    def _scan_on_push(backend: ECRBackend, name: str, image: Image, notes: list[str]) -> None:
        """ECR scans a new image of a repository with scan on push; moto answers a scan
        only after ``StartImageScan``, so the mirroring starts it. A new tag on an image
        already scanned is not a new image."""
        from moto.ecr.exceptions import LimitExceededException

        scanning = backend.repositories[name].image_scanning_configuration
        on_push = isinstance(scanning, dict) and scanning.get("scanOnPush") is True
        if not on_push or image.last_scan is not None:
            return
        digest = image.get_image_digest()
        try:
            backend.start_image_scan(None, name, {"imageDigest": digest})  # type: ignore[arg-type]
        except LimitExceededException:
            return  # moto allows one scan of an image a day: it has its scan already
        notes.append(f"scan on push: {name}@{digest}")

    def delete_images(
        self, name: str, image_ids: Iterable[dict[str, str]], listing: dict[str, Manifest]
    ) -> None:
        """The registry's side of BatchDeleteImage, as ECR would: a digest deletes the
        image, a tag alone only that tag (the manifest stays under its other tags)."""
        with self._registry.kept():
            self._delete_images(name, image_ids, listing)

    def _delete_images(
        self, name: str, image_ids: Iterable[dict[str, str]], listing: dict[str, Manifest]
    ) -> None:
        for image_id in image_ids:
            tag, digest = image_id.get("imageTag"), image_id.get("imageDigest")
            if digest:
                if tag is not None and (tag not in listing or listing[tag].digest != digest):
                    continue  # moto refuses that pair too
                self._registry.delete(name, digest)
                for other in [t for t, m in listing.items() if m.digest == digest]:
                    del listing[other]
            elif tag and tag in listing:
                target = listing.pop(tag)
                keep = [t for t, m in listing.items() if m.digest == target.digest]
                self._registry.delete(name, target.digest)
                # Blobs are not collected, so the same bytes go back at the same digest.
                for other in keep:
                    self._registry.put(name, other, target)

    def delete_all(self, name: str, listing: dict[str, Manifest]) -> None:
        for digest in sorted({m.digest for m in listing.values()}):
            self._registry.delete(name, digest)


@dataclass(frozen=True)
class JournalEntry:
    operation: str
    region: str
    body: str


class Journal:
    """Repository changes as JSON lines: appended under a lock, one write per line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def repair(self) -> int:
        """Cuts a line torn by a crash (so the next line does not join it); bytes cut."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return 0
        keep = data.rfind(b"\n") + 1
        if keep < len(data):
            with self.path.open("r+b") as handle:
                handle.truncate(keep)
        return len(data) - keep

    def entries(self) -> Iterator[JournalEntry]:
        try:
            lines = self.path.read_text(encoding="utf-8", errors="replace").splitlines()
        except FileNotFoundError:
            return
        for number, line in enumerate(lines, 1):
            try:
                data = json.loads(line)
                yield JournalEntry(str(data["operation"]), str(data["region"]), str(data["body"]))
            except (ValueError, KeyError, TypeError):
                log.warning("journal line %d is not a record: skipped", number)

    def record(self, entry: JournalEntry) -> None:
        line = json.dumps(
            {"operation": entry.operation, "region": entry.region, "body": entry.body}
        )
        data = (line + "\n").encode()
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)


@dataclass(frozen=True)
class _Answer:
    status: str
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def code(self) -> int:
        return int(self.status.split()[0])


def _run(app: WSGIApplication, environ: WSGIEnvironment) -> _Answer:
    from werkzeug.test import run_wsgi_app

    app_iter, status, headers = run_wsgi_app(app, environ, buffered=True)
    try:
        body = b"".join(app_iter)
    finally:
        close = getattr(app_iter, "close", None)
        if close is not None:
            close()
    return _Answer(status, list(headers.to_wsgi_list()), body)


def _json_answer(
    code: int, reason: str, data: dict[str, Any], kind: str = "application/json"
) -> _Answer:
    body = json.dumps(data).encode()
    return _Answer(
        f"{code} {reason}", [("Content-Type", kind), ("Content-Length", str(len(body)))], body
    )


def request_region(environ: WSGIEnvironment) -> str:
    """The region of a signed request, from its credential scope (as moto reads it)."""
    match = _SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    return match.group(1) if match else DEFAULT_REGION


class SandboxApp:
    """The WSGI app: health, then ECR calls mirrored and journaled, then moto."""

    def __init__(
        self, config: SandboxConfig, moto_app: WSGIApplication, mirror: Mirror, journal: Journal
    ) -> None:
        self.config = config
        self._moto = moto_app
        self._mirror = mirror
        self._journal = journal
        # moto's backends are plain dicts and lists: one ECR call at a time keeps a
        # mirroring from interleaving with another call's reads or deletions.
        self._ecr_lock = threading.RLock()
        self._undo: list[Callable[[], None]] = []

    def on_close(self, undo: Callable[[], None]) -> None:
        self._undo.append(undo)

    def close(self) -> None:
        """Undoes the process-wide patches (for tests that run the app in-process)."""
        while self._undo:
            self._undo.pop()()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        started = time.monotonic()
        path = environ.get("PATH_INFO", "")
        notes: list[str] = []
        what = "-"
        refusal = self._refusal(environ)
        if path == HEALTH_PATH and environ.get("REQUEST_METHOD") == "GET":
            answer = _json_answer(200, "OK", self.health())
        elif refusal:
            error = {"__type": "UnrecognizedClientException", "message": refusal}
            answer = _json_answer(400, "Bad Request", error)
        else:
            # moto takes its account from this header when MOTO_ACCOUNT_ID is unset.
            environ["HTTP_X_MOTO_ACCOUNT_ID"] = self.config.account
            target = environ.get("HTTP_X_AMZ_TARGET", "")
            if target.startswith(ECR_TARGET):
                operation = target[len(ECR_TARGET) :]
                body = _read_body(environ)
                params = _params(body)
                what = f"ecr:{operation} {params.get('repositoryName', '')}".rstrip()
                with self._ecr_lock:
                    answer = self._ecr(
                        operation, request_region(environ), body, params, environ, notes
                    )
            else:
                if path == SCAN_RESULTS_PATH and environ.get("REQUEST_METHOD") == "POST":
                    what = self._queue_findings(environ)
                answer = _run(self._moto, environ)
        elapsed = (time.monotonic() - started) * 1000
        log.info(
            "%s %s %s -> %d (%.0f ms)%s",
            environ.get("REQUEST_METHOD", "?"),
            path,
            what,
            answer.code,
            elapsed,
            "".join(f"; {note}" for note in notes),
        )
        start_response(answer.status, answer.headers)
        return [answer.body]

    def _refusal(self, environ: WSGIEnvironment) -> str | None:
        """Why a request is refused: it comes from a web page (an ``Origin``, a CORS
        preflight), or is not signed with this sandbox's access key id."""
        if environ.get("HTTP_ORIGIN") or environ.get("REQUEST_METHOD") == "OPTIONS":
            return "cross-origin requests are refused"
        credential = f"Credential={self.config.access_key}/"
        if not self.config.access_key or credential not in environ.get("HTTP_AUTHORIZATION", ""):
            return "The security token included in the request is invalid."
        return None

    def _queue_findings(self, environ: WSGIEnvironment) -> str:
        """Scan findings queued without an account or region go to the sandbox's account
        and to the region of the request's signature (moto would file them under its
        default account, where no sandbox repository is)."""
        data = _params(_read_body(environ))
        data.setdefault("account_id", self.config.account)
        data.setdefault("region", request_region(environ))
        body = json.dumps(data).encode()
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        results = data.get("results")
        return f"queued {len(results) if isinstance(results, list) else 0} scan results"

    def health(self) -> dict[str, Any]:
        return {
            "account": self.config.account,
            "registry": self.config.registry,
            "pid": os.getpid(),
        }

    def _ecr(
        self,
        operation: str,
        region: str,
        body: str,
        params: dict[str, Any],
        environ: WSGIEnvironment,
        notes: list[str],
    ) -> _Answer:
        name = params.get("repositoryName")
        listing = None
        if operation in MIRRORED and isinstance(name, str):
            listing = self._mirror.sync(region, name, notes)
        if (
            operation == "BatchDeleteImage"
            and isinstance(name, str)
            and self._mirror.knows(region, name)
        ):
            if listing is None:
                return _ecr_error("the sandbox registry did not answer; nothing was deleted")
            try:
                self._mirror.delete_images(name, params.get("imageIds") or [], listing)
            except RegistryTrouble as exc:
                notes.append(f"registry deletion failed: {exc}")
                return _ecr_error(f"the sandbox registry failed to delete: {exc}")
        answer = _run(self._moto, environ)
        if answer.code != 200:
            return answer
        if (
            operation == "DeleteRepository"
            and params.get("force")
            and isinstance(name, str)
            and listing
        ):
            try:
                self._mirror.delete_all(name, listing)
            except RegistryTrouble as exc:
                notes.append(f"registry kept the images of {name}: {exc}")
        if operation in JOURNALED:
            self._journal.record(JournalEntry(operation, region, body))
        return answer

    def replay(self) -> tuple[int, int]:
        """Feeds the journal to moto (not to the registry, nor back to the journal)."""
        from werkzeug.test import EnvironBuilder

        done = refused = 0
        for entry in self._journal.entries():
            environ = EnvironBuilder(
                method="POST",
                path="/",
                data=entry.body.encode(),
                headers=[
                    ("Content-Type", "application/x-amz-json-1.1"),
                    ("X-Amz-Target", ECR_TARGET + entry.operation),
                    ("X-Moto-Account-Id", self.config.account),
                    ("Authorization", _replay_signature(entry.region)),
                ],
            ).get_environ()
            if _run(self._moto, environ).code == 200:
                done += 1
            else:
                refused += 1
        return done, refused


def _replay_signature(region: str) -> str:
    # moto's server does not check signatures; it reads the service and region here.
    scope = f"sandbox/20000101/{region}/ecr/aws4_request"
    return f"AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders=host, Signature=0"


def _read_body(environ: WSGIEnvironment) -> str:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    data = environ["wsgi.input"].read(length) if length > 0 else b""
    environ["wsgi.input"] = io.BytesIO(data)  # moto reads it again
    return data.decode("utf-8", errors="replace")


def _params(body: str) -> dict[str, Any]:
    try:
        data = json.loads(body) if body else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _ecr_error(message: str) -> _Answer:
    return _json_answer(
        500,
        "Internal Server Error",
        {"__type": "ServerException", "message": message},
        kind="application/x-amz-json-1.1",
    )


def patch_moto_login(token: str, endpoint: str, hours: int = TOKEN_HOURS) -> Callable[[], None]:
    """Makes moto's GetAuthorizationToken answer for the sandbox registry; returns the undo.

    moto answers ``AWS:<account>-auth-token``, an ECR host and 2015-01-01; ECR would
    give its registry's password, address and an expiry twelve hours on.
    """
    from moto.ecr.responses import ECRResponse

    original = ECRResponse.get_authorization_token
    encoded = base64.b64encode(f"AWS:{token}".encode()).decode()

    def get_authorization_token(self: ECRResponse) -> Any:
        answer = original(self)
        result: dict[str, list[dict[str, Any]]] = answer.result  # type: ignore[assignment]
        expires = datetime.now(UTC) + timedelta(hours=hours)
        for data in result["authorizationData"]:
            data.update(authorizationToken=encoded, proxyEndpoint=endpoint, expiresAt=expires)
        return answer

    ECRResponse.get_authorization_token = get_authorization_token  # type: ignore[method-assign]

    def undo() -> None:
        ECRResponse.get_authorization_token = original  # type: ignore[method-assign]

    return undo


def patch_scan_findings() -> Callable[[], None]:
    """Makes moto's scan of an image find nothing unless findings were queued for it;
    returns the undo.

    moto answers a started scan with a fixed fake finding (CVE-9999-9999, HIGH, in
    ``moto_fake``): every sandbox image would fail a scan gate. Findings queued through
    moto's ``/moto-api/static/ecr/scan-finding-results`` are still served as given, matched
    on the repository and the image's digest or any of its tags (moto matches only its
    latest tag), and whether the image is then asked for by digest or by tag (moto hands
    a queued result to the first form asked). A result without an ``imageId`` is served
    for the next image of its repository whose scan is read (a candidate's tag is not
    known before its build).
    """
    from moto.ecr.models import ECRBackend

    original = ECRBackend.describe_image_scan_findings

    def describe_image_scan_findings(
        self: ECRBackend, registry_id: str, repository_name: str, image_id: dict[str, Any]
    ) -> dict[str, Any]:
        repository = self._get_repository(repository_name, registry_id)
        image = repository._get_image(image_id.get("imageTag"), image_id.get("imageDigest"))
        for result in list(self.scan_finding_results):
            wanted = result.get("imageId") or {}
            anyone = not (wanted.get("imageTag") or wanted.get("imageDigest"))
            if result.get("repositoryName") == repository.name and (
                anyone or wanted.get("imageTag") in image.image_tags
            ):
                image.scan_finding_results_queue.append(result)
                self.scan_finding_results.remove(result)
        answer: dict[str, Any] = original(self, registry_id, repository_name, image_id)
        served = image.scan_finding_results
        if json.dumps(image_id) in served:
            return answer  # the queued result moto handed to this form of the image id
        if served:
            return dict(list(served.values())[-1])  # queued, and handed to the other form
        clean: dict[str, Any] = json.loads(json.dumps(answer, default=str))
        clean["imageScanFindings"]["findings"] = []
        clean["imageScanFindings"].pop("findingSeverityCounts", None)
        return clean

    ECRBackend.describe_image_scan_findings = describe_image_scan_findings  # type: ignore[method-assign]

    def undo() -> None:
        ECRBackend.describe_image_scan_findings = original  # type: ignore[method-assign]

    return undo


def patch_repository_uri(registry: str) -> Callable[[], None]:
    """Makes moto's repositories name the sandbox registry in ``repositoryUri`` (it names
    ``<account>.dkr.ecr.<region>.amazonaws.com``), as ECR names its own; returns the undo."""
    from moto.ecr.models import Repository

    original = Repository.__init__

    def init(self: Repository, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.uri = f"{registry}/{self.name}"

    Repository.__init__ = init  # type: ignore[method-assign]

    def undo() -> None:
        Repository.__init__ = original  # type: ignore[method-assign]

    return undo


def build_app(config: SandboxConfig) -> SandboxApp:
    """moto's server app for the account, patched, emptied and fed the journal."""
    from moto.ecr.models import ecr_backends
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    moto_app = DomainDispatcherApplication(create_backend_app)
    journal = Journal(config.journal_path)
    app = SandboxApp(
        config,
        moto_app,
        Mirror(RegistryLink(config.registry, config.token), config.account),
        journal,
    )
    app.on_close(patch_moto_login(config.token, config.proxy_endpoint))
    app.on_close(patch_repository_uri(config.registry))
    app.on_close(patch_scan_findings())
    # A fresh process has no repositories; an in-process restart must not keep any either.
    ecr_backends[config.account].reset()
    cut = journal.repair()
    if cut:
        log.warning("journal: cut a torn last line (%d bytes)", cut)
    done, refused = app.replay()
    log.info("journal: replayed %d changes (%d refused)", done, refused)
    return app


def bind(port: int) -> socket.socket:
    """A listening socket on 127.0.0.1 only; OSError if the port cannot be had."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # As werkzeug does; on Linux it still refuses a port another socket listens on.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((LOOPBACK, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def make_server_on(sock: socket.socket, app: SandboxApp) -> BaseWSGIServer:
    """A threaded werkzeug server on a socket from :func:`bind` (which it takes over)."""
    from moto.moto_server.werkzeug_app import MotoRequestHandler
    from werkzeug.serving import make_server

    class _Handler(MotoRequestHandler):
        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            pass  # the app logs one line per request itself

    port = sock.getsockname()[1]
    try:
        return make_server(
            LOOPBACK, port, app, threaded=True, request_handler=_Handler, fd=sock.fileno()
        )
    finally:
        sock.close()  # the server holds its own duplicate of the descriptor


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ecr_release.outside.sandbox_api",
        description="The sandbox's ECR and STS API (moto), kept in step with the sandbox registry.",
    )
    parser.add_argument("--port", type=int, required=True, help="port on 127.0.0.1 to serve on")
    parser.add_argument(
        "--state-dir", type=Path, required=True, help="holds token and journal.jsonl"
    )
    parser.add_argument("--registry", required=True, help="the sandbox registry, 127.0.0.1:PORT")
    parser.add_argument("--account", required=True, help="the sandbox's 12-digit account id")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s sandbox-api %(levelname)s %(message)s",
    )
    try:
        config = load_config(args.account, args.registry, args.state_dir)
    except SetupError as exc:
        print(f"sandbox-api: {exc}", file=sys.stderr)
        return EXIT_BAD_SETUP
    try:
        sock = bind(args.port)
    except OSError as exc:
        print(
            f"sandbox-api: cannot listen on {LOOPBACK}:{args.port}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return EXIT_PORT_TAKEN
    # Before moto's models are imported (build_app), as moto_server's users do.
    os.environ["MOTO_ACCOUNT_ID"] = config.account
    server = make_server_on(sock, build_app(config))

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt  # werkzeug's serve_forever returns on it and closes

    signal.signal(signal.SIGTERM, stop)
    log.info(
        "serving on http://%s:%d (account %s, registry %s, pid %d)",
        LOOPBACK,
        server.port,
        config.account,
        config.registry,
        os.getpid(),
    )
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
