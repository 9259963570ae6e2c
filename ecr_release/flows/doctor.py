"""``inv doctor``: the first-run failures, found in one command, one line each.

:func:`run_checks` looks at Docker (CLI, daemon, config, credential helpers), the
settings (validated as ``release`` validates them) and the build context, AWS
(credentials and where they come from, the identity, the account, the clock, the
repository, the registry host) and the registry (reachable over TLS, docker's login
accepted). Every check runs, whatever failed before it: one that cannot run says
"not checked" and names the failure to fix first. :func:`exit_code` and
:func:`render` turn the result into what the task layer prints and returns.

It changes nothing: no ``docker login``, no repository created, no lifecycle policy
put, no login record or other file written. ``GetAuthorizationToken`` is read-only;
it is called on :class:`~.ecr.Ecr` directly, so nothing remembers its host. boto3 is
imported only when the AWS checks start. Every subprocess and HTTP call is bounded
by ``timeout`` seconds. A failure a user can act on is a ``Check``, never an
exception; anything else is a bug and keeps its traceback. This module does not
print: the task layer does.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DockerError, RegistryError, ReleaseError, SettingsError
from ..outside.docker import Docker, DockerConfig
from ..outside.process import Runner, SubprocessRunner

if TYPE_CHECKING:
    from ..model.settings import Settings, Sources
    from ..outside.ecr import AwsProbe
    from ..outside.registry import Registry

# The exit code of each area, as the release uses them (errors.py).
AREAS: Mapping[str, int] = {"settings": 2, "docker": 3, "aws": 4, "registry": 5}
# Every subprocess and HTTP call is bounded by this many seconds.
TIMEOUT = 5.0
# AWS refuses request signatures made this far from its own clock.
MAX_SKEW = timedelta(minutes=5)

# botocore's Credentials.method, in words.
CREDENTIAL_SOURCES: Mapping[str, str] = {
    "env": "environment variables (AWS_ACCESS_KEY_ID)",
    "shared-credentials-file": "the shared credentials file",
    "config-file": "the AWS config file",
    "sso": "IAM Identity Center (SSO)",
    "login": "an `aws login` session",
    "assume-role": "a role assumed from the profile (role_arn)",
    "assume-role-with-web-identity": "a web identity token (AWS_WEB_IDENTITY_TOKEN_FILE)",
    "custom-process": "the profile's credential_process",
    "iam-role": "the EC2 instance role (instance metadata)",
    "container-role": "the container role (ECS/EKS credentials endpoint)",
    "ec2-credentials-file": "the EC2 credentials file",
    "boto-config": "a boto config file",
    "explicit": "keys given to the session",
}
NO_CREDENTIALS_FIX = (
    "set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, in .env or the "
    "environment (or run `aws configure`)"
)


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
    for check in checks:
        if not check.ok:
            return AREAS[check.area]
    return 0


def render(checks: Iterable[Check], *, tty: bool) -> str:
    """One line per check: ``✓ name: detail`` / ``✗ name: detail — fix`` on a terminal,
    ``ok   name: detail`` / ``FAIL name: detail -- fix`` (ASCII) elsewhere."""
    lines = []
    for check in checks:
        if tty:
            mark, dash = ("✓" if check.ok else "✗"), "—"
        else:
            mark, dash = ("ok  " if check.ok else "FAIL"), "--"
        line = f"{mark} {check.name}: {check.detail}"
        if not check.ok and check.fix:
            line += f" {dash} {check.fix}"
        lines.append(line)
    return "\n".join(lines)


def bounded_runner(timeout: float = TIMEOUT, environ: Mapping[str, str] | None = None) -> Runner:
    """The doctor's runner: the shared one, every command (and anything it started) killed
    after ``timeout`` seconds, so a hung daemon or credential helper cannot hold the doctor
    up; a command stopped so returns 124. Output is captured, never streamed."""
    return SubprocessRunner(timeout=timeout, env=environ)


# -- the run ---------------------------------------------------------------------------

Connect = Callable[[str, str | None, Mapping[str, str]], "AwsProbe"]
RegistryFor = Callable[[str, str, str], "Registry"]


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
) -> list[Check]:
    """Run every check, in order: docker, settings, AWS, registry; return one per line.

    ``flags``, ``environ``, ``root``, ``env_file`` and ``env_file_required`` are what
    ``load_settings`` takes (the shared flags' settings, the process environment, the
    project folder, ``--env-file``). The outside systems are the real ones unless a
    test hands in fakes: ``runner`` runs docker (default: :func:`bounded_runner` with
    ``timeout`` and ``environ``); ``connect(region, profile, aws_env)`` makes the AWS
    probe (default: :func:`~.ecr.connect_probe`); ``registry_for(host, user, password)``
    makes a registry client (default: :class:`~.registry.Registry`, with docker's certs.d
    CAs); ``now`` is the local clock the AWS one is compared with.
    """
    run = _Doctor(
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
    )
    run.docker_checks()
    run.settings_checks()
    run.aws_checks()  # boto3 is imported from here on, and only when a probe is made
    run.registry_checks()
    return run.scrubbed()


@dataclass
class _Doctor:
    """One doctor run: the checks so far, and what later checks need from earlier ones."""

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
    checks: list[Check] = field(default_factory=list)
    # For a failed check: the short reason later checks give for not running.
    reasons: dict[str, str] = field(default_factory=dict)
    # For a check not run: the failure it goes back to.
    roots: dict[str, str] = field(default_factory=dict)
    secrets: set[str] = field(default_factory=set)
    config: DockerConfig | None = None
    sources: Sources | None = None
    settings: Settings | None = None
    probe: AwsProbe | None = None
    identity: Mapping[str, Any] | None = None
    server_date: datetime | None = None
    local_date: datetime | None = None
    host: str | None = None
    missing_helpers: list[str] = field(default_factory=list)

    # -- recording ---------------------------------------------------------------------

    def passed(self, area: str, name: str, detail: str) -> None:
        self.checks.append(Check(area, name, True, detail))

    def failed(self, area: str, name: str, detail: str, fix: str, *, reason: str) -> None:
        self.checks.append(Check(area, name, False, detail, fix))
        self.reasons[name] = reason

    def blocked(self, area: str, name: str, *needs: str) -> bool:
        """Record "not checked" when a check this one needs has failed (True then)."""
        for need in needs:
            if need in self.reasons:
                root = self.roots.get(need, need)
                why = self.reasons[root]
                self.checks.append(
                    Check(area, name, False, f"not checked: {why}", f"fix '{root}' first")
                )
                self.reasons[name], self.roots[name] = why, root
                return True
        return False

    def scrubbed(self) -> list[Check]:
        """The checks, with any secret a message may have quoted replaced by ***."""
        from ..model.masking import scrub

        return [
            Check(
                c.area,
                c.name,
                c.ok,
                scrub(c.detail, self.secrets),
                scrub(c.fix, self.secrets) if c.fix else None,
            )
            for c in self.checks
        ]

    # -- docker ------------------------------------------------------------------------

    def docker_checks(self) -> None:
        self._docker_cli()
        self._docker_daemon()
        self._docker_config()
        self._credential_helpers()

    def _docker_cli(self) -> None:
        try:
            version = self.docker.client_version()
        except DockerError as exc:
            self.failed(
                "docker",
                "docker CLI",
                exc.message.partition(": install Docker")[0],  # the fix says it
                "install Docker (the docker CLI) and make sure `docker --version` runs",
                reason="the docker CLI does not run",
            )
            return
        self.passed("docker", "docker CLI", f"Docker {version}")

    def _docker_daemon(self) -> None:
        if self.blocked("docker", "docker daemon", "docker CLI"):
            return
        where = self.environ.get("DOCKER_HOST") or "the default socket"
        try:
            info = self.docker.daemon_info()
        except DockerError as exc:
            detail = f"not answering at {where}" if "not answering" in exc.message else exc.message
            detail = detail.partition("; restart Docker")[0]  # the fix says it
            self.failed(
                "docker",
                "docker daemon",
                detail,
                "start Docker (`dockerd`, or Docker Desktop), or point DOCKER_HOST at a "
                "running daemon",
                reason="the Docker daemon is not answering",
            )
            return
        store = "containerd image store" if info.containerd_store else "classic image store"
        self.passed(
            "docker",
            "docker daemon",
            f"Docker Engine {info.server_version} at {where}, "
            f"storage {info.storage_driver or 'unknown'}, {store}",
        )

    def _docker_config(self) -> None:
        try:
            config = DockerConfig.load(self.environ)
        except SettingsError as exc:
            self.failed(
                "docker",
                "docker config",
                exc.message.partition(": fix or move it")[0],
                "fix or move it: `docker login` would rewrite it and lose the other "
                "registries' logins in it",
                reason="docker's config.json cannot be read",
            )
            return
        self.config = config
        path = config.directory / "config.json"
        if not path.exists():
            self.passed("docker", "docker config", f"no {path}: docker's defaults")
            return
        auths = config.data.get("auths")
        logins = len(auths) if isinstance(auths, dict) else 0
        count = f"{logins} login{'' if logins == 1 else 's'}"
        self.passed("docker", "docker config", f"{path} is readable ({count} in it)")

    def _credential_helpers(self) -> None:
        if self.blocked("docker", "credential helpers", "docker config"):
            return
        assert self.config is not None
        wanted: dict[str, list[str]] = {}
        store = self.config.data.get("credsStore")
        if isinstance(store, str) and store:
            wanted.setdefault(store, []).append("credsStore")
        helpers = self.config.data.get("credHelpers")
        for host, name in helpers.items() if isinstance(helpers, dict) else ():
            if isinstance(name, str) and name:
                wanted.setdefault(name, []).append(f"credHelpers[{host}]")
        if not wanted:
            self.passed("docker", "credential helpers", "none configured")
            return
        path = self.environ.get("PATH", os.defpath)
        missing = [
            name for name in wanted if shutil.which(f"docker-credential-{name}", path=path) is None
        ]
        self.missing_helpers = missing
        if missing:
            shown = ", ".join(f"docker-credential-{n} ({', '.join(wanted[n])})" for n in missing)
            self.failed(
                "docker",
                "credential helpers",
                f"not on PATH: {shown}",
                "install the helper, or remove its entry from config.json "
                f"({self.config.directory / 'config.json'})",
                reason="a docker credential helper is missing",
            )
            return
        shown = ", ".join(f"docker-credential-{n} ({', '.join(wanted[n])})" for n in wanted)
        self.passed("docker", "credential helpers", f"on PATH: {shown}")

    # -- settings ----------------------------------------------------------------------

    def settings_checks(self) -> None:
        from ..model.settings import Sources, load_settings

        try:
            self.sources = Sources.read(
                self.flags,
                self.environ,
                self.env_file,
                self.root,
                env_file_required=self.env_file_required,
            )
        except SettingsError:
            self.sources = None  # load_settings says why, just below
        try:
            settings = load_settings(
                self.flags,
                environ=self.environ,
                task="doctor",
                env_file=self.env_file,
                env_file_required=self.env_file_required,
                root=self.root,
            )
        except SettingsError as exc:
            self.failed(
                "settings",
                "settings",
                exc.message,
                f"fix them in {self.env_file} or the environment (see .env.example)",
                reason="the settings are invalid",
            )
        else:
            self.settings = settings
            where = str(self.env_file) if settings.env_file else f"no {self.env_file}"
            detail = (
                f"valid ({where}): repository {settings.repository}, image {settings.image_name}"
            )
            for warning in settings.warnings:
                detail += f"; warning: {warning}"
            self.passed("settings", "settings", detail)
        from ..model.masking import AWS_SECRET_KEYS

        for key in AWS_SECRET_KEYS:
            for source in (self.environ, self.sources.aws_env if self.sources else {}):
                if source.get(key):
                    self.secrets.add(source[key])
        self._build_context()

    def _build_context(self) -> None:
        from ..model.buildcontext import SHOWN_FINDINGS, scan_context

        name = "build context"
        # The scan needs only the paths: it runs even when another setting is wrong.
        if self.settings is not None:
            context, dockerfile = self.settings.build_context, self.settings.dockerfile
            allow = self.settings.secret_scan_allow
        elif self.sources is not None:
            context, dockerfile = (
                self.sources.path("BUILD_CONTEXT"),
                self.sources.path("DOCKERFILE"),
            )
            allow = self.sources.items("SECRET_SCAN_ALLOW")
        else:
            self.blocked("settings", name, "settings")
            return
        if not context.is_dir():  # the settings check has said so
            self.blocked("settings", name, "settings")
            return
        try:
            scan = scan_context(context, dockerfile if dockerfile.is_file() else None, allow)
        except SettingsError as exc:
            self.failed(
                "settings",
                name,
                exc.message,
                "fix its permissions, or add it to .dockerignore",
                reason="the build context cannot be read",
            )
            return
        shown = self._shown(context)
        if scan.secrets:
            listed = ", ".join(map(str, scan.secrets[:SHOWN_FINDINGS]))
            if len(scan.secrets) > SHOWN_FINDINGS:
                listed += f" and {len(scan.secrets) - SHOWN_FINDINGS} more"
            self.failed(
                "settings",
                name,
                f"{shown} holds {listed}, which .dockerignore does not exclude",
                "add them to .dockerignore (or move them out) so no secret reaches an image "
                "layer; a file you mean to ship goes in SECRET_SCAN_ALLOW",
                reason="the build context holds secrets",
            )
            return
        self.passed("settings", name, f"{shown}: no secrets in what docker would send")

    def _shown(self, path: Path) -> str:
        """A path as the user knows it: relative to the project folder when inside it."""
        try:
            return path.resolve().relative_to(self.root.resolve()).as_posix() or "."
        except ValueError:
            return str(path)

    # -- AWS ---------------------------------------------------------------------------

    def aws_checks(self) -> None:
        self._credentials()
        self._identity()
        self._account()
        self._clock()
        self._repository()
        self._token()

    def _region(self) -> tuple[str | None, str]:
        """The region and where it comes from; None when there is no valid one."""
        from ..model.settings import REGION_RE

        src = self.sources
        if src is None or not src.region or not REGION_RE.fullmatch(src.region):
            return None, ""
        return src.region, src.region_origin

    def _credentials(self) -> None:
        name = "AWS credentials"
        region, _ = self._region()
        if region is None or self.sources is None:  # the settings check has said why
            self.blocked("aws", name, "settings")
            return
        profile = self.sources.get("AWS_PROFILE")
        try:
            if self.connect is not None:
                probe = self.connect(region, profile, self.sources.aws_env)
            else:
                from ..outside.ecr import connect_probe

                probe = connect_probe(region, profile, self.sources.aws_env, timeout=self.timeout)
        except ReleaseError as exc:
            self.failed(
                "aws",
                name,
                exc.message,
                "fix AWS_PROFILE, the AWS config files or the AWS_* variables",
                reason="the AWS credentials cannot be used",
            )
            return
        if probe.credentials is None:
            self.failed(
                "aws",
                name,
                "no AWS credentials found (environment, .env, AWS_PROFILE, ~/.aws, SSO, "
                "container or instance role)",
                NO_CREDENTIALS_FIX,
                reason="no AWS credentials",
            )
            return
        self.probe = probe
        for secret in (
            getattr(probe.credentials, "secret_key", None),
            getattr(probe.credentials, "token", None),
        ):
            if isinstance(secret, str) and secret:
                self.secrets.add(secret)
        self.passed("aws", name, f"found: {self._credential_source(probe.credentials, profile)}")

    def _credential_source(self, credentials: Any, profile: str | None) -> str:
        method = str(getattr(credentials, "method", "") or "")
        words = CREDENTIAL_SOURCES.get(method, f"botocore's {method or 'unnamed'} provider")
        assert self.sources is not None
        if method == "env":
            keys = "AWS_ACCESS_KEY_ID" in self.sources.aws_env
            return f"AWS_ACCESS_KEY_ID in {self.sources.env_path}" if keys else words
        from ..model.settings import aws_environment

        env = aws_environment(self.environ, self.sources.aws_env)
        named = profile or env.get("AWS_PROFILE")
        profile_methods = (
            "shared-credentials-file",
            "config-file",
            "sso",
            "login",
            "assume-role",
            "custom-process",
        )
        if method in profile_methods:
            return f"{words}, profile {named or 'default'}"
        return words

    def _identity(self) -> None:
        from botocore import exceptions as bx

        from ..errors import AwsError
        from ..outside.ecr import aws_errors

        name = "AWS identity"
        if self.blocked("aws", name, "AWS credentials"):
            return
        assert self.probe is not None
        region, where = self._region()
        try:
            with aws_errors():
                try:
                    answer = self.probe.sts.get_caller_identity()
                except (
                    bx.EndpointConnectionError,
                    bx.ConnectTimeoutError,
                    bx.ReadTimeoutError,
                ) as exc:
                    raise AwsError(f"cannot reach AWS STS: {exc}") from exc
                except bx.ClientError as exc:
                    self._note_date(exc.response)
                    error = exc.response.get("Error", {})
                    code, message = error.get("Code", ""), error.get("Message", "") or str(exc)
                    raise AwsError(
                        f"AWS refused sts:GetCallerIdentity ({code}): {message}"
                    ) from exc
        except ReleaseError as exc:
            self.failed(
                "aws",
                name,
                exc.message,
                "fix or refresh the AWS credentials (an expired SSO login: `aws sso login`), "
                "or check the network and AWS_ENDPOINT_URL",
                reason="the AWS identity is unknown",
            )
            return
        self._note_date(answer)
        self.identity = answer
        self.passed(
            "aws",
            name,
            f"{answer.get('Arn', '?')} (account {answer.get('Account', '?')}), "
            f"region {region} ({where})",
        )

    def _note_date(self, response: Mapping[str, Any]) -> None:
        """The HTTP Date of an AWS answer, and the local time it arrived at."""
        self.local_date = self.now()
        headers = (response.get("ResponseMetadata") or {}).get("HTTPHeaders") or {}
        date = headers.get("date")
        try:
            parsed = parsedate_to_datetime(date) if isinstance(date, str) else None
        except (TypeError, ValueError):
            parsed = None
        if parsed is not None and parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        self.server_date = parsed

    def _account(self) -> None:
        from ..model.settings import ACCOUNT_RE

        name = "AWS account"
        if self.blocked("aws", name, "AWS identity"):
            return
        assert self.identity is not None and self.sources is not None
        account = str(self.identity.get("Account", ""))
        wanted = self.sources.get("AWS_ACCOUNT_ID")
        if wanted is None:
            self.passed("aws", name, f"{account} (AWS_ACCOUNT_ID is not set: not enforced)")
        elif not ACCOUNT_RE.fullmatch(wanted):
            self.blocked("aws", name, "settings")
        elif account != wanted:
            self.failed(
                "aws",
                name,
                f"the credentials are for account {account}, AWS_ACCOUNT_ID is {wanted}",
                f"use credentials (a profile) of account {wanted}, or fix AWS_ACCOUNT_ID",
                reason="the credentials are for another account",
            )
        else:
            self.passed("aws", name, f"{account}, as AWS_ACCOUNT_ID says")

    def _clock(self) -> None:
        name = "clock"
        if self.local_date is None:  # STS gave no answer at all
            self.blocked("aws", name, "AWS credentials", "AWS identity")
            return
        if self.server_date is None:
            self.passed("aws", name, "not measured: the AWS answer had no Date header")
            return
        skew = self.local_date - self.server_date
        seconds = abs(skew.total_seconds())
        if abs(skew) <= MAX_SKEW:
            self.passed("aws", name, f"within {max(seconds, 1):.0f} s of AWS (STS Date header)")
            return
        way = "ahead of" if skew > timedelta(0) else "behind"
        self.failed(
            "aws",
            name,
            f"the local clock is {_duration(seconds)} {way} AWS "
            f"(local {_utc(self.local_date)}, AWS {_utc(self.server_date)})",
            "sync the clock (timedatectl set-ntp true, or NTP): AWS refuses request "
            "signatures more than 5 minutes off",
            reason="the clock is off",
        )

    def _repository(self) -> None:
        from .release import repository_config

        name = "repository"
        if self.blocked("aws", name, "settings", "AWS account"):
            return
        assert self.settings is not None and self.probe is not None
        settings, config = self.settings, repository_config(self.settings)
        try:
            found = self.probe.ecr.describe_repository(settings.repository)
            if found is None:
                self.passed(
                    "aws",
                    name,
                    f"{settings.repository} does not exist in {settings.region} yet: "
                    f"`inv release` will create it ({_config_words(config)})",
                )
                return
            drift = found.drift(config)
            days = config.expire_untagged_days
            if days is not None and (lifecycle := self.probe.ecr.lifecycle_drift(found.name, days)):
                drift.append(f"it {lifecycle}")
        except ReleaseError as exc:
            self.failed(
                "aws",
                name,
                exc.message,
                "give the identity ecr:DescribeRepositories (and ecr:GetLifecyclePolicy)",
                reason="the repository cannot be described",
            )
            return
        if drift:
            self.failed(
                "aws",
                name,
                f"{found.uri} differs from the settings: {'; '.join(drift)}",
                "make the settings match the repository (a release never changes an existing "
                "one), or change the repository in ECR",
                reason="the repository differs from the settings",
            )
            return
        self.passed("aws", name, f"{found.uri} exists, as configured ({_config_words(config)})")

    def _token(self) -> None:
        name = "ECR login token"
        if self.blocked("aws", name, "AWS account"):
            return
        assert self.probe is not None
        try:
            auth = self.probe.ecr.authorization()  # read-only; nothing remembers it
        except ReleaseError as exc:
            self.failed(
                "aws",
                name,
                exc.message,
                "give the identity ecr:GetAuthorizationToken (on resource *)",
                reason="no registry host (GetAuthorizationToken failed)",
            )
            return
        self.secrets.add(auth.password)
        self.host = auth.host
        self.passed("aws", name, f"GetAuthorizationToken names registry {auth.host}")

    # -- registry ----------------------------------------------------------------------

    def registry_checks(self) -> None:
        self._registry()
        self._login()

    def _registry_client(self, host: str, user: str = "", password: str = "") -> Registry:
        if self.registry_for is not None:
            return self.registry_for(host, user, password)
        from ..outside.registry import Registry

        return Registry(host, user, password, timeout=self.timeout)

    def _registry(self) -> None:
        name = "registry"
        if self.blocked("registry", name, "ECR login token"):
            return
        assert self.host is not None
        host = self.host
        try:
            status = self._registry_client(host).api_status(login=False)
        except RegistryError as exc:
            self.failed(
                "registry",
                name,
                exc.message,
                f"check the network and DNS for {host}, and that its certificate is trusted "
                f"(the system's CAs, or /etc/docker/certs.d/{host}/ca.crt)",
                reason=f"registry {host} cannot be reached",
            )
            return
        if status not in (200, 401):
            self.failed(
                "registry",
                name,
                f"{host} answered HTTP {status} to GET /v2/ (a registry answers 200 or 401)",
                "check that nothing (a proxy, a firewall) answers in the registry's place",
                reason=f"registry {host} answers oddly",
            )
            return
        self.passed("registry", name, f"{host} answers over TLS (GET /v2/: HTTP {status})")

    def _login(self) -> None:
        name = "registry login"
        if self.blocked("registry", name, "docker config", "registry"):
            return
        assert self.host is not None and self.config is not None
        host = self.host
        helper = self.config.helper_for(host)
        if helper in self.missing_helpers and self.blocked("registry", name, "credential helpers"):
            return
        via = f" (credential helper {helper})" if helper else ""
        try:
            stored = self.docker.stored_credential(host)
        except ReleaseError as exc:
            self.failed(
                "registry",
                name,
                exc.message,
                "run `inv login`",
                reason="docker's login cannot be read",
            )
            return
        if stored is None:
            self.failed(
                "registry",
                name,
                f"docker holds no login for {host}{via}",
                "run `inv login`",
                reason="no registry login",
            )
            return
        user, password = stored
        self.secrets.add(password)
        try:
            status = self._registry_client(host, user, password).api_status(login=True)
        except RegistryError as exc:
            self.failed(
                "registry",
                name,
                exc.message,
                "check the network, then run `inv doctor` again",
                reason=f"registry {host} cannot be reached",
            )
            return
        if status == 200:
            self.passed("registry", name, f"docker's login for {host} is accepted{via}")
            return
        self.failed(
            "registry",
            name,
            f"{host} refuses docker's stored login{via} (HTTP {status})",
            "run `inv login --force` for a fresh one",
            reason="the registry refuses docker's login",
        )


def _config_words(config: Any) -> str:
    """A RepositoryConfig in a few words: mutability, scanning, encryption."""
    words = [config.tag_mutability]
    words.append("scan on push" if config.scan_on_push else "no scan on push")
    words.append(config.encryption)
    if config.expire_untagged_days is not None:
        words.append(f"untagged expire after {config.expire_untagged_days} days")
    return ", ".join(words)


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {rest} s"


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
