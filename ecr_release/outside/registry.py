"""The registry's own v2 HTTP API: what a tag points to, read straight from the registry.

ECR and every OCI registry answer ``GET /v2/<repository>/manifests/<tag>`` with
the manifest (whose ``config.digest`` is the image ID) and its digest in
``Docker-Content-Digest``; basic auth ``AWS:<password>`` works on ECR. One GET
answers both questions a release asks (does the tag exist, which image is it), so
no separate HEAD is made. The ECR API cannot stand in for this (moto, for one,
does not know what was pushed). TLS trust is the system's plus Docker's own
per-registry CAs (``/etc/docker/certs.d/<host>/*.crt``): what docker trusts.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import http.client
import ipaddress
import json
import logging
import os
import re
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import IO, Any

from ..errors import RegistryAuthError, RegistryError

log = logging.getLogger(__name__)

MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.index.v1+json",
    )
)
CONFIG_TYPES = ", ".join(
    (
        "application/vnd.oci.image.config.v1+json",
        "application/vnd.docker.container.image.v1+json",
        "application/octet-stream",
    )
)
DOCKER_CERTS_DIR = Path("/etc/docker/certs.d")
# Manifests and configs are small; anything this big is not one.
ERROR_BODY_BYTES = 4096  # of an error's body: its JSON says why
MAX_BODY_BYTES = 16 * 1024 * 1024


# OCI's digest grammar: algorithm ":" encoded.
DIGEST_RE = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")


@dataclass(frozen=True)
class Manifest:
    digest: str
    config_digest: str | None
    media_type: str
    # For an index: its image manifests' digests (attestations, platform unknown/unknown, left
    # out), in the index's order.
    images: tuple[str, ...] = ()


@dataclass(frozen=True)
class RawManifest:
    """A manifest as served: its exact bytes and media type (re-encoding changes the digest)."""

    manifest: Manifest
    body: bytes = field(repr=False)
    content_type: str


@dataclass
class Registry:
    """The registry's own API on one host, with basic auth: reads, and a tag put in place.

    Every failure, whether the registry cannot be reached, refuses, cuts its answer
    short or answers something that is not a manifest, is one ``RegistryError`` line.
    """

    host: str
    username: str
    password: str = field(repr=False)
    timeout: float = 30.0
    certs_dir: Path = DOCKER_CERTS_DIR
    _every_ca: bool = field(default=False, init=False, repr=False)  # the bundle loaded too

    @property
    def base_url(self) -> str:
        """``https://HOST``; plain ``http://`` only for a loopback host (the sandbox's
        registry), as Docker itself allows with no configuration."""
        return f"{'http' if is_loopback(self.host) else 'https'}://{self.host}"

    def manifest(self, repository: str, reference: str) -> Manifest | None:
        """What ``repository:reference`` points to; None when the tag (or repository) is unknown."""
        raw = self.raw_manifest(repository, reference)
        return raw.manifest if raw else None

    def raw_manifest(self, repository: str, reference: str) -> RawManifest | None:
        """The manifest exactly as the registry serves it (bytes and media type), checked."""
        what = f"{repository}:{reference}"
        answer = self._get(f"/v2/{repository}/manifests/{reference}", MANIFEST_TYPES, what)
        if answer is None:
            return None
        headers, body = answer
        digest = (
            headers.get("Docker-Content-Digest") or "sha256:" + hashlib.sha256(body).hexdigest()
        )
        content_type = headers.get("Content-Type", "")
        manifest = _parse_manifest(body, digest, content_type, _bad_manifest(self.host, what))
        return RawManifest(manifest, body, content_type or manifest.media_type)

    def put_manifest(self, repository: str, tag: str, raw: RawManifest) -> str:
        """``PUT`` the exact bytes under another tag (a registry-side tag: nothing is pulled
        or pushed); return the digest the registry answers, which must be the manifest's."""
        what = f"{repository}:{tag}"
        answer = self._send(
            "PUT", f"/v2/{repository}/manifests/{tag}", "*/*", what, raw.body, raw.content_type
        )
        digest = answer[0].get("Docker-Content-Digest") if answer else None
        if digest != raw.manifest.digest:
            raise RegistryError(
                f"registry {self.host} stored {what} as {digest}, not {raw.manifest.digest}: "
                "look at the tag in the registry before promoting again"
            )
        return digest

    # -- transport ----------------------------------------------------------------

    def _get(self, path: str, accept: str, what: str) -> tuple[Message, bytes] | None:
        """Headers and the whole body of a GET; None for a 404."""
        return self._send("GET", path, accept, what)

    def _send(
        self,
        method: str,
        path: str,
        accept: str,
        what: str,
        body: bytes | None = None,
        content_type: str | None = None,
    ) -> tuple[Message, bytes] | None:
        """Headers and the whole body of a request; None for a 404."""
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        headers = {"Accept": accept, **({"Content-Type": content_type} if content_type else {})}
        url = f"{self.base_url}{path}"  # https, or http on loopback: never another scheme
        request = urllib.request.Request(url, data=body, method=method, headers=headers)  # noqa: S310
        # Unredirected: the password never follows a redirect to another host.
        request.add_unredirected_header("Authorization", f"Basic {token}")
        try:
            response = self._open(request)
        except urllib.error.HTTPError as exc:
            said = _said(exc)  # and closed
            if exc.code == 404:
                return None
            raise _refusal(self.host, exc.code, method, what, said) from exc
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", exc)
            raise RegistryError(
                f"cannot reach registry {self.host}: {reason}; check the network and try again"
            ) from exc
        with response:
            try:
                body = response.read(MAX_BODY_BYTES + 1)
                # read(n) returns short when the peer hangs up; what Content-Length still
                # promises is left in .length.
                if getattr(response, "length", None):
                    raise http.client.IncompleteRead(body, response.length)
            except (OSError, http.client.HTTPException) as exc:
                raise RegistryError(
                    f"registry {self.host} broke off its answer for {what} "
                    f"({type(exc).__name__}: {exc}); check the network and try again"
                ) from exc
        if len(body) > MAX_BODY_BYTES:
            raise RegistryError(
                f"registry {self.host} answered more than {MAX_BODY_BYTES} bytes for {what}"
            )
        return response.headers, body

    def api_status(self, *, login: bool = True) -> int:
        """The HTTP status of ``GET /v2/``, the API's base: 200 when the registry takes the
        login, 401 when it wants one (without ``login`` no credential is sent). Any status
        means it answers over trusted TLS; ``RegistryError`` when it cannot be reached."""
        request = urllib.request.Request(f"{self.base_url}/v2/", method="GET")  # noqa: S310
        if login:
            token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            request.add_unredirected_header("Authorization", f"Basic {token}")
        for attempt in (1, 2):  # once more after a TLS handshake the far end dropped
            try:
                with self._open(request) as response:
                    return int(response.status)
            except urllib.error.HTTPError as exc:
                exc.close()
                return exc.code
            except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
                reason = getattr(exc, "reason", exc)
                if attempt == 2 or not isinstance(reason, (ssl.SSLEOFError, ConnectionResetError)):
                    raise RegistryError(f"cannot reach registry {self.host}: {reason}") from exc
        raise AssertionError("unreachable")

    def tags(self, repository: str) -> list[str] | None:
        """The repository's tags (``GET /v2/<name>/tags/list``); None when the registry does
        not know the repository (a 404 ``NAME_UNKNOWN``, on ECR and on CNCF distribution
        alike; distribution also says so of a repository nothing was pushed to)."""
        answer = self._get(f"/v2/{repository}/tags/list", "application/json", repository)
        if answer is None:
            return None
        try:
            data = json.loads(answer[1])
        except (ValueError, RecursionError):
            data = None
        found = data.get("tags") if isinstance(data, dict) else None
        if not isinstance(data, dict) or not isinstance(found, list | None):
            raise RegistryError(
                f"registry {self.host} answered a tag list for {repository} that is not one"
            )
        return [str(tag) for tag in found or ()]

    def repository_exists(self, repository: str) -> bool:
        """Does the registry know the repository? (See :meth:`tags`.)"""
        return self.tags(repository) is not None

    def image_config(self, repository: str, digest: str) -> dict[str, Any]:
        """The image config blob (``GET /v2/<name>/blobs/<digest>``), checked against its digest.

        ECR answers with a redirect to a pre-signed S3 URL: it is followed (https only)
        without the Authorization header, which never leaves the registry's host.
        """
        what = f"{repository}@{digest}"
        answer = self._get(f"/v2/{repository}/blobs/{digest}", CONFIG_TYPES, what)
        if answer is None:
            raise RegistryError(
                f"registry {self.host} has no config blob {digest} for {repository}, which a "
                "manifest names: the repository is damaged or still being written; try again"
            )
        body = answer[1]
        algorithm, _, expected = digest.partition(":")
        if algorithm != "sha256" or hashlib.sha256(body).hexdigest() != expected:
            raise RegistryError(
                f"registry {self.host} answered a config for {what} that does not match its digest"
            )
        try:
            config = json.loads(body)
        except (ValueError, RecursionError):
            config = None
        if not isinstance(config, dict):
            raise RegistryError(
                f"registry {self.host} answered a config for {what} that is not a JSON object"
            )
        return config

    def labels(self, repository: str, config_digest: str) -> dict[str, str]:
        """The labels of the image whose config has this digest ({} when it has none)."""
        inner = self.image_config(repository, config_digest).get("config")
        labels = inner.get("Labels") if isinstance(inner, dict) else None
        if not isinstance(labels, dict):
            return {}
        return {str(k): str(v) for k, v in labels.items()}

    def _open(self, request: urllib.request.Request) -> Any:
        """``request`` sent; one only the whole CA bundle vouches for, with it (same CAs)."""
        try:
            return self._opener.open(request, timeout=self.timeout)
        except urllib.error.URLError as exc:
            if not isinstance(exc.reason, ssl.SSLCertVerificationError) or self._every_ca:
                raise
        self._every_ca = True
        self.__dict__["_opener"] = _opener(self.certs_dir, self.host, every_ca=True)
        return self._opener.open(request, timeout=self.timeout)

    @functools.cached_property
    def _opener(self) -> urllib.request.OpenerDirector:
        return _opener(self.certs_dir, self.host, every_ca=False)


