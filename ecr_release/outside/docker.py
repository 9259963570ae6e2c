"""The Docker CLI: build, tag, push, login, image inspection and the few container
commands the smoke test needs, over one private runner (:mod:`.process`).

Every command is an argument list, never a shell string, so no value can reach a
shell. The registry password travels on stdin only. Docker's own progress is
streamed through to the user. Every command is bounded: one that answers in a line
(version, info, inspect, tag, a credential helper...) within :data:`ANSWER_SECONDS`,
``docker login`` and ``docker run -d`` within :data:`LOGIN_SECONDS`, and the long
ones (build, push, pull) when they print nothing for ``idle_limit`` seconds. A
command stopped at its limit is a :class:`~..errors.DockerError` naming the command
and the daemon, never a hang. A push is retried here when docker's failure is
transient. A dry run swaps the runner for :class:`PlanningRunner`, which shows each
command that would change something instead of running it. This module knows nothing
of AWS, and nothing of how the smoke test judges an image (``flows.smoke`` does).
"""

from __future__ import annotations

import base64
import contextlib
import enum
import json
import logging
import os
import re
import shlex
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DockerError, SettingsError, VersionExistsError
from .engine import EngineDeclined, LocalEngine
from .process import TIMED_OUT, Result, Runner, SubprocessRunner

__all__ = [  # the runner's names stay importable from here
    "TIMED_OUT",
    "Docker",
    "DockerConfig",
    "ImageInfo",
    "PlanningRunner",
    "Result",
    "Runner",
    "SubprocessRunner",
]

log = logging.getLogger(__name__)

# This machine's lock for one image reference, held around a pull (see ``pull_missing``).
PullLock = Callable[[str], contextlib.AbstractContextManager[None]]

PUSH_ATTEMPTS = 4
BACKOFF_SECONDS = 2.0

# How long a command may take. A daemon that accepts connections and never answers
# must end the run with a line, not hang it.
ANSWER_SECONDS = 10.0  # a command that answers at once: version, info, inspect, tag, rm...
LOGIN_SECONDS = 30.0  # docker login (the daemon asks the registry); docker run -d
# build, push, pull: stopped when docker prints nothing for this long. A single layer
# that takes longer to upload (docker prints no progress when not on a terminal) or a
# build step silent for longer would be cut off: the caller can raise it.
IDLE_SECONDS = 600.0
DEFAULT_SOCKET = "unix:///var/run/docker.sock"

# The patterns here are text: re compiles each on its first use (a rerun uses none).
_DIGEST_RE = r"digest: (sha256:[0-9a-f]{64})"
_DAEMON_DOWN = (
    "cannot connect to the docker daemon",
    "is the docker daemon running",
    "error during connect",
    "docker daemon is not running",
)


# One line of JSON per image: the ID, the repo digests, the labels, the HEALTHCHECK and
# the SHELL (the smoke test's), so one `docker image inspect` serves every reader. The
# names are the CLI's Go fields (`.ID`, not the JSON key "Id"): the CLI runs the template
# on its typed value, where an absent HEALTHCHECK or SHELL is null; only if that fails does
# it retry on the daemon's raw JSON, where a key the daemon omits is an error.
_INSPECT = (
    '{"id": {{json .ID}}, "digests": {{json .RepoDigests}}, "labels": {{json .Config.Labels}}, '
    '"healthcheck": {{json .Config.Healthcheck}}, "shell": {{json .Config.Shell}}, '
    '"onbuild": {{json .Config.OnBuild}}}'
)


# `docker info`, reduced to what `inv doctor` shows, as one line of JSON.
_INFO = (
    '{"server": {{json .ServerVersion}}, "driver": {{json .Driver}}, '
    '"status": {{json .DriverStatus}}}'
)
# `docker --version`: "Docker version 28.2.2, build e6534b4".
_VERSION_RE = r"(?i)version ([0-9]+\.[0-9][^,\s]*)"


