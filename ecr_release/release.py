"""The release sequence: build, ensure-repo, login, tag, push, each runnable alone.

``Release`` holds one run's wiring (settings, the Docker CLI, a lazily made ECR
client, the registry reader, local state) and memoizes what the steps share, so
``release`` makes one boto3 session, one token request and one repository
lookup. The rules that make a rerun safe live here: a released tag is never
overwritten, what was pushed is read back and verified, only transient push
failures are retried. Output to the person goes through ``logging``; the task
layer decides how it is shown.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from . import docker as dockercli
from .buildcontext import check_no_secrets
from .errors import AwsError, DockerError, RegistryError, VersionExistsError
from .localstate import LoginRecords, cache_dir, release_lock
from .registry import Manifest, Registry

if TYPE_CHECKING:
    from .docker import Docker
    from .ecr import Authorization, Ecr, Repository, RepositoryConfig
    from .settings import Settings

log = logging.getLogger("ecr_release")

PUSH_ATTEMPTS = 4
BACKOFF_SECONDS = 2.0


@dataclass
class Summary:
    """What a release did: the image, its verified digest, and time per step."""

    image_uri: str
    digest: str
    timings: list[tuple[str, float]] = field(default_factory=list)
    already_released: bool = False
    dry_run: bool = False


def _plan(step: str, what: str) -> None:
    log.info("[dry-run] %s: %s", step, what)


class Release:
    """One run of the suite. Each public method is one task; ``release`` chains them."""

    def __init__(
        self,
        settings: Settings,
        docker: Docker,
        connect: Callable[[Settings], Ecr],
        *,
        registry_factory: Callable[[Authorization], Registry] | None = None,
        login_records: LoginRecords | None = None,
        lock_dir: Path | None = None,
        dry_run: bool = False,
        environ: Mapping[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        revision: Callable[[Path], tuple[str | None, str | None]] | None = None,
    ) -> None:
        self.settings = settings
        self.docker = docker
        self.dry_run = dry_run
        self._connect = connect
        self._registry_factory = registry_factory or (
            lambda auth: Registry(auth.host, auth.username, auth.password)
        )
        self._environ = os.environ if environ is None else environ
        state = cache_dir(self._environ)
        self._records = login_records or LoginRecords(state / "logins.json")
        self._lock_dir = lock_dir or state / "locks"
        self._sleep = sleep
        self._clock = clock
        self._now = now
        self._revision = revision or git_revision
        self._ecr: Ecr | None = None
        self._auth: Authorization | None = None
        self._registry_client: tuple[Authorization, Registry] | None = None
        self._repository: Repository | None = None
        self._locked = 0
        self._context_checked = False

    # -- shared, memoized facts -----------------------------------------------------

    def ecr(self) -> Ecr:
        if self._ecr is None:
            self._ecr = self._connect(self.settings)
        return self._ecr

    def authorization(self, *, fresh: bool = False) -> Authorization:
        """The registry token (``GetAuthorizationToken``), checked against AWS_ACCOUNT_ID."""
        if self._auth is None or fresh:
            auth = self.ecr().authorization()
            expected = self.settings.account_id
            if expected and auth.host.split(".", 1)[0] != expected:
                raise AwsError(
                    f"the login token is for registry {auth.host}, not account {expected} "
                    "(AWS_ACCOUNT_ID): use credentials of that account or fix AWS_ACCOUNT_ID"
                )
            self._auth = auth
        return self._auth

    def _check_account(self) -> None:
        """With AWS_ACCOUNT_ID set, fail before touching a repository in another account."""
        if self.settings.account_id:
            self.authorization()

    def repository(self) -> Repository:
        """The existing repository (for tag and push alone); never creates it."""
        if self._repository is None:
            self._check_account()
            found = self.ecr().describe_repository(self.settings.repository)
            if found is None:
                raise AwsError(
                    f"ECR repository {self.settings.repository} does not exist: "
                    "run `inv ensure-repo` (or `inv release`)"
                )
            self._repository = found
        return self._repository

    def remote_ref(self, version: str) -> str:
        return f"{self.repository().uri}:{version}"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Serialize releases of one repository on this machine (re-entrant within a run)."""
        name = f"{self.settings.region or 'default'}-{self.settings.repository}"
        guard: contextlib.AbstractContextManager[None] = (
            contextlib.nullcontext()
            if self._locked or self.dry_run
            else release_lock(
                self._lock_dir,
                name,
                on_wait=lambda: log.info("waiting for another release of %s on this machine", name),
            )
        )
        with guard:
            self._locked += 1
            try:
                yield
            finally:
                self._locked -= 1

    # -- steps ----------------------------------------------------------------------

    def build(self, version: str) -> None:
        """``docker build`` the image ``IMAGE_NAME:version`` with OCI labels."""
        settings = self.settings
        self._check_context()
        revision, source = self._revision(settings.build_context)
        created = self._now().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        labels = {
            "org.opencontainers.image.version": version,
            "org.opencontainers.image.created": created,
        }
        build_args = {"APP_VERSION": version, "BUILD_DATE": created}
        if revision:
            labels["org.opencontainers.image.revision"] = revision
            build_args["VCS_REF"] = revision
        if source:
            labels["org.opencontainers.image.source"] = source
            build_args["SOURCE_URL"] = source
        if settings.base_image:
            build_args["BASE_IMAGE"] = settings.base_image
        image = settings.image(version)
        command = self.docker.build_command(
            image, settings.dockerfile, settings.build_context, build_args, labels
        )
        if self.dry_run:
            _plan("build", shlex.join(command))
            return
        log.info("==> build %s", image)
        self.docker.build(command)

    def ensure_repo(self) -> Repository:
        """Describe the repository, creating it with the configured settings when missing."""
        from .ecr import Repository, RepositoryConfig

        settings = self.settings
        config = RepositoryConfig(
            scan_on_push=settings.scan_on_push,
            tag_mutability=settings.tag_mutability,
            encryption=settings.encryption,
            kms_key=settings.kms_key,
            exclusions=settings.tag_mutability_exclusions,
        )
        self._check_account()
        if self.dry_run:
            found = self.ecr().describe_repository(settings.repository)
            if found is None:
                _plan(
                    "ensure-repo",
                    f"ecr:CreateRepository({config.create_kwargs(settings.repository)})",
                )
                # What the repository will be: its host is the registry the token names.
                found = Repository(
                    name=settings.repository,
                    uri=f"{self.authorization().host}/{settings.repository}",
                    scan_on_push=config.scan_on_push,
                    tag_mutability=config.tag_mutability,
                    encryption=config.encryption,
                    kms_key=config.kms_key,
                )
                self._repository = found
                return found
            _plan("ensure-repo", f"repository exists: {found.uri} (nothing to create)")
            self._warn_drift(found, config)
            self._repository = found
            return found
        log.info("==> ensure-repo %s", settings.repository)
        repository, created = self.ecr().ensure_repository(settings.repository, config)
        if created:
            log.info("created repository %s", repository.uri)
        else:
            self._warn_drift(repository, config)
        self._repository = repository
        return repository

    def _warn_drift(self, repository: Repository, config: RepositoryConfig) -> None:
        for line in repository.drift(config):
            log.warning("warning: repository %s: %s (left unchanged)", repository.name, line)

    def login(self, *, force: bool = False) -> str:
        """``docker login`` to the registry with a fresh token, unless a valid login exists."""
        auth = self.authorization(fresh=force)
        host = auth.host
        config = dockercli.read_docker_config(self._environ)
        config_dir = dockercli.docker_config_dir(self._environ)
        if not force:
            if _uses_ecr_helper(config, host):
                log.info("login skipped: docker uses the ecr-login credential helper for %s", host)
                return host
            if self._records.still_valid(config_dir, host, self._now()) and _holds_credentials(
                config, host
            ):
                log.info("login skipped: the login to %s is valid for 30 minutes or more", host)
                return host
        if self.dry_run:
            command = self.docker.login_command(host, auth.username)
            _plan("login", shlex.join(command) + "  (password on stdin: ***)")
            return host
        log.info("==> login %s", host)
        self.docker.login(host, auth.username, auth.password)
        self._records.record(config_dir, host, auth.expires_at)
        return host

    def tag(self, version: str) -> str:
        """``docker tag IMAGE_NAME:version HOST/REPOSITORY:version``."""
        source, target = self.settings.image(version), self.remote_ref(version)
        if self.dry_run:
            _plan("tag", shlex.join(self.docker.tag_command(source, target)))
            return target
        log.info("==> tag %s", target)
        self.docker.tag(source, target)
        return target

    def push(self, version: str, *, checked: bool = False) -> str:
        """``docker push``, retried only when transient; verify; return the manifest digest."""
        reference = self.remote_ref(version)
        if not checked:
            existing = self.released(version)
            if existing is not None:
                return existing.digest
        if self.dry_run:
            _plan("push", shlex.join(self.docker.push_command(reference)))
            return "(dry-run)"
        log.info("==> push %s", reference)
        relogged = False
        attempt = 1
        while True:
            result = self.docker.push(reference)
            if result.returncode == 0:
                break
            kind, message = dockercli.classify_push_failure(result.output)
            if kind == dockercli.IMMUTABLE_TAG:
                raise VersionExistsError(
                    f"version {version} is already released in the immutable repository "
                    f"{self.settings.repository}: released versions are never overwritten; "
                    "choose a new --version"
                )
            if kind == dockercli.AUTH and not relogged:
                log.warning("push refused (%s): logging in again and retrying once", message)
                self._records.forget(
                    dockercli.docker_config_dir(self._environ), self.repository().host
                )
                self.login(force=True)
                relogged = True
                continue
            if kind == dockercli.TRANSIENT and attempt < PUSH_ATTEMPTS:
                delay = BACKOFF_SECONDS * 2 ** (attempt - 1)
                log.warning(
                    "push attempt %d/%d failed (%s): retrying in %.0fs",
                    attempt,
                    PUSH_ATTEMPTS,
                    message,
                    delay,
                )
                self._sleep(delay)
                attempt += 1
                continue
            raise DockerError(f"docker push {reference} failed: {message}")
        digest = dockercli.parse_push_digest(result.output)
        if digest is None:
            raise DockerError(f"docker push {reference} reported no digest; check the registry")
        return self.verify(version, digest)

    def verify(self, version: str, pushed_digest: str) -> str:
        """Read the tag back: it must name the pushed manifest, whose config is our image."""
        manifest = self._registry().manifest(self.settings.repository, version)
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
        if not _same_image(local_id, manifest):
            raise RegistryError(
                f"verification failed: the pushed manifest's config is {manifest.config_digest}, "
                f"the local image is {local_id}"
            )
        log.info("verified %s@%s", self.remote_ref(version), manifest.digest)
        return manifest.digest

    def released(self, version: str) -> Manifest | None:
        """None when the version is new; its manifest when this very image is already released.

        Raises ``VersionExistsError`` when the tag exists with any other image.
        """
        manifest = self._registry().manifest(self.settings.repository, version)
        if manifest is None:
            return None
        local_id = self.docker.image_id(self.settings.image(version))
        if _same_image(local_id, manifest):
            log.info(
                "%s:%s is already released as %s, the image built for it here: nothing to do "
                "(to ship newer changes, release a new --version)",
                self.settings.repository,
                version,
                manifest.digest,
            )
            return manifest
        which = (
            "with a different image than the local " + self.settings.image(version)
            if local_id
            else f"and there is no local image {self.settings.image(version)} to compare"
        )
        raise VersionExistsError(
            f"{self.settings.repository}:{version} is already released as {manifest.digest} "
            f"{which}: released versions are never overwritten; choose a new --version"
        )

    def _registry(self) -> Registry:
        """One registry client per token, so its TLS context is loaded once per run."""
        auth = self.authorization()
        if self._registry_client is None or self._registry_client[0] is not auth:
            self._registry_client = (auth, self._registry_factory(auth))
        return self._registry_client[1]

    # -- the whole release ------------------------------------------------------------

    def release(self, version: str) -> Summary:
        """check, build, ensure-repo, login, tag, push (verified), in that order."""
        timings: list[tuple[str, float]] = []

        @contextlib.contextmanager
        def step(name: str) -> Iterator[None]:
            start = self._clock()
            yield
            timings.append((name, self._clock() - start))

        with self.locked():
            with step("check"):
                self._check_context()
                self.docker.check_daemon()
                existing = self._check(version)
            if existing is not None:
                uri = f"{self.authorization().host}/{self.settings.repository}:{version}"
                return Summary(uri, existing.digest, timings, already_released=True)
            with step("build"):
                self.build(version)
            with step("ensure-repo"):
                self.ensure_repo()
            with step("login"):
                self.login()
            with step("tag"):
                self.tag(version)
            with step("push"):
                digest = self.push(version, checked=True)
        return Summary(self.remote_ref(version), digest, timings, dry_run=self.dry_run)

    def _check_context(self) -> None:
        if not self._context_checked:
            check_no_secrets(self.settings.build_context)
            self._context_checked = True

    def _check(self, version: str) -> Manifest | None:
        """``released``; in a dry run an unreachable registry is reported, not fatal."""
        if not self.dry_run:
            return self.released(version)
        where = f"{self.authorization().host}/{self.settings.repository}:{version}"
        try:
            existing = self.released(version)
        except RegistryError as exc:
            _plan("check", f"could not ask the registry about {where} ({exc.message})")
            return None
        if existing is None:
            _plan("check", f"{where} is not released yet")
        return existing


