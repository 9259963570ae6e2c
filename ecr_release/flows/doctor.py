"""``inv doctor``: the first-run failures, found in one command, one line each.

:func:`run_checks` runs the checks of ``doctor_checks`` in order: Docker (CLI, daemon,
config, credential helpers), the settings (read and validated as ``release`` does) and
the build context, AWS (credentials and where they come from, the identity, the account,
the clock, the repository, the registry host) and the registry (reachable over TLS,
docker's login accepted). Every check runs, whatever failed before it: one that needs a
failed check says "not checked" and names the failure to fix first. :func:`exit_code`
and :func:`render` turn the result into what the task layer prints and returns.

It is made of the package's own parts: the shared process runner (every docker command
bounded by ``timeout``), ``Sources`` and ``settings_from`` (the settings read once, the
region and where it comes from), ``ecr.connect_probe`` (the one boto3 factory, every call
bounded), ``Registry`` and the masker. It changes nothing: no ``docker login``, no
repository created, no policy put, no file written; ``GetAuthorizationToken`` is
read-only. boto3 is imported only when the AWS checks start. A failure a user can act on
is a ``Check``, never an exception; anything else is a bug and keeps its traceback.
This module is how a run goes (:class:`Doctor` records each outcome and which failure
blocks which check); ``doctor_checks`` is what each check looks at.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from ..model.masking import scrub
from ..outside.docker import Docker, DockerConfig
from ..outside.process import Runner, SubprocessRunner

if TYPE_CHECKING:
    from ..model.services import Service
    from ..model.settings import Settings, Sources
    from ..outside.ecr import AwsProbe, CallerIdentity
    from ..outside.registry import Registry

# The exit code of each area, as the release uses them (errors.py).
AREAS: Mapping[str, int] = {"settings": 2, "docker": 3, "aws": 4, "registry": 5}
TIMEOUT = 5.0  # every subprocess and HTTP call is bounded by this many seconds
MAX_SKEW = timedelta(minutes=5)  # AWS refuses request signatures this far off its clock
NO_CREDENTIALS_FIX = (
    "set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, in .env or the "
    "environment (or run `aws configure`)"
)
Connect = Callable[[str, str | None, Mapping[str, str]], "AwsProbe"]
RegistryFor = Callable[[str, str, str], "Registry"]


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report."""

    area: str  # "docker" | "settings" | "aws" | "registry": exit codes 3, 2, 4, 5
    name: str  # e.g. "docker CLI"
    ok: bool
    detail: str  # what was found (versions, account, ARN, source...), never a secret
    fix: str | None = None  # what to do, when not ok

    def __post_init__(self) -> None:
        if self.area not in AREAS:
            raise ValueError(f"unknown area {self.area!r}")
        # One line each, whatever the source of the text (docker output, AWS messages).
        object.__setattr__(self, "detail", " ".join(self.detail.split()))
        if self.fix is not None:
            object.__setattr__(self, "fix", " ".join(self.fix.split()))


def exit_code(checks: Iterable[Check]) -> int:
    """0 when every check passed, else the exit code of the first failing check's area."""
    return next((AREAS[check.area] for check in checks if not check.ok), 0)


def render(checks: Iterable[Check], *, tty: bool) -> str:
    """One line per check: ``✓ name: detail`` / ``✗ name: detail — fix`` on a terminal,
    ``ok   name: detail`` / ``FAIL name: detail -- fix`` (ASCII) elsewhere."""
    lines = []
    for check in checks:
        good, bad, dash = ("✓", "✗", "—") if tty else ("ok  ", "FAIL", "--")
        line = f"{good if check.ok else bad} {check.name}: {check.detail}"
        lines.append(line + (f" {dash} {check.fix}" if not check.ok and check.fix else ""))
    return "\n".join(lines)


def bounded_runner(timeout: float = TIMEOUT, environ: Mapping[str, str] | None = None) -> Runner:
    """The doctor's runner: the shared one, every command (and anything it started) killed
    after ``timeout`` seconds; a command stopped so returns 124. Output is captured."""
    return SubprocessRunner(timeout=timeout, env=environ)


class Failed(Exception):
    """A check failed: what was found, what to do, and the reason later checks give."""

    def __init__(self, detail: str, fix: str, reason: str) -> None:
        super().__init__(detail)
        self.detail, self.fix, self.reason = detail, fix, reason


