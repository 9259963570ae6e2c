"""One service's release in a process of its own: what ``cli/fleet.py`` starts per service.

It reads its instructions as one JSON document on stdin (the project folder, the
service, the task's flags: no secret is among them, and none reaches argv), then runs
exactly what ``inv release --service NAME --json`` runs: stdout holds the release's
JSON document, stderr its progress and its one-line error; the exit code is the
release's. SIGTERM (the fleet's ``--fail-fast``, a cancelled CI job) stops it as
Ctrl-C does.
"""

from __future__ import annotations

import json
import sys

from invoke.config import Config
from invoke.context import Context
from invoke.exceptions import Exit

from .session import Flags, session


def main() -> int:
    spec = json.loads(sys.stdin.read())
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
    except Exit as exc:
        if exc.message:
            print(exc.message, file=sys.stderr)
        return exc.code
    return 0


if __name__ == "__main__":
    sys.exit(main())
