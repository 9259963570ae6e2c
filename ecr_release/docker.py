"""The Docker CLI: build, tag, push, login and image inspection, over one private runner.

Every command is an argument list, never a shell string, so no value can reach a
shell. The registry password travels on stdin only. Docker's own progress is
streamed through to the user. This module knows nothing of AWS.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TextIO

from .errors import DockerError

log = logging.getLogger(__name__)

_DIGEST_RE = re.compile(r"digest: (sha256:[0-9a-f]{64})")
_DAEMON_DOWN = (
    "cannot connect to the docker daemon",
    "is the docker daemon running",
    "error during connect",
    "docker daemon is not running",
)


@dataclass(frozen=True)
class Result:
    """What a finished command returned. ``output`` is stdout and stderr together."""

    returncode: int
    output: str


class Runner(Protocol):
    """Runs one argument list; ``stream`` echoes output to the user as it comes."""

    def __call__(
        self, args: Sequence[str], *, input: str | None = None, stream: bool = False
    ) -> Result: ...


class SubprocessRunner:
    """The real runner: ``subprocess`` with argument lists, output captured (and streamed)."""

    def __init__(self, out: TextIO | None = None) -> None:
        self._out = out

    def __call__(
        self, args: Sequence[str], *, input: str | None = None, stream: bool = False
    ) -> Result:
        out = self._out or sys.stdout
        try:
            proc = subprocess.Popen(
                list(args),
                stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
            )
        except FileNotFoundError as exc:
            raise DockerError(
                f"the {args[0]!r} command was not found: install Docker (the docker CLI) "
                "and make sure it is on PATH"
            ) from exc
        if input is not None:
            assert proc.stdin is not None
            try:
                proc.stdin.write(input)
                proc.stdin.close()
            except BrokenPipeError:
                pass
        chunks: list[str] = []
        assert proc.stdout is not None
        for line in proc.stdout:
            chunks.append(line)
            if stream:
                out.write(line)
                out.flush()
        return Result(proc.wait(), "".join(chunks))


# Lines that are docker's narration, not its verdict: the push header and per-layer
# progress ("5f70bf18a086: Pushed"). A repository named "timeout-svc" must not make
# every failure look transient.
_NARRATION_RE = re.compile(
    r"^(The push refers to repository .*|[0-9a-f]{12}: (Preparing|Waiting|Pushing.*|Pushed|"
    r"Layer already exists|Mounted from .*|Retrying in .*))$"
)


def _verdict_lines(output: str) -> list[str]:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return [line for line in lines if not _NARRATION_RE.match(line)]


def last_error_line(output: str) -> str:
    """Docker's most telling line: the last one that reads like an error, else the last."""
    lines = _verdict_lines(output)
    for line in reversed(lines):
        low = line.lower()
        if "error" in low or "denied" in low or "unknown" in low or "unauthorized" in low:
            return line
    return lines[-1] if lines else "(no output)"


