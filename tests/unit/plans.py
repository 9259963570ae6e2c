"""What a dry run shows: one ``[dry-run] <step>: ...`` line per step, in the release's order.

The candidate's push and the smoke test run at the same time: their two plan lines may
come in either order, so they are compared in one (push first).
"""

from __future__ import annotations

from collections.abc import Iterable

RELEASE_PLAN = [
    "check",
    "build",
    "ensure-repo",
    "login",
    "tag",
    "push",
    "smoke-test",
    "scan",
    "version",
    "candidate",
    "tag",  # the local image gets its version's remote name
    "rmi",  # and loses its local candidate tag
]
AT_THE_SAME_TIME = ("push", "smoke-test")


def plan_lines(lines: Iterable[str]) -> list[str]:
    """The plan lines among a run's output lines."""
    return [line for line in lines if line.startswith("[dry-run] ")]


def planned_steps(plan: Iterable[str]) -> list[str]:
    """The step each plan line is about, the steps that run at the same time in one order."""
    steps = [line.removeprefix("[dry-run] ").split(":", 1)[0] for line in plan]
    for index in range(len(steps) - 1):
        if (steps[index], steps[index + 1]) == AT_THE_SAME_TIME[::-1]:
            steps[index], steps[index + 1] = AT_THE_SAME_TIME
    return steps


def step_line(plan: Iterable[str], step: str) -> str:
    """The plan line of one step."""
    return next(line for line in plan if line.removeprefix("[dry-run] ").startswith(f"{step}:"))
