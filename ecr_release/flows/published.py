"""The repository as the registry holds it: what a version points to, whether it was
released from the same inputs, whether a push landed as pushed, and the tags put
beside a version.

Every question goes to the registry through ``EcrAccess.read`` (docker's stored login
when it still works, a token otherwise). The ECR API is asked only what the registry
cannot tell: whether a repository nothing was pushed to exists, and its tag mutability.
A dry run is wired with :class:`PlanningPublished` (and a ``PlanningRegistry``, which
shows the tags it would put): it reads like the real one, says in plan lines what it
cannot know, and verifies nothing, since nothing was pushed. Nothing here asks which
kind of run this is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from ..errors import AwsError, DockerError, RegistryAuthError, RegistryError, SettingsError
from ..model.fingerprint import Fingerprint
from ..model.inputs import judge, same_image
from ..model.settings import Settings
from ..model.tags import tags_to_put
from ..outside.docker import Docker
from ..outside.ecr import EcrAccess, lifecycle_drift, lifecycle_policy
from ..outside.registry import Manifest, RawManifest

log = logging.getLogger("ecr_release")

# What a dry run reports as the digest: nothing was pushed.
DRY_RUN_DIGEST = "(dry-run)"


class Published:
    """One repository's published versions and tags, read (and tagged) through the registry."""

    def __init__(
        self,
        settings: Settings,
        ecr: EcrAccess,
        docker: Docker,
        progress: Callable[[str], None],
    ) -> None:
        self.settings = settings
        self.ecr = ecr
        self.docker = docker
        self._progress = progress
        self.repository_known = False  # the registry (or the ECR API) said it exists
        self._tags: list[str] | None = None  # its tags, when the registry listed them

    # What the summary says of the run: this one changes things.
    plan_only = False

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
            self._tags = self.ecr.registry().tags(name)
        except RegistryAuthError:
            self._tags = None
        self.repository_known = self._tags is not None
        return self.repository_known

    def is_empty(self) -> bool:
        """Does the repository hold no tag? (Asked of the registry: the ECR API's view may
        lag behind it, and moto's knows nothing of pushes.)"""
        if self._tags is None:
            name = self.name
            self._tags = self.ecr.read(lambda registry: registry.tags(name)) or []
        return not self._tags

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

    def may_skip_describe(self) -> bool:
        """May ensure-repo skip ``DescribeRepositories``? Yes when the registry already said
        the repository exists and no ECR client was made yet (so boto3 is never imported).
        Not when a lifecycle policy is configured and the repository holds nothing yet:
        ensure-repo then puts a policy that its creation may have failed to put."""
        lifecycle_pending = self.settings.expire_untagged_days is not None and not self._tags
        return self.repository_known and not self.ecr.connected and not lifecycle_pending

    def lifecycle_drift(self, days: int) -> str | None:
        """The repository's lifecycle drift from ``days``, to warn about. An empty repository
        with no policy gets the configured one: that is a creation whose
        ``PutLifecyclePolicy`` failed (the run stopped there), finished now, and nothing is
        in it to expire."""
        name, api = self.name, self.ecr.api
        found = api.lifecycle_policy(name)
        if found is None and self.is_empty():
            api.put_lifecycle_policy(name, lifecycle_policy(days))
            log.info(
                "put the lifecycle policy of %s (untagged images expire after %d days)", name, days
            )
            return None
        return lifecycle_drift(found, days)

    def verify(self, version: str, pushed_digest: str | None, local: str) -> str:
        """Read the tag back: it must name the pushed manifest, whose config is our image."""
        name = self.name
        if pushed_digest is None:
            raise DockerError(f"docker push {local} reported no digest; check the registry")
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
        self._verify_tags(version, tags, digest)
        return digest

    def _verify_tags(self, version: str, tags: Sequence[str], digest: str) -> None:
        for tag in tags:
            now = self._digest_of(tag)
            if now != digest:
                raise RegistryError(
                    f"verification failed: tag {tag} resolves to {now or 'nothing'}, "
                    f"not {version} ({digest})"
                )
            log.info("verified %s:%s -> %s", self.name, tag, digest)

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


class PlanningPublished(Published):
    """A dry run's view of the repository: the same reads, plan lines where the real run
    would act or where the registry cannot be asked, and no verification (nothing was
    pushed, no tag was put)."""

    plan_only = True

    def identical_release(
        self, version: str, mine: Fingerprint | None, local: str
    ) -> Manifest | None:
        where = self.settings.remote_image(self.ecr.host(), version)
        try:
            existing = super().identical_release(version, mine, local)
        except RegistryError as exc:
            log.info("[dry-run] check: could not ask the registry about %s (%s)", where, exc)
            self._unreachable = True
            return None
        if existing is None:
            log.info("[dry-run] check: %s is not released yet", where)
        return existing

    _unreachable = False

    def knows_repository(self) -> bool:
        return False if self._unreachable else super().knows_repository()

    def may_skip_describe(self) -> bool:
        return False  # the plan shows what ensure-repo would do

    def tags_to_put(self, tags: Sequence[str], digest: str | None) -> list[str]:
        if self._unreachable:
            return list(tags)  # the plan cannot tell which are in place already
        return super().tags_to_put(tags, digest)

    def verify(self, version: str, pushed_digest: str | None, local: str) -> str:
        return DRY_RUN_DIGEST

    def _verify_tags(self, version: str, tags: Sequence[str], digest: str) -> None:
        """Nothing was put: nothing to read back."""
