"""widget-server: a small JSON HTTP API for widgets, built on the standard library only.

This is the service that the release suite packages as the ``widget-server``
image. Run it with ``python -m widget_server``; see ``widget_server.__main__``
for its configuration and ``widget_server.app`` for the API.
"""

from widget_server.app import WidgetServer, make_server
from widget_server.store import Widget, WidgetStore

__all__ = ["Widget", "WidgetServer", "WidgetStore", "make_server"]
