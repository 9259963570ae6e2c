"""A local stand-in for AWS ECR: a real Docker engine, moto's server and a real registry.

The product under test runs unchanged against it: boto3 reaches moto through
``AWS_ENDPOINT_URL``, and docker pushes to ``<account>.dkr.ecr.<region>.amazonaws.com``,
which ``/etc/hosts`` points at a registry on ``127.0.0.1:443`` serving a
certificate from a local CA that docker trusts through ``/etc/docker/certs.d``.

Usable as a module (``Stack(...).up()`` / ``.down()``, used by ``conftest.py``)
and as a script::

    python tests/e2e/stack.py up   [--state-dir DIR]   # prints the stack's facts as JSON
    python tests/e2e/stack.py down [--state-dir DIR]   # tears down only what ``up`` started

Everything ``up`` starts or changes is recorded in ``<state dir>/stack.json`` as it
happens, so ``down`` (or the next ``up``, after an interrupted run) can undo exactly
that: the processes it started (dockerd only if it was not already running), the
line it added to ``/etc/hosts`` and the CA it put under ``/etc/docker/certs.d``.

Only the standard library is used; needs root, and installs missing Debian
packages (docker.io, debootstrap, docker-registry, apache2-utils, openssl).
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import dataclasses
import errno
import fcntl
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
BASE_IMAGE = "local/python-base:bookworm"
DEFAULT_STATE_DIR = Path("/tmp/ecr-e2e-stack")
# One stack per machine (port 443, /etc/hosts): every Stack takes this lock for its lifetime.
LOCK_PATH = Path("/tmp/ecr-e2e-stack.lock")
HOSTS_PATH = Path("/etc/hosts")
CERTS_D = Path("/etc/docker/certs.d")
REGISTRY_PORT = 443
REGISTRY_USER = "AWS"
HOSTS_MARKER = "# ecr-e2e-stack"
FAKE_SECRET = "testing"  # moto accepts any credentials

DOCKERD_DEADLINE = 60.0
SERVICE_DEADLINE = 30.0
STOP_DEADLINE = 20.0

# binary -> Debian package that provides it
REQUIRED_BINARIES = {
    "dockerd": "docker.io",
    "docker": "docker.io",
    "debootstrap": "debootstrap",
    "docker-registry": "docker-registry",
    "htpasswd": "apache2-utils",
    "openssl": "openssl",
}

MANIFEST_ACCEPT = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    ]
)


class StackError(RuntimeError):
    """The stack could not be brought up or operated (a real failure)."""


class StackUnavailable(StackError):
    """This machine cannot host the stack (not root, no Docker engine can be started)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclasses.dataclass
