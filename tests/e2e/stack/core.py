"""The Stack: brings the local ECR stand-in up, heals it, and takes down only what it started.

It decides the order of things and owns the machine's lock; what it has done lives in
one :class:`~.state.StackState` (``stack.info``), saved to ``<state dir>/stack.json``
as it happens. Making things is ``machine``, ``system_files`` and ``services``.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import ssl
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import services
from .errors import StackError, StackUnavailable
from .machine import (
    BASE_IMAGE,
    ensure_base_image,
    ensure_packages,
    htpasswd_line,
    make_tls,
    remove_rootfs,
)
from .processes import (
    MachineLock,
    free_port,
    is_ours,
    log,
    signals_deferred,
    spawn,
    stop_pid,
    wait_port_free,
)
from .state import StackState
from .system_files import install_ca, install_hosts_line, restore_ca, restore_hosts

ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
DEFAULT_STATE_DIR = Path("/tmp/ecr-e2e-stack")
# One stack per machine (port 443, /etc/hosts): every Stack takes this lock for its lifetime.
LOCK_PATH = Path("/tmp/ecr-e2e-stack.lock")
FAKE_SECRET = "testing"  # moto accepts any credentials


class Stack:
    """Brings the local ECR stand-in up and takes down only what it started.

    ``up()`` returns the stack's :class:`StackState` (also at ``stack.info``, always
    current: restarts update it). ``down()`` is idempotent and safe after a partial ``up``.
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
        self._state: StackState | None = None  # None: nothing of ours to undo
        self._lock = MachineLock(LOCK_PATH)

    @property
    def info(self) -> StackState:
        """The stack's facts and undo record (only while it is up or coming up)."""
        if self._state is None:
            raise StackError("the e2e stack is not up")
        return self._state

    @property
    def default_password(self) -> str:
        return f"{self.account_id}-auth-token"

    # -- up and down -------------------------------------------------------------

    def up(self) -> StackState:
        if os.geteuid() != 0:
            raise StackUnavailable("the e2e stack needs root (dockerd, port 443, /etc/hosts)")
        self._lock.acquire(self.lock_timeout)
        try:
            self._cleanup_stale()
            self.state_dir.mkdir(parents=True, exist_ok=True)
            sd = self.state_dir
            self._state = StackState(
                state_dir=str(sd),
                owner_pid=os.getpid(),
                account_id=self.account_id,
                region=self.region,
                registry_host=self.registry_host,
                base_image=self.base_image,
                registry_storage_dir=str(sd / "registry-data"),
                registry_config_path=str(sd / "registry.yml"),
                registry_log_path=str(sd / "registry.log"),
                registry_password=self.default_password,
                htpasswd_path=str(sd / "htpasswd"),
                ca_path=str(sd / "tls" / "ca.crt"),
            )
            self._state.save()
            self._up(self._state)
        except BaseException:
            try:
                self.down()
            except StackError as exc:
                log(str(exc))
            raise
        return self._state

    def down(self, *, from_state_file: bool = False) -> None:
        """Undo what this Stack started; idempotent, and safe after a partial ``up``.

        With ``from_state_file=True`` (the script's ``down``), undo the stack recorded in
        the state file by another process, unless a running session holds it.
        """
        state = self._state
        if state is None and from_state_file:
            self._lock.acquire(timeout=5.0)
            state = StackState.load(self.state_dir)
        try:
            with signals_deferred():
                if state is not None:
                    self._teardown(state)
        finally:
            self._state = None
            self._lock.release()

    def disown(self) -> None:
        """Leave the stack up with no owner process: the next ``up`` may replace it."""
        self.info.owner_pid = None
        self.info.save()

    # -- faults and healing: the fault tests stop a service, heal() starts it again ------

    def stop_registry(self) -> None:
        stop_pid(self.info.registry_pid, "docker-registry", "registry")
        self.info.registry_pid = None
        self.info.save()

    def stop_moto(self) -> None:
        stop_pid(self.info.moto_pid, "moto", "moto_server")
        self.info.moto_pid = None
        self.info.save()

    def start_registry(self) -> None:
        """Start the registry (no-op when it runs) and wait until it answers."""
        st = self.info
        if is_ours(st.registry_pid, "docker-registry"):
            return
        wait_port_free(services.REGISTRY_PORT)
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        argv = ["docker-registry", "serve", st.registry_config_path]
        st.registry_pid = spawn(argv, Path(st.registry_log_path), env)
        st.save()
        services.wait_registry(st)

    def start_moto(self) -> None:
        """Start moto's server on the stack's port (its state starts empty) and wait for it."""
        st = self.info
        if is_ours(st.moto_pid, "moto"):
            return
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env["MOTO_ACCOUNT_ID"] = self.account_id
        env["ECR_E2E_STACK_DIR"] = st.state_dir  # the registry moto's patched answers read
        # moto's server, with ECR tokens that expire in twelve hours as ECR's do.
        launcher = Path(__file__).with_name("moto_ecr.py")
        argv = [sys.executable, str(launcher), "-H", "127.0.0.1", "-p", str(st.moto_port)]
        st.moto_pid = spawn(argv, Path(st.state_dir) / "moto.log", env)
        st.save()
        services.wait_moto(st)

    def reset(self) -> None:
        """Forget every AWS resource moto holds (the registry's content is kept)."""
        req = urllib.request.Request(f"{self.info.moto_endpoint}/moto-api/reset", method="POST")
        urllib.request.urlopen(req, timeout=10).close()

    def set_registry_password(self, password: str | None = None) -> None:
        """Make the registry accept only ``AWS:<password>`` (None: moto's own token again).

        Restarts the registry so the new htpasswd takes effect.
        """
        password = password if password is not None else self.default_password
        Path(self.info.htpasswd_path).write_text(htpasswd_line(self.info.registry_user, password))
        self.info.registry_password = password
        self.info.save()
        self.stop_registry()
        self.start_registry()

    def heal(self) -> None:
        """Back to nominal after a fault test: moto and registry running, moto's password."""
        if self.info.registry_password != self.default_password:
            self.set_registry_password(None)
        self.start_registry()
        self.start_moto()

    # -- what the tests ask ----------------------------------------------------------

    def registry_tags(self, repo: str) -> list[str]:
        """Tags of ``repo`` in the registry (empty when the repository is unknown)."""
        return services.registry_tags(self.info, repo)

    def registry_manifest_digest(self, repo: str, tag: str) -> str | None:
        """The manifest digest the registry serves for ``repo:tag`` (None when absent)."""
        return services.registry_manifest_digest(self.info, repo, tag)

    def ssl_context(self) -> ssl.SSLContext:
        return services.ssl_context(self.info)

    def cli_env(
        self,
        docker_config: str | os.PathLike[str],
        *,
        secret_access_key: str = FAKE_SECRET,
        home: str | os.PathLike[str] | None = None,
    ) -> dict[str, str]:
        """A small, explicit environment for running the product's CLI against the stack."""
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

    # -- internals -------------------------------------------------------------------

    def _up(self, st: StackState) -> None:
        sd = self.state_dir
        ensure_packages()
        wait_port_free(services.REGISTRY_PORT, deadline=2.0)

        tls_dir = sd / "tls"
        tls_dir.mkdir(exist_ok=True)
        ca, crt, key = make_tls(tls_dir, self.registry_host)
        Path(st.registry_storage_dir).mkdir(exist_ok=True)
        Path(st.htpasswd_path).write_text(htpasswd_line(st.registry_user, st.registry_password))
        services.write_registry_config(st, crt, key)
        Path(st.registry_log_path).write_bytes(b"")
        (sd / "moto.log").write_bytes(b"")
        st.moto_port = free_port()
        st.save()

        # The host name and CA first: a daemon started after this resolves the host at once.
        install_hosts_line(st)
        install_ca(st, ca)
        services.ensure_dockerd(st, self.dockerd_args)
        ensure_base_image(self.base_image, sd)
        self.start_moto()
        self.start_registry()
        services.wait_engine_reaches_registry(st)

    def _cleanup_stale(self) -> None:
        stale = StackState.load(self.state_dir)
        if stale is not None:
            log(f"tearing down a stack left by an earlier run (pid {stale.owner_pid})")
            self._teardown(stale)
        remove_rootfs(self.state_dir / "rootfs")

    def _teardown(self, st: StackState) -> None:
        errors: list[str] = []

        def attempt(what: str, fn: Callable[..., object], *args: Any) -> None:
            try:
                fn(*args)
            except Exception as exc:  # keep undoing the rest
                errors.append(f"{what}: {exc}")

        attempt("stop registry", stop_pid, st.registry_pid, "docker-registry", "registry")
        attempt("stop moto", stop_pid, st.moto_pid, "moto", "moto_server")
        attempt("restore /etc/hosts", restore_hosts, st)
        attempt("remove CA", restore_ca, st)
        if st.dockerd_started:
            attempt("stop dockerd", stop_pid, st.dockerd_pid, "dockerd", "dockerd", 30.0)
        attempt("remove rootfs", remove_rootfs, self.state_dir / "rootfs")
        for name in ("registry-data", "tls"):
            shutil.rmtree(self.state_dir / name, ignore_errors=True)
        for name in ("htpasswd", "registry.yml", "hosts.orig", "certs.d-ca.crt.orig"):
            with contextlib.suppress(FileNotFoundError):
                (self.state_dir / name).unlink()
        if errors:
            # keep the state file so that the next up/down tries again
            raise StackError("teardown incomplete: " + "; ".join(errors))
        StackState.forget(self.state_dir)
