"""What a dry run shows: one ``[dry-run] <step>: ...`` line per step, in the release's order."""

from __future__ import annotations

from collections.abc import Iterable

RELEASE_PLAN = ["check", "build", "smoke-test", "ensure-repo", "login", "tag", "push"]


def plan_lines(lines: Iterable[str]) -> list[str]:
    """The plan lines among a run's output lines."""
    return [line for line in lines if line.startswith("[dry-run] ")]


def planned_steps(plan: Iterable[str]) -> list[str]:
    """The step each plan line is about."""
    return [line.removeprefix("[dry-run] ").split(":", 1)[0] for line in plan]
