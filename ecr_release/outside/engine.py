"""The Docker Engine's own API on its local socket, for what the docker CLI cannot ask.

The smoke test runs the image with no network but its own loopback. ``docker run
--network none`` does that, but on Docker Engine 20.10 to 27 every container with a
network namespace of its own (``none`` included) starts through a prestart hook that
runs the dockerd binary once more (``libnetwork-setkey``): about 0.15 s of CPU, on the
release's critical path, since the version tag waits for the smoke test. A container
created with ``NetworkDisabled`` (a field of the API's container config for which the CLI
has no flag) gets a namespace of its own too, whose loopback runc brings up, with no
hook: on Engine 20.10 it starts in half the time (0.15 s against 0.30 s). Its health
command is run here too (``POST /containers/NAME/exec``), which spares a CLI start per
poll.

Such a container has no libnetwork sandbox, so Docker writes it no ``/etc/hosts``. The
one ``--network none`` gets (``localhost`` on 127.0.0.1 and ::1) is bind-mounted in its
place, as Docker mounts its own, from a file written for the one container under
``scratch`` (which the daemon must see: it is on this machine) and unlinked once the
container has started; so a HEALTHCHECK naming ``localhost`` works as under the CLI. (A
copy into the container, ``PUT .../archive``, would cost 50 to 80 ms; the mount costs
nothing measurable.) Its loopback keeps ::1 unless the kernel has no IPv6, as Docker 26
and later leave it for ``--network none`` (20.10 turns IPv6 off there).

Only the daemon the CLI would use is spoken to, and only on a local Unix socket
(:func:`local_engine`): ``DOCKER_HOST`` when set (``unix://`` only), else the docker
context that ``DOCKER_CONTEXT`` or config.json's ``currentContext`` names (its endpoint
read from the CLI's context store), else the default socket. Anything else (tcp://,
ssh://, an empty DOCKER_HOST, which CLIs read differently, a context that cannot be
read, a socket that is not there, a machine where SELinux enforces) gets None, and the
CLI does the work as before.

:class:`EngineDeclined` means nothing was done and nothing is left: the socket took no
connection, or the daemon would not create or start the container as asked here (it is
removed first; a daemon that will not remove it either is a ``DockerError``). The caller
then has the CLI do it, which says what is wrong, if anything is, as it always did. A
daemon that cannot see the hosts file (a socket mounted in from another machine's
daemon) refuses the create: such a set-up costs a refused create, then the CLI.

Every call is bounded as a whole, and answers as the CLI command would: a
:class:`~.process.Result` with an exit code and the output, or one stopped at its
limit. A daemon that stops answering in the middle of a call is a ``DockerError``.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import socket
import stat
import tempfile
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..errors import DockerError
from .process import TIMED_OUT, Result

DEFAULT_SOCKET = "/var/run/docker.sock"
# "1" when SELinux enforces here: a file under the cache folder would then be unreadable
# to the container (a bind mount made through the API is not relabelled), so the CLI runs it.
SELINUX_ENFORCE = Path("/sys/fs/selinux/enforce")
# What an answer or an exec's output keeps: the output's end, which is all that is shown.
OUTPUT_BYTES = 64 * 1024
# How often an exec whose stream has ended is asked again for its exit code.
_EXIT_POLL = 0.01
# What Docker writes to the /etc/hosts of a container on the `none` network.
HOSTS = (
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "ff00::0\tip6-mcastprefix\n"
    "ff02::1\tip6-allnodes\n"
    "ff02::2\tip6-allrouters\n"
)


class EngineDeclined(Exception):
    """Nothing was done, and nothing of the attempt is left: the CLI is to do it instead."""


def local_engine(environ: Mapping[str, str], scratch: Path) -> LocalEngine | None:
    """The API of the daemon the docker CLI talks to, when that is a local Unix socket;
    ``scratch`` is where its containers' hosts files are written.

    The CLI's own order: ``DOCKER_HOST``, then ``DOCKER_CONTEXT``, then config.json's
    ``currentContext`` (in ``DOCKER_CONFIG`` or ``~/.docker``), then the default socket.
    An empty ``DOCKER_HOST`` is left to the CLI: 20.10 takes it for the default socket,
    23.0 and later for unset. So is everything where SELinux enforces (see
    :data:`SELINUX_ENFORCE`).
    """
    with contextlib.suppress(OSError):
        if SELINUX_ENFORCE.read_text().strip() == "1":
            return None
    if "DOCKER_HOST" in environ:
        host = environ["DOCKER_HOST"]
    else:
        context = environ.get("DOCKER_CONTEXT") or _current_context(environ) or "default"
        named = context != "default"
        host = _context_host(environ, context) if named else f"unix://{DEFAULT_SOCKET}"
    path = _unix_socket(host)
    return LocalEngine(path, scratch) if path is not None else None


class LocalEngine:
    """Containers through the Engine API at ``path`` (a Unix socket); their hosts files
    are written under ``scratch``."""

    def __init__(self, path: str, scratch: Path) -> None:
        self.path, self.scratch = path, scratch

    def __repr__(self) -> str:
        return f"LocalEngine({self.path!r})"

    def run_detached(
        self, name: str, image: str, *, labels: Mapping[str, str], timeout: float
    ) -> Result:
        """``docker run -d --network none --name NAME IMAGE``, networking disabled instead
        (its own loopback only, no network hook) and ``/etc/hosts`` as for ``none``.
        Exit 0 and the container's ID, or a result stopped at ``timeout``;
        ``EngineDeclined`` when the daemon would not create or start it so."""
        call = _Call(self.path, timeout)
        hosts = self._hosts_file()
        try:
            return self._create_and_start(call, name, image, labels, hosts)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(hosts)  # mounted, it stays the container's

    def _create_and_start(
        self, call: _Call, name: str, image: str, labels: Mapping[str, str], hosts: str
    ) -> Result:
        mount = {"Type": "bind", "Source": hosts, "Target": "/etc/hosts"}
        config = {
            "Image": image,
            "Labels": dict(labels),
            "NetworkDisabled": True,
            "HostConfig": {"NetworkMode": "none", "Mounts": [mount]},
        }
        quoted = _quote(name)
        try:
            query = urllib.parse.urlencode({"name": name})
            status, body = call.ask("POST", f"/containers/create?{query}", config, first=True)
            if status != 201:
                raise EngineDeclined(f"create: {_message(body)}")
            status, answer = call.ask("POST", f"/containers/{quoted}/start")
            if status in (204, 304):
                found = _json(body)
                return Result(0, f"{found.get('Id', '')}\n" if isinstance(found, dict) else "")
        except _Stopped:
            return call.stopped()
        why = _message(answer)
        try:
            status, answer = call.ask("DELETE", f"/containers/{quoted}?force=1")
        except _Stopped:
            status, answer = 0, b"no answer in time"
        if status in (204, 404):  # removed (or gone already): nothing is left
            raise EngineDeclined(f"the daemon refused it ({why}); it is removed")
        # Left there, it would stand in the CLI's way under the same name: the smoke test
        # ends here, and removes it by name on its way out.
        raise DockerError(
            f"the Docker daemon at unix://{self.path} refused to start container {name} "
            f"({why}) and to remove it ({_message(answer)}); check Docker, then run it again"
        )

    def _hosts_file(self) -> str:
        """A new file holding :data:`HOSTS` under ``scratch``; ``EngineDeclined`` when
        none can be written there (the CLI needs none)."""
        try:
            self.scratch.mkdir(parents=True, exist_ok=True)
            fd, path = tempfile.mkstemp(prefix="hosts-", dir=self.scratch)
        except OSError as exc:
            raise EngineDeclined(f"no hosts file under {self.scratch}: {exc}") from exc
        try:
            with os.fdopen(fd, "w", encoding="ascii") as out:
                out.write(HOSTS)
            os.chmod(path, 0o644)  # as Docker's own: readable by the container's users
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(path)
            if isinstance(exc, OSError):
                raise EngineDeclined(f"no hosts file under {self.scratch}: {exc}") from exc
            raise
        return path

    def exec(self, name: str, argv: Sequence[str], *, timeout: float) -> Result:
        """``docker exec NAME ARGV...``: its exit code and its output (stdout and stderr,
        the last :data:`OUTPUT_BYTES`), or a result stopped at ``timeout``."""
        call = _Call(self.path, timeout)
        spec = {"Cmd": list(argv), "AttachStdout": True, "AttachStderr": True}
        output = b""
        try:
            status, body = call.ask("POST", f"/containers/{_quote(name)}/exec", spec, first=True)
            found = _json(body)
            exec_id = found.get("Id") if isinstance(found, dict) else None
            if status != 201 or not isinstance(exec_id, str):
                return _refused(body)
            start = {"Detach": False, "Tty": False}
            status, output = call.ask("POST", f"/exec/{exec_id}/start", start, stream=True)
            if status != 200:
                return _refused(output)
            while True:  # its stream can end a moment before the process is reaped
                status, body = call.ask("GET", f"/exec/{exec_id}/json")
                found = _json(body)
                if status != 200 or not isinstance(found, dict):
                    return _refused(body, output)
                code = found.get("ExitCode")
                if found.get("Running") is not True and isinstance(code, int):
                    return Result(code, _text(output))
                call.pause(_EXIT_POLL)
        except _Stopped:
            return call.stopped(_text(output or call.partial))


class _Stopped(Exception):
    """The call's time limit was reached."""


