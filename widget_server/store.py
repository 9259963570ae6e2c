"""In-memory widget store, safe to use from many request threads at once.

Nothing is persisted: the store lives and dies with the process, which is what
a stateless demo service shipped by the release suite needs. Every public
method takes one lock for its whole read-modify-write, so concurrent requests
can neither hand out the same id twice nor observe a half-applied change.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Widget:
    """One stored widget. Frozen so a value handed to a caller cannot change under it."""

    id: int
    name: str
    quantity: int

    def to_dict(self) -> dict[str, object]:
        """The JSON representation used by the API."""
        return {"id": self.id, "name": self.name, "quantity": self.quantity}


class WidgetStore:
    """Widgets keyed by id; ids start at 1 and are never reused."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._widgets: dict[int, Widget] = {}
        # Ids are not reused after a delete, so a client still holding an old
        # Location URL gets a 404 rather than somebody else's widget.
        self._last_id = 0

    def list_widgets(self) -> list[Widget]:
        """A snapshot of every widget, ordered by id."""
        with self._lock:
            widgets = list(self._widgets.values())
        return sorted(widgets, key=lambda widget: widget.id)

    def add(self, name: str, quantity: int) -> Widget:
        """Store a new widget under the next id and return it."""
        with self._lock:
            self._last_id += 1
            widget = Widget(id=self._last_id, name=name, quantity=quantity)
            self._widgets[widget.id] = widget
        return widget

    def get(self, widget_id: int) -> Widget | None:
        """The widget with this id, or None."""
        with self._lock:
            return self._widgets.get(widget_id)

    def replace(self, widget_id: int, name: str, quantity: int) -> Widget | None:
        """Replace every field of an existing widget; None if there is no such widget."""
        with self._lock:
            if widget_id not in self._widgets:
                return None
            widget = Widget(id=widget_id, name=name, quantity=quantity)
            self._widgets[widget_id] = widget
        return widget

    def delete(self, widget_id: int) -> bool:
        """Remove a widget; False if there was no such widget."""
        with self._lock:
            return self._widgets.pop(widget_id, None) is not None

    def __len__(self) -> int:
        with self._lock:
            return len(self._widgets)
