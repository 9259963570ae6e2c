"""Signals held over a few steps that must not be parted.

:func:`signals_held` makes Ctrl-C (SIGINT), SIGTERM and SIGHUP wait while its block runs:
the first one that arrives is noted, and raised as ``KeyboardInterrupt`` once the block has
ended normally (a block that raised ends with its own error; the signal then changes
nothing). Only in the main thread, where Python's signal handlers run; a signal whose
handler is not Python's own (ignored, or left to the system) is left alone. Used where
being stopped in the middle would leave something wrong behind: the version tag put, but
the candidate tag still on the released image.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

HELD = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """``with signals_held(): a(); b()``: stopped by a signal after both, not between."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []

    def note(signum: int, frame: FrameType | None) -> None:
        arrived.append(signum)

    # Python's own handlers (Ctrl-C's default, or the task's) are ours for now. All are read
    # first, so that a signal arriving while they are swapped leaves none of ours behind.
    saved = {signum: handler for signum in HELD if callable(handler := signal.getsignal(signum))}
    try:
        for signum in saved:
            signal.signal(signum, note)
        yield
    finally:
        _restore(saved)
    if arrived:
        raise KeyboardInterrupt(f"signal {arrived[0]}")


def _restore(saved: dict[signal.Signals, Any]) -> None:
    """Every handler put back, even when one put back already raises meanwhile (its signal
    came just then): that one is raised once all are back."""
    raised: BaseException | None = None
    for signum, handler in saved.items():
        while True:
            try:
                signal.signal(signum, handler)
                break
            except KeyboardInterrupt as exc:
                raised = exc
    if raised is not None:
        raise raised
