"""The stack's two failures: it broke (a test failure), or this machine cannot host it (a skip)."""

from __future__ import annotations


class StackError(RuntimeError):
    """The stack could not be brought up or operated (a real failure)."""


class StackUnavailable(StackError):
    """This machine cannot host the stack (not root, no Docker engine can be started)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