@dataclass(frozen=True)
class ImageInfo:
    """A local image: its ID, the repo digests docker knows for it, its labels, its
    HEALTHCHECK's test (``.Config.Healthcheck.Test``, e.g. ``("CMD", "true")``; empty when
    it has none), its SHELL (empty when it sets none) and its ONBUILD triggers."""

    id: str
    repo_digests: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    health_test: tuple[str, ...] = ()
    shell: tuple[str, ...] = ()
    onbuild: tuple[str, ...] = ()  # ONBUILD triggers: what a build FROM it runs first

    def identity_for(self, reference: str) -> str:
        """``NAME@sha256:...`` for the reference's repository when docker has it, else the ID."""
        if "@" in reference:
            return reference
        name = reference
        if ":" in name.rsplit("/", 1)[-1]:
            name = name.rsplit(":", 1)[0]
        candidates = {name, f"docker.io/{name}", f"docker.io/library/{name}"}
        for digest in self.repo_digests:
            if digest.split("@", 1)[0] in candidates:
                return digest
        return self.id


@dataclass(frozen=True)
class DaemonInfo:
    """The daemon's version and storage, from ``docker info``."""

    server_version: str
    storage_driver: str
    # The containerd image store: DriverStatus names a containerd snapshotter.
    containerd_store: bool


# Commands a dry run runs for real, so its plan is exact: they read (`docker-credential-*
# get` reads a stored login), or (pull) only fill the local image cache with the base
# image whose digest the check needs.
_READ_ONLY = (("version",), ("image", "inspect"), ("pull",), ("get",))  # get: a cred helper


@dataclass
class PlanningRunner:
    """The dry run's runner: read-only commands run for real; any other is shown, not run.

    A shown command "succeeds" with no output. Its standard input (the registry
    password, for ``docker login``) is never shown.
    """

    real: Runner

    def __call__(
        self,
        args: Sequence[str],
        *,
        input: str | None = None,
        stream: bool = False,
        timeout: float | None = None,
        idle: float | None = None,
        cancel: threading.Event | None = None,
    ) -> Result:
        if any(tuple(args[1 : 1 + len(verb)]) == verb for verb in _READ_ONLY):
            return self.real(args, input=input, stream=stream, timeout=timeout, idle=idle)
        stdin = "  (password on stdin: ***)" if input is not None else ""
        log.info("[dry-run] %s: %s%s", args[1], shlex.join(args), stdin)
        return Result(0, "")


# Lines that are docker's narration, not its verdict: the push header and per-layer
# progress ("5f70bf18a086: Pushed"). A repository named "timeout-svc" must not make
# every failure look transient.
_NARRATION_RE = (
    r"^(The push refers to repository .*|[0-9a-f]{12}: (Preparing|Waiting|Pushing.*|Pushed|"
    r"Layer already exists|Mounted from .*|Retrying in .*))$"
)


def _verdict_lines(output: str) -> list[str]:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return [line for line in lines if not re.match(_NARRATION_RE, line)]


def last_error_line(output: str) -> str:
    """Docker's most telling line: the last one that reads like an error, else the last."""
    lines = _verdict_lines(output)
    for line in reversed(lines):
        low = line.lower()
        if "error" in low or "denied" in low or "unknown" in low or "unauthorized" in low:
            return line
    return lines[-1] if lines else "(no output)"