def _opener(certs_dir: Path, host: str, *, every_ca: bool) -> urllib.request.OpenerDirector:
    trust = urllib.request.HTTPSHandler(context=docker_trust(certs_dir, host, every_ca=every_ca))
    # Loopback never through a proxy: the login would travel to it.
    direct = [urllib.request.ProxyHandler({})] if is_loopback(host) else []
    return urllib.request.build_opener(trust, _HttpsOnlyRedirects(), *direct)


def _said(error: urllib.error.HTTPError) -> str:
    """What the registry's error body says (the distribution API's ``errors``: the first
    one's code and message, on one line); empty when it says nothing readable, and for a
    404 (not read). The error's connection is closed."""
    try:
        with error:
            if error.code == 404:
                return ""
            found = json.loads(error.read(ERROR_BODY_BYTES) or b"null")
        first = found["errors"][0]
        text = " ".join(f"{first.get('code', '')}: {first.get('message', '')}".split())
    except (OSError, http.client.HTTPException, ValueError, TypeError, LookupError, AttributeError):
        return ""  # a body cut short, or not the API's JSON: the status says enough
    text = text.strip(": ")
    return text if len(text) <= 200 else text[:197] + "..."


def _refusal(host: str, code: int, method: str, what: str, said: str = "") -> RegistryError:
    """The one line for an HTTP error other than 404, with what the registry said."""
    if code in (401, 403):
        needs = "ecr:PutImage" if method == "PUT" else "ecr:BatchGetImage"
        return RegistryAuthError(
            f"registry {host} refused the login token (HTTP {code}) for "
            f"{what.split(':', 1)[0].split('@', 1)[0]}: check the repository policy "
            f"and the identity's {needs} permission"
        )
    return RegistryError(
        f"registry {host} answered HTTP {code} for {what}" + (f" ({said})" if said else "")
    )


