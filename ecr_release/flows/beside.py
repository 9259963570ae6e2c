"""Work that runs beside the run's main thread, and stops it when it fails.

:func:`beside` runs one callable on a daemon thread while the ``with`` block runs on the
caller's. When the callable fails, the event the block is given is set (the block hands it
to a command as its ``cancel`` event, so the command is stopped) and the callable's error
is the one the block raises: it is why the block's own work was stopped. The block waits
for the callable before it ends, except on Ctrl-C (or another ``BaseException`` that is not
an ``Exception``): then the run ends at once, and the daemon thread is left to the
process's exit.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def beside(work: Callable[[], object], name: str) -> Iterator[threading.Event]:
    """``with beside(work, "name") as failed: main(cancel=failed)``."""
    failed, done = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:
            errors.append(exc)
            failed.set()
        finally:
            done.set()

    threading.Thread(target=run, name=name, daemon=True).start()
    try:
        yield failed
    except Exception:  # the block's own failure, perhaps because the work stopped it
        until_set(done)
        if errors:
            raise errors[0] from None
        raise
    until_set(done)
    if errors:
        raise errors[0]


def until_set(event: threading.Event) -> None:
    """Wait for ``event`` in short waits: ``Thread.join`` interrupted by Ctrl-C returns at
    once on the next call (Python 3.11 and 3.12) while the thread still runs."""
    while not event.wait(0.1):
        pass
