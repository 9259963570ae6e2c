"""The smoke test: run the built image once, on this machine, before it is pushed.

A released version is final, so an image whose process crashes at start, or whose
HEALTHCHECK never passes, must stop the release before the push. The rule:

* The image is run detached with no network but its own loopback (``--network
  none``: a HEALTHCHECK against 127.0.0.1 still works; no port is published), as a
  container named ``ecr-release-smoke-<random>`` and labelled ``io.ecr-release.smoke=1``.
  Given a daemon on a local socket, :class:`~..outside.docker.Containers` starts and
  probes it through the Engine API instead, with networking disabled and ``none``'s
  /etc/hosts: a loopback-only container without the network hook that costs half the
  container's start on Docker Engine 20.10 to 27 (see :mod:`~..outside.engine`).
* With a HEALTHCHECK, the image passes as soon as its health command exits 0. The
  command is run here (``docker exec``, or its API call) every 0.2 s, not on Docker's schedule,
  whose first check waits a whole ``--interval``; a CMD-SHELL check runs in the
  image's SHELL (``/bin/sh -c`` by default), as Docker runs it. The image fails when
  the command still fails at the timeout (``SMOKE_TIMEOUT``), or when the container
  stops first, whatever its exit code: an image that declares a health check is a
  service.
* Without a HEALTHCHECK (or with ``HEALTHCHECK NONE``), the container must still be
  running after 3 s. One that exits 0 within them passes as a one-shot image (a
  batch job, a command-line tool); one that exits with any other code fails.
* The container is removed in every case: pass, failure, timeout, a docker error,
  Ctrl-C or SIGTERM (SIGTERM is turned into ``KeyboardInterrupt`` for the duration
  when this runs in the main thread; a signal that arrives while the container is
  being removed waits until it is gone). A health command that never returns is
  stopped by removing its container 2 s after the timeout. Every docker command is
  bounded as well (see :class:`~..outside.docker.Docker`): a daemon that stops
  answering is a ``DockerError``, not a hang. Given ``defer`` (a thread pool's
  ``submit``, whose pool the caller joins before it ends), the container of an image that
  passed is removed there, while the release goes on; any other end removes it here.
* A failure is a :class:`~.errors.SmokeTestError` (exit 8): one line naming the
  image and what happened, saying the version was not released, with the container's last 20
  log lines in ``log_tail`` for the task layer to print.

This module only runs the image, through :class:`~..outside.docker.Docker` (whose
image inspection, shared with the rest of the run, gives the HEALTHCHECK and SHELL):
it does not build, tag or push, reads no settings, and leaves to its caller whether to
smoke-test at all (a dry run should not: its runner only shows ``docker run``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import Any

from ..errors import DockerError, SmokeTestError
from ..outside.docker import ANSWER_SECONDS, Docker, last_error_line

log = logging.getLogger("ecr_release")

SMOKE_LABEL = "io.ecr-release.smoke"
POLL_SECONDS = 0.2
SETTLE_SECONDS = 3.0
LOG_TAIL_LINES = 20
# A command that has not returned this long after the timeout (a hung health command)
# is stopped by removing the container under it.
WATCHDOG_GRACE_SECONDS = 2.0
DEFAULT_SHELL = ("/bin/sh", "-c")

HEALTHY = "health check passed"
ONE_SHOT = "exited 0 (one-shot)"

_MAX_LINE = 200

# (seconds, action) -> cancel: calls ``action`` once, from another thread, unless cancelled.
Watchdog = Callable[[float, Callable[[], None]], Callable[[], None]]
_Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


@dataclass(frozen=True)
class SmokeResult:
    """How the image passed (:data:`HEALTHY`, ``"running after 3 s"`` or :data:`ONE_SHOT`)
    and the seconds the step took, the container's removal included unless deferred."""

    image: str
    outcome: str
    seconds: float

    def __str__(self) -> str:
        return f"{self.outcome} ({self.seconds:.1f} s)"


def health_command(test: Sequence[str], shell: Sequence[str] = ()) -> list[str] | None:
    """The argv ``docker exec`` runs for an image's HEALTHCHECK test (``ImageInfo.health_test``,
    e.g. ``("CMD-SHELL", "curl -f localhost")``), or None when the image has no health check
    (no test, ``("NONE",)``, or a test with no command)."""
    if len(test) < 2:
        return None
    kind, rest = test[0], list(test[1:])
    if kind == "CMD":
        return rest
    if kind == "CMD-SHELL":
        # Docker runs CMD-SHELL in the image's SHELL, if it set one.
        return [*(shell or DEFAULT_SHELL), *rest]
    return None