class Blocked(Exception):
    """A check cannot run: the (failed) check it needs."""

    def __init__(self, need: str) -> None:
        super().__init__(need)
        self.need = need


@dataclass
class Doctor:
    """One run's inputs and what later checks read from earlier ones."""

    flags: Mapping[str, str | bool | None]
    environ: Mapping[str, str]
    root: Path
    env_file: Path
    env_file_required: bool
    docker: Docker
    connect: Connect | None
    registry_for: RegistryFor | None
    now: Callable[[], datetime]
    timeout: float
    service: Service | None = None  # a declared service: its values come from there
    config: DockerConfig | None = None
    missing_helpers: list[str] = field(default_factory=list)
    sources: Sources | None = None
    settings: Settings | None = None
    probe: AwsProbe | None = None
    sts: CallerIdentity | None = None
    host: str | None = None
    secrets: set[str] = field(default_factory=set)
    failures: dict[str, tuple[str, str]] = field(default_factory=dict)  # name: (root, reason)

    def need(self, *names: str) -> None:
        """Stop this check ("not checked") when a check it needs has failed."""
        for name in names:
            if name in self.failures:
                raise Blocked(name)

    def region(self) -> tuple[str, str]:
        """The valid region and where it comes from; blocked by the settings otherwise."""
        from ..model.settings import REGION_RE

        src = self.sources
        if src is None or not src.region or not re.fullmatch(REGION_RE, src.region):
            raise Blocked("settings")
        if src.sandbox_problem:
            raise Blocked("settings")  # AWS or the sandbox? Nothing is sent until it is said
        return src.region, src.region_origin

    def registry(self, host: str, user: str = "", password: str = "") -> Registry:
        if self.registry_for is not None:
            return self.registry_for(host, user, password)
        from ..outside.registry import Registry

        return Registry(host, user, password, timeout=self.timeout)

    def shown(self, path: Path) -> str:
        """A path as the user knows it: relative to the project folder when inside it."""
        try:
            return path.resolve().relative_to(self.root.resolve()).as_posix() or "."
        except ValueError:
            return str(path)

    def record(self, area: str, name: str, check: Callable[[Doctor], str]) -> Check:
        try:
            return Check(area, name, True, check(self))
        except Failed as failed:
            self.failures[name] = (name, failed.reason)
            return Check(area, name, False, failed.detail, failed.fix)
        except Blocked as blocked:
            root, reason = self.failures[blocked.need]
            self.failures[name] = (root, reason)
            return Check(area, name, False, f"not checked: {reason}", f"fix '{root}' first")


def run_checks(
    flags: Mapping[str, str | bool | None] | None = None,
    *,
    environ: Mapping[str, str],
    root: Path,
    env_file: str | Path = ".env",
    env_file_required: bool = False,
    runner: Runner | None = None,
    connect: Connect | None = None,
    registry_for: RegistryFor | None = None,
    now: Callable[[], datetime] | None = None,
    timeout: float = TIMEOUT,
    service: Service | None = None,
) -> list[Check]:
    """Run every check, in order; return one per line, any secret a message quoted masked.

    ``flags``, ``environ``, ``root``, ``env_file`` and ``env_file_required`` are what
    ``load_settings`` takes. The outside systems are the real ones unless a test hands in
    fakes: ``runner`` runs docker (default: :func:`bounded_runner`), ``connect(region,
    profile, aws_env)`` makes the AWS probe (default: ``ecr.connect_probe``),
    ``registry_for(host, user, password)`` a registry client; ``now`` is the local clock.
    """
    run = Doctor(
        flags=dict(flags or {}),
        environ=environ,
        root=root,
        env_file=Path(env_file),
        env_file_required=env_file_required,
        docker=Docker(runner or bounded_runner(timeout, environ), environ=environ),
        connect=connect,
        registry_for=registry_for,
        now=now or (lambda: datetime.now(UTC)),
        timeout=timeout,
        service=service,
    )
    from .doctor_checks import CHECKS

    checks = [run.record(area, name, check) for area, name, check in CHECKS]
    return [
        Check(
            c.area, c.name, c.ok, scrub(c.detail, run.secrets), c.fix and scrub(c.fix, run.secrets)
        )
        for c in checks
    ]