class Docker:
    """The docker commands the release needs, and nothing else."""

    def __init__(self, runner: Runner, binary: str = "docker") -> None:
        self._run = runner
        self._binary = binary

    # -- commands --------------------------------------------------------------

    def build(self, command: Sequence[str]) -> None:
        """Run a ``build_command`` list, streaming docker's progress."""
        result = self._run(command, stream=True)
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

    # The argument lists, also shown as they are by a dry run.

    def tag_command(self, source: str, target: str) -> list[str]:
        return [self._binary, "tag", source, target]

    def push_command(self, reference: str) -> list[str]:
        return [self._binary, "push", reference]

    def login_command(self, host: str, username: str) -> list[str]:
        """The password is never an argument: it goes on stdin."""
        return [self._binary, "login", "--username", username, "--password-stdin", host]

    def tag(self, source: str, target: str) -> None:
        result = self._run(self.tag_command(source, target))
        if result.returncode != 0:
            if "no such image" in result.output.lower():
                raise DockerError(
                    f"docker tag: there is no local image {source}: run `inv build` first"
                )
            self._raise("docker tag failed", result)

    def push(self, reference: str) -> Result:
        """Run ``docker push``; return the result whatever it is (the caller classifies)."""
        return self._run(self.push_command(reference), stream=True)

    def login(self, host: str, username: str, password: str) -> None:
        result = self._run(
            self.login_command(host, username),
            input=password + "\n",
        )
        if result.returncode != 0:
            self._check_daemon_output(result.output)
            # Docker's message may quote what it was sent: never let the password through.
            message = last_error_line(result.output)
            if password:
                message = message.replace(password, "***")
            raise DockerError(f"docker login to {host} was refused: {message}")

    def image_id(self, reference: str) -> str | None:
        """The local image ID of a reference, or None when there is no such image."""
        result = self._run([self._binary, "image", "inspect", "--format", "{{.Id}}", reference])
        if result.returncode != 0:
            self._check_daemon_output(result.output)
            return None
        return result.output.strip().splitlines()[-1].strip() if result.output.strip() else None

    def check_daemon(self) -> None:
        """Fail with one line when the CLI is missing or the daemon does not answer."""
        result = self._run([self._binary, "version", "--format", "{{.Server.Version}}"])
        if result.returncode != 0:
            self._check_daemon_output(result.output)
            self._raise("docker is not usable", result)

    # -- helpers ------------------------------------------------------------------

    def _check_daemon_output(self, output: str) -> None:
        low = output.lower()
        if any(marker in low for marker in _DAEMON_DOWN):
            where = os.environ.get("DOCKER_HOST") or "the default socket"
            raise DockerError(
                f"the Docker daemon is not answering at {where}: start Docker (or fix DOCKER_HOST) "
                "and try again"
            )

    def _raise(self, what: str, result: Result) -> None:
        self._check_daemon_output(result.output)
        raise DockerError(f"{what} (exit {result.returncode}): {last_error_line(result.output)}")


def parse_push_digest(output: str) -> str | None:
    """The manifest digest from ``docker push`` output (``v1: digest: sha256:... size: N``)."""
    found = _DIGEST_RE.findall(output)
    return found[-1] if found else None


def docker_config_dir(environ: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    return Path(environ.get("DOCKER_CONFIG") or Path.home() / ".docker")


def read_docker_config(environ: Mapping[str, str] | None = None) -> dict[str, object]:
    """``config.json`` from the Docker configuration directory, or {} when absent or unreadable."""
    path = docker_config_dir(environ) / "config.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# -- push failures --------------------------------------------------------------

TRANSIENT = "transient"
AUTH = "auth"
FATAL = "fatal"
IMMUTABLE_TAG = "immutable-tag"

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
_TRANSIENT_RE = re.compile(
    "|".join([re.escape(marker) for marker in _TRANSIENT_MARKERS] + [r"\beof\b", r"\btimeout\b"]),
    re.IGNORECASE,
)


def classify_push_failure(output: str) -> tuple[str, str]:
    """Sort a failed push into (kind, one-line message with a hint).

    Docker already retries each layer upload by itself; what reaches us is either
    transient (worth a bounded retry), an authentication problem (worth one fresh
    login), or final.
    """
    line = last_error_line(output)
    low = "\n".join(_verdict_lines(output)).lower()
    if "does not exist locally" in low or "no such image" in low:
        return FATAL, f"{line}: tag the image first: run `inv build` and `inv tag`"
    if "tag invalid" in low and "immutable" in low:
        return IMMUTABLE_TAG, line
    if "authorization token has expired" in low or "unauthorized" in low:
        return (
            AUTH,
            f"{line}: the registry login has expired or was revoked; run `inv login --force`",
        )
    if "no basic auth credentials" in low:
        return AUTH, f"{line}: docker holds no login for this registry; run `inv login`"
    if "name unknown" in low or "does not exist in the registry" in low:
        return FATAL, (
            f"{line}: the repository does not exist (ECR does not create it on push); "
            "run `inv ensure-repo`"
        )
    if "denied" in low:
        return FATAL, (
            f"{line}: the AWS identity may not push here; it needs ecr:InitiateLayerUpload, "
            "ecr:UploadLayerPart, ecr:CompleteLayerUpload, ecr:BatchCheckLayerAvailability "
            "and ecr:PutImage on the repository"
        )
    if "tag invalid" in low:
        return FATAL, line
    if _TRANSIENT_RE.search(low):
        return TRANSIENT, line
    return FATAL, line
