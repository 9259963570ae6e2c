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
import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import RegistryError

MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.index.v1+json",
    )
)
DOCKER_CERTS_DIR = Path("/etc/docker/certs.d")


@dataclass(frozen=True)
class Manifest:
    digest: str
    config_digest: str | None
    media_type: str


@dataclass
class Registry:
    """Read-only access to one registry host with basic auth."""

    host: str
    username: str
    password: str = field(repr=False)
    timeout: float = 30.0
    certs_dir: Path = DOCKER_CERTS_DIR

    def manifest(self, repository: str, reference: str) -> Manifest | None:
        response = self._get_manifest(repository, reference)
        if response is None:
            return None
        with response:
            body = response.read()
            header = response.headers.get("Docker-Content-Digest")
            media_type = response.headers.get("Content-Type", "")
        digest = header or "sha256:" + hashlib.sha256(body).hexdigest()
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise RegistryError(
                f"registry {self.host} returned a manifest that is not a JSON object"
            )
        config = data.get("config") or {}
        return Manifest(
            digest=digest,
            config_digest=config.get("digest"),
            media_type=str(data.get("mediaType") or media_type),
        )

    # -- transport ----------------------------------------------------------------

    def _get_manifest(self, repository: str, reference: str) -> Any:
        """The open response to ``GET .../manifests/<reference>``; None for a 404."""
        url = f"https://{self.host}/v2/{repository}/manifests/{reference}"
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        request = urllib.request.Request(url, headers={"Accept": MANIFEST_TYPES})
        # Unredirected: the password never follows a redirect to another host.
        request.add_unredirected_header("Authorization", f"Basic {token}")
        try:
            return urllib.request.urlopen(  # noqa: S310
                request, timeout=self.timeout, context=self._ssl_context
            )
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            if exc.code in (401, 403):
                raise RegistryError(
                    f"registry {self.host} refused the login token (HTTP {exc.code}) for "
                    f"{repository}: check the repository policy and the identity's "
                    "ecr:BatchGetImage permission"
                ) from exc
            raise RegistryError(
                f"registry {self.host} answered HTTP {exc.code} for {repository}:{reference}"
            ) from exc
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", exc)
            raise RegistryError(
                f"cannot reach registry {self.host}: {reason}; check the network and try again"
            ) from exc

    @functools.cached_property
    def _ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        # Docker trusts every *.crt in certs.d/<host>/ as a CA for that registry.
        host_dir = self.certs_dir / self.host
        if host_dir.is_dir():
            for ca in sorted(host_dir.glob("*.crt")):
                context.load_verify_locations(cafile=str(ca))
        return context
