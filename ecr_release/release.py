"""The release sequence: build, ensure-repo, login, tag, push, each runnable alone.

``Release`` is a short sequence over collaborators handed in: the Docker CLI,
the run's ECR access (client, token, registry), this machine's state (login
records, locks) and the checkout's git revision. It keeps the rules that make a
rerun safe: a released tag is never overwritten, and what was pushed is read
back and verified. A dry run is a wiring choice (see ``cli.make_release``): a
docker runner that shows commands and a read-only ECR; only the registry check
and the verification after a push, where a plan really says something else,
branch on it. Output to the person goes through ``logging``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from . import gitinfo
from .docker import Docker, push_with_retries
from .ecr import EcrAccess, Repository, RepositoryConfig
from .errors import AwsError, DockerError, RegistryError, SettingsError
from .fingerprint import Fingerprint
from .inputs import BuildInputs, gather, judge, same_image
from .localstate import LocalState
from .registry import Manifest, RawManifest
from .settings import Settings, reference_name_problem
from .tags import tags_to_put

log = logging.getLogger("ecr_release")

DRY_RUN_DIGEST = "(dry-run)"


@dataclass(frozen=True)
class Clock:
    """Time as the release sees it; tests hand in their own."""

    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


@dataclass
class Summary:
    """What a release (or a push) did: the image, its verified digest, time per step."""

    image_uri: str
    digest: str
    repository: str
    version: str
    registry: str
    timings: list[tuple[str, float]] = field(default_factory=list)
    already_released: bool = False
    dry_run: bool = False
    fingerprint: Fingerprint | None = None

    extra_tags: tuple[str, ...] = ()

    @property
    def tags(self) -> list[str]:
        return [self.version, *self.extra_tags]


def announce(what: str) -> None:
    """A step starting, as the person sees it (a dry run shows its plan lines instead)."""
    log.info("==> %s", what)


class Release:
    """One run of the suite. Each public method is one task; ``release`` chains them."""

    def __init__(
        self,
        settings: Settings,
        docker: Docker,
        ecr: EcrAccess,
        state: LocalState,
        *,
        revision: Callable[[Path], gitinfo.Revision] = gitinfo.revision,
        clock: Clock = Clock(),
        progress: Callable[[str], None] = announce,
        dry_run: bool = False,
    ) -> None:
        self.settings = settings
        self.docker = docker
        self.ecr = ecr
        self.state = state
        self.dry_run = dry_run
        self._revision = revision
        self._clock = clock
        self._progress = progress
        self._repository_known = False
        self._gathered: dict[str, BuildInputs] = {}

    # -- the tasks ------------------------------------------------------------------

    def build(self, version: str) -> str:
        """``docker build`` the image ``IMAGE_NAME:version`` with its labels; return its name."""
        settings, inputs = self.settings, self._inputs(version)
        image = settings.image(version)
        self._progress(f"build {image}")
        self.docker.build(
            self.docker.build_command(
                image, settings.dockerfile, settings.build_context, inputs.build_args, inputs.labels
            )
        )
        return image

    def ensure_repo(self) -> Repository:
        """Describe the repository, creating it with the configured settings when missing."""
        name, config = self.settings.repository, repository_config(self.settings)
        self.ecr.require_account()
        self._progress(f"ensure-repo {name}")
        repository, created = self.ecr.api.ensure_repository(name, config)
        if created:
            log.info("created repository %s", repository.uri)
        else:
            drift = repository.drift(config)
            days = config.expire_untagged_days
            if days is not None and (lifecycle := self.ecr.api.lifecycle_drift(name, days)):
                drift.append(lifecycle)
            for line in drift:
                log.warning("warning: repository %s: %s (left unchanged)", name, line)
        self._repository_known = True
        return repository

    def login(self, *, force: bool = False) -> str:
        """``docker login`` to the registry with a fresh token, unless a valid login exists."""
        config = self.docker.config()
        if not force:
            host = self.ecr.host()
            reason = self.state.logins.reuse_reason(config, host, self._clock.now())
            if reason:
                log.info("login skipped: %s", reason)
                return host
        auth = self.ecr.token(fresh=force)
        self._progress(f"login {auth.host}")
        self.docker.login(auth.host, auth.username, auth.password)
        self.state.logins.record(config.directory, auth.host, auth.expires_at)
        return auth.host

    def tag(self, version: str) -> str:
        """``docker tag IMAGE_NAME:version HOST/REPOSITORY:version``; return the target."""
        source, target = self.settings.image(version), self.remote_ref(version)
        self._progress(f"tag {target}")
        self.docker.tag(source, target)
        return target

    def push(self, version: str) -> Summary:
        """Refuse to overwrite, push, verify: the summary of the pushed (or identical) release."""
        reference = self.remote_ref(version)
        local = self.docker.inspect(reference)
        if local is None:
            raise DockerError(
                f"there is no local image {reference} to push: run `inv build --version "
                f"{version}` and `inv tag --version {version}` first"
            )
        mine = Fingerprint.from_labels(local.labels)
        timer = StepTimer(self._clock.monotonic)
        with self.state.lock(self.settings.lock_name), timer.step("push"):
            existing = self.find_identical_release(version, mine, reference)
            digest = existing.digest if existing else self._push_verified(version)
        return self._summary(version, digest, timer, existing is not None, mine)

    def promote(self, version: str, tags: Sequence[str]) -> str:
        """Point each tag at the released version's manifest, on the registry side (nothing
        is pulled or pushed); return that manifest's digest."""
        repository = self.settings.repository
        raw = self.ecr.read(lambda registry: registry.raw_manifest(repository, version))
        if raw is None:
            raise SettingsError(
                f"{repository}:{version} is not released, so there is nothing to promote: "
                f"release it first (inv release --version {version})"
            )
        self._point_tags(version, raw, self._tags_to_put(tags, raw.manifest.digest))
        return raw.manifest.digest

    def release(self, version: str) -> Summary:
        """check, build, ensure-repo, login, tag, push (verified), in that order."""
        timer = StepTimer(self._clock.monotonic)
        with self.state.lock(self.settings.lock_name):
            with timer.step("check"):
                existing = self._preflight(version)
            mine = self._inputs(version).fingerprint
            if existing is not None:
                return self._summary(version, existing.digest, timer, True, mine)
            with timer.step("build"):
                self.build(version)
            with timer.step("ensure-repo"):
                if self._repository_known and not self.ecr.connected and not self.dry_run:
                    log.info("repository %s is in the registry already", self.settings.repository)
                else:
                    self.ensure_repo()
            with timer.step("login"):
                self.login()
            with timer.step("tag"):
                self.tag(version)
            with timer.step("push"):
                digest = self._push_verified(version)
            if self.settings.extra_tags:
                with timer.step("also-tag"):
                    self.promote(version, self.settings.extra_tags)
        return self._summary(version, digest, timer, False, mine, self.settings.extra_tags)

    # -- facts the tasks share --------------------------------------------------------

    def remote_ref(self, version: str) -> str:
        """``HOST/REPOSITORY:version``, once the repository is known to exist."""
        if not self._repository_known:
            name = self.settings.repository
            if not self.ecr.read(lambda registry: registry.repository_exists(name)):
                # A repository nothing was pushed to yet may be unknown to the registry.
                self.ecr.require_account()
                if self.ecr.api.describe_repository(name) is None:
                    raise AwsError(
                        f"ECR repository {name} does not exist: "
                        "run `inv ensure-repo` (or `inv release`)"
                    )
            self._repository_known = True
        return self.settings.remote_image(self.ecr.host(), version)

    def find_identical_release(
        self, version: str, mine: Fingerprint | None, local: str
    ) -> Manifest | None:
        """The released manifest when ``version`` is already released from these inputs
        (``mine``; else the image ID of ``local``); None when ``version`` is new. Raises
        ``VersionExistsError`` when it is released from anything else."""
        repository = self.settings.repository
        manifest = self.ecr.read(lambda registry: registry.manifest(repository, version))
        if manifest is None:
            return None
        self._repository_known = True
        config = manifest.config_digest
        released = (
            self.ecr.read(lambda registry: registry.labels(repository, config)) if config else {}
        )
        why = judge(
            repository,
            version,
            manifest,
            released,
            mine,
            lambda: self.docker.image_id(local),
            local,
        )
        log.info(
            "%s:%s is already released as %s, %s: nothing to do (to ship newer changes, release "
            "a new --version)",
            repository,
            version,
            manifest.digest,
            why,
        )
        return manifest

    def verify(self, version: str, pushed_digest: str) -> str:
        """Read the tag back: it must name the pushed manifest, whose config is our image."""
        repository = self.settings.repository
        manifest = self.ecr.read(lambda registry: registry.manifest(repository, version))
        if manifest is None:
            raise RegistryError(
                f"verification failed: the registry has no tag {version} after the push"
            )
        if manifest.digest != pushed_digest:
            raise RegistryError(
                f"verification failed: tag {version} resolves to {manifest.digest}, but docker "
                f"pushed {pushed_digest}; another push may have raced this one"
            )
        local_id = self.docker.image_id(self.remote_ref(version))
        if not same_image(local_id, manifest):
            raise RegistryError(
                f"verification failed: the pushed manifest's config is {manifest.config_digest}, "
                f"the local image is {local_id}"
            )
        log.info("verified %s@%s", self.remote_ref(version), manifest.digest)
        return manifest.digest

    # -- steps inside release and push ----------------------------------------------

    def _preflight(self, version: str) -> Manifest | None:
        """Before anything changes: docker answers, the inputs (no secret in the context), the
        version's state in the registry. In a dry run an unreachable registry is a plan line."""
        self.docker.config()  # a corrupt one stops the run now, not at the login after the build
        self.docker.check_daemon()
        self._inputs(version)
        problem = reference_name_problem(self.ecr.host(), self.settings.repository)
        if problem:
            raise SettingsError(problem)
        mine, local = self._inputs(version).fingerprint, self.settings.image(version)
        where = self.settings.remote_image(self.ecr.host(), version)
        try:
            existing = self.find_identical_release(version, mine, local)
            if existing is None:  # then whether ensure-repo must ask the ECR API
                name = self.settings.repository
                known = self.ecr.read(lambda registry: registry.repository_exists(name))
                self._repository_known = known
        except RegistryError as exc:
            if not self.dry_run:
                raise
            log.info("[dry-run] check: could not ask the registry about %s (%s)", where, exc)
            return None
        if existing is None and self.dry_run:
            log.info("[dry-run] check: %s is not released yet", where)
        if existing is None and self.settings.extra_tags:
            self._tags_to_put(self.settings.extra_tags, None)  # may they move? before building
        return existing

    def _push_verified(self, version: str) -> str:
        reference = self.remote_ref(version)
        self._progress(f"push {reference}")
        digest = push_with_retries(
            self.docker, reference, relogin=self._relogin, sleep=self._clock.sleep
        )
        if self.dry_run:
            return DRY_RUN_DIGEST  # nothing was pushed: nothing to verify
        if digest is None:
            raise DockerError(f"docker push {reference} reported no digest; check the registry")
        return self.verify(version, digest)

    def _tags_to_put(self, tags: Sequence[str], digest: str | None) -> list[str]:
        """The tags to put to point at ``digest`` (None: a release not pushed yet); refuses,
        before any change, a tag the repository's mutability does not let move."""
        name = self.settings.repository
        self.ecr.require_account()
        found = self.ecr.api.describe_repository(name)
        mutability, exclusions = (
            (found.tag_mutability, found.exclusions)
            if found
            else (self.settings.tag_mutability, self.settings.tag_mutability_exclusions)
        )
        current = {tag: self._digest_of(tag) for tag in tags}
        return tags_to_put(name, mutability, exclusions, tags, current, digest)

    def _point_tags(self, version: str, raw: RawManifest, tags: Sequence[str]) -> None:
        name, digest = self.settings.repository, raw.manifest.digest
        for tag in tags:
            self._progress(f"tag {name}:{tag} -> {version} ({digest})")
            self._put_tag(tag, raw)
        for tag in tags if not self.dry_run else ():
            moved = self._digest_of(tag)
            if moved != digest:
                raise RegistryError(
                    f"verification failed: tag {tag} resolves to {moved or 'nothing'}, "
                    f"not {version} ({digest})"
                )
            log.info("verified %s:%s -> %s", name, tag, digest)

    def _put_tag(self, tag: str, raw: RawManifest) -> None:
        name = self.settings.repository
        self.ecr.read(lambda registry: registry.put_manifest(name, tag, raw))

    def _digest_of(self, tag: str) -> str | None:
        """What a tag of the repository points to now (None: no such tag)."""
        name = self.settings.repository
        manifest = self.ecr.read(lambda registry: registry.manifest(name, tag))
        return manifest.digest if manifest else None

    def _relogin(self) -> None:
        self.state.logins.forget(self.docker.config().directory, self.ecr.host())
        self.login(force=True)

    def _inputs(self, version: str) -> BuildInputs:
        """What this version's build is made of, gathered once per run."""
        if version not in self._gathered:
            settings = self.settings
            self._gathered[version] = gather(
                settings,
                version,
                revision=self._revision(settings.build_context),
                created=self._clock.now().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                resolve_base=self.docker.image_identity,
            )
        return self._gathered[version]

    def _summary(
        self,
        version: str,
        digest: str,
        timer: StepTimer,
        already_released: bool,
        fingerprint: Fingerprint | None,
        extra_tags: tuple[str, ...] = (),
    ) -> Summary:
        host = self.ecr.host()
        return Summary(
            image_uri=self.settings.remote_image(host, version),
            digest=digest,
            repository=self.settings.repository,
            version=version,
            registry=host,
            timings=timer.timings,
            already_released=already_released,
            dry_run=self.dry_run,
            fingerprint=fingerprint,
            extra_tags=extra_tags,
        )


class StepTimer:
    """Seconds per named step, in the order the steps ran."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.timings: list[tuple[str, float]] = []

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        start = self._clock()
        yield
        self.timings.append((name, self._clock() - start))


def repository_config(settings: Settings) -> RepositoryConfig:
    """The settings a new repository is created with."""
    return RepositoryConfig(
        scan_on_push=settings.scan_on_push,
        tag_mutability=settings.tag_mutability,
        encryption=settings.encryption,
        kms_key=settings.kms_key,
        exclusions=settings.tag_mutability_exclusions,
        expire_untagged_days=settings.expire_untagged_days,
    )