def _same_image(local_id: str | None, manifest: Manifest) -> bool:
    """Is the local image the one the manifest describes?

    With Docker's classic image store the image ID is the config digest; with the
    containerd image store (Docker Engine 29+, Docker Desktop) it is the manifest's
    own digest.
    """
    return local_id is not None and local_id in (manifest.config_digest, manifest.digest)


def _uses_ecr_helper(config: Mapping[str, object], host: str) -> bool:
    helpers = config.get("credHelpers")
    if isinstance(helpers, dict) and helpers.get(host) == "ecr-login":
        return True
    return config.get("credsStore") == "ecr-login"


def _holds_credentials(config: Mapping[str, object], host: str) -> bool:
    auths = config.get("auths")
    if not isinstance(auths, dict):
        return False
    return host in auths or f"https://{host}" in auths


def git_revision(path: Path) -> tuple[str | None, str | None]:
    """(commit, source URL) of the checkout holding ``path``; (None, None) outside git."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(path), *args], capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() or None if done.returncode == 0 else None

    revision = git("rev-parse", "HEAD")
    remote = git("config", "--get", "remote.origin.url") if revision else None
    return revision, _public_url(remote)


def _public_url(url: str | None) -> str | None:
    """A remote URL without any user or token in it; None for local paths."""
    if not url or "://" not in url:
        # scp-like git@host:org/repo is safe to show; a bare path says nothing useful.
        return url if url and "@" in url and ":" in url and not url.startswith("/") else None
    parts = urlsplit(url)
    if parts.scheme == "file":
        return None
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))
