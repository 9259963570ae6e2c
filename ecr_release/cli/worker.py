"""One service's release in a process of its own: what ``cli/fleet.py`` starts per service.

It reads its instructions as one JSON document on stdin (the project folder, the
service, the task's flags: no secret is among them, and none reaches argv), then runs
exactly what ``inv release --service NAME --json`` runs: stdout holds the release's
JSON document, stderr its progress and its one-line error; the exit code is the
release's. SIGTERM (the fleet's ``--fail-fast``, Ctrl-C at the fleet) stops it as
Ctrl-C does, and so does the fleet's death (it runs in a process group of its own, so
nothing else would tell it). Once its report is printed, a late SIGTERM changes nothing.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time

from invoke.config import Config
from invoke.context import Context
from invoke.exceptions import Exit

from .session import Flags, session


def main() -> int:
    spec = json.loads(sys.stdin.read())
    threading.Thread(target=_stop_when_orphaned, args=(os.getppid(),), daemon=True).start()
    context = Context(Config(overrides={"ecr_release": {"root": spec["root"]}}))
    given = spec["given"]
    flags = Flags(env_file=spec["env_file"], **given)
    try:
        with session(
            context,
            "release",
            flags,
            dry_run=spec["dry_run"],
            json=True,
            service=spec["service"],
        ) as run:
            run.report(run.steps.release(given["version"]))
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # reported: done
    except Exit as exc:
        if exc.message:
            print(exc.message, file=sys.stderr)
        return exc.code
    return 0


def _stop_when_orphaned(parent: int) -> None:
    """SIGTERM to this process once its parent is gone (it was re-parented)."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os.kill(os.getpid(), signal.SIGTERM)


if __name__ == "__main__":
    sys.exit(main())
