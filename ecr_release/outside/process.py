"""Running a command: the one subprocess runner, with time limits.

:class:`SubprocessRunner` runs an argument list (never a shell string) with optional
standard input (where secrets go: never an argument), captures stdout and stderr
together, can echo the output line by line as it comes, and can stop the command at
two limits: ``timeout`` (seconds in all) and ``idle`` (seconds without a byte of
output). A command stopped at a limit, or interrupted (Ctrl-C), is killed with every
process it started (its own process group, SIGKILL); a stopped one returns
:data:`TIMED_OUT` with ``Result.stopped`` saying which limit, so the caller can tell
"no answer" from a failure and word its own error.

:class:`Runner` is the interface the rest of the suite depends on (the Docker CLI
wrapper, the doctor); tests hand in fakes that record argument lists. This module
knows nothing of docker's commands or messages, except that a missing binary is a
:class:`~ecr_release.errors.DockerError`: docker is the only program the suite runs.
"""

from __future__ import annotations

import codecs
import contextlib
import io
import os
import select
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Protocol, TextIO

from ..errors import DockerError

# The exit code of a command stopped at a limit (as coreutils' `timeout` returns).
TIMED_OUT = 124
_READ = 65536
# How often a command that may be cancelled looks at its cancel event (seconds).
_CANCEL_POLL = 0.1
# A non-blocking write to a pipe of up to PIPE_BUF bytes goes in whole or not at all.
_PIPE_CHUNK = select.PIPE_BUF

# Held while this process's environment is changed for a moment (``ecr.open_session``
# shows botocore .env's AWS_* variables while a session is made, on whichever thread
# makes it) and while a command's environment is read: a command started on another
# thread meanwhile would otherwise inherit .env's keys.
ENVIRON_LOCK = threading.RLock()


def inherited_environ() -> dict[str, str]:
    """This process's own environment, never read while a session's overlay is on: what
    every command we start is given (the runner's, and git's)."""
    with ENVIRON_LOCK:
        return dict(os.environ)


@dataclass(frozen=True)
class Result:
    """What a finished command returned. ``output`` is stdout and stderr together.

    ``stopped`` is empty unless the runner stopped the command at a limit; then it says
    which, in words ("gave no answer within 10 s", "printed nothing for 600 s"), the
    return code is :data:`TIMED_OUT` and the output ends with a line saying so.
    """

    returncode: int
    output: str
    stopped: str = ""
    # Which limit stopped it: "timeout" or "idle" (empty when none did).
    limit: str = ""

    @property
    def timed_out(self) -> bool:
        return bool(self.stopped)


class Runner(Protocol):
    """Runs one argument list. ``input`` goes on stdin; ``stream`` echoes the output to the
    user as it comes; ``timeout`` bounds the whole run and ``idle`` the silence between two
    pieces of output, in seconds (None: no limit); setting ``cancel`` (from another
    thread) stops it, as a limit does, with ``limit`` "cancel"."""

    def __call__(
        self,
        args: Sequence[str],
        *,
        input: str | None = None,
        stream: bool = False,
        timeout: float | None = None,
        idle: float | None = None,
        cancel: threading.Event | None = None,
    ) -> Result: ...