def is_loopback(host: str) -> bool:
    """A loopback address (``127.0.0.0/8``, ``[::1]``), with or without a port: where the
    suite speaks plain HTTP. A name (``localhost`` too) always gets TLS."""
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]")
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def docker_trust(certs_dir: Path, host: str, *, every_ca: bool = True) -> ssl.SSLContext:
    """The system's CAs, plus every ``*.crt`` in ``certs.d/<host>/``: what docker trusts.
    Without ``every_ca``, the system's CAs only as its CA directory serves them."""
    context = ssl.create_default_context() if every_ca else directory_trust()
    host_dir = certs_dir / host
    if host_dir.is_dir():
        for ca in sorted(host_dir.glob("*.crt")):
            context.load_verify_locations(cafile=str(ca))
    return context


def directory_trust() -> ssl.SSLContext:
    """The system's CAs as its CA directory (``SSL_CERT_DIR``, hashed names) serves them:
    OpenSSL reads the one a handshake needs, not the whole bundle (about 30 ms of CPU
    beside the walk). A part of what ``ssl.create_default_context()`` holds (it loads the
    directory too), so nothing more is trusted; without one such directory, that context."""
    capath = ssl.get_default_verify_paths().capath  # None for a list of several
    if sys.platform == "win32" or not capath or not os.path.isdir(capath):
        return ssl.create_default_context()
    return ssl.create_default_context(capath=capath)