class DockerCli:
    """The docker binary, through the runner: every command within its limits, what the CLI
    and the daemon say of themselves, and how a failed, stopped or unanswered command reads
    (one ``DockerError`` line naming the daemon). ``environ`` is the environment the docker
    CLI runs with; it is read only to name the daemon."""

    def __init__(
        self, runner: Runner, binary: str = "docker", environ: Mapping[str, str] | None = None
    ) -> None:
        self._run = runner
        self._binary = binary
        self._environ = os.environ if environ is None else environ

    # -- the daemon ----------------------------------------------------------------

    def client_version(self) -> str:
        """The docker CLI's own version (``docker --version``: the daemon is not asked, so a
        dead or hung DOCKER_HOST cannot hold it up). ``DockerError`` when the CLI is missing
        or prints no version."""
        result = self._call([self._binary, "--version"])
        found = re.search(_VERSION_RE, result.output)
        if result.returncode != 0 or found is None:
            raise DockerError(
                f"docker --version printed no version (exit {result.returncode}): "
                f"{last_error_line(result.output)}"
            )
        return found.group(1)

    def daemon_info(self) -> DaemonInfo:
        """What the daemon says of itself (``docker info``): version and storage. One
        ``DockerError`` line naming DOCKER_HOST when it does not answer."""
        result = self._call([self._binary, "info", "--format", _INFO])
        if result.returncode != 0:
            self._raise("docker info failed", result)
        lines = [line for line in result.output.splitlines() if line.startswith("{")]
        try:
            data = json.loads(lines[-1]) if lines else None
        except ValueError:
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("server"), str):
            raise DockerError(
                f"docker info answered no server version: {last_error_line(result.output)}"
            )
        status = data.get("status") if isinstance(data.get("status"), list) else []
        pairs = [tuple(map(str, item)) for item in status or () if isinstance(item, list)]
        return DaemonInfo(
            server_version=data["server"],
            storage_driver=str(data.get("driver") or ""),
            containerd_store=any(
                "io.containerd.snapshotter" in value for pair in pairs for value in pair
            ),
        )

    def check_daemon(self) -> None:
        """Fail with one line when the CLI is missing or the daemon does not answer."""
        result = self._call([self._binary, "version", "--format", "{{.Server.Version}}"])
        if result.returncode != 0:
            self._check_daemon_output(result.output)
            self._raise("docker is not usable", result)

    # -- helpers ------------------------------------------------------------------

    def _call(
        self,
        args: Sequence[str],
        *,
        input: str | None = None,
        stream: bool = False,
        timeout: float | None = ANSWER_SECONDS,
        idle: float | None = None,
        cancel: threading.Event | None = None,
    ) -> Result:
        """Run a docker command within its limits: a stopped one is one ``DockerError`` line
        naming the command and the daemon."""
        if idle is not None:
            timeout = None  # a long command is bounded by its silence, not its length
        result = self._run(
            args, input=input, stream=stream, timeout=timeout, idle=idle, cancel=cancel
        )
        if result.limit == "cancel":
            return result  # the caller stopped it: it knows why
        return self._checked(args, result)

    def _checked(self, args: Sequence[str], result: Result) -> Result:
        """``result``, unless it was stopped at its limit: then one ``DockerError`` line
        naming the command (``args``) and the daemon."""
        if result.timed_out:
            raise DockerError(stopped_message(args, result, self._daemon()))
        return result

    def _daemon(self) -> str:
        """The daemon the CLI talks to, in words."""
        host = self._environ.get("DOCKER_HOST")
        if host:
            return f"the Docker daemon at {host} (DOCKER_HOST)"
        context = self._environ.get("DOCKER_CONTEXT")
        if context:
            return f"the Docker daemon of docker context {context} (DOCKER_CONTEXT)"
        return f"the Docker daemon at {DEFAULT_SOCKET} (the default socket)"

    def _check_daemon_output(self, output: str) -> None:
        low = output.lower()
        if any(marker in low for marker in _DAEMON_DOWN):
            where = self._environ.get("DOCKER_HOST") or "the default socket"
            raise DockerError(
                f"the Docker daemon is not answering at {where}: start Docker (or fix DOCKER_HOST) "
                "and try again"
            )

    def _raise(self, what: str, result: Result) -> None:
        self._check_daemon_output(result.output)
        raise DockerError(f"{what} (exit {result.returncode}): {last_error_line(result.output)}")


