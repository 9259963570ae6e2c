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
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import AwsError, DockerError, RegistryAuthError, RegistryError, SettingsError
from ..model.fingerprint import Fingerprint
from ..model.inputs import judge, same_image
from ..model.settings import Settings
from ..model.tags import VERSION_LABEL, version_problem
from ..outside.docker import Docker
from ..outside.ecr import EcrAccess, Repository, lifecycle_drift, lifecycle_policy
from ..outside.registry import Manifest
from .promote import PlanningPromoter, Promoter

log = logging.getLogger("ecr_release")

# What a dry run reports as the digest: nothing was pushed.
DRY_RUN_DIGEST = "(dry-run)"
_UNSET = object()


@dataclass(frozen=True)
class Released:
    """A version as the registry holds it: its manifest, and its image's labels."""

    manifest: Manifest
    labels: dict[str, str]


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
        self.progress = progress
        self.repository_known = False  # the registry (or the ECR API) said it exists
        self._tags: list[str] | None = None  # its tags, when the registry listed them
        self._described: Repository | object | None = _UNSET  # DescribeRepositories' answer
        self.tags = self.promoter(self)  # its moving tags

    # What the summary says of the run: this one changes things.
    plan_only = False
    promoter: type[Promoter] = Promoter
    unreachable = False  # a dry run's registry could not be asked

    @property
    def name(self) -> str:
        return self.settings.repository

    def released(self, version: str) -> Released | None:
        """What the registry holds under ``version`` (None: nothing). Reads only."""
        manifest = self.ecr.read(lambda registry: registry.manifest(self.name, version))
        if manifest is None:
            return None
        self.repository_known = True
        return Released(manifest, self._labels(manifest))

    def identical_release(
        self,
        version: str,
        mine: Fingerprint | None,
        local: str,
        released: Callable[[], Released | None] | None = None,
    ) -> Manifest | None:
        """The released manifest when ``version`` is already released from these inputs
        (``mine``; else the image ID of ``local``); None when ``version`` is new; else
        ``VersionExistsError``. ``released``: the registry's answer, if asked beforehand."""
        found = released() if released is not None else self.released(version)
        if found is None:
            return None
        manifest, name, local_id = found.manifest, self.name, self.docker.image_id
        why = judge(name, version, manifest, found.labels, mine, lambda: local_id(local), local)
        log.info(
            "%s:%s is already released as %s, %s: nothing to do (to ship newer changes, release "
            "a new --version)",
            *(name, version, manifest.digest, why),
        )
        return manifest

    def identical_candidate(self, tag: str, mine: Fingerprint) -> Manifest | None:
        """The candidate an earlier run pushed under ``tag`` from these same inputs (to be
        reused), or None. A candidate tag that holds other inputs is an error: its name is
        this build's fingerprint, so something else has written it."""
        name = self.name
        manifest = self.ecr.read(lambda registry: registry.manifest(name, tag))
        if manifest is None:
            return None
        if Fingerprint.from_labels(self._labels(manifest)) != mine:
            raise RegistryError(
                f"the candidate tag {name}:{tag} holds an image of other inputs: remove the "
                "tag, then release again"
            )
        return manifest

    def remove_tag(self, tag: str) -> bool:
        """Remove a tag, not its image (ECR's BatchDeleteImage by tag); False when there
        was no such tag."""
        self.ecr.require_account()
        return self.ecr.api.delete_tag(self.name, tag)

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

    def described(self) -> Repository | None:
        """The repository as ``DescribeRepositories`` answers (None: it does not exist), asked
        once per run: the registry cannot tell a repository's settings, and the rules for
        versions and tags depend on its own, never on the configured ones."""
        if self._described is _UNSET:
            self.ecr.require_account()
            self._described = self.ecr.api.describe_repository(self.name)
        found = self._described
        return found if isinstance(found, Repository) else None

    def mutability(self) -> tuple[str, tuple[str, ...]]:
        """The repository's tag mutability and exclusion filters; for a repository not
        created yet, the ones it will be created with."""
        found = self.described()
        if found is not None:
            return found.tag_mutability, found.exclusions
        return self.settings.tag_mutability, self.settings.tag_mutability_exclusions

    def require_final(self, version: str) -> None:
        """Refuse, before anything runs, a version the repository would leave mutable."""
        problem = version_problem(self.name, *self.mutability(), version)
        if problem:
            raise SettingsError(problem)

    def digest_of(self, tag: str) -> str | None:
        """What a tag of the repository points to now (None: no such tag)."""
        name = self.name
        manifest = self.ecr.read(lambda registry: registry.manifest(name, tag))
        return manifest.digest if manifest else None

    def version_of(self, tag: str) -> str | None:
        """The version label of the image a tag points to (None: no tag, or no label)."""
        name = self.name
        manifest = self.ecr.read(lambda registry: registry.manifest(name, tag))
        return self._labels(manifest).get(VERSION_LABEL) if manifest else None


class PlanningPublished(Published):
    """A dry run's view of the repository: the same reads, plan lines where the real run
    would act or where the registry cannot be asked, and no verification (nothing was
    pushed, no tag was put)."""

    plan_only = True
    promoter = PlanningPromoter

    def identical_release(
        self,
        version: str,
        mine: Fingerprint | None,
        local: str,
        released: Callable[[], Released | None] | None = None,
    ) -> Manifest | None:
        where = self.settings.remote_image(self.ecr.host(), version)
        try:
            existing = super().identical_release(version, mine, local, released)
        except RegistryError as exc:
            log.info("[dry-run] check: could not ask the registry about %s (%s)", where, exc)
            self.unreachable = True
            return None
        if existing is None:
            log.info("[dry-run] check: %s is not released yet", where)
        return existing

    def knows_repository(self) -> bool:
        return False if self.unreachable else super().knows_repository()

    def identical_candidate(self, tag: str, mine: Fingerprint) -> Manifest | None:
        return None if self.unreachable else super().identical_candidate(tag, mine)

    def verify(self, version: str, pushed_digest: str | None, local: str) -> str:
        return DRY_RUN_DIGEST
