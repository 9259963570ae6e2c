"""``python -m tests.e2e.stack up|down``: the local ECR stand-in by hand (see ``__init__``).

``python -m tests.e2e.stack images`` only makes, as root, the two images the e2e tests build
on when they are missing (the base image and the sandbox's registry image), in the engine
that answers: a non-root user's sandbox tests need them and cannot make them.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import signal
import sys
from types import FrameType

from .core import DEFAULT_STATE_DIR, Stack
from .errors import StackError, StackUnavailable
from .machine import BASE_IMAGE, REGISTRY_IMAGE, ensure_images
from .processes import log
from .services import docker_answers


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.e2e.stack",
        description="A local stand-in for AWS ECR: a real Docker engine, moto's server and a "
        "real registry.",
    )
    parser.add_argument("action", choices=["up", "down", "images"])
    parser.add_argument("--state-dir", default=None, help=f"default: {DEFAULT_STATE_DIR}")
    args = parser.parse_args(argv)
    if args.action == "images":
        return _images()
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
    stack.disown()  # nobody holds it now: the next `up` may replace it
    print(json.dumps(info.to_dict(), indent=2))
    return 0


def _images() -> int:
    if not docker_answers():
        log("no Docker engine answers: start one first (dockerd)")
        return 2
    try:
        ensure_images(BASE_IMAGE, REGISTRY_IMAGE)
    except StackUnavailable as exc:
        log(f"unavailable: {exc.reason}")
        return 2
    except StackError as exc:
        log(f"failed: {exc}")
        return 1
    log(f"images present: {BASE_IMAGE}, {REGISTRY_IMAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
