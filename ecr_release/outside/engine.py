"""The Docker Engine's own API on its local socket, for what the docker CLI cannot ask.

The smoke test runs the image with no network but its own loopback. ``docker run
--network none`` does that, but on Docker Engine 20.10 to 27 every container with a
network namespace of its own (``none`` included) starts through a prestart hook that
runs the dockerd binary once more (``libnetwork-setkey``): about 0.15 s of CPU, on the
release's critical path, since the version tag waits for the smoke test. A container
created with ``NetworkDisabled`` (a field of the API's container config for which the CLI
has no flag) gets the same kind of namespace, whose loopback runc brings up, with no hook:
on Engine 20.10 it starts in half the time (0.15 s against 0.30 s). Its health command
is run here too (``POST /containers/NAME/exec``), which spares a CLI start per poll.

Only the daemon the CLI would use is spoken to, and only on a local Unix socket
(:func:`local_engine`): ``DOCKER_HOST`` when set (``unix://`` only), else the docker
context that ``DOCKER_CONTEXT`` or config.json's ``currentContext`` names (its endpoint
read from the CLI's context store), else the default socket. Anything else (tcp://,
ssh://, a context that cannot be read, a socket that is not there) gets None, and the
CLI does the work as before. A socket that refuses the connection raises
:class:`EngineUnreachable`, for the caller to fall back to the CLI.

Each call returns what the CLI command would have: a :class:`~.process.Result` with an
exit code and the output, or one stopped at its time limit (the socket's timeout), for
the caller to turn into the same one-line error as a CLI command stopped at its limit.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import stat
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .process import TIMED_OUT, Result

DEFAULT_SOCKET = "/var/run/docker.sock"
# What an exec's output keeps: enough for its last line, which is all that is shown.
OUTPUT_BYTES = 64 * 1024
# How often an exec whose stream has ended is asked again for its exit code.
_EXIT_POLL = 0.01


class EngineUnreachable(Exception):
    """The socket did not take the connection: nothing was asked of the daemon."""


@dataclass(frozen=True)
class _Limit:
    """A call's time limit: ``seconds`` from its start, which ends at ``at`` (monotonic)."""

    seconds: float
    at: float

    @classmethod
    def of(cls, seconds: float) -> _Limit:
        return cls(seconds, time.monotonic() + seconds)

    def left(self) -> float:
        return self.at - time.monotonic()

    def reached(self, output: str = "") -> Result:
        """A result stopped at this limit, worded as the runner words one."""
        said = f"gave no answer within {self.seconds:g} s"
        return Result(TIMED_OUT, f"{output}the Docker Engine API {said}\n", said, "timeout")


def local_engine(environ: Mapping[str, str]) -> LocalEngine | None:
    """The API of the daemon the docker CLI talks to, when that is a local Unix socket.

    The CLI's own order: ``DOCKER_HOST``, then ``DOCKER_CONTEXT``, then config.json's
    ``currentContext`` (in ``DOCKER_CONFIG`` or ``~/.docker``), then the default socket.
    """
    host = environ.get("DOCKER_HOST")
    if host:
        return _unix(host)
    context = environ.get("DOCKER_CONTEXT") or _current_context(environ)
    if context and context != "default":
        return _unix(_context_host(environ, context))
    return _unix(f"unix://{DEFAULT_SOCKET}")