def thread_watchdog(seconds: float, action: Callable[[], None]) -> Callable[[], None]:
    """The real :data:`Watchdog`: a daemon timer thread."""
    timer = threading.Timer(seconds, action)
    timer.daemon = True
    timer.start()
    return timer.cancel


def smoke_test(
    docker: Docker,
    image: str,
    *,
    timeout: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    settle: float = SETTLE_SECONDS,
    poll: float = POLL_SECONDS,
    name: str | None = None,
    watchdog: Watchdog = thread_watchdog,
    defer: Callable[[Callable[[], None]], object] | None = None,
) -> SmokeResult:
    """Run ``image`` once and judge it (see the module's rule); the container is always removed
    (after a pass, through ``defer`` when given).

    Raises :class:`SmokeTestError` when the image fails, :class:`DockerError` when there
    is no such local image or docker itself fails.
    """
    return _SmokeTest(
        docker,
        image,
        name or f"ecr-release-smoke-{os.urandom(6).hex()}",  # 48 random bits; no uuid import
        timeout=timeout,
        settle=settle,
        poll=poll,
        clock=clock,
        sleep=sleep,
        watchdog=watchdog,
        defer=defer,
    ).run()


@dataclass(frozen=True)
class _State:
    running: bool
    exit_code: int
    oom_killed: bool = False
    error: str = ""

    def describe(self) -> str:
        text = f"exited with code {self.exit_code}"
        if self.oom_killed:
            text += " (killed: out of memory)"
        if self.error:
            text += f" ({_clip(self.error)})"
        return text


class _SmokeTest:
    def __init__(
        self,
        docker: Docker,
        image: str,
        name: str,
        *,
        timeout: float,
        settle: float,
        poll: float,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
        watchdog: Watchdog,
        defer: Callable[[Callable[[], None]], object] | None = None,
    ) -> None:
        self.image, self.name, self.docker = image, name, docker
        self._defer = defer
        self.timeout, self.settle, self.poll = timeout, settle, poll
        # The watchdog ends a hung health command first; docker's own limit is the backstop.
        self._watchdog_at = max(timeout, settle) + WATCHDOG_GRACE_SECONDS
        self._exec_limit = self._watchdog_at + ANSWER_SECONDS
        self._clock, self._sleep, self._watchdog = clock, sleep, watchdog
        self._fired = threading.Event()  # the watchdog has started removing the container
        self._fired_done = threading.Event()  # ... and is done: its log tail is in
        self._fired_tail: list[str] = []

    def run(self) -> SmokeResult:
        log.info("==> smoke-test %s", self.image)
        start = self._clock()
        probe = self._probe()
        interrupts = _Interrupts()
        with interrupts:
            cancel: Callable[[], None] | None = None
            passed = False
            try:
                cancel = self._watchdog(self._watchdog_at, self._on_watchdog)
                self._start()
                outcome = self._healthy(probe) if probe is not None else self._settled()
                passed = True
            finally:
                if cancel is not None:
                    cancel()
                if not (passed and self._removed_later()):
                    with interrupts.deferred():
                        self._remove()
        seconds = self._clock() - start
        log.info("smoke-test passed: %s in %.1f s", outcome, seconds)
        return SmokeResult(self.image, outcome, seconds)

    # -- the steps --------------------------------------------------------------------

    def _probe(self) -> list[str] | None:
        """The image's health command (None: it has none); no container exists yet."""
        found = self.docker.inspect(self.image)  # a daemon that is down says so here
        if found is None:
            raise DockerError(
                f"there is no local image {self.image} to smoke-test: run `inv build` first"
            )
        return health_command(found.health_test, found.shell)

    def _start(self) -> None:
        result = self.docker.containers.run_detached(
            self.name, self.image, labels={SMOKE_LABEL: "1"}
        )
        if result.returncode != 0:
            # The image could not be started (its command is missing, say), unless docker
            # itself is the problem.
            self.docker.check_daemon()
            raise self._failure(f"could not start: {_clip(last_error_line(result.output))}")

    def _healthy(self, probe: list[str]) -> str:
        deadline = self._clock() + self.timeout
        while True:
            result = self.docker.containers.exec(self.name, probe, timeout=self._exec_limit)
            if result.returncode == 0:
                return HEALTHY
            if self._fired.is_set():
                raise self._hung("its health check command")
            state = self._state()
            if not state.running:
                raise self._failure(f"{state.describe()} before its health check passed")
            if self._clock() >= deadline:
                said = (
                    f": {_clip(last_error_line(result.output))}"
                    if result.output.strip()
                    else ", no output"
                )
                raise self._failure(
                    f"health check still failing after {self.timeout:g} s "
                    f"(exit {result.returncode}{said})"
                )
            self._sleep(self.poll)

    def _settled(self) -> str:
        until = self._clock() + self.settle
        while True:
            state = self._state()
            if not state.running:
                if state.exit_code == 0 and not state.oom_killed:
                    return ONE_SHOT
                raise self._failure(state.describe())
            now = self._clock()
            if now >= until:
                return f"running after {self.settle:g} s"
            self._sleep(min(self.poll, until - now))

    def _state(self) -> _State:
        result = self.docker.containers.container_state(self.name)
        if self._fired.is_set():
            raise self._hung("docker")
        data = _last_json(result.output) if result.returncode == 0 else None
        if not isinstance(data, dict):
            raise self._failure(
                f"its container could not be inspected: {_clip(last_error_line(result.output))}"
            )
        code = data.get("ExitCode")
        return _State(
            running=data.get("Running") is True,
            exit_code=code if isinstance(code, int) else -1,
            oom_killed=data.get("OOMKilled") is True,
            error=str(data.get("Error") or ""),
        )

    def _removed_later(self) -> bool:
        """Hand the removal of a passed image's container to ``defer``; False: remove it now."""
        if self._defer is None or self._fired.is_set():
            return False
        try:
            self._defer(self._remove)
        except RuntimeError:  # the pool is shutting down (the run is ending)
            return False
        return True

    def _remove(self) -> None:
        try:
            result = self.docker.containers.remove_container(self.name)
        except Exception as exc:  # never hide what stopped the test
            log.warning("could not remove the smoke-test container %s: %s", self.name, exc)
            return
        if result.returncode != 0 and "no such container" not in result.output.lower():
            log.warning(
                "could not remove the smoke-test container %s: %s",
                self.name,
                last_error_line(result.output),
            )

    # -- failures ---------------------------------------------------------------------

    def _failure(self, what: str) -> SmokeTestError:
        """The one-line error, with the container's last log lines (read while it exists)."""
        return SmokeTestError(
            f"smoke test of {self.image} failed: {what}; the version was not released",
            self._fired_tail if self._fired.is_set() else self._log_tail(),
        )

    def _hung(self, what: str) -> SmokeTestError:
        self._fired_done.wait(30)
        return self._failure(
            f"{what} did not return within {self.timeout:g} s (stopped by removing the container)"
        )

    def _log_tail(self) -> list[str]:
        try:
            result = self.docker.containers.logs(self.name, LOG_TAIL_LINES)
        except Exception:  # the tail is a courtesy: the failure itself must get through
            return []
        if result.returncode != 0:
            return []
        lines = [line.rstrip() for line in result.output.splitlines()]
        while lines and not lines[-1]:
            lines.pop()
        return lines[-LOG_TAIL_LINES:]

    def _on_watchdog(self) -> None:
        # Runs on the watchdog's thread, while the main thread waits on a command that does
        # not return: read the logs, then remove the container, which ends that command.
        self._fired.set()
        try:
            self._fired_tail = self._log_tail()
            self._remove()
        finally:
            self._fired_done.set()


