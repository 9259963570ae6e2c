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

    saved = {}
    for signum in HELD:
        handler = signal.getsignal(signum)
        if callable(handler):  # Python's own (Ctrl-C's default, or the task's): ours for now
            saved[signum] = signal.signal(signum, note)
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
    if arrived:
        raise KeyboardInterrupt(f"signal {arrived[0]}")