class StackInfo:
    """Facts about a running stack. The Stack updates this object in place on restarts."""

    account_id: str
    region: str
    registry_host: str
    moto_endpoint: str
    moto_port: int
    base_image: str
    registry_pid: int | None
    moto_pid: int | None
    dockerd_pid: int | None  # only when this stack started dockerd
    dockerd_started: bool
    registry_storage_dir: str
    registry_config_path: str
    registry_log_path: str
    registry_user: str
    registry_password: str
    htpasswd_path: str
    ca_path: str
    state_dir: str

    @property
    def registry_url(self) -> str:
        return f"https://{self.registry_host}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def log(msg: str) -> None:
    print(f"[e2e-stack] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- process helpers


def _proc_cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # state is the field after the ")" closing the command name; Z = zombie
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _is_ours(pid: int | None, marker: str) -> bool:
    """The pid is alive and still the program we started (guards against pid reuse)."""
    if not pid or not _alive(pid):
        return False
    return any(marker in part for part in _proc_cmdline(pid))


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _signal(pid: int, sig: int) -> None:
    """Signal the process group the pid leads (we start services in their own session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def _stop_pid(pid: int | None, marker: str, name: str, deadline: float = STOP_DEADLINE) -> None:
    if not _is_ours(pid, marker):
        return
    assert pid is not None
    log(f"stopping {name} (pid {pid})")
    _signal(pid, signal.SIGTERM)
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        _reap(pid)
        if not _alive(pid):
            _reap(pid)
            return
        time.sleep(0.1)
    log(f"{name} (pid {pid}) ignored SIGTERM; killing it")
    _signal(pid, signal.SIGKILL)
    end = time.monotonic() + 5
    while time.monotonic() < end and _alive(pid):
        _reap(pid)
        time.sleep(0.1)


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM back while a teardown runs (main thread only), then re-deliver."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    sigs = {signal.SIGINT, signal.SIGTERM}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _spawn(argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> int:
    """Start a background service in its own session (Ctrl-C in the terminal doesn't reach it)."""
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    return proc.pid


def _run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    return subprocess.run(argv, check=False, **kwargs)


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_free(port: int) -> bool:
    """Nobody listens on 127.0.0.1:port (connections in TIME_WAIT don't count, as for Go)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _wait_port_free(port: int, deadline: float = 10.0) -> None:
    """Wait for the port to be free: a process that just exited may still hold its socket."""
    end = time.monotonic() + deadline
    while not _port_free(port):
        if time.monotonic() > end:
            raise StackError(
                f"port {port} is taken by {_who_listens(port)}; the registry must serve it "
                "because docker talks to https://<host> without a port"
            )
        time.sleep(0.1)


def _who_listens(port: int) -> str:
    if not shutil.which("ss"):
        return "unknown process"
    out = _run(["ss", "-Hltnp", f"sport = :{port}"]).stdout.strip()
    return " ; ".join(" ".join(line.split()) for line in out.splitlines()) or "unknown process"


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _write_in_place(path: Path, data: bytes) -> None:
    """Rewrite a file's content without replacing the inode (/etc/hosts may be a bind mount)."""
    with open(path, "r+b") as fh:
        fh.seek(0)
        fh.write(data)
        fh.truncate()
        fh.flush()
        os.fsync(fh.fileno())


# ---------------------------------------------------------------- machine setup


def docker_answers(timeout: float = 10.0) -> bool:
    try:
        res = _run(["docker", "info", "--format", "{{.ServerVersion}}"], timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return res.returncode == 0 and bool(res.stdout.strip())


def ensure_packages() -> None:
    """Install the Debian packages whose binaries are missing (apt-get update once, first)."""
    missing = sorted({pkg for binary, pkg in REQUIRED_BINARIES.items() if not shutil.which(binary)})
    if not missing:
        return
    if not shutil.which("apt-get"):
        raise StackUnavailable(
            f"missing packages {' '.join(missing)} and no apt-get to install them"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    log(f"installing Debian packages: {' '.join(missing)}")
    upd = _run(["apt-get", "update"], env=env)
    if upd.returncode != 0:
        raise StackUnavailable(f"apt-get update failed: {_last_line(upd.stderr)}")
    inst = _run(["apt-get", "install", "-y", "--no-install-recommends", *missing], env=env)
    if inst.returncode != 0:
        raise StackUnavailable(
            f"apt-get install {' '.join(missing)} failed: {_last_line(inst.stderr or inst.stdout)}"
        )
    still = sorted(binary for binary in REQUIRED_BINARIES if not shutil.which(binary))
    if still:
        raise StackUnavailable(f"still missing after install: {' '.join(still)}")


def _last_line(text: str) -> str:
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "(no output)"


def debian_mirror() -> str | None:
    """The machine's own Debian mirror, read from its apt sources (None: debootstrap's default)."""
    sources: list[Path] = [Path("/etc/apt/sources.list")]
    sources += sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    sources += sorted(Path("/etc/apt/sources.list.d").glob("*.list"))
    for path in sources:
        try:
            text = path.read_text()
        except OSError:
            continue
        if path.suffix == ".sources":
            for stanza in text.split("\n\n"):
                fields: dict[str, str] = {}
                for line in stanza.splitlines():
                    if ":" in line and not line.lstrip().startswith("#"):
                        key, _, value = line.partition(":")
                        fields[key.strip().lower()] = value.strip()
                suites = fields.get("suites", "").split()
                if "deb" in fields.get("types", "").split() and "bookworm" in suites:
                    for uri in fields.get("uris", "").split():
                        if uri.rstrip("/").endswith("/debian"):
                            return uri
        else:
            for line in text.splitlines():
                parts = line.split("#", 1)[0].split()
                parts = [p for p in parts if not p.startswith("[")]
                if (
                    len(parts) >= 3
                    and parts[0] == "deb"
                    and parts[2] == "bookworm"
                    and parts[1].rstrip("/").endswith("/debian")
                ):
                    return parts[1]
    return None


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    found = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            target = line.split()[1].replace("\\040", " ")
            if target.startswith(prefix):
                found.append(target)
    return sorted(found, key=len, reverse=True)


def remove_rootfs(path: Path) -> None:
    """Remove a debootstrap target, unmounting anything an interrupted run left mounted in it."""
    if not path.exists():
        return
    for target in _mounts_under(path):
        _run(["umount", "-l", target])
    if _mounts_under(path):
        raise StackError(f"{path} still has mounts; not removing it")
    shutil.rmtree(path, ignore_errors=True)


def image_exists(image: str) -> bool:
    return _run(["docker", "image", "inspect", image]).returncode == 0


def ensure_base_image(image: str, work_dir: Path) -> None:
    """Make a Debian bookworm image with python3 (nothing can be pulled), unless it exists."""
    if image_exists(image):
        return
    rootfs = work_dir / "rootfs"
    remove_rootfs(rootfs)
    argv = ["debootstrap", "--variant=minbase", "--include=python3", "bookworm", str(rootfs)]
    mirror = debian_mirror()
    if mirror:
        argv.append(mirror)
    log(f"building base image {image} with debootstrap (about a minute)")
    try:
        boot = _run(argv)
        if boot.returncode != 0:
            raise StackError(f"debootstrap failed: {_last_line(boot.stdout + boot.stderr)}")
        tar = subprocess.Popen(
            ["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE
        )
        imp = subprocess.run(
            ["docker", "import", "-", image],
            stdin=tar.stdout,
            capture_output=True,
            text=True,
            check=False,
        )
        assert tar.stdout is not None
        tar.stdout.close()
        if tar.wait() != 0 or imp.returncode != 0:
            raise StackError(f"docker import of the rootfs failed: {_last_line(imp.stderr)}")
    finally:
        remove_rootfs(rootfs)
    check = _run(["docker", "run", "--rm", image, "python3", "-c", "print(1)"], timeout=120)
    if check.stdout.strip() != "1":
        raise StackError(f"base image {image} cannot run python3: {_last_line(check.stderr)}")


def make_tls(dir_: Path, host: str) -> tuple[Path, Path, Path]:
    """A local CA and a server certificate for ``host`` signed by it; returns (ca, cert, key)."""
    ca_key, ca_crt = dir_ / "ca.key", dir_ / "ca.crt"
    key, csr, crt, ext = dir_ / "server.key", dir_ / "server.csr", dir_ / "server.crt", dir_ / "ext"
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    steps = [
        ["openssl", "req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca_crt),
         "-days", "30", "-subj", "/CN=ecr-e2e-stack local CA",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ["openssl", "req", "-new", *ec, "-keyout", str(key), "-out", str(csr),
         "-subj", f"/CN={host}"],
        ["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key),
         "-CAcreateserial", "-out", str(crt), "-days", "30", "-extfile", str(ext)],
    ]  # fmt: skip
    ext.write_text(
        f"subjectAltName=DNS:{host}\n"
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
    )
    for argv in steps:
        res = _run(argv)
        if res.returncode != 0:
            raise StackError(f"openssl failed ({argv[1]}): {_last_line(res.stderr)}")
    return ca_crt, crt, key


def htpasswd_line(user: str, password: str) -> str:
    res = _run(["htpasswd", "-Bbn", user, password])
    if res.returncode != 0:
        raise StackError(f"htpasswd failed: {_last_line(res.stderr)}")
    return res.stdout.strip() + "\n"


# ---------------------------------------------------------------- the stack


class Stack:
    """Brings the local ECR stand-in up and takes down only what it started.

    ``up()`` returns a :class:`StackInfo` (also at ``stack.info``, updated in place
    when services restart). ``down()`` is idempotent and safe after a partial ``up``.
    """

    def __init__(
        self,
        state_dir: str | os.PathLike[str] | None = None,
        *,
        account_id: str = ACCOUNT_ID,
        region: str = REGION,
        base_image: str = BASE_IMAGE,
        lock_timeout: float = 600.0,
        dockerd_args: list[str] | None = None,
    ) -> None:
        self.state_dir = Path(
            state_dir or os.environ.get("E2E_STACK_STATE_DIR") or DEFAULT_STATE_DIR
        )
        self.state_file = self.state_dir / "stack.json"
        self.account_id = account_id
        self.region = region
        self.base_image = base_image
        self.lock_timeout = lock_timeout
        # Extra dockerd flags, used only when this stack starts dockerd itself (e.g. a private
        # --data-root, --exec-root, --pidfile and --host, with DOCKER_HOST pointing at it, to
        # test from a cold engine). Beware: `--bridge none` makes dockerd delete the docker0
        # interface, which breaks `docker run` on another daemon of the same machine: give a
        # second daemon a bridge of its own (`ip link add NAME type bridge`, `--bridge NAME`).
        if dockerd_args is None:
            dockerd_args = shlex.split(os.environ.get("E2E_STACK_DOCKERD_ARGS", ""))
        self.dockerd_args = list(dockerd_args)
        self.registry_host = f"{account_id}.dkr.ecr.{region}.amazonaws.com"
        self.info: StackInfo | None = None
        self._state: dict[str, Any] = {}
        self._lock_fd: int | None = None

    # -- public API ------------------------------------------------------------

    def up(self) -> StackInfo:
        if os.geteuid() != 0:
            raise StackUnavailable("the e2e stack needs root (dockerd, port 443, /etc/hosts)")
        self._acquire_lock()
        try:
            self._cleanup_stale()
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self._state = {"owner_pid": os.getpid(), "account_id": self.account_id}
            self._save()
            self._up()
        except BaseException:
            try:
                self.down()
            except StackError as exc:
                log(str(exc))
            raise
        assert self.info is not None
        return self.info

    def down(self, *, from_state_file: bool = False) -> None:
        """Undo what this Stack started; idempotent, and safe after a partial ``up``.

        With ``from_state_file=True`` (the script's ``down``), undo the stack recorded in
        the state file by another process, unless a running session holds it.
        """
        state = self._state
        if not state and from_state_file:
            self._acquire_lock(timeout=5.0)
            state = self._load_state_file()
        try:
            with _signals_deferred():
                if state:
                    self._teardown(state)
        finally:
            self._state = {}
            self.info = None
            self._release_lock()

    def stop_registry(self) -> None:
        self._stop_service("registry_pid", "docker-registry", "registry")

    def start_registry(self) -> None:
        """Start the registry (no-op when it runs) and wait until it answers."""
        if _is_ours(self._state.get("registry_pid"), "docker-registry"):
            return
        _wait_port_free(REGISTRY_PORT)
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        log_path = Path(self._state["registry_log_path"])
        pid = _spawn(
            ["docker-registry", "serve", self._state["registry_config_path"]], log_path, env
        )
        self._state["registry_pid"] = pid
        self._save()
        self._wait_registry(pid, log_path)

    def stop_moto(self) -> None:
        self._stop_service("moto_pid", "moto", "moto_server")

    def start_moto(self) -> None:
        """Start moto's server on the stack's port (its state starts empty) and wait for it."""
        if _is_ours(self._state.get("moto_pid"), "moto"):
            return
        port = self._state["moto_port"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env["MOTO_ACCOUNT_ID"] = self.account_id
        exe = Path(sys.executable).with_name("moto_server")
        argv = [str(exe)] if exe.exists() else [sys.executable, "-m", "moto.server"]
        log_path = self.state_dir / "moto.log"
        pid = _spawn([*argv, "-H", "127.0.0.1", "-p", str(port)], log_path, env)
        self._state["moto_pid"] = pid
        self._save()
        end = time.monotonic() + SERVICE_DEADLINE
        while time.monotonic() < end:
            if not _alive(pid):
                raise StackError(f"moto_server exited: {_tail(log_path)}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=2).close()
                return
            except urllib.error.HTTPError:
                return  # it answered
            except OSError:
                time.sleep(0.2)
        raise StackError(f"moto_server did not answer on port {port}: {_tail(log_path)}")

    def reset(self) -> None:
        """Forget every AWS resource moto holds (the registry's content is kept)."""
        req = urllib.request.Request(
            f"http://127.0.0.1:{self._state['moto_port']}/moto-api/reset", method="POST"
        )
        urllib.request.urlopen(req, timeout=10).close()

    def set_registry_password(self, password: str | None = None) -> None:
        """Make the registry accept only ``AWS:<password>`` (None: moto's own token again).

        Restarts the registry so the new htpasswd takes effect.
        """
        password = password if password is not None else self.default_password
        Path(self._state["htpasswd_path"]).write_text(htpasswd_line(REGISTRY_USER, password))
        self._state["registry_password"] = password
        self._save()
        self.stop_registry()
        self.start_registry()

    def heal(self) -> None:
        """Back to nominal after a fault test: moto and registry running, moto's password."""
        if self._state.get("registry_password") != self.default_password:
            self.set_registry_password(None)
        self.start_registry()
        self.start_moto()

    @property
    def default_password(self) -> str:
        return f"{self.account_id}-auth-token"

    def registry_tags(self, repo: str) -> list[str]:
        """Tags of ``repo`` in the registry (empty when the repository is unknown)."""
        status, _, body = self._registry_request("GET", f"/v2/{repo}/tags/list")
        if status == 404:
            return []
        if status != 200:
            raise StackError(f"registry answered {status} to tags/list for {repo}: {body[:200]!r}")
        return sorted(json.loads(body).get("tags") or [])

    def registry_manifest_digest(self, repo: str, tag: str) -> str | None:
        """The manifest digest the registry serves for ``repo:tag`` (None when absent)."""
        status, headers, _ = self._registry_request(
            "HEAD", f"/v2/{repo}/manifests/{tag}", {"Accept": MANIFEST_ACCEPT}
        )
        if status == 404:
            return None
        if status != 200:
            raise StackError(f"registry answered {status} to HEAD manifest {repo}:{tag}")
        return headers.get("Docker-Content-Digest")

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self._state["ca_path"])

    def cli_env(
        self,
        docker_config: str | os.PathLike[str],
        *,
        secret_access_key: str = FAKE_SECRET,
        home: str | os.PathLike[str] | None = None,
    ) -> dict[str, str]:
        """A small, explicit environment for running the product's CLI against the stack."""
        assert self.info is not None
        env = {
            "AWS_ENDPOINT_URL": self.info.moto_endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": secret_access_key,
            "AWS_REGION": self.info.region,
            "AWS_CONFIG_FILE": "/nonexistent",
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "DOCKER_CONFIG": str(docker_config),
        }
        if os.environ.get("DOCKER_HOST"):  # the engine the stack uses, if not the default one
            env["DOCKER_HOST"] = os.environ["DOCKER_HOST"]
        if home is not None:
            env["HOME"] = str(home)
        return env

    # -- internals ---------------------------------------------------------------

    def _up(self) -> None:
        st = self._state
        sd = self.state_dir
        ensure_packages()
        _wait_port_free(REGISTRY_PORT, deadline=2.0)

        tls_dir = sd / "tls"
        tls_dir.mkdir(exist_ok=True)
        ca, crt, key = make_tls(tls_dir, self.registry_host)
        storage = sd / "registry-data"
        storage.mkdir(exist_ok=True)
        htpasswd = sd / "htpasswd"
        htpasswd.write_text(htpasswd_line(REGISTRY_USER, self.default_password))
        config = sd / "registry.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: info\n"
            "storage:\n"
            f"  filesystem:\n    rootdirectory: {json.dumps(str(storage))}\n"
            "  delete:\n    enabled: true\n"
            "http:\n"
            f"  addr: 127.0.0.1:{REGISTRY_PORT}\n"
            f"  secret: {secrets.token_hex(16)}\n"
            f"  tls:\n    certificate: {json.dumps(str(crt))}\n    key: {json.dumps(str(key))}\n"
            "  headers:\n    X-Content-Type-Options: [nosniff]\n"
            "auth:\n"
            f"  htpasswd:\n    realm: ecr-e2e-stack\n    path: {json.dumps(str(htpasswd))}\n"
        )
        registry_log = sd / "registry.log"
        registry_log.write_bytes(b"")
        (sd / "moto.log").write_bytes(b"")
        st.update(
            registry_storage_dir=str(storage),
            registry_config_path=str(config),
            registry_log_path=str(registry_log),
            htpasswd_path=str(htpasswd),
            ca_path=str(ca),
            registry_password=self.default_password,
            moto_port=_free_port(),
        )
        self._save()

        # The host name and CA first: a daemon started after this resolves the host at once.
        self._install_hosts_line()
        self._install_ca(ca)
        self._ensure_dockerd()
        ensure_base_image(self.base_image, sd)
        self.start_moto()
        self.start_registry()
        self.info = StackInfo(
            account_id=self.account_id,
            region=self.region,
            registry_host=self.registry_host,
            moto_endpoint=f"http://127.0.0.1:{st['moto_port']}",
            moto_port=st["moto_port"],
            base_image=self.base_image,
            registry_pid=st["registry_pid"],
            moto_pid=st["moto_pid"],
            dockerd_pid=st.get("dockerd_pid"),
            dockerd_started=bool(st.get("dockerd_started")),
            registry_storage_dir=str(storage),
            registry_config_path=str(config),
            registry_log_path=str(registry_log),
            registry_user=REGISTRY_USER,
            registry_password=self.default_password,
            htpasswd_path=str(htpasswd),
            ca_path=str(ca),
            state_dir=str(sd),
        )
        self._save()
        self._wait_engine_reaches_registry()

    def _wait_engine_reaches_registry(self) -> None:
        """`docker login` through the engine: it resolves the host, trusts the CA, and
        authenticates. A daemon that was already running may serve /etc/hosts from a cache
        for a few seconds (Go's resolver re-reads it at most every 5 s), hence the retries."""
        end = time.monotonic() + 20
        with tempfile.TemporaryDirectory(prefix="e2e-stack-docker-") as cfg:
            env = {**os.environ, "DOCKER_CONFIG": cfg}
            argv = ["docker", "login", "--username", REGISTRY_USER, "--password-stdin"]
            while True:
                res = _run([*argv, self.registry_host], input=self.default_password, env=env)
                if res.returncode == 0:
                    return
                if time.monotonic() > end:
                    raise StackError(
                        f"the Docker engine cannot log in to {self.registry_host}: "
                        f"{_last_line(res.stderr)}"
                    )
                time.sleep(0.5)

    def _ensure_dockerd(self) -> None:
        if docker_answers():
            return
        log_path = self.state_dir / "dockerd.log"
        log_path.write_bytes(b"")
        log("starting dockerd")
        try:
            pid = _spawn(["dockerd", *self.dockerd_args], log_path)
        except OSError as exc:
            raise StackUnavailable(f"cannot start dockerd: {exc}") from exc
        self._state.update(dockerd_pid=pid, dockerd_started=True)
        self._save()
        end = time.monotonic() + DOCKERD_DEADLINE
        while time.monotonic() < end:
            if docker_answers(timeout=5):
                if not _alive(pid):
                    # another dockerd won the race; it's not ours to stop
                    self._state.update(dockerd_pid=None, dockerd_started=False)
                    self._save()
                return
            if not _alive(pid):
                _reap(pid)
                if docker_answers():
                    continue
                raise StackUnavailable(f"dockerd exited at start: {_tail(log_path, 3)}")
            time.sleep(0.5)
        raise StackUnavailable(
            f"dockerd did not answer within {DOCKERD_DEADLINE:.0f}s: {_tail(log_path, 3)}"
        )

    def _install_hosts_line(self) -> None:
        original = HOSTS_PATH.read_bytes()
        for line in original.decode(errors="replace").splitlines():
            fields = line.split("#", 1)[0].split()
            if len(fields) >= 2 and self.registry_host in fields[1:]:
                if fields[0] == "127.0.0.1":
                    return  # someone already points it at loopback; nothing to add or undo
                raise StackError(f"/etc/hosts already maps {self.registry_host} to {fields[0]}")
        backup = self.state_dir / "hosts.orig"
        backup.write_bytes(original)
        line = f"127.0.0.1 {self.registry_host} {HOSTS_MARKER}\n"
        self._state.update(hosts_backup=str(backup), hosts_line=line)
        self._save()
        sep = b"" if not original or original.endswith(b"\n") else b"\n"
        _write_in_place(HOSTS_PATH, original + sep + line.encode())

    def _install_ca(self, ca: Path) -> None:
        host_dir = CERTS_D / self.registry_host
        created = []
        for d in (CERTS_D.parent, CERTS_D, host_dir):
            if not d.exists():
                d.mkdir()
                created.append(str(d))
        target = host_dir / "ca.crt"
        prior = None
        if target.exists():
            prior = self.state_dir / "certs.d-ca.crt.orig"
            shutil.copy2(target, prior)
        self._state.update(
            certs_created_dirs=created,
            ca_target=str(target),
            ca_prior=str(prior) if prior else None,
        )
        self._save()
        shutil.copyfile(ca, target)

    def _wait_registry(self, pid: int, log_path: Path) -> None:
        end = time.monotonic() + SERVICE_DEADLINE
        while time.monotonic() < end:
            if not _alive(pid):
                _reap(pid)
                raise StackError(f"docker-registry exited: {_tail(log_path)}")
            try:
                status, _, _ = self._registry_request("GET", "/v2/", auth=False, timeout=2)
            except OSError:
                time.sleep(0.2)
                continue
            if status in (200, 401):
                return
            raise StackError(f"docker-registry answered {status} to GET /v2/")
        raise StackError(
            f"docker-registry did not answer on port {REGISTRY_PORT}: {_tail(log_path)}"
        )

    def _registry_request(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        *,
        auth: bool = True,
        timeout: float = 10,
    ) -> tuple[int, Any, bytes]:
        req = urllib.request.Request(
            f"https://{self.registry_host}{path}", method=method, headers=headers or {}
        )
        if auth:
            cred = f"{REGISTRY_USER}:{self._state['registry_password']}".encode()
            req.add_header("Authorization", "Basic " + base64.b64encode(cred).decode())
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self.ssl_context()) as resp:
                return resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.headers, err.read()

    def _stop_service(self, key: str, marker: str, name: str) -> None:
        _stop_pid(self._state.get(key), marker, name)
        self._state[key] = None
        self._save()

    def _save(self) -> None:
        if self.info is not None:
            self.info.registry_pid = self._state.get("registry_pid")
            self.info.moto_pid = self._state.get("moto_pid")
            self.info.registry_password = self._state.get("registry_password", "")
            self._state["info"] = self.info.to_dict()
        if self.state_dir.is_dir():
            _atomic_write(self.state_file, json.dumps(self._state, indent=2) + "\n")

    def _load_state_file(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.state_file.read_text()))
        except (OSError, ValueError):
            return {}

    def _cleanup_stale(self) -> None:
        stale = self._load_state_file()
        if stale:
            log(f"tearing down a stack left by an earlier run (pid {stale.get('owner_pid')})")
            self._teardown(stale)
        remove_rootfs(self.state_dir / "rootfs")

    def _teardown(self, st: dict[str, Any]) -> None:
        errors: list[str] = []

        def attempt(what: str, fn: Any, *args: Any) -> None:
            try:
                fn(*args)
            except Exception as exc:  # keep undoing the rest
                errors.append(f"{what}: {exc}")

        attempt("stop registry", _stop_pid, st.get("registry_pid"), "docker-registry", "registry")
        attempt("stop moto", _stop_pid, st.get("moto_pid"), "moto", "moto_server")
        attempt("restore /etc/hosts", self._restore_hosts, st)
        attempt("remove CA", self._restore_ca, st)
        if st.get("dockerd_started"):
            attempt("stop dockerd", _stop_pid, st.get("dockerd_pid"), "dockerd", "dockerd", 30.0)
        attempt("remove rootfs", remove_rootfs, self.state_dir / "rootfs")
        for name in ("registry-data", "tls"):
            shutil.rmtree(self.state_dir / name, ignore_errors=True)
        for name in ("htpasswd", "registry.yml", "hosts.orig", "certs.d-ca.crt.orig"):
            with contextlib.suppress(FileNotFoundError):
                (self.state_dir / name).unlink()
        if errors:
            # keep the state file so that the next up/down tries again
            raise StackError("teardown incomplete: " + "; ".join(errors))
        with contextlib.suppress(FileNotFoundError):
            self.state_file.unlink()

    def _restore_hosts(self, st: dict[str, Any]) -> None:
        line = st.get("hosts_line")
        if not line:
            return
        current = HOSTS_PATH.read_bytes()
        backup = Path(st["hosts_backup"]) if st.get("hosts_backup") else None
        original = backup.read_bytes() if backup and backup.exists() else None
        if original is not None:
            sep = b"" if not original or original.endswith(b"\n") else b"\n"
            if current == original + sep + line.encode():
                _write_in_place(HOSTS_PATH, original)
                return
        # someone else changed the file meanwhile: remove only our line
        kept = [ln for ln in current.decode().splitlines(keepends=True) if ln != line]
        new = "".join(kept).encode()
        if new != current:
            _write_in_place(HOSTS_PATH, new)

    def _restore_ca(self, st: dict[str, Any]) -> None:
        target = st.get("ca_target")
        if not target:
            return
        prior = st.get("ca_prior")
        if prior and Path(prior).exists():
            shutil.copyfile(prior, target)
        else:
            with contextlib.suppress(FileNotFoundError):
                Path(target).unlink()
        for d in reversed(st.get("certs_created_dirs") or []):
            with contextlib.suppress(OSError):
                Path(d).rmdir()  # only if empty

    def _acquire_lock(self, timeout: float | None = None) -> None:
        if self._lock_fd is not None:
            return
        timeout = self.lock_timeout if timeout is None else timeout
        fd = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT, 0o644)
        end = time.monotonic() + timeout
        waited = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
                if time.monotonic() > end:
                    os.close(fd)
                    raise StackError(
                        f"another e2e session holds {LOCK_PATH} (waited {timeout:.0f}s)"
                    ) from None
                if not waited:
                    log(f"waiting for another e2e stack to finish ({LOCK_PATH})")
                    waited = True
                time.sleep(1)
        self._lock_fd = fd

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                os.close(self._lock_fd)
            self._lock_fd = None


# ---------------------------------------------------------------- script mode


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument("--state-dir", default=None, help=f"default: {DEFAULT_STATE_DIR}")
    args = parser.parse_args(argv)
    stack = Stack(args.state_dir)

    if args.action == "down":
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)  # let teardown finish
        try:
            stack.down(from_state_file=True)
        except StackError as exc:
            log(str(exc))
            return 1
        return 0

    # up: undo a half-made stack if interrupted; a finished one stays up after we exit
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _raise_interrupt)
    done = False

    def _last_resort() -> None:
        if not done:
            with contextlib.suppress(Exception):
                stack.down()

    atexit.register(_last_resort)
    try:
        info = stack.up()  # up() itself tears down what it started when it fails
    except StackUnavailable as exc:
        log(f"unavailable: {exc.reason}")
        return 2
    except StackError as exc:
        log(f"failed: {exc}")
        return 1
    except KeyboardInterrupt:
        log("interrupted; tore down what was started")
        return 130
    done = True
    stack._state["owner_pid"] = None  # nobody holds it now: the next `up` may replace it
    stack._save()
    print(json.dumps(info.to_dict(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