class _Call:
    """The requests of one call, all within one limit: ``seconds`` from its start."""

    def __init__(self, path: str, seconds: float) -> None:
        self.path, self.seconds = path, seconds
        self._ends = time.monotonic() + seconds
        self.partial = b""  # what a stream had given when the limit stopped it

    def stopped(self, output: str = "") -> Result:
        """A result stopped at this limit, worded as the runner words one."""
        said = f"gave no answer within {self.seconds:g} s"
        return Result(TIMED_OUT, f"{output}the Docker Engine API {said}\n", said, "timeout")

    def pause(self, seconds: float) -> None:
        if self._left() <= seconds:
            raise _Stopped
        time.sleep(seconds)

    def ask(
        self,
        method: str,
        path: str,
        body: object = None,
        *,
        kind: str = "application/json",
        first: bool = False,
        stream: bool = False,
    ) -> tuple[int, bytes]:
        """One request: its status and body (a stream's demultiplexed). ``EngineDeclined``
        when the socket takes no connection on a call's ``first`` request (nothing was
        asked yet); ``DockerError`` when the daemon goes away after that, or breaks off."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self._left())
            try:
                sock.connect(self.path)
            except TimeoutError:
                raise _Stopped from None
            except OSError as exc:
                if first:
                    raise EngineDeclined(f"{self.path}: {exc.strerror or exc}") from exc
                raise self._gone(method, path, exc) from exc
            connection = _Connection("docker")
            connection.sock = sock
            headers = {"Host": "docker"}
            payload = None
            if body is not None:
                payload = body if isinstance(body, bytes) else json.dumps(body).encode()
                headers["Content-Type"] = kind
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            return response.status, self._read(response, sock, _Demux() if stream else None)
        except TimeoutError:
            raise _Stopped from None
        except (OSError, http.client.HTTPException) as exc:
            raise self._gone(method, path, exc) from exc
        finally:
            sock.close()

    def _read(
        self, response: http.client.HTTPResponse, sock: socket.socket, demux: _Demux | None
    ) -> bytes:
        """The body within the limit (each read gets what is left of it), keeping its
        last :data:`OUTPUT_BYTES`."""
        kept = demux or _Tail()
        while True:
            try:
                sock.settimeout(self._left())
                chunk = response.read1(OUTPUT_BYTES)  # what has come: read() waits to fill it
            except (_Stopped, TimeoutError):
                if demux is not None:  # an exec's output so far, kept for the error
                    self.partial = demux.value()
                raise
            if not chunk:
                break
            kept.feed(chunk)
        if response.length:  # the connection closed before the length it announced
            raise http.client.IncompleteRead(b"", response.length)
        return kept.value()

    def _left(self) -> float:
        left = self._ends - time.monotonic()
        if left <= 0:
            raise _Stopped
        return left

    def _gone(self, method: str, path: str, exc: BaseException) -> DockerError:
        return DockerError(
            f"the Docker daemon at unix://{self.path} stopped answering ({method} "
            f"{path.split('?', 1)[0]}: {str(exc) or type(exc).__name__}); check Docker, then run "
            "it again"
        )


class _Connection(http.client.HTTPConnection):
    """One request on a socket its call opened, and closes: http.client would close it as
    soon as an answer that ends with the connection begins, and the call still bounds the
    reads of that answer on it."""

    def close(self) -> None:
        pass


class _Tail:
    """Bytes, of which the last :data:`OUTPUT_BYTES` are kept."""

    def __init__(self) -> None:
        self._kept = bytearray()

    def feed(self, chunk: bytes) -> None:
        self._kept += chunk
        if len(self._kept) > 2 * OUTPUT_BYTES:  # trimmed now and then, not at each feed
            del self._kept[:-OUTPUT_BYTES]

    def value(self) -> bytes:
        return bytes(self._kept[-OUTPUT_BYTES:])


class _Demux(_Tail):
    """Docker's multiplexed stream, read as it comes: frames of an 8-byte header (the
    first byte 1 for stdout, 2 for stderr; the last four the length) then the bytes.
    What does not start as frames (an error's JSON) is kept as it is, and so is what
    follows frames but is not one; a frame cut short keeps its bytes, not its header."""

    def __init__(self) -> None:
        super().__init__()
        self._pending = bytearray()
        self._framed: bool | None = None

    def feed(self, chunk: bytes) -> None:
        if self._framed is False:
            super().feed(chunk)
            return
        self._pending += chunk
        at, pending = 0, self._pending
        while len(pending) - at >= 8:
            header = pending[at : at + 8]
            if header[0] not in (0, 1, 2) or any(header[1:4]):  # not (or no longer) frames
                self._framed = False
                super().feed(bytes(pending[at:]))
                at = len(pending)
                break
            size = int.from_bytes(header[4:8], "big")
            if len(pending) - at < 8 + size:
                break
            self._framed = True
            super().feed(bytes(pending[at + 8 : at + 8 + size]))
            at += 8 + size
        del pending[:at]

    def value(self) -> bytes:
        if self._pending and self._framed:  # a frame cut short: its bytes, not its header
            super().feed(bytes(self._pending[8:]))
        elif self._pending:  # shorter than a header: not frames
            super().feed(bytes(self._pending))
        self._pending = bytearray()
        return super().value()


def _text(output: bytes) -> str:
    return output[-OUTPUT_BYTES:].decode("utf-8", "replace")


def _message(body: bytes) -> str:
    """The daemon's ``message``, or the body's text."""
    found = _json(body)
    message = found.get("message") if isinstance(found, dict) else None
    if not isinstance(message, str) or not message:
        message = body.decode("utf-8", "replace").strip() or "no reason given"
    return message


def _refused(body: bytes, output: bytes = b"") -> Result:
    """A refusal as the CLI prints it: ``Error response from daemon: MESSAGE``, exit 1."""
    return Result(1, f"{_text(output)}Error response from daemon: {_message(body)}\n")


def _json(body: bytes) -> object:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _quote(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def _unix_socket(host: str) -> str | None:
    """PATH of ``unix://PATH`` when it is a socket; None for anything else."""
    if not host.startswith("unix://"):
        return None
    path = host[len("unix://") :]
    try:
        is_socket = stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return None
    return path if is_socket else None


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
