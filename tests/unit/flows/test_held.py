"""Signals held over steps that must not be parted (``flows.held``)."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator

import pytest

from ecr_release.flows.held import signals_held


@pytest.fixture
def handlers() -> Iterator[None]:
    """Ctrl-C raises KeyboardInterrupt and SIGTERM is a task's own handler, as in a run."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    saved = {
        signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler),
        signal.SIGTERM: signal.signal(signal.SIGTERM, interrupt),
    }
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_waits_until_the_block_is_done(handlers: None, signum: int) -> None:
    done: list[str] = []
    with pytest.raises(KeyboardInterrupt, match=f"signal {signum}"), signals_held():
        os.kill(os.getpid(), signum)
        done.append("first")
        os.kill(os.getpid(), signal.SIGINT)  # a second one changes nothing
        done.append("second")
    assert done == ["first", "second"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_block_that_fails_ends_with_its_own_error(handlers: None) -> None:
    with pytest.raises(ValueError, match="the put failed"), signals_held():
        os.kill(os.getpid(), signal.SIGINT)
        raise ValueError("the put failed")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_without_a_signal_nothing_is_raised(handlers: None) -> None:
    with signals_held():
        pass
    assert callable(signal.getsignal(signal.SIGTERM))


def test_an_ignored_signal_stays_ignored(handlers: None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with signals_held():
        os.kill(os.getpid(), signal.SIGTERM)  # ignored, as before: nothing is raised after
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN


def test_off_the_main_thread_nothing_is_changed(handlers: None) -> None:
    seen: list[object] = []

    def work() -> None:
        with signals_held():
            seen.append(signal.getsignal(signal.SIGINT))

    worker = threading.Thread(target=work)
    worker.start()
    worker.join()
    assert seen == [signal.default_int_handler]


def test_every_handler_is_put_back_even_when_one_raises_meanwhile(
    handlers: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SIGINT comes just as its handler is put back (which raises at once): SIGTERM's must
    # still be put back, not left as the hold's (which would drop every later SIGTERM).
    real = signal.signal
    calls: list[int] = []

    def put(signum: int, handler: object) -> object:
        calls.append(signum)
        previous = real(signum, handler)  # type: ignore[arg-type]
        if signum == signal.SIGINT and calls.count(signal.SIGINT) == 2:
            raise KeyboardInterrupt("signal 2, just then")
        return previous

    monkeypatch.setattr("ecr_release.flows.held.signal.signal", put)
    task_handler = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt, match="just then"), signals_held():
        pass
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.getsignal(signal.SIGTERM) is task_handler