class LocalEngine:
    """Containers through the Engine API at ``path`` (a Unix socket)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __repr__(self) -> str:
        return f"LocalEngine({self.path!r})"

    def run_detached(
        self, name: str, image: str, *, labels: Mapping[str, str], timeout: float
    ) -> Result:
        """Create and start ``image`` as container ``name``, networking disabled (its own
        loopback only): ``docker run -d --network none``, without the network hook. Exit 0
        and the container's ID, or 1 and the daemon's message (the container, when it was
        created but would not start, is left for the caller to remove, as docker does)."""
        deadline = _Limit.of(timeout)
        config = {
            "Image": image,
            "Labels": dict(labels),
            "NetworkDisabled": True,
            "HostConfig": {"NetworkMode": "none"},
        }
        query = urllib.parse.urlencode({"name": name})
        created = self._ask("POST", f"/containers/create?{query}", config, deadline)
        if isinstance(created, Result):
            return created
        status, body = created
        if status != 201:
            return _refused(body)
        started = self._ask("POST", f"/containers/{_quote(name)}/start", None, deadline)
        if isinstance(started, Result):
            return started
        status, answer = started
        if status not in (204, 304):
            return _refused(answer)
        found = _json(body)
        return Result(0, f"{found.get('Id', '')}\n" if isinstance(found, dict) else "")

    def exec(self, name: str, argv: Sequence[str], *, timeout: float) -> Result:
        """``docker exec NAME ARGV...``: its exit code and its output (stdout and stderr,
        the last :data:`OUTPUT_BYTES`), or a result stopped at ``timeout``."""
        deadline = _Limit.of(timeout)
        spec = {"Cmd": list(argv), "AttachStdout": True, "AttachStderr": True}
        created = self._ask("POST", f"/containers/{_quote(name)}/exec", spec, deadline)
        if isinstance(created, Result):
            return created
        status, body = created
        found = _json(body)
        exec_id = found.get("Id") if isinstance(found, dict) else None
        if status != 201 or not isinstance(exec_id, str):
            return _refused(body)
        ran = self._ask("POST", f"/exec/{exec_id}/start", {"Detach": False, "Tty": False}, deadline)
        if isinstance(ran, Result):
            return ran
        status, stream = ran
        if status != 200:
            return _refused(stream)
        return self._exit_of(exec_id, _demux(stream), deadline)

    # -- helpers ----------------------------------------------------------------------

    def _exit_of(self, exec_id: str, output: str, deadline: _Limit) -> Result:
        """The exec's exit code, asked until the daemon has it (its stream can end a moment
        before the process is reaped)."""
        while True:
            asked = self._ask("GET", f"/exec/{exec_id}/json", None, deadline)
            if isinstance(asked, Result):
                return Result(asked.returncode, output + asked.output, asked.stopped, asked.limit)
            status, body = asked
            found = _json(body)
            if status != 200 or not isinstance(found, dict):
                return _refused(body, output)
            code = found.get("ExitCode")
            if found.get("Running") is not True and isinstance(code, int):
                return Result(code, output)
            time.sleep(_EXIT_POLL)

    def _ask(
        self, method: str, path: str, body: object, deadline: _Limit
    ) -> tuple[int, bytes] | Result:
        """One request: (status, body), or a Result for an answer that did not come in time
        or broke off. ``EngineUnreachable`` when the socket takes no connection."""
        left = deadline.left()
        if left <= 0:
            return deadline.reached()
        connection = _Connection(self.path, left)
        try:
            try:
                connection.connect()
            except OSError as exc:
                raise EngineUnreachable(f"{self.path}: {exc.strerror or exc}") from exc
            headers = {"Host": "docker"}
            payload = None
            if body is not None:
                payload = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            data = _read(response)
            return response.status, data
        except TimeoutError:
            return deadline.reached()
        except (OSError, http.client.HTTPException) as exc:
            return Result(1, f"the Docker daemon's answer broke off: {exc}\n")
        finally:
            connection.close()


class _Connection(http.client.HTTPConnection):
    """HTTP over a Unix socket, every read and write bounded by ``timeout``."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("docker", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        if self.sock is not None:
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def _read(response: http.client.HTTPResponse) -> bytes:
    """The body, keeping only the last :data:`OUTPUT_BYTES` of a long one (an exec's
    stream is read to its end, which is the end of the command)."""
    kept = b""
    while chunk := response.read(OUTPUT_BYTES):
        kept = (kept + chunk)[-2 * OUTPUT_BYTES :]
    if response.length:  # the connection closed before the length it announced
        raise http.client.IncompleteRead(kept, response.length)
    return kept


def _demux(stream: bytes) -> str:
    """Docker's multiplexed stream (frames of an 8-byte header, whose first byte is 1 for
    stdout and 2 for stderr and last four the length, then the bytes) as text. Anything
    that does not parse as frames (a cut stream's first bytes) is taken as it is."""
    parts: list[bytes] = []
    at = 0
    while at + 8 <= len(stream) and stream[at] in (0, 1, 2) and not any(stream[at + 1 : at + 4]):
        size = int.from_bytes(stream[at + 4 : at + 8], "big")
        parts.append(stream[at + 8 : at + 8 + size])
        at += 8 + size
    parts.append(stream[at:])
    return b"".join(parts)[-OUTPUT_BYTES:].decode("utf-8", "replace")


def _refused(body: bytes, output: str = "") -> Result:
    """A refusal as the CLI prints it: ``Error response from daemon: MESSAGE``, exit 1."""
    found = _json(body)
    message = found.get("message") if isinstance(found, dict) else None
    if not isinstance(message, str) or not message:
        message = body.decode("utf-8", "replace").strip() or "no reason given"
    return Result(1, f"{output}Error response from daemon: {message}\n")


def _json(body: bytes) -> object:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _quote(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def _unix(host: str) -> LocalEngine | None:
    """An engine for ``unix://PATH`` when PATH is a socket; None for anything else."""
    if not host.startswith("unix://"):
        return None
    path = host[len("unix://") :]
    try:
        is_socket = stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return None
    return LocalEngine(path) if is_socket else None


def _config_dir(environ: Mapping[str, str]) -> Path:
    return Path(environ.get("DOCKER_CONFIG") or Path.home() / ".docker")


def _current_context(environ: Mapping[str, str]) -> str | None:
    """config.json's ``currentContext`` (None when there is no readable one)."""
    data = _read_json(_config_dir(environ) / "config.json")
    found = data.get("currentContext") if isinstance(data, dict) else None
    return found if isinstance(found, str) else None


def _context_host(environ: Mapping[str, str], context: str) -> str:
    """The docker endpoint of a named context, from the CLI's store
    (``contexts/meta/<sha256 of the name>/meta.json``); "" when it cannot be read."""
    digest = hashlib.sha256(context.encode()).hexdigest()
    data = _read_json(_config_dir(environ) / "contexts" / "meta" / digest / "meta.json")
    endpoints = data.get("Endpoints") if isinstance(data, dict) else None
    docker = endpoints.get("docker") if isinstance(endpoints, dict) else None
    host = docker.get("Host") if isinstance(docker, dict) else None
    return host if isinstance(host, str) else ""


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