def _bad_manifest(host: str, what: str) -> Callable[[str], RegistryError]:
    def error(problem: str) -> RegistryError:
        return RegistryError(
            f"registry {host} returned a manifest for {what} that {problem}: it is not an image "
            "manifest this suite can check; look at the repository with the AWS console or "
            "`aws ecr batch-get-image`"
        )

    return error


class PlanningRegistry(Registry):
    """A dry run's registry: it reads for real and shows the tags it would put."""

    def put_manifest(self, repository: str, tag: str, raw: RawManifest) -> str:
        log.info(
            "[dry-run] promote: PUT /v2/%s/manifests/%s (the manifest %s, %s)",
            repository,
            tag,
            raw.manifest.digest,
            raw.content_type,
        )
        return raw.manifest.digest


class _HttpsOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only to https: a pre-signed URL is a credential of its own.

    urllib already drops the unredirected Authorization header on every redirect.
    """

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        if urllib.parse.urlsplit(newurl).scheme != "https":
            # Not named: a pre-signed URL is a credential.
            raise urllib.error.URLError("it redirected to a URL that is not https; refused")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _index_images(data: dict[str, Any]) -> tuple[str, ...]:
    """The digests of an index's image manifests, without BuildKit's attestations."""
    found = []
    for entry in data.get("manifests") or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("digest"), str):
            continue
        platform = entry.get("platform")
        platform = platform if isinstance(platform, dict) else {}
        if platform.get("os") == "unknown" and platform.get("architecture") == "unknown":
            continue
        if DIGEST_RE.fullmatch(entry["digest"]):
            found.append(entry["digest"])
    return tuple(found)


def _parse_manifest(
    body: bytes, digest: str, content_type: str, bad: Callable[[str], RegistryError]
) -> Manifest:
    """The manifest's digest, config digest and media type, once its shape is checked."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        data = None
    if not isinstance(data, dict):
        raise bad("is not a JSON object")
    if not DIGEST_RE.fullmatch(digest):
        raise bad(f"has the digest {digest[:80]!r}")
    media_type = data.get("mediaType", content_type)
    if not isinstance(media_type, str):
        raise bad("has a mediaType that is not a string")
    config = data.get("config")
    if config is None:  # an index (multi-platform, or with attestations) has no config
        return Manifest(digest, None, media_type or content_type, _index_images(data))
    if not isinstance(config, dict):
        raise bad("has a config that is not an object")
    config_digest = config.get("digest")
    if not isinstance(config_digest, str) or not DIGEST_RE.fullmatch(config_digest):
        raise bad("has a config without a valid digest")
    return Manifest(digest, config_digest, media_type or content_type)
