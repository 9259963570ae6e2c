"""The repository as the registry holds it: what a version points to, whether it was
released from the same inputs, whether a push landed as pushed, and the tags put
beside a version.

Every question goes to the registry through ``EcrAccess.read`` (docker's stored login
when it still works, a token otherwise). The ECR API is asked only what the registry
cannot tell: whether a repository nothing was pushed to exists, and its tag mutability.
In a dry run the registry is a ``PlanningRegistry``: it shows the tags it would put.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from ..errors import AwsError, RegistryAuthError, RegistryError, SettingsError
from ..model.fingerprint import Fingerprint
from ..model.inputs import judge, same_image
from ..model.settings import Settings
from ..model.tags import tags_to_put
from ..outside.docker import Docker
from ..outside.ecr import EcrAccess
from ..outside.registry import Manifest, RawManifest

log = logging.getLogger("ecr_release")


class Published:
    """One repository's published versions and tags, read (and tagged) through the registry."""

    def __init__(
        self,
        settings: Settings,
        ecr: EcrAccess,
        docker: Docker,
        progress: Callable[[str], None],
        *,
        dry_run: bool = False,
    ) -> None:
        self.settings = settings
        self.ecr = ecr
        self.docker = docker
        self._progress = progress
        self._dry_run = dry_run
        self.repository_known = False  # the registry (or the ECR API) said it exists

    @property
    def name(self) -> str:
        return self.settings.repository

    def identical_release(
        self, version: str, mine: Fingerprint | None, local: str
    ) -> Manifest | None:
        """The released manifest when ``version`` is already released from these inputs
        (``mine``; else the image ID of ``local``); None when ``version`` is new. Raises
        ``VersionExistsError`` when it is released from anything else."""
        name = self.name
        manifest = self.ecr.read(lambda registry: registry.manifest(name, version))
        if manifest is None:
            return None
        self.repository_known = True
        released = self._labels(manifest)
        why = judge(
            name, version, manifest, released, mine, lambda: self.docker.image_id(local), local
        )
        log.info(
            "%s:%s is already released as %s, %s: nothing to do (to ship newer changes, release "
            "a new --version)",
            *(name, version, manifest.digest, why),
        )
        return manifest

    def _labels(self, manifest: Manifest) -> dict[str, str]:
        """The released image's labels; for an index, its (first) image manifest's."""
        name = self.name
        if manifest.config_digest is None and manifest.images:
            child = manifest.images[0]
            found = self.ecr.read(lambda registry: registry.manifest(name, child))
            if found is None:
                return {}
            manifest = found
        config = manifest.config_digest
        return self.ecr.read(lambda registry: registry.labels(name, config)) if config else {}

    def knows_repository(self) -> bool:
        """Does the registry know the repository? (Remembered: then ensure-repo need not ask.)

        Listing tags takes ``ecr:ListImages``: a refusal means "unknown here" (the ECR API
        decides), never a stale login, so it neither falls back nor forgets the login.
        """
        name = self.name
        try:
            known = self.ecr.registry().repository_exists(name)
        except RegistryAuthError:
            known = False
        self.repository_known = known
        return known

    def require_repository(self) -> None:
        """For tag and push alone: the repository must exist (the registry first, then the
        ECR API, since a repository nothing was pushed to may be unknown to the registry)."""
        if self.repository_known or self.knows_repository():
            return
        self.ecr.require_account()
        if self.ecr.api.describe_repository(self.name) is None:
            raise AwsError(
                f"ECR repository {self.name} does not exist: run `inv ensure-repo` "
                "(or `inv release`)"
            )
        self.repository_known = True

    def verify(self, version: str, pushed_digest: str, local: str) -> str:
        """Read the tag back: it must name the pushed manifest, whose config is our image."""
        name = self.name
        manifest = self.ecr.read(lambda registry: registry.manifest(name, version))
        if manifest is None:
            raise RegistryError(
                f"verification failed: the registry has no tag {version} after the push"
            )
        if manifest.digest != pushed_digest:
            raise RegistryError(
                f"verification failed: tag {version} resolves to {manifest.digest}, but docker "
                f"pushed {pushed_digest}; another push may have raced this one"
            )
        local_id = self.docker.image_id(local)
        if not same_image(local_id, manifest):
            raise RegistryError(
                f"verification failed: the pushed manifest's config is {manifest.config_digest}, "
                f"the local image is {local_id}"
            )
        log.info("verified %s@%s", local, manifest.digest)
        return manifest.digest

    def promote(self, version: str, tags: Sequence[str]) -> str:
        """Point each tag at the released version's manifest (its exact bytes, put under the
        tag: nothing is pulled or pushed), then read each back; return the digest."""
        name = self.name
        raw = self.ecr.read(lambda registry: registry.raw_manifest(name, version))
        if raw is None:
            raise SettingsError(
                f"{name}:{version} is not released, so there is nothing to promote: "
                f"release it first (inv release --version {version})"
            )
        digest = raw.manifest.digest
        for tag in self.tags_to_put(tags, digest):
            self._progress(f"tag {name}:{tag} -> {version} ({digest})")
            self._put(tag, raw)
        for tag in tags if not self._dry_run else ():
            now = self._digest_of(tag)
            if now != digest:
                raise RegistryError(
                    f"verification failed: tag {tag} resolves to {now or 'nothing'}, "
                    f"not {version} ({digest})"
                )
            log.info("verified %s:%s -> %s", name, tag, digest)
        return digest

    def tags_to_put(self, tags: Sequence[str], digest: str | None) -> list[str]:
        """The tags to put to point at ``digest`` (None: a release not pushed yet); refuses,
        before any change, a tag the repository's mutability does not let move. The
        repository's own mutability counts; one not created yet will get the configured one."""
        self.ecr.require_account()
        found = self.ecr.api.describe_repository(self.name)
        mutability, exclusions = (
            (found.tag_mutability, found.exclusions)
            if found
            else (self.settings.tag_mutability, self.settings.tag_mutability_exclusions)
        )
        current = {tag: self._digest_of(tag) for tag in tags}
        return tags_to_put(self.name, mutability, exclusions, tags, current, digest)

    def _put(self, tag: str, raw: RawManifest) -> None:
        name = self.name
        self.ecr.read(lambda registry: registry.put_manifest(name, tag, raw))

    def _digest_of(self, tag: str) -> str | None:
        """What a tag of the repository points to now (None: no such tag)."""
        name = self.name
        manifest = self.ecr.read(lambda registry: registry.manifest(name, tag))
        return manifest.digest if manifest else None
