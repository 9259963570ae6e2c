"""The doctor's fourteen checks, in the order :data:`CHECKS` runs them: Docker (CLI,
daemon, config, credential helpers), the settings and the build context, AWS
(credentials, identity, account, clock, repository, login token) and the registry
(reachable, docker's login accepted).

Each check is a function of the run (:class:`~.doctor.Doctor`): it returns what it found,
in words, or raises :class:`~.doctor.Failed` (what was found, what to do, and the reason
later checks give for not running) or :class:`~.doctor.Blocked` (it needs a check that
failed). Each asks the package's own parts: ``Docker``, ``Sources`` and
``settings_from``, ``ecr`` (the probe, the caller identity, the credential source) and
``Registry``. None of them changes anything.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from ..errors import RegistryError, ReleaseError, SettingsError
from ..model.masking import AWS_SECRET_KEYS
from ..outside.docker import DockerConfig
from ..outside.registry import is_loopback
from .doctor import MAX_SKEW, NO_CREDENTIALS_FIX, Blocked, Connect, Doctor, Failed

if TYPE_CHECKING:
    from ..outside.ecr import AwsProbe

# -- docker --------------------------------------------------------------------------------


def docker_cli(run: Doctor) -> str:
    try:
        return f"Docker {run.docker.client_version()}"
    except ReleaseError as exc:
        raise Failed(
            exc.message.partition(": install Docker")[0],  # the fix says it
            "install Docker (the docker CLI) and make sure `docker --version` runs",
            "the docker CLI does not run",
        ) from None


def docker_daemon(run: Doctor) -> str:
    run.need("docker CLI")
    where = run.environ.get("DOCKER_HOST") or "the default socket"
    try:
        info = run.docker.daemon_info()
    except ReleaseError as exc:
        detail = f"not answering at {where}" if "not answering" in exc.message else exc.message
        raise Failed(
            detail.partition("; restart Docker")[0],  # the fix says it
            "start Docker (`dockerd`, or Docker Desktop), or point DOCKER_HOST at a running daemon",
            "the Docker daemon is not answering",
        ) from None
    store = "containerd image store" if info.containerd_store else "classic image store"
    storage = info.storage_driver or "unknown"
    return f"Docker Engine {info.server_version} at {where}, storage {storage}, {store}"


def docker_config(run: Doctor) -> str:
    try:
        run.config = config = DockerConfig.load(run.environ)
    except SettingsError as exc:
        raise Failed(
            exc.message.partition(": fix or move it")[0],
            "fix or move it: `docker login` would rewrite it and lose the other registries' "
            "logins in it",
            "docker's config.json cannot be read",
        ) from None
    path = config.directory / "config.json"
    if not path.exists():
        return f"no {path}: docker's defaults"
    auths = config.data.get("auths")
    logins = len(auths) if isinstance(auths, dict) else 0
    return f"{path} is readable ({logins} login{'' if logins == 1 else 's'} in it)"


def credential_helpers(run: Doctor) -> str:
    run.need("docker config")
    assert run.config is not None
    wanted = run.config.helpers()
    if not wanted:
        return "none configured"
    path = run.environ.get("PATH", os.defpath)
    run.missing_helpers = [
        n for n in wanted if not shutil.which(f"docker-credential-{n}", path=path)
    ]

    def listed(names: Iterable[str]) -> str:
        return ", ".join(f"docker-credential-{n} ({', '.join(wanted[n])})" for n in names)

    if run.missing_helpers:
        raise Failed(
            f"not on PATH: {listed(run.missing_helpers)}",
            "install the helper, or remove its entry from config.json "
            f"({run.config.directory / 'config.json'})",
            "a docker credential helper is missing",
        )
    return f"on PATH: {listed(wanted)}"


# -- settings ------------------------------------------------------------------------------


def settings(run: Doctor) -> str:
    from ..model.settings import Sources, settings_from

    try:
        run.sources = Sources.read(
            run.flags,
            run.environ,
            run.env_file,
            run.root,
            env_file_required=run.env_file_required,
            service=run.service,
        )
        for key in AWS_SECRET_KEYS:
            run.secrets.update(s[key] for s in (run.environ, run.sources.aws_env) if s.get(key))
        run.settings = found = settings_from(run.sources, "doctor")
    except SettingsError as exc:
        raise Failed(
            exc.message,
            f"fix them in {run.env_file} or the environment (see .env.example)",
            "the settings are invalid",
        ) from None
    where = str(run.env_file) if found.env_file else f"no {run.env_file}"
    detail = f"valid ({where}): repository {found.repository}, image {found.image_name}"
    if found.sandbox:
        detail += "; target: the local sandbox (nothing is sent to AWS)"
    return detail + "".join(f"; warning: {warning}" for warning in found.warnings)


def build_context(run: Doctor) -> str:
    from ..model.buildcontext import listed, scan_context
    from ..outside.localstate import LocalState, cache_dir

    src = run.sources  # the scan needs only the paths: it runs when another setting is wrong
    if src is None or not (context := src.path("BUILD_CONTEXT")).is_dir():
        raise Blocked("settings")  # which has said why
    dockerfile = src.path("DOCKERFILE")
    try:
        # The releases' file digests: only what changed since is read (and nothing written).
        digests = LocalState(cache_dir(run.environ), read_only=True).context_digests(context)
        found = dockerfile if dockerfile.is_file() else None
        scan = scan_context(context, found, src.items("SECRET_SCAN_ALLOW"), (), digests)
    except SettingsError as exc:
        raise Failed(
            exc.message,
            "fix its permissions, or add it to .dockerignore",
            "the build context cannot be read",
        ) from None
    if scan.secrets:
        raise Failed(
            f"{run.shown(context)} holds {listed(scan.secrets)}, which .dockerignore does not "
            "exclude",
            "add them to .dockerignore (or move them out) so no secret reaches an image layer; "
            "a file you mean to ship goes in SECRET_SCAN_ALLOW",
            "the build context holds secrets",
        )
    return f"{run.shown(context)}: no secrets in what docker would send"


def working_tree(run: Doctor) -> str:
    from ..model.provenance import provenance
    from ..outside.git import revision

    src = run.sources
    if src is None or not (context := src.path("BUILD_CONTEXT")).is_dir():
        raise Blocked("settings")
    made = provenance(revision(context), context, src.path("DOCKERFILE"))
    if made.commit is None and not made.dirty:
        return f"revision unknown: {made.unknown}; images get no revision label"
    if not made.dirty:
        return f"clean at {(made.commit or '')[:12]}: nothing uncommitted reaches the image"
    many = len(made.dirty) > 1
    count = f"{len(made.dirty)} uncommitted change{'s' if many else ''}"
    reach = "reach" if many else "reaches"
    found = run.settings
    if found is not None and found.require_clean and not found.allow_dirty:
        raise Failed(
            f"{count} {reach} the image ({made.listed()}), and a clean tree is required "
            "(CI=true or REQUIRE_CLEAN)",
            "commit them, or release them with --allow-dirty",
            "the tree is dirty",
        )
    return (
        f"dirty: {count} {reach} the image ({made.listed()}); a release warns and labels it "
        f"{made.revision}"
    )


# -- AWS -----------------------------------------------------------------------------------


def credentials(run: Doctor) -> str:
    from ..model.settings import aws_environment
    from ..outside.ecr import connect_probe, credential_source

    region, _ = run.region()
    assert run.sources is not None
    profile, aws_env = run.sources.get("AWS_PROFILE"), run.sources.aws_env
    try:
        probe = (run.connect or _probe(connect_probe, run.timeout))(region, profile, aws_env)
    except ReleaseError as exc:
        raise Failed(
            exc.message,
            "fix AWS_PROFILE, the AWS config files or the AWS_* variables",
            "the AWS credentials cannot be used",
        ) from None
    if probe.credentials is None:
        raise Failed(
            "no AWS credentials found (environment, .env, AWS_PROFILE, ~/.aws, SSO, container "
            "or instance role)",
            NO_CREDENTIALS_FIX,
            "no AWS credentials",
        )
    run.probe = probe
    for key in ("secret_key", "token"):
        if isinstance(secret := getattr(probe.credentials, key, None), str) and secret:
            run.secrets.add(secret)
    if run.sources.sandbox:
        return "found: the sandbox's own keys (no AWS credentials are read or sent)"
    named = profile or aws_environment(run.environ, aws_env).get("AWS_PROFILE")
    in_dotenv = str(run.sources.env_path) if "AWS_ACCESS_KEY_ID" in aws_env else None
    return f"found: {credential_source(probe.credentials, named, in_dotenv)}"


def _probe(connect_probe: Callable[..., AwsProbe], timeout: float) -> Connect:
    return lambda region, profile, aws_env: connect_probe(region, profile, aws_env, timeout=timeout)


def identity(run: Doctor) -> str:
    from ..outside.ecr import caller_identity

    run.need("AWS credentials")
    assert run.probe is not None
    region, where = run.region()
    run.sts = answer = caller_identity(run.probe.sts, run.now)
    if answer.identity is None:
        raise Failed(
            answer.error or "no answer",
            "fix or refresh the AWS credentials (an expired SSO login: `aws sso login`), or "
            "check the network and AWS_ENDPOINT_URL",
            "the AWS identity is unknown",
        )
    found = answer.identity
    return (
        f"{found.get('Arn', '?')} (account {found.get('Account', '?')}), region {region} ({where})"
    )


def account(run: Doctor) -> str:
    from ..model.settings import ACCOUNT_RE

    run.need("AWS identity")
    assert run.sts is not None and run.sts.identity is not None and run.sources is not None
    found, wanted = str(run.sts.identity.get("Account", "")), run.sources.get("AWS_ACCOUNT_ID")
    if wanted is None:
        return f"{found} (AWS_ACCOUNT_ID is not set: not enforced)"
    if not re.fullmatch(ACCOUNT_RE, wanted):
        raise Blocked("settings")
    if found != wanted:
        raise Failed(
            f"the credentials are for account {found}, AWS_ACCOUNT_ID is {wanted}",
            f"use credentials (a profile) of account {wanted}, or fix AWS_ACCOUNT_ID",
            "the credentials are for another account",
        )
    return f"{found}, as AWS_ACCOUNT_ID says"


def clock(run: Doctor) -> str:
    if run.sts is None or run.sts.local_date is None:  # STS gave no answer at all
        run.need("AWS credentials", "AWS identity")
    assert run.sts is not None and run.sts.local_date is not None
    local, aws = run.sts.local_date, run.sts.aws_date
    if aws is None:
        return "not measured: the AWS answer had no Date header"
    skew = local - aws
    seconds = abs(skew.total_seconds())
    if abs(skew) <= MAX_SKEW:
        return f"within {max(seconds, 1):.0f} s of AWS (STS Date header)"
    way = "ahead of" if skew > timedelta(0) else "behind"
    raise Failed(
        f"the local clock is {_duration(seconds)} {way} AWS (local {_utc(local)}, AWS {_utc(aws)})",
        "sync the clock (timedatectl set-ntp true, or NTP): AWS refuses request signatures "
        "more than 5 minutes off",
        "the clock is off",
    )


def repository(run: Doctor) -> str:
    from ..outside.ecr import lifecycle_drift
    from .release import repository_config

    run.need("settings", "AWS account")
    assert run.settings is not None and run.probe is not None
    name, config = run.settings.repository, repository_config(run.settings)
    try:
        found = run.probe.ecr.describe_repository(name)
        if found is None:
            return (
                f"{name} does not exist in {run.settings.region} yet: `inv release` will "
                f"create it ({config.words()})"
            )
        drift, days = found.drift(config), config.expire_untagged_days
        if days is not None and (
            lifecycle := lifecycle_drift(run.probe.ecr.lifecycle_policy(name), days)
        ):
            drift.append(f"it {lifecycle}")
    except ReleaseError as exc:
        raise Failed(
            exc.message,
            "give the identity ecr:DescribeRepositories (and ecr:GetLifecyclePolicy)",
            "the repository cannot be described",
        ) from None
    if drift:
        raise Failed(
            f"{found.uri} differs from the settings: {'; '.join(drift)}",
            "make the settings match the repository (a release never changes an existing one), "
            "or change the repository in ECR",
            "the repository differs from the settings",
        )
    return f"{found.uri} exists, as configured ({config.words()})"


def token(run: Doctor) -> str:
    run.need("AWS account")
    assert run.probe is not None
    try:
        auth = run.probe.ecr.authorization()  # read-only; nothing remembers it
    except ReleaseError as exc:
        raise Failed(
            exc.message,
            "give the identity ecr:GetAuthorizationToken (on resource *)",
            "no registry host (GetAuthorizationToken failed)",
        ) from None
    run.secrets.add(auth.password)
    run.host = auth.host
    return f"GetAuthorizationToken names registry {auth.host}"


# -- registry ------------------------------------------------------------------------------


def registry(run: Doctor) -> str:
    run.need("ECR login token")
    host = run.host
    assert host is not None
    try:
        status = run.registry(host).api_status(login=False)
    except RegistryError as exc:
        raise Failed(
            exc.message,
            f"check the network and DNS for {host}, and that its certificate is trusted (the "
            f"system's CAs, or /etc/docker/certs.d/{host}/ca.crt)",
            f"registry {host} cannot be reached",
        ) from None
    if status not in (200, 401):
        raise Failed(
            f"{host} answered HTTP {status} to GET /v2/ (a registry answers 200 or 401)",
            "check that nothing (a proxy, a firewall) answers in the registry's place",
            f"registry {host} answers oddly",
        )
    over = "plain HTTP on loopback" if is_loopback(host) else "TLS"
    return f"{host} answers over {over} (GET /v2/: HTTP {status})"


def login(run: Doctor) -> str:
    run.need("docker config", "registry")
    host = run.host
    assert host is not None and run.config is not None
    helper = run.config.helper_for(host)
    if helper in run.missing_helpers:
        run.need("credential helpers")
    via = f" (credential helper {helper})" if helper else ""
    try:
        stored = run.docker.stored_credential(host)
    except ReleaseError as exc:
        raise Failed(exc.message, "run `inv login`", "docker's login cannot be read") from None
    if stored is None:
        raise Failed(
            f"docker holds no login for {host}{via}", "run `inv login`", "no registry login"
        )
    user, password = stored
    run.secrets.add(password)
    try:
        status = run.registry(host, user, password).api_status(login=True)
    except RegistryError as exc:
        raise Failed(
            exc.message,
            "check the network, then run `inv doctor` again",
            f"registry {host} cannot be reached",
        ) from None
    if status != 200:
        raise Failed(
            f"{host} refuses docker's stored login{via} (HTTP {status})",
            "run `inv login --force` for a fresh one",
            "the registry refuses docker's login",
        )
    return f"docker's login for {host} is accepted{via}"


# Every check, in the order it runs and is shown: (area, name, check).
CHECKS: tuple[tuple[str, str, Callable[[Doctor], str]], ...] = (
    ("docker", "docker CLI", docker_cli),
    ("docker", "docker daemon", docker_daemon),
    ("docker", "docker config", docker_config),
    ("docker", "credential helpers", credential_helpers),
    ("settings", "settings", settings),
    ("settings", "build context", build_context),
    ("settings", "working tree", working_tree),
    ("aws", "AWS credentials", credentials),  # boto3 is imported from here on
    ("aws", "AWS identity", identity),
    ("aws", "AWS account", account),
    ("aws", "clock", clock),
    ("aws", "repository", repository),
    ("aws", "ECR login token", token),
    ("registry", "registry", registry),
    ("registry", "registry login", login),
)


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min {rest} s"


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
