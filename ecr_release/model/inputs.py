"""What a build of a version is made from, and whether a released version was made the same.

``gather`` walks the build context once (refusing secrets, digesting what Docker
would send), resolves every image the build reads, and returns the build arguments and the
labels the image will carry, its fingerprint among them. ``judge`` decides what an
existing tag means: released from identical inputs (a no-op, on any machine), from
other inputs (refused, naming what differs), or, for an image without a
fingerprint (pushed by another tool), the same local image or not.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ..errors import VersionExistsError
from ..outside.git import Revision
from ..outside.registry import Manifest
from .buildcontext import FileDigests, needed, raise_on_secrets, scan_context
from .dockerfile import Dockerfile, context_sources, split_labels
from .fingerprint import (
    SERVICE_NOT_INPUTS,
    BaseImage,
    Fingerprint,
    base_labels,
    fingerprint,
    verb_for,
)
from .provenance import UNCOMMITTED_LABEL, Provenance, provenance
from .settings import Settings

REVISION = "org.opencontainers.image.revision"


@dataclass(frozen=True)
class BuildInputs:
    """One version's build: its build arguments, the labels to pass with ``--label`` (those
    the Dockerfile does not set from a build argument), its fingerprint and the images it
    reads (the final stage's base flagged ``final``)."""

    build_args: dict[str, str]
    labels: dict[str, str]
    fingerprint: Fingerprint
    bases: tuple[BaseImage, ...]
    provenance: Provenance = field(default_factory=lambda: Provenance(None))
    # What the build reads of the context (see ``buildcontext.needed``; None: all of it),
    # and how many entries the context holds.
    needed: tuple[str, ...] | None = None
    entries: int = 0


def build_metadata(
    version: str,
    created: str,
    revision: Revision,
    base_image: str | None,
    made: Provenance | None = None,
    declared: Mapping[str, str] | None = None,
) -> tuple[dict[str, str], dict[str, str]]:
    """The build arguments and OCI labels of an image: (build_args, labels). With
    uncommitted changes that reach the image (``made``), the revision is ``<commit>-dirty``
    and a label holds the changes' digest. ``declared``: a service's own build arguments
    (the suite's own, above, are never among them)."""
    labels = {
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.created": created,
    }
    build_args = {**(declared or {}), "APP_VERSION": version, "BUILD_DATE": created}
    commit = made.revision if made is not None else revision.commit
    if commit:
        labels[REVISION] = commit
        build_args["VCS_REF"] = commit
    if made is not None and made.digest:
        labels[UNCOMMITTED_LABEL] = made.digest
    if revision.source:
        labels["org.opencontainers.image.source"] = revision.source
        build_args["SOURCE_URL"] = revision.source
    if base_image:
        build_args["BASE_IMAGE"] = base_image
    return build_args, labels


def gather(
    settings: Settings,
    version: str,
    *,
    revision: Revision | Callable[[], Revision],
    created: str,
    resolve_base: Callable[[str], str],
    digests: FileDigests | None = None,
) -> BuildInputs:
    """Scan the context (secrets refused here, before anything runs) and fingerprint the build.
    ``revision`` may be a pending answer (git's, asked while the context is walked): it is
    waited for once the walk is done. ``digests`` keeps the context's file digests between
    runs, so that a file unchanged since is not read again."""
    also = [settings.env_file] if settings.env_file else []  # the settings file itself
    scan = scan_context(
        settings.build_context, settings.dockerfile, settings.secret_scan_allow, also, digests
    )
    raise_on_secrets(settings.build_context, scan.secrets)
    revision = revision() if callable(revision) else revision
    made = provenance(revision, settings.build_context, settings.dockerfile)
    build_args, labels = build_metadata(
        version, created, revision, settings.base_image, made, settings.build_args
    )
    dockerfile = Dockerfile.read(settings.dockerfile, build_args)
    ignored = SERVICE_NOT_INPUTS if settings.service else frozenset()
    found, bases = fingerprint(scan.digest, dockerfile, build_args, resolve_base, ignored)
    wanted = {**labels, **found.labels(), **base_labels(bases)}
    # What the Dockerfile's LABEL reads from build arguments costs no build step of its own.
    carried, passed = split_labels(dockerfile, wanted, build_args)
    sources = context_sources(dockerfile)
    reads = needed(scan.entries, sources) if sources is not None else None
    return BuildInputs(
        {**build_args, **carried}, passed, found, tuple(bases), made, reads, len(scan.entries)
    )


def judge(
    repository: str,
    version: str,
    manifest: Manifest,
    released_labels: Mapping[str, str],
    mine: Fingerprint | None,
    local_id: Callable[[], str | None],
    local_name: str,
) -> str:
    """Why the released ``repository:version`` already is this one, in words.

    Raises ``VersionExistsError`` when it is not: released versions are never overwritten.
    ``local_id`` is asked only for an image without a fingerprint.
    """
    released = Fingerprint.from_labels(released_labels)
    commit = (released_labels.get(REVISION) or "")[:7]
    at = f" (commit {commit})" if commit else ""
    refusal = (
        f"{repository}:{version} is already released as {manifest.digest}"
        " {why}: released versions are never overwritten; choose a new --version"
    )
    if released is not None and mine is not None:
        differ = mine.differences(released)
        if not differ:
            return f"released from identical inputs{at}"
        parts = " and ".join(differ)
        verb = verb_for(differ)
        raise VersionExistsError(
            refusal.format(why=f"and {parts} {verb} from the one released as {version}{at}")
        )
    image_id = local_id()
    if same_image(image_id, manifest):
        return f"the image built for it here, {local_name}"
    which = (
        f"with a different image than the local {local_name}"
        if image_id
        else f"and there is no local image {local_name} to compare"
    )
    raise VersionExistsError(refusal.format(why=which))


def same_image(local_id: str | None, manifest: Manifest) -> bool:
    """Is the local image the one the manifest describes?

    With Docker's classic image store the image ID is the config digest; with the
    containerd image store (Docker Engine 29+, Docker Desktop) it is the manifest's
    own digest.
    """
    return local_id is not None and local_id in (manifest.config_digest, manifest.digest)
