"""Work that runs beside the run's main thread, and stops it when it fails.

:class:`Beside` runs one callable on a daemon thread while the ``with`` block runs on the
caller's. When the callable fails, :attr:`Beside.failed` is set (the block hands it to a
command as its ``cancel`` event, so the command is stopped) and the callable's error is the
one the block raises: it is why the block's own work was stopped. The block waits for the
callable before it ends, except on Ctrl-C (or another ``BaseException`` that is not an
``Exception``): then the run ends at once, and the daemon thread is left to the process's exit.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType


class Beside:
    """``with Beside(work, "name") as beside: main(cancel=beside.failed)``."""

    def __init__(self, work: Callable[[], object], name: str) -> None:
        self.failed = threading.Event()  # the work raised: stop what depends on it
        self._done = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(work,), name=name, daemon=True)

    def _run(self, work: Callable[[], object]) -> None:
        try:
            work()
        except BaseException as exc:
            self._error = exc
            self.failed.set()
        finally:
            self._done.set()

    def __enter__(self) -> Beside:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None and not isinstance(exc, Exception):
            return  # Ctrl-C: no wait for an answer that no longer matters
        until_set(self._done)
        if self._error is not None:
            raise self._error  # the block's own failure, if any, was caused by it


def until_set(event: threading.Event) -> None:
    """Wait for ``event`` in short waits: ``Thread.join`` interrupted by Ctrl-C returns at
    once on the next call (Python 3.11 and 3.12) while the thread still runs."""
    while not event.wait(0.1):
        pass