class SubprocessRunner:
    """The real runner.

    ``out`` is where streamed output goes (stdout when None, looked up at each call).
    ``timeout``, when given, caps every command this runner runs (the tighter of it and a
    call's own ``timeout`` applies): the doctor bounds everything this way. ``env`` is the
    commands' environment (this process's when None).
    """

    def __init__(
        self,
        out: TextIO | None = None,
        *,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self._out = out
        self._timeout = timeout
        self._env = dict(env) if env is not None else None

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
        args = list(args)
        limit = _tightest(self._timeout, timeout)
        try:
            proc = subprocess.Popen(
                args,
                stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=self._env if self._env is not None else inherited_environ(),
                start_new_session=True,  # its own process group: killed as a whole
            )
        except FileNotFoundError as exc:
            raise DockerError(
                f"the {args[0]!r} command was not found: install Docker (the docker CLI) "
                "and make sure it is on PATH"
            ) from exc
        run = _Run(proc, (self._out or sys.stdout) if stream else None, cancel)
        try:
            which, stopped = run.communicate(input, limit, idle)
        except BaseException:  # Ctrl-C (or SIGTERM made one) must not leave docker running
            _kill_group(proc)
            raise
        finally:
            run.close()
        if stopped:
            _kill_group(proc)
            output = run.output()
            if output and not output.endswith("\n"):
                output += "\n"
            output += f"{_command_words(args)} {stopped}\n"
            return Result(TIMED_OUT, output, stopped, which)
        return Result(proc.returncode, run.output())


class _Run:
    """One command's pipes: stdin written and stdout read from one thread, with
    ``selectors``, so a chatty command never blocks on a full pipe and the limits are
    checked between reads. Streamed output is written whole lines at a time."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        out: TextIO | None,
        cancel: threading.Event | None = None,
    ) -> None:
        self._proc, self._out, self._clock = proc, out, time.monotonic
        self._cancel = cancel
        self._decoder = io.IncrementalNewlineDecoder(
            codecs.getincrementaldecoder("utf-8")(errors="replace"), translate=True
        )
        self._chunks: list[str] = []
        self._partial = ""  # a streamed line not yet ended

    def output(self) -> str:
        return "".join(self._chunks)

    def communicate(
        self, input: str | None, timeout: float | None, idle: float | None
    ) -> tuple[str, str]:
        """Feed ``input``, read to the end, wait for the exit; ("", "") when it finished, else
        the limit that stopped it and what happened, in words."""
        proc = self._proc
        assert proc.stdout is not None
        start = last = self._clock()
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            pending = (input or "").encode()
            if proc.stdin is not None:
                if pending:
                    os.set_blocking(proc.stdin.fileno(), False)
                    selector.register(proc.stdin, selectors.EVENT_WRITE)
                else:
                    _close(proc.stdin)
            while selector.get_map():
                now = self._clock()
                wait, which = _next_limit(now, start, last, timeout, idle)
                if wait is not None and wait <= 0:
                    return which, self._stopped(which, timeout, idle)
                if self._cancel is not None:
                    if self._cancel.is_set():
                        return "cancel", self._stopped("cancel", timeout, idle)
                    wait = _CANCEL_POLL if wait is None else min(wait, _CANCEL_POLL)
                for key, _ in selector.select(wait):
                    if key.fileobj is proc.stdin:
                        pending = self._feed(pending)
                        if not pending:
                            selector.unregister(proc.stdin)
                            assert proc.stdin is not None
                            _close(proc.stdin)
                        continue
                    data = os.read(proc.stdout.fileno(), _READ)
                    if data:
                        last = self._clock()
                        self._take(self._decoder.decode(data))
                    else:
                        selector.unregister(proc.stdout)
                        self._take(self._decoder.decode(b"", final=True), final=True)
        # The output has ended; the process may still be on its way out.
        wait, which = _next_limit(self._clock(), start, last, timeout, idle)
        try:
            proc.wait(None if wait is None else max(wait, 0.0))
        except subprocess.TimeoutExpired:
            return which, self._stopped(which, timeout, idle)
        return "", ""

    def _feed(self, pending: bytes) -> bytes:
        proc = self._proc
        assert proc.stdin is not None
        try:
            written = os.write(proc.stdin.fileno(), pending[:_PIPE_CHUNK])
        except BlockingIOError:
            return pending
        except BrokenPipeError:  # it stopped reading: what it did not read, it did not need
            return b""
        return pending[written:]

    def _take(self, text: str, *, final: bool = False) -> None:
        if text:
            self._chunks.append(text)
        if self._out is None:
            return
        self._partial += text
        cut = len(self._partial) if final else self._partial.rfind("\n") + 1
        if cut:
            self._out.write(self._partial[:cut])
            self._out.flush()
            self._partial = self._partial[cut:]

    def _stopped(self, which: str, timeout: float | None, idle: float | None) -> str:
        if self._out is not None and self._partial:
            # The line it was printing, ended, so the error that follows starts a line.
            self._out.write(self._partial + "\n")
            self._out.flush()
            self._partial = ""
        if which == "cancel":
            return "was cancelled"
        if which == "idle":
            return f"printed nothing for {idle:g} s"
        if self._chunks:
            return f"did not finish within {timeout:g} s"
        return f"gave no answer within {timeout:g} s"

    def close(self) -> None:
        for pipe in (self._proc.stdin, self._proc.stdout):
            if pipe is not None:
                _close(pipe)


def _next_limit(
    now: float, start: float, last: float, timeout: float | None, idle: float | None
) -> tuple[float | None, str]:
    """Seconds until the nearest limit, and which one it is (None, "": no limit)."""
    limits = []
    if timeout is not None:
        limits.append((start + timeout - now, "timeout"))
    if idle is not None:
        limits.append((last + idle - now, "idle"))
    if not limits:
        return None, ""
    return min(limits)


def _tightest(*limits: float | None) -> float | None:
    given = [limit for limit in limits if limit is not None]
    return min(given) if given else None


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the command's process group (it leads its own session), then reap it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    proc.wait()


def _close(pipe: IO[bytes]) -> None:
    with contextlib.suppress(OSError):
        pipe.close()


def _command_words(args: Sequence[str]) -> str:
    """How a message names a command: the program and its first words before an option
    (``docker image inspect``, ``docker-credential-pass get``)."""
    words = [os.path.basename(args[0])]
    for arg in args[1:3]:
        if arg.startswith("-"):
            break
        words.append(arg)
    return " ".join(words)
