"""`python -m widget_server`, except that creating a widget named "gated" waits for stdin.

Run as a script by the process tests, it gives them a request that is in
flight (fully received, its handler running) for as long as they need: the
handler logs GATED_LINE, then answers only after a line arrives on stdin
(`ServerProcess.send_line`). A fast handler would race the test's SIGTERM.
"""

from __future__ import annotations

import logging
import sys

import pytest

from widget_server import __main__ as entry
from widget_server.app import WidgetServer, make_server
from widget_server.store import Widget, WidgetStore

GATED_NAME = "gated"
GATED_LINE = "gated request: waiting for a line on stdin"

log = logging.getLogger("widget_server.gated")


class GatedStore(WidgetStore):
    """A store whose add() of a GATED_NAME widget first waits for a line on stdin."""

    def add(self, name: str, quantity: int) -> Widget:
        if name == GATED_NAME:
            log.info(GATED_LINE)
            sys.stdin.readline()
        return super().add(name, quantity)


def make_gated_server(
    host: str, port: int, *, store: WidgetStore | None = None, version: str | None = None
) -> WidgetServer:
    """make_server (whose signature it keeps, as it replaces it) with a GatedStore."""
    if store is not None:
        raise TypeError("the gated server always makes its own store")
    return make_server(host, port, store=GatedStore(), version=version)


if __name__ == "__main__":
    # The real entry point (signal handling, logging, exit status) around the gated server.
    # setattr raises if __main__ no longer has a make_server to replace.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(entry, "make_server", make_gated_server)
        sys.exit(entry.main())
