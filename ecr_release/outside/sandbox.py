"""The local ECR sandbox: the whole release on any machine with Docker, no AWS account, no root.

Two parts, both on this machine's loopback:

- the ECR API: moto's ECR and STS in a process of ours (``outside.sandbox_api``), on
  ``127.0.0.1:<api port>``. Its login tokens name the sandbox registry and expire twelve
  hours ahead, as ECR's do; images pushed to the registry are visible to its
  ``DescribeImages`` and ``BatchGetImage``.
- the registry: a real CNCF distribution (``registry:2``, or ``SANDBOX_REGISTRY_IMAGE``)
  in a container, speaking plain HTTP on ``127.0.0.1:<registry port>`` (Docker allows a
  loopback registry with no configuration), with the login token as its password
  (htpasswd). It publishes its port on 127.0.0.1 (Docker Desktop's daemon cannot reach a
  process on the host's loopback, but reaches a published port); a daemon with no bridge
  network gets ``--network host`` instead.

Nothing is written outside the user's cache directory (``…/ecr-release/sandbox``): its
state (ports, pid, container, volume), the token (mode 0600), the htpasswd file, the API's
log and journal. No CA, no privileged port, no ``/etc``. One sandbox per user: two
projects share it, and a lock makes two ``up`` at once start one. ``up`` heals a sandbox
with a dead part (a killed API process, a removed container); ``down`` removes all of it,
docker's stored login for it included, and is idempotent.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import DockerError, SettingsError
from .docker import Docker
from .localstate import release_lock

log = logging.getLogger("ecr_release")

ACCOUNT = "123456789012"  # the sandbox's account (moto's default)
LABEL = "io.ecr-release.sandbox"
REGISTRY_CONTAINER_PORT = 5000
READY_SECONDS = 15.0
PORT_TAKEN = 98  # the API process's exit code when its port is taken


@dataclass(frozen=True)
class Target:
    """A running sandbox, as a release sees it: where its API and registry answer."""

    api: str  # http://127.0.0.1:PORT
    registry: str  # 127.0.0.1:PORT
    account: str
    directory: Path  # the sandbox's own state (its login records and locks go below)
    access_key: str = dataclasses.field(default="", repr=False)  # the only one its API takes


@dataclass
class State:
    """What ``up`` started, saved as it happens in ``state.json``."""

    api_port: int | None = None
    api_pid: int | None = None
    registry_port: int | None = None
    image: str | None = None
    network: str | None = None  # "host" or "bridge"

    @classmethod
    def load(cls, path: Path) -> State:
        try:
            data = json.loads(path.read_text())
            fields = {f.name for f in dataclasses.fields(cls)}
            return cls(**{k: v for k, v in data.items() if k in fields})
        except (OSError, ValueError, TypeError):
            return cls()

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(dataclasses.asdict(self), indent=1))
        os.replace(tmp, path)


@dataclass(frozen=True)
class Status:
    """``inv sandbox status``: each part and whether it answers."""

    directory: Path
    state: State
    api_alive: bool
    registry_alive: bool
    container: str
    volume: str

    @property
    def running(self) -> bool:
        return self.api_alive and self.registry_alive

    def lines(self) -> list[str]:
        s = self.state
        api = f"http://127.0.0.1:{s.api_port} (pid {s.api_pid})" if s.api_port else "-"
        registry = f"127.0.0.1:{s.registry_port}" if s.registry_port else "-"
        return [
            f"sandbox: {'running' if self.running else 'not running'}",
            f"  ECR API:   {api}: {'answers' if self.api_alive else 'down'}",
            f"  registry:  {registry}: {'answers' if self.registry_alive else 'down'} "
            f"(container {self.container}, image {s.image or '-'}, network {s.network or '-'})",
            f"  data:      docker volume {self.volume}; state in {self.directory}",
        ]


class Sandbox:
    """One user's sandbox, under ``directory`` (``<cache>/ecr-release/sandbox``)."""

    def __init__(
        self,
        directory: Path,
        docker: Docker,
        *,
        image: str = "registry:2",
        python: str = sys.executable,
        free_port: Callable[[], int] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.directory = directory
        self.docker = docker
        self.image = image
        self._python = python
        self._free_port = free_port or _free_port
        self._sleep = sleep
        # Names unique to this user's sandbox: the daemon may be shared with other users.
        tag = hashlib.sha256(str(directory.resolve()).encode()).hexdigest()[:10]
        self.container = f"ecr-release-sandbox-{tag}"
        self.volume = f"ecr-release-sandbox-{tag}"

    # -- the three commands ------------------------------------------------------------

    def up(self) -> Target:
        """Start what is not running (and heal what died); return where it answers."""
        with self._locked():
            state = State.load(self._state_path)
            token = _secret(self.directory / "token", _password)
            _secret(self.directory / "access-key", _access_key)
            if not self._registry_alive(state):
                self._start_registry(state, token)
            if not self._api_alive(state):  # also when it names a registry port of old
                self._start_api(state)
            return self._target(state)

    def target(self) -> Target | None:
        """Where a running sandbox answers, without starting anything (None: not running)."""
        status = self.status()
        return self._target(status.state) if status.running else None

    def _target(self, state: State) -> Target:
        api, registry = f"http://127.0.0.1:{state.api_port}", f"127.0.0.1:{state.registry_port}"
        key = _secret(self.directory / "access-key", _access_key)
        return Target(api, registry, ACCOUNT, self.directory, key)

    def down(self) -> list[str]:
        """Stop and remove everything of the sandbox; say what was removed. Idempotent."""
        removed: list[str] = []
        with self._locked():
            state = State.load(self._state_path)
            if state.api_pid and _is_our_api(state.api_pid, self.directory):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(state.api_pid, signal.SIGTERM)
                    _wait_gone(state.api_pid, self._sleep)
                    removed.append(f"ECR API process {state.api_pid}")
            gone = self.docker.containers.remove_container(self.container)
            # docker 23+ exits 0 for `rm -f` of a missing container; it still says so.
            if gone.returncode == 0 and "no such container" not in gone.output.lower():
                removed.append(f"container {self.container}")
            if self.docker.containers.has_volume(self.volume):
                self.docker.containers.remove_volume(self.volume)
                removed.append(f"volume {self.volume}")
            if state.registry_port:
                host = f"127.0.0.1:{state.registry_port}"
                config = self.docker.config()
                held = config.holds_login(host) or config.helper_for(host) is not None
                self.docker.logout(host)
                if held:
                    removed.append(f"docker's login to {host}")
            _remove_state(self.directory)
        return removed

    def status(self) -> Status:
        state = State.load(self._state_path)
        return Status(
            self.directory,
            state,
            self._api_alive(state),
            self._registry_alive(state),
            self.container,
            self.volume,
        )

    # -- the API process ---------------------------------------------------------------

    def _start_api(self, state: State) -> None:
        if state.api_pid and _is_our_api(state.api_pid, self.directory):
            with contextlib.suppress(ProcessLookupError):
                os.kill(state.api_pid, signal.SIGKILL)  # alive but not answering
        for _ in range(5):  # a port taken meanwhile: take another
            proc = self._spawn_api(self._free_port(), state)

            def settled(proc: subprocess.Popen[bytes] = proc) -> bool:
                return self._api_alive(state) or proc.poll() is not None

            if self._wait(settled):
                if proc.poll() is None:
                    log.info("sandbox: ECR API on http://127.0.0.1:%d", state.api_port)
                    return
                if proc.returncode != PORT_TAKEN:
                    break
        raise SettingsError(
            f"the sandbox's ECR API did not start: {_last_line(self.directory / 'api.log')}; "
            f"see {self.directory / 'api.log'}, or run `inv sandbox down` and try again"
        )

    def _spawn_api(self, port: int, state: State) -> subprocess.Popen[bytes]:
        args = [self._python, "-m", "ecr_release.outside.sandbox_api", "--port", str(port)]
        args += ["--state-dir", str(self.directory), "--registry", _registry(state)]
        with open(self.directory / "api.log", "ab") as logfile:
            proc = subprocess.Popen(
                [*args, "--account", ACCOUNT],
                stdin=subprocess.DEVNULL,
                stdout=logfile,
                stderr=logfile,
                start_new_session=True,  # it outlives this run, and its Ctrl-C
                env=_api_environ(),
            )
        state.api_port, state.api_pid = port, proc.pid
        state.save(self._state_path)
        return proc

    def _api_alive(self, state: State) -> bool:
        """Our API process answers, and it names the registry that runs now."""
        if not state.api_port or not state.api_pid:
            return False
        answer = _get_json(f"http://127.0.0.1:{state.api_port}/_sandbox/health")
        return (
            isinstance(answer, dict)
            and answer.get("pid") == state.api_pid
            and answer.get("registry") == _registry(state)
        )

    # -- the registry container ------------------------------------------------------

    def _start_registry(self, state: State, token: str) -> None:
        self.docker.containers.remove_container(self.container)  # a stopped or stale one
        _ensure_image(self.docker, self.image)
        auth = self.directory / "auth"
        auth.mkdir(exist_ok=True)
        (auth / "htpasswd").write_text(_htpasswd("AWS", token))
        network = "bridge" if self.docker.containers.has_network("bridge") else "host"
        for _ in range(5):
            port = state.registry_port or self._free_port()
            options = _registry_options(self.volume, auth, network, port)
            result = self.docker.containers.start(self.container, self.image, options)
            state.registry_port, state.image, state.network = port, self.image, network
            state.save(self._state_path)
            if result.returncode == 0 and self._wait(lambda: self._registry_alive(state)):
                log.info("sandbox: registry on 127.0.0.1:%d (%s)", port, self.image)
                return
            self.docker.containers.remove_container(self.container)
            if "address already in use" not in result.output.lower() and result.returncode:
                raise DockerError(f"the sandbox's registry did not start: {result.output.strip()}")
            state.registry_port = None  # taken: take another
        raise DockerError(
            f"the sandbox's registry ({self.image}) did not answer on 127.0.0.1: see "
            f"`docker logs {self.container}`, or run `inv sandbox down` and try again"
        )

    def _registry_alive(self, state: State) -> bool:
        if not state.registry_port:  # never started: nothing to ask, nothing to make
            return False
        token = _secret(self.directory / "token", _password)
        return _registry_answers(state.registry_port, token)

    # -- helpers -------------------------------------------------------------------

    @property
    def _state_path(self) -> Path:
        return self.directory / "state.json"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the sandbox's lock; a folder that cannot be used is one line, not a trace."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            with release_lock(self.directory, "sandbox", timeout=120):
                yield
        except OSError as exc:
            where = exc.filename or self.directory
            raise SettingsError(
                f"the sandbox cannot use {where}: {exc.strerror or exc}; set XDG_CACHE_HOME "
                "to a folder you can write (the sandbox keeps its state there)"
            ) from exc

    def _wait(self, ready: Callable[[], bool]) -> bool:
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            if ready():
                return True
            self._sleep(0.05)
        return ready()


def _remove_state(directory: Path) -> None:
    """Everything under the sandbox's folder but the lock ``down`` holds (for the next
    up): the releases' own locks (a login's, a pull's, under ``local/``) go too."""
    for path in sorted(directory.glob("**/*"), reverse=True):
        if path.suffix != ".lock" or path.parent != directory:
            with contextlib.suppress(OSError):
                path.unlink() if not path.is_dir() else path.rmdir()


def _secret(path: Path, make: Callable[[], str]) -> str:
    """A secret of the sandbox, made once and readable by this user only (mode 0600): the
    registry password (the ECR token the API hands out), the API's access key id."""
    with contextlib.suppress(OSError):
        found = path.read_text().strip()
        if found:
            return found
    value = make()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value


def _password() -> str:
    return secrets.token_urlsafe(32)


def _access_key() -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    return "SANDBOX" + "".join(secrets.choice(alphabet) for _ in range(13))


def _registry(state: State) -> str:
    return f"127.0.0.1:{state.registry_port}"


def _registry_options(volume: str, auth: Path, network: str, port: int) -> list[str]:
    """``docker run`` options of the registry: its data volume, htpasswd auth with the token,
    tag deletion (the API emulates ECR's delete by tag), and 127.0.0.1:PORT, published (a
    bridge) or bound directly (``--network host``)."""
    options = [
        *("--label", f"{LABEL}=1", "-v", f"{volume}:/var/lib/registry"),
        *("-v", f"{auth}:/auth:ro", "-e", "REGISTRY_AUTH=htpasswd"),
        *("-e", "REGISTRY_AUTH_HTPASSWD_REALM=ecr-release-sandbox"),
        *("-e", "REGISTRY_AUTH_HTPASSWD_PATH=/auth/htpasswd"),
        *("-e", "REGISTRY_STORAGE_DELETE_ENABLED=true"),
    ]
    if network == "host":
        return [*options, "--network", "host", "-e", f"REGISTRY_HTTP_ADDR=127.0.0.1:{port}"]
    return [*options, "-p", f"127.0.0.1:{port}:{REGISTRY_CONTAINER_PORT}"]


def _ensure_image(docker: Docker, image: str) -> None:
    """The registry image, pulled when missing; one line saying how to get one otherwise."""
    if docker.inspect(image) is not None:
        return
    try:
        docker.pull(image)
    except DockerError as exc:
        raise DockerError(
            f"the sandbox's registry image {image} is not on this machine and could "
            f"not be pulled ({exc.message}): pull it where Docker Hub is reachable "
            "(`docker pull registry:2`), or set SANDBOX_REGISTRY_IMAGE to a CNCF "
            "distribution image you have (README: the sandbox)"
        ) from exc


def _registry_answers(port: int, token: str) -> bool:
    """The registry on 127.0.0.1:PORT is ours: it wants a login, and takes our token."""
    url = f"http://127.0.0.1:{port}/v2/"
    try:
        with _LOCAL.open(url, timeout=2):
            return False  # it answered without asking for the token: not ours
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code != 401:
            return False
    except (OSError, ValueError):
        return False
    request = urllib.request.Request(url)
    login = base64.b64encode(f"AWS:{token}".encode()).decode()
    request.add_header("Authorization", f"Basic {login}")
    try:
        with _LOCAL.open(request, timeout=2) as answer:
            return int(answer.status) == 200
    except (OSError, ValueError):
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Loopback is never reached through a proxy (HTTP_PROXY would send it elsewhere).
_LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _get_json(url: str) -> object:
    try:
        with _LOCAL.open(url, timeout=2) as answer:
            return json.loads(answer.read())
    except (OSError, ValueError):
        return None


def _is_our_api(pid: int, directory: Path) -> bool:
    """Is ``pid`` this sandbox's API process (not a pid the system has reused)?"""
    try:
        words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return _alive(pid)  # no /proc (macOS): trust the pid while it is alive
    return b"ecr_release.outside.sandbox_api" in words and str(directory).encode() in words


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wait_gone(pid: int, sleep: Callable[[float], None], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while _alive(pid) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        sleep(0.05)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _api_environ() -> dict[str, str]:
    """The API process's environment: no AWS credential or endpoint of the user's, and no
    proxy (it talks to the registry on loopback only)."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("AWS_") and not k.lower().endswith("_proxy")
    }


# The registry checks the password on every request (a push makes a dozen), and bcrypt's
# cost is paid each time: 2^10 rounds took ~75 ms a request here, 2^4 (the least) ~1 ms. A
# low cost is safe for this password: 256 random bits, not a person's guessable word.
HTPASSWD_ROUNDS = 4


def _htpasswd(user: str, password: str) -> str:
    import bcrypt

    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=HTPASSWD_ROUNDS))
    return f"{user}:{hashed.decode()}\n"


def _last_line(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    return lines[-1].strip() if lines else "no output"