class Docker(DockerCli):
    """The docker commands the release needs, and nothing else.

    ``environ`` is the environment the docker CLI runs with; it is read only to
    name ``DOCKER_HOST`` when the daemon does not answer. ``idle_limit`` is how long
    build, push and pull may print nothing before they are stopped. ``pull_lock``, when
    given, is this machine's lock for an image reference: a missing base image is pulled
    under it, by one process at a time (see :func:`pull_missing`). ``engine``, when given,
    is the same daemon's API on its local socket, for the smoke test's container (see
    :class:`Containers`).
    """

    def __init__(
        self,
        runner: Runner,
        binary: str = "docker",
        environ: Mapping[str, str] | None = None,
        *,
        idle_limit: float = IDLE_SECONDS,
        pull_lock: PullLock | None = None,
        engine: LocalEngine | None = None,
    ) -> None:
        super().__init__(runner, binary, environ)
        self.containers = Containers(runner, binary, environ, engine=engine)
        self._idle = idle_limit
        self._pull_lock = pull_lock
        # One `docker image inspect` per image a run looks at: forgotten when this run
        # builds, tags or pulls that reference.
        self._inspected: dict[str, ImageInfo | None] = {}

    # -- commands --------------------------------------------------------------

    def build(self, command: Sequence[str], cancel: threading.Event | None = None) -> None:
        """Run a ``build_command`` list, streaming docker's progress. Setting ``cancel`` stops
        it: a ``DockerError`` saying so (the caller knows why, and says that instead)."""
        self._inspected.pop(command[command.index("-t") + 1], None)
        result = self._call(command, stream=True, idle=self._idle, cancel=cancel)
        if result.limit == "cancel":
            raise DockerError("docker build was stopped")
        if result.returncode != 0:
            self._raise("docker build failed", result)

    def build_command(
        self,
        image: str,
        dockerfile: Path,
        context: Path,
        build_args: Mapping[str, str],
        labels: Mapping[str, str],
    ) -> list[str]:
        args = [self._binary, "build", "-t", image, "-f", str(dockerfile)]
        for key, value in build_args.items():
            args += ["--build-arg", f"{key}={value}"]
        for key, value in labels.items():
            args += ["--label", f"{key}={value}"]
        args.append(str(context))
        return args

    def tag(self, source: str, target: str) -> None:
        self._inspected.pop(target, None)
        result = self._call([self._binary, "tag", source, target])
        if result.returncode != 0:
            if "no such image" in result.output.lower():
                raise DockerError(
                    f"docker tag: there is no local image {source}: run `inv build` first"
                )
            self._raise("docker tag failed", result)

    def untag(self, reference: str) -> bool:
        """Take a tag off its local image (``docker rmi --no-prune``: an image that keeps
        another tag stays, and no parent is pruned); False when it could not."""
        self._inspected.pop(reference, None)
        result = self._call([self._binary, "rmi", "--no-prune", reference])
        return result.returncode == 0

    def push(self, reference: str, cancel: threading.Event | None = None) -> Result:
        """Run ``docker push``; return the result whatever it is (the caller classifies).

        A push that prints nothing for ``idle_limit`` seconds is stopped: that is a
        ``DockerError`` here, never a result to retry (see :func:`push_with_retries`).
        Setting ``cancel`` stops it (a gate failed meanwhile): its result says so."""
        args = [self._binary, "push", reference]
        return self._call(args, stream=True, idle=self._idle, cancel=cancel)

    def login(self, host: str, username: str, password: str) -> None:
        """``docker login``; the password is never an argument: it goes on stdin."""
        result = self._call(
            [self._binary, "login", "--username", username, "--password-stdin", host],
            input=password + "\n",
            timeout=LOGIN_SECONDS,
        )
        if result.returncode != 0:
            self._check_daemon_output(result.output)
            # Docker's message may quote what it was sent: never let the password through.
            message = last_error_line(result.output)
            if password:
                message = message.replace(password, "***")
            raise DockerError(f"docker login to {host} was refused: {message}")

    def logout(self, host: str) -> None:
        """``docker logout HOST``: docker forgets its stored login (a missing one is fine)."""
        result = self._call([self._binary, "logout", host])
        if result.returncode != 0:
            self._raise(f"docker logout {host} failed", result)

    def image_id(self, reference: str) -> str | None:
        """The local image ID of a reference, or None when there is no such image."""
        found = self.inspect(reference)
        return found.id if found else None

    def inspect(self, reference: str, *, fresh: bool = False) -> ImageInfo | None:
        """What docker knows of a local image (one ``docker image inspect``), or None.
        ``fresh``: asked again, not answered from what this run saw before."""
        if fresh or reference not in self._inspected:
            self._inspected[reference] = self._inspect(reference)
        return self._inspected[reference]

    def _inspect(self, reference: str) -> ImageInfo | None:
        result = self._call([self._binary, "image", "inspect", "--format", _INSPECT, reference])
        if result.returncode != 0:
            self._check_daemon_output(result.output)
            return None
        lines = [line for line in result.output.splitlines() if line.strip()]
        try:
            data = json.loads(lines[-1]) if lines else None
        except ValueError:
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("id"), str) or not data["id"]:
            return None
        digests = data.get("digests") if isinstance(data.get("digests"), list) else []
        labels = data.get("labels") if isinstance(data.get("labels"), dict) else {}
        health = data.get("healthcheck")
        return ImageInfo(
            data["id"],
            tuple(str(d) for d in digests or ()),
            {str(k): str(v) for k, v in (labels or {}).items()},
            health_test=_strings(health.get("Test") if isinstance(health, dict) else None),
            shell=_strings(data.get("shell")),
            onbuild=_strings(data.get("onbuild")),
        )

    def pull(self, reference: str) -> None:
        """``docker pull``, streaming docker's progress."""
        self._inspected.pop(reference, None)
        result = self._call([self._binary, "pull", reference], stream=True, idle=self._idle)
        if result.returncode != 0:
            self._raise(f"docker pull {reference} failed", result)

    def image_identity(self, reference: str) -> str:
        """What an image the build reads resolves to here: its repo digest (the same on every
        machine) when docker knows one, else its local image ID. Pulled when not local."""
        found = self.inspect(reference) or pull_missing(self, reference, self._pull_lock)
        if found is None:
            raise DockerError(
                f"the image {reference} is not on this machine and could not be pulled: check "
                "the name (BASE_IMAGE, or the Dockerfile's FROM or --from) and your registry login"
            )
        return found.identity_for(reference)

    def config(self) -> DockerConfig:
        """Docker's configuration as the CLI reads it now (``DOCKER_CONFIG`` or ``~/.docker``)."""
        return DockerConfig.load(self._environ)

    def stored_credential(self, host: str) -> tuple[str, str] | None:
        """The (user, password) docker would send to ``host``, read the way docker reads it:
        from the credential helper the config names, else from ``auths``. None when docker
        holds none (or its helper fails): the caller logs in instead. A helper that does not
        answer (a locked keychain) is a ``DockerError``: ``docker login`` would hang on it too."""
        config = self.config()
        helper = config.helper_for(host)
        if helper is None:
            return config.inline_credential(host)
        try:
            result = self._run(
                [f"docker-credential-{helper}", "get"], input=host, timeout=ANSWER_SECONDS
            )
        except DockerError:  # the helper is not installed
            return None
        if result.timed_out:
            raise DockerError(
                f"`docker-credential-{helper} get` {result.stopped}: the credential helper "
                f"hangs (a locked keychain?); unlock it, or remove it from "
                f"{config.directory / 'config.json'} (credsStore, credHelpers)"
            )
        if result.returncode != 0:
            return None
        try:
            data = json.loads(result.output.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return None
        if not isinstance(data, dict):
            return None
        user, secret = data.get("Username"), data.get("Secret")
        if isinstance(user, str) and isinstance(secret, str) and user and secret:
            return user, secret
        return None


class Containers(DockerCli):
    """Containers: the smoke test's, and the sandbox's registry. Each command returns
    docker's result for the caller to judge (a daemon that does not answer is a
    ``DockerError``). Given ``engine`` (the CLI's daemon's API on its local socket), the
    smoke test's container is started and probed through it instead (see :mod:`.engine`);
    when the engine declines (its socket takes no connection, or the daemon refuses the
    container as the API asks for it), the CLI does it, and does the rest from then on."""

    def __init__(
        self,
        runner: Runner,
        binary: str = "docker",
        environ: Mapping[str, str] | None = None,
        *,
        engine: LocalEngine | None = None,
    ) -> None:
        super().__init__(runner, binary, environ)
        self.engine = engine

    def run_detached(self, name: str, image: str, *, labels: Mapping[str, str]) -> Result:
        """``docker run -d --network none --name NAME --label K=V IMAGE``: no network but the
        container's own loopback, no published port."""
        args = [self._binary, "run", "-d", "--network", "none", "--name", name]
        for key, value in labels.items():
            args += ["--label", f"{key}={value}"]
        args.append(image)
        if self.engine is not None:
            try:
                started = self.engine.run_detached(
                    name, image, labels=labels, timeout=LOGIN_SECONDS
                )
            except EngineDeclined as exc:
                self._without_engine(exc)
            else:
                return self._checked(args, started)
        return self._call(args, timeout=LOGIN_SECONDS)

    def exec(self, name: str, argv: Sequence[str], *, timeout: float) -> Result:
        """``docker exec NAME ARGV...``, stopped after ``timeout`` seconds."""
        args = [self._binary, "exec", name, *argv]
        if self.engine is not None:
            try:
                return self._checked(args, self.engine.exec(name, argv, timeout=timeout))
            except EngineDeclined as exc:
                self._without_engine(exc)
        return self._call(args, timeout=timeout)

    def _without_engine(self, exc: EngineDeclined) -> None:
        log.debug("the Docker Engine API did not run it (%s): the docker CLI does", exc)
        self.engine = None

    def container_state(self, name: str) -> Result:
        """``docker inspect --format '{{json .State}}' NAME``: one line of JSON."""
        return self._call([self._binary, "inspect", "--format", "{{json .State}}", name])

    def logs(self, name: str, tail: int) -> Result:
        """``docker logs --tail N NAME``: the container's last lines."""
        return self._call([self._binary, "logs", "--tail", str(tail), name])

    def remove_container(self, name: str) -> Result:
        """``docker rm -f NAME``: stopped and removed."""
        return self._call([self._binary, "rm", "-f", name])

    def start(self, name: str, image: str, options: Sequence[str]) -> Result:
        """``docker run -d --name NAME OPTIONS... IMAGE``: a service container."""
        args = [self._binary, "run", "-d", "--name", name, *options, image]
        return self._call(args, timeout=LOGIN_SECONDS)

    def remove_volume(self, name: str) -> Result:
        """``docker volume rm -f NAME``."""
        return self._call([self._binary, "volume", "rm", "-f", name])

    def has_volume(self, name: str) -> bool:
        """Does the daemon have this volume (``docker volume inspect``)?"""
        return self._call([self._binary, "volume", "inspect", name]).returncode == 0

    def has_network(self, name: str) -> bool:
        """Does the daemon have this network (``docker network inspect``)?"""
        return self._call([self._binary, "network", "inspect", name]).returncode == 0


def pull_missing(docker: Docker, reference: str, lock: PullLock | None) -> ImageInfo | None:
    """``docker pull`` an image that was not local, and look at it again. Under ``lock``
    (this machine's, for the reference) it is first looked at afresh: another process may
    have pulled it meanwhile (two services on one base image), and then it is not pulled."""
    with lock(reference) if lock is not None else contextlib.nullcontext():
        if lock is None or docker.inspect(reference, fresh=True) is None:
            docker.pull(reference)
        return docker.inspect(reference)


def stopped_message(args: Sequence[str], result: Result, daemon: str) -> str:
    """One line for a command the runner stopped: what hung, and what to do."""
    verb = args[1] if len(args) > 1 else ""
    what = f"`{Path(args[0]).name} {verb}`"  # the verb alone: a build's list is long
    if verb in ("image", "container") and len(args) > 2:  # and what it does to them
        what = f"`{Path(args[0]).name} {verb} {args[2]}`"
    if verb in ("push", "pull"):
        what = f"`{Path(args[0]).name} {verb} {args[-1]}`"
        return (
            f"{what} {result.stopped} and was stopped: the transfer or "
            f"{daemon} is stuck; check the network and Docker, then run it again (layers "
            "already transferred are skipped)"
        )
    if verb == "build":
        return (
            f"{what} {result.stopped} and was stopped: a build step hangs, or {daemon} "
            "does; fix the step (or restart Docker) and build again"
        )
    if verb == "--version":
        return (
            f"{what} {result.stopped}: the docker CLI itself hangs (it asks no daemon); "
            "reinstall Docker (the docker CLI), or check which `docker` is first on PATH"
        )
    if verb == "login":
        return (
            f"{what} {result.stopped}: {daemon}, or the registry it asks, is hung or "
            "unreachable; check Docker and the network, then try again"
        )
    return (
        f"{what} {result.stopped}: {daemon} is hung or unreachable; restart Docker "
        "(or fix DOCKER_HOST) and try again"
    )


def _strings(value: object) -> tuple[str, ...]:
    """A JSON list of strings as a tuple; anything else as ()."""
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    return ()


def parse_push_digest(output: str) -> str | None:
    """The manifest digest from ``docker push`` output (``v1: digest: sha256:... size: N``)."""
    found = re.findall(_DIGEST_RE, output)
    return found[-1] if found else None


# -- docker's configuration -----------------------------------------------------


@dataclass(frozen=True)
class DockerConfig:
    """Docker's configuration directory and what its ``config.json`` says about logins."""

    directory: Path
    data: Mapping[str, object] = field(default_factory=dict)

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None) -> DockerConfig:
        """``$DOCKER_CONFIG`` (or ``~/.docker``) and its ``config.json``; {} when absent.

        A ``config.json`` that is not a JSON object stops the run: docker would warn,
        and ``docker login`` would then rewrite the file and lose every other login in it.
        """
        environ = os.environ if environ is None else environ
        directory = Path(environ.get("DOCKER_CONFIG") or Path.home() / ".docker")
        path = directory / "config.json"
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls(directory, {})
        except (OSError, UnicodeDecodeError) as exc:
            raise SettingsError(f"cannot read Docker's config {path}: {exc}") from exc
        try:
            data = json.loads(text) if text.strip() else {}
        except ValueError as exc:
            data = exc
        if not isinstance(data, dict):
            why = (
                f"not valid JSON ({data})" if isinstance(data, ValueError) else "not a JSON object"
            )
            raise SettingsError(
                f"Docker's config {path} is {why}: fix or move it before logging in, or "
                "`docker login` would rewrite it and lose the other registries' logins in it"
            )
        return cls(directory, data)

    def uses_ecr_helper(self, host: str) -> bool:
        """Docker gets this host's credentials from ``docker-credential-ecr-login``."""
        return self.helper_for(host) == "ecr-login"

    def holds_login(self, host: str) -> bool:
        """``auths`` has an entry for the host (bare, as docker keys it, or as a URL)."""
        auths = self.data.get("auths")
        return isinstance(auths, dict) and (host in auths or f"https://{host}" in auths)

    def helpers(self) -> dict[str, list[str]]:
        """Each credential helper the config names, and where (``credsStore``,
        ``credHelpers[host]``)."""
        wanted: dict[str, list[str]] = {}
        store = self.data.get("credsStore")
        if isinstance(store, str) and store:
            wanted.setdefault(store, []).append("credsStore")
        named = self.data.get("credHelpers")
        for host, name in named.items() if isinstance(named, dict) else ():
            if isinstance(name, str) and name:
                wanted.setdefault(name, []).append(f"credHelpers[{host}]")
        return wanted

    def helper_for(self, host: str) -> str | None:
        """The credential helper docker asks for this host: ``credHelpers``, else ``credsStore``."""
        helpers = self.data.get("credHelpers")
        named = helpers.get(host) if isinstance(helpers, dict) else None
        store = self.data.get("credsStore")
        found = named or store
        return found if isinstance(found, str) and found else None

    def inline_credential(self, host: str) -> tuple[str, str] | None:
        """``auths[host].auth`` (base64 ``user:password``), as ``docker login`` stores it."""
        auths = self.data.get("auths")
        entry = None
        if isinstance(auths, dict):
            entry = auths.get(host) or auths.get(f"https://{host}")
        token = entry.get("auth") if isinstance(entry, dict) else None
        if not isinstance(token, str):
            return None
        try:
            user, _, password = base64.b64decode(token, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        return (user, password) if user and password else None


# -- push failures and retries --------------------------------------------------


class PushFailure(enum.Enum):
    """What a failed ``docker push`` means for the next move."""

    TRANSIENT = "transient"  # worth a bounded retry
    AUTH = "auth"  # worth one fresh login
    IMMUTABLE_TAG = "immutable-tag"  # the version exists: never overwritten
    FATAL = "fatal"  # final, with a hint


_TRANSIENT_MARKERS = (
    "connection reset",
    "connection refused",
    "broken pipe",
    "toomanyrequests",
    "too many requests",
    "500 internal server error",
    "502 bad gateway",
    "503 service unavailable",
    "504 gateway",
    "received unexpected http status: 5",
    "server misbehaving",
    "tls handshake",
)
# Whole words only: a bare "EOF" or "i/o timeout" is transient, "thereof" is not.
_TRANSIENT_RE = "(?i)" + "|".join(
    [re.escape(marker) for marker in _TRANSIENT_MARKERS] + [r"\beof\b", r"\btimeout\b"]
)


def classify_push_failure(output: str) -> tuple[PushFailure, str]:
    """Sort a failed push into (kind, one-line message with a hint).

    Docker already retries each layer upload by itself; what reaches us is either
    transient (worth a bounded retry), an authentication problem (worth one fresh
    login), or final.
    """
    line = last_error_line(output)
    low = "\n".join(_verdict_lines(output)).lower()
    if "does not exist locally" in low or "no such image" in low or "tag does not exist" in low:
        return PushFailure.FATAL, f"{line}: tag the image first: run `inv build` and `inv tag`"
    if "tag invalid" in low and "immutable" in low:
        return PushFailure.IMMUTABLE_TAG, line
    if "authorization token has expired" in low or "unauthorized" in low:
        return (
            PushFailure.AUTH,
            f"{line}: the registry login has expired or was revoked; run `inv login --force`",
        )
    if "no basic auth credentials" in low:
        return PushFailure.AUTH, f"{line}: docker holds no login for this registry; run `inv login`"
    if "name unknown" in low or "does not exist in the registry" in low:
        return PushFailure.FATAL, (
            f"{line}: the repository does not exist (ECR does not create it on push); "
            "run `inv ensure-repo`"
        )
    if "denied" in low:
        return PushFailure.FATAL, (
            f"{line}: the AWS identity may not push here; it needs ecr:InitiateLayerUpload, "
            "ecr:UploadLayerPart, ecr:CompleteLayerUpload, ecr:BatchCheckLayerAvailability "
            "and ecr:PutImage on the repository"
        )
    if "tag invalid" in low:
        return PushFailure.FATAL, line
    if re.search(_TRANSIENT_RE, low):
        return PushFailure.TRANSIENT, line
    return PushFailure.FATAL, line


class PushCancelled(DockerError):
    """The push was stopped on purpose (a gate failed while it ran): the gate's error is
    the one to report."""


def push_with_retries(
    docker: Docker,
    reference: str,
    *,
    relogin: Callable[[], None],
    sleep: Callable[[float], None] = time.sleep,
    attempts: int = PUSH_ATTEMPTS,
    backoff: float = BACKOFF_SECONDS,
    cancel: threading.Event | None = None,
) -> str | None:
    """``docker push`` until it succeeds; return the digest docker reports (None if none).

    Transient failures are retried up to ``attempts`` times with exponential
    backoff; an authentication failure calls ``relogin`` once and tries again;
    anything else, and an immutable tag, is final. So is a push stopped because docker
    printed nothing for its idle limit (``Docker.push`` raises it): docker already
    retries each layer itself, and another attempt would most likely be as silent, for
    as long again, with nothing on the screen.
    """
    relogged = False
    attempt = 1
    while True:
        result = docker.push(reference, cancel)
        if result.limit == "cancel":
            raise PushCancelled(f"docker push {reference} was stopped: a gate failed meanwhile")
        if result.returncode == 0:
            return parse_push_digest(result.output)
        kind, message = classify_push_failure(result.output)
        if kind is PushFailure.IMMUTABLE_TAG:
            raise VersionExistsError(
                f"{reference} is already released in the immutable repository: released "
                "versions are never overwritten; choose a new --version"
            )
        if kind is PushFailure.AUTH and not relogged:
            log.warning("push refused (%s): logging in again and retrying once", message)
            relogin()
            relogged = True
            continue
        if kind is PushFailure.TRANSIENT and attempt < attempts:
            delay = backoff * 2 ** (attempt - 1)
            log.warning(
                "push attempt %d/%d failed (%s): retrying in %.0fs",
                attempt,
                attempts,
                message,
                delay,
            )
            sleep(delay)
            attempt += 1
            continue
        raise DockerError(f"docker push {reference} failed: {message}")