class _Interrupts:
    """While in use (main thread only): SIGTERM raises ``KeyboardInterrupt`` as Ctrl-C does;
    inside :meth:`deferred` both signals wait until the block is done, then raise."""

    def __init__(self) -> None:
        self._saved: dict[int, _Handler] = {}
        self._deferring = False
        self._pending: int | None = None

    def __enter__(self) -> _Interrupts:
        if threading.current_thread() is not threading.main_thread():
            return self
        # SIGINT only while Python's default owns it: a handler someone else installed is
        # theirs. SIGTERM unless it is ignored, or handled outside Python (None).
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._saved[signal.SIGINT] = signal.signal(signal.SIGINT, self._handle)
        if signal.getsignal(signal.SIGTERM) not in (None, signal.SIG_IGN):
            self._saved[signal.SIGTERM] = signal.signal(signal.SIGTERM, self._handle)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for signum, handler in self._saved.items():
            signal.signal(signum, handler)
        self._saved.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._deferring:
            self._pending = signum
            return
        raise KeyboardInterrupt(f"signal {signum}")

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False
            pending, self._pending = self._pending, None
            if pending is not None:
                raise KeyboardInterrupt(f"signal {pending}")


def _last_json(output: str) -> object:
    lines = [line for line in output.splitlines() if line.strip()]
    try:
        return json.loads(lines[-1]) if lines else None
    except ValueError:
        return None


def _clip(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _MAX_LINE else line[: _MAX_LINE - 3] + "..."


def plan_smoke_test(image: str, *, timeout: float, **_: object) -> None:
    """A dry run's smoke test: what it would do, as a plan line (nothing is run)."""
    log.info(
        "[dry-run] smoke-test: docker run -d --network none %s until its HEALTHCHECK "
        "passes (or it keeps running 3 s), within %.0f s; then remove it",
        image,
        timeout,
    )
