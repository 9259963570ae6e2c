"""Process control for the stack: run and spawn commands, check and stop pids, ports, the lock.

Generic over what runs: which services there are and how each is started live in
``services``. Services run in their own session, so a Ctrl-C in the terminal does not
reach them, and a pid is only ever stopped while its command line still names the
program we started (pids get reused).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import StackError

STOP_DEADLINE = 20.0


def log(msg: str) -> None:
    print(f"[e2e-stack] {msg}", file=sys.stderr, flush=True)


def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    return subprocess.run(argv, check=False, **kwargs)


def last_line(text: str) -> str:
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "(no output)"


def tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])


# ---------------------------------------------------------------- pids


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # state is the field after the ")" closing the command name; Z = zombie
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def is_ours(pid: int | None, marker: str) -> bool:
    """The pid is alive and still the program we started (guards against pid reuse)."""
    if not pid or not alive(pid):
        return False
    return any(marker in part for part in _cmdline(pid))


def reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _signal(pid: int, sig: int) -> None:
    """Signal the process group the pid leads (we start services in their own session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def stop_pid(pid: int | None, marker: str, name: str, deadline: float = STOP_DEADLINE) -> None:
    if pid is None or not is_ours(pid, marker):
        return
    log(f"stopping {name} (pid {pid})")
    _signal(pid, signal.SIGTERM)
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        reap(pid)
        if not alive(pid):
            reap(pid)
            return
        time.sleep(0.1)
    log(f"{name} (pid {pid}) ignored SIGTERM; killing it")
    _signal(pid, signal.SIGKILL)
    end = time.monotonic() + 5
    while time.monotonic() < end and alive(pid):
        reap(pid)
        time.sleep(0.1)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
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


def spawn(argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> int:
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


# ---------------------------------------------------------------- ports


def free_port() -> int:
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


def wait_port_free(port: int, deadline: float = 10.0) -> None:
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
    out = run(["ss", "-Hltnp", f"sport = :{port}"]).stdout.strip()
    return " ; ".join(" ".join(line.split()) for line in out.splitlines()) or "unknown process"


# ---------------------------------------------------------------- the machine's lock


class MachineLock:
    """An exclusive ``flock`` on a file, waited for with a deadline; held until released."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, timeout: float) -> None:
        if self._fd is not None:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
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
                        f"another e2e session holds {self.path} (waited {timeout:.0f}s)"
                    ) from None
                if not waited:
                    log(f"waiting for another e2e stack to finish ({self.path})")
                    waited = True
                time.sleep(1)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
                os.close(self._fd)
            self._fd = None
