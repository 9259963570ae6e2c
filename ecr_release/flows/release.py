"""The release pipeline. ``inv release --version V`` runs these stages, in order, under
the machine's lock for the repository, and stops at the first failure:

1. **check**: docker answers; the inputs are gathered (the build context is scanned
   for secrets and digested, the base images resolved) into a fingerprint; the
   registry is asked whether V exists. Released from the same inputs: done, nothing
   else runs (a rerun only finishes ``--also-tag``). From other inputs: refused.
2. **build**: ``docker build`` with the labels that carry the fingerprint. Meanwhile
   the check's AWS half asks the repository's own rules (``DescribeRepositories``, and
   the credentials it takes): a new version must stay final, its ``--also-tag`` tags
   free to move. A refusal there stops the build and is the error; nothing has been
   tagged for the registry or pushed yet. (boto3's import and client, the largest part
   of a new version's check, cost nothing then: the build is a command to wait for.)
3. **ensure-repo**: the repository is described, and created when missing.
4. **login**: ``docker login`` with a fresh token, unless a valid login exists.
5. **gates** (``flows.candidate``): at once, the smoke test runs the image on this
   machine (``flows.smoke``) while the image is pushed under its candidate tag, read
   back and verified, and its scan judged (``flows.scan``); once all passed, the version
   tag is put on the registry side with the candidate's manifest and verified, and the
   candidate tag removed. A failed gate leaves no version tag.
6. **also-tag**: the ``--also-tag`` tags are put on the registry side (``promote``).

Each stage is also a task of its own (``build``, ``ensure-repo``, ...; ``tag`` and
``push`` push to the version tag directly, without the candidate). ``Release``
is a short sequence over collaborators handed in by ``cli.session.make_release``: the
Docker CLI, the run's ECR access (client, token, registry), what the registry holds of
the repository (``Published``), the smoke test, this machine's state (login records,
locks) and the checkout's git revision. A dry run is chosen there, once: its
collaborators plan instead of acting, and no stage asks which kind of run it is.
Output to the person goes through ``logging``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ..errors import DockerError, ReleaseError, SettingsError
from ..model.fingerprint import Fingerprint
from ..model.inputs import BuildInputs, gather
from ..model.provenance import Provenance, judge_tree, naming_uncommitted
from ..model.settings import Settings, reference_name_problem
from ..outside import git as gitinfo
from ..outside import sendcontext
from ..outside.docker import Docker, push_with_retries
from ..outside.ecr import Authorization, EcrAccess, Repository, RepositoryConfig
from ..outside.localstate import LocalState
from ..outside.registry import Manifest
from .beside import beside
from .candidate import Gates, Shipping
from .promote import Current
from .published import Published, Released

log = logging.getLogger("ecr_release")


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
    total_seconds: float = 0.0  # wall time: steps that ran at the same time counted once
    gates: Gates | None = None  # the candidate and what the gates found (a new release)
    concurrent: frozenset[str] = frozenset()  # steps that ran during another one
    provenance: Provenance | None = None  # the commit, and uncommitted changes released
    allow_dirty: bool = False  # --allow-dirty let a dirty tree through where one is refused

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
        published: Published,
        smoke: Callable[..., object],
        *,
        scan: Callable[..., object] = lambda repository, digest, **options: None,
        revision: Callable[[Path], gitinfo.Revision] = gitinfo.revision,
        clock: Clock = Clock(),
        progress: Callable[[str], None] = announce,
    ) -> None:
        self.settings = settings
        self.docker = docker
        self.ecr = ecr
        self.state = state
        self.published = published
        self._smoke = smoke
        self._scan = scan
        self.gates: Gates | None = None  # what the last release's gates found
        self._revision = revision
        self._clock = clock
        self._progress = progress
        self._gathered: dict[str, BuildInputs] = {}

    def build(self, version: str, *, cancel: threading.Event | None = None) -> str:
        """``docker build`` the image ``IMAGE_NAME:version`` with its labels; return its name.
        Setting ``cancel`` stops the build (a check beside it refused the release)."""
        settings, inputs = self.settings, self._inputs(version)
        image = settings.image(version)
        sending, note = sent_context(self, inputs)
        self._progress(f"build {image}{note}")
        build, args = self.docker.build_command, (inputs.build_args, inputs.labels)
        with sending as context:
            self.docker.build(build(image, settings.dockerfile, context, *args), cancel)
        return image

    def ensure_repo(self) -> Repository:
        """Describe the repository, creating it with the configured settings when missing."""
        name, config = self.settings.repository, repository_config(self.settings)
        self.ecr.require_account()
        self._progress(f"ensure-repo {name}")
        found = self.published.described()  # asked once per run
        repository, created = (
            (found, False) if found is not None else self.ecr.api.ensure_repository(name, config)
        )
        if created:
            log.info("created repository %s", repository.uri)
        else:
            drift = repository.drift(config)
            days = config.expire_untagged_days
            if days is not None and (lifecycle := self.published.lifecycle_drift(days)):
                drift.append(lifecycle)
            for line in drift:
                log.warning("warning: repository %s: %s (left unchanged)", name, line)
        self.published.repository_known = True
        return repository

    def login(self, *, force: bool = False) -> str:
        """``docker login`` to the registry with a fresh token, unless a valid login exists
        (or ``force``): one process on this machine at a time per registry, so the next one
        finds the login the first made."""
        auth = self.ecr.token(fresh=True) if force else None
        host = auth.host if auth else self.ecr.host()
        with self.state.login_lock(host):
            return _log_in(self, host, auth)

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
        timer = StepTimer(self._clock.monotonic, self.ecr.new_step)
        with self.state.lock(self.settings.lock_name), timer.step("push"):
            existing = self.published.identical_release(version, mine, reference)
            if existing is None:
                self.published.require_final(version)
            digest = existing.digest if existing else self._push_verified(version)
        return _summary(self, version, digest, timer, existing is not None, mine)

    def promote(self, version: str, tags: Sequence[str]) -> str:
        """Point each tag at the released version, on the registry side; return its digest."""
        return self.published.tags.promote(version, tags)

    def release(self, version: str) -> Summary:
        """check, build, ensure-repo, login, the gates (then the version), in that order."""
        timer = StepTimer(self._clock.monotonic, self.ecr.new_step)
        extra = also_tags(self.settings.extra_tags, version)
        with self.state.lock(self.settings.lock_name):
            with timer.step("check"):
                existing, extra_now = self._preflight(version, extra)
            mine = self._inputs(version).fingerprint
            if existing is not None:
                self._shipping().tidy(mine)
                if extra:  # a rerun finishes the job, and never moves a tag back
                    with timer.step("also-tag"):
                        extra = self.published.tags.finish(version, extra)
                return _summary(self, version, existing.digest, timer, True, mine, extra)
            with timer.step("build"):
                _build_within_rules(self, version, extra, extra_now)
            with timer.step("ensure-repo"):
                self.ensure_repo()
            with timer.step("login"):
                self.login()
            with timer.step("gates"):  # candidate push and smoke test at once, scan, version
                digest, self.gates = self._shipping().ship(
                    version, self.settings.image(version), self.remote_ref, mine
                )
            timer.record("smoke-test", self.gates.smoke_seconds, during="gates")
            if extra:
                with timer.step("also-tag"):
                    self.published.tags.also_tag(version, extra)
        return _summary(self, version, digest, timer, False, mine, extra)

    def _shipping(self) -> Shipping:
        smoke = self._smoke if self.settings.smoke_test else None
        return Shipping(
            *(self.docker, self.published, self._progress, smoke, self._scan, self._relogin),
            *(self._clock.sleep, self._clock.monotonic),
            parallel=not self.published.plan_only,
            new_step=self.ecr.new_step,
        )

    def remote_ref(self, version: str) -> str:
        """``HOST/REPOSITORY:version``, once the repository is known to exist."""
        self.published.require_repository()
        return self.settings.remote_image(self.ecr.host(), version)

    def _preflight(self, version: str, extra: Sequence[str]) -> tuple[Manifest | None, Current]:
        """Before anything changes: docker answers, the inputs (no secret in the context), the
        version in the registry, the checkout's state, the extra tags that are released
        versions (and what each extra tag points to now). The repository's own rules, which
        need AWS, are asked beside the build (``_build_within_rules``)."""
        self.docker.config()  # a corrupt one stops the run now, not at the login after the build
        # Docker and the registry are asked during the walk (reads only; failures in turn).
        with ThreadPoolExecutor(2, thread_name_prefix="check") as pool:
            daemon = pool.submit(docker_ready, self.docker, self.settings.base_image)
            early = pool.submit(read_early, self.ecr, self.published, version)
            inputs = self._inputs(version, daemon.result)
            daemon.result(), wait([early])
            mine, local = inputs.fingerprint, self.settings.image(version)
            if problem := reference_name_problem(self.ecr.host(), self.settings.repository):
                raise SettingsError(problem)
            with naming_uncommitted(inputs.provenance):  # when released from other inputs
                existing = self.published.identical_release(version, mine, local, early.result())
        extra_now: Current = {}
        if existing is None:
            judge_tree(inputs.provenance, self.settings.require_clean, self.settings.allow_dirty)
            if extra:  # a released version among them is never moved (the registry says)
                extra_now = self.published.tags.refuse_released(extra, None)
        return existing, extra_now

    def _push_verified(self, version: str) -> str:
        reference = self.remote_ref(version)
        self._progress(f"push {reference}")
        digest = push_with_retries(
            self.docker, reference, relogin=self._relogin, sleep=self._clock.sleep
        )
        return self.published.verify(version, digest, reference)

    def _relogin(self) -> None:
        self.state.logins.forget(self.docker.config().directory, self.ecr.host())
        self.login(force=True)

    def _inputs(self, version: str, docker_ready: Callable[[], object] = bool) -> BuildInputs:
        """What this version's build is made of, gathered once per run (the images it reads
        are asked of docker once ``docker_ready`` returned)."""
        if version not in self._gathered:
            settings = self.settings
            # git's status is asked while the context is walked: its cost hides in the walk.
            with ThreadPoolExecutor(1, thread_name_prefix="git") as pool:
                pending = pool.submit(self._revision, settings.build_context)
                self._gathered[version] = gather(
                    settings,
                    version,
                    revision=pending.result,
                    created=self._clock.now().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    resolve_base=_after(docker_ready, self.docker.image_identity),
                    digests=self.state.context_digests(settings.build_context),
                )
        return self._gathered[version]


def _build_within_rules(
    run: Release, version: str, extra: Sequence[str], extra_now: Current
) -> None:
    """Build a new version while the repository's rules are asked of AWS, once: a refusal
    stops the build and is the error. A dry run asks them first (its plan lines keep their
    order). ``extra_now``: what the check found the extra tags point to."""

    def rules() -> None:
        run.published.require_final(version)
        if extra:
            run.published.tags.to_put(extra, None, extra_now)  # may they move?
        # The gates' modules, which a rerun never needs, are imported meanwhile too.
        from . import scan, smoke  # noqa: F401

    if run.published.plan_only:
        rules()
        run.build(version)
        return
    with beside(rules, "rules") as refused:
        run.build(version, cancel=refused)


def _log_in(run: Release, host: str, auth: Authorization | None) -> str:
    """The login to ``host``, under its lock: with ``auth`` (forced), or else unless docker's
    login is valid. Docker's config is read here, under the lock: another process may have
    just logged in."""
    config = run.docker.config()
    if auth is None:
        if reason := run.state.logins.reuse_reason(config, host, run._clock.now()):
            log.info("login skipped: %s", reason)
            return host
        auth = run.ecr.token()
    run._progress(f"login {auth.host}")
    run.docker.login(auth.host, auth.username, auth.password)
    run.state.logins.record(config.directory, auth.host, auth.expires_at)
    return auth.host


def sent_context(
    run: Release, inputs: BuildInputs
) -> tuple[contextlib.AbstractContextManager[Path], str]:
    """The context ``docker build`` is given, and a note for the person: only what the
    build reads (see ``sendcontext``: the classic builder sends all it is given) when that
    is known for certain and no image it builds on has ``ONBUILD`` triggers (they may read
    anything); else the whole context. A dry run, which writes nothing, names the whole."""
    context, needed = run.settings.build_context, inputs.needed
    whole = contextlib.nullcontext(context), ""
    if needed is None or run.state.read_only or len(needed) >= inputs.entries:
        return whole
    for base in inputs.bases:
        found = run.docker.inspect(base.name)
        if found is None or found.onbuild:
            return whole
    note = f" (sending {len(needed)} of {inputs.entries} context entries: what COPY and ADD read)"
    return sendcontext.only(context, needed, run.state.directory / "build"), note


def read_early(
    ecr: EcrAccess, published: Published, version: str
) -> Callable[[], Released | None] | None:
    """What the registry holds under ``version``, asked while the context is walked, when
    docker's stored login can ask it (no AWS call before docker answers); None: ask it in
    turn. A failure is raised in turn too (by the callable), after the checks before it."""
    try:
        if not ecr.stored_login():
            return None
        found = published.released(version)
    except ReleaseError as exc:
        failure = exc

        def fail() -> Released | None:
            raise failure

        return fail
    return lambda: found


def docker_ready(docker: Docker, base: str | None) -> None:
    """Docker answers, and the image ``BASE_IMAGE`` names is looked up while the context is
    walked (the fingerprint asks for it next, and is answered from what docker said here).
    An image docker describes is its answer: no ``docker version`` then (a second start of
    the CLI beside the walk). A daemon that is down or does not answer in time fails the
    look-up as it would fail ``docker version``, with the same line; an image docker does
    not have is asked about with ``docker version``."""
    if base and docker.inspect(base) is not None:
        return
    docker.check_daemon()


def _after(ready: Callable[[], object], ask: Callable[[str], str]) -> Callable[[str], str]:
    """``ask``, once ``ready`` has returned."""

    def asking(name: str) -> str:
        ready()
        return ask(name)

    return asking


class StepTimer:
    """Seconds per named step, in the order the steps ran."""

    def __init__(
        self, clock: Callable[[], float], on_step: Callable[[], None] = lambda: None
    ) -> None:
        self._clock = clock
        self._on_step = on_step  # e.g. each step's AWS budget starts afresh
        self.timings: list[tuple[str, float]] = []
        self.overlapping: set[str] = set()  # steps that ran during another one
        self.started = clock()

    def record(self, name: str, seconds: float, *, during: str) -> None:
        """A step that ran at the same time as ``during`` (not added to the total)."""
        if seconds:
            self.timings.append((name, seconds))
            self.overlapping.add(name)

    def total(self) -> float:
        """The steps' wall time: overlapping steps are counted once."""
        return sum(seconds for name, seconds in self.timings if name not in self.overlapping)

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        self._on_step()
        start = self._clock()
        yield
        self.timings.append((name, self._clock() - start))


def _summary(
    run: Release,
    version: str,
    digest: str,
    timer: StepTimer,
    already_released: bool,
    fingerprint: Fingerprint | None,
    extra_tags: tuple[str, ...] = (),
) -> Summary:
    host, settings = run.ecr.host(), run.settings
    gathered = run._gathered.get(version)
    made = gathered.provenance if gathered is not None else None
    allowed = bool(made and made.dirty and settings.require_clean and settings.allow_dirty)
    return Summary(  # in the order of Summary's fields
        *(settings.remote_image(host, version), digest, settings.repository, version, host),
        *(timer.timings, already_released, run.published.plan_only, fingerprint, extra_tags),
        *(timer.total(), run.gates, frozenset(timer.overlapping), made, allowed),
    )


def also_tags(tags: Sequence[str], version: str) -> tuple[str, ...]:
    """``--also-tag`` without the version itself, which the push puts anyway."""
    if version in tags:
        log.info("--also-tag %s is the version itself: nothing more to do for it", version)
    return tuple(tag for tag in tags if tag != version)


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
