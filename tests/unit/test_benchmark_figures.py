"""The benchmark's own arithmetic: the time a release spends outside its steps."""

from __future__ import annotations

import json

import pytest

from benchmarks.compare import OUTSIDE, Suite, parse_summary, steps_wall


def test_a_step_that_ran_during_another_is_not_counted_twice() -> None:
    # The smoke test runs during the gates: the steps' wall time is the JSON's total.
    document = {
        "steps": {"check": 0.05, "build": 0.6, "gates": 0.75, "smoke-test": 0.55},
        "total_seconds": 1.4,
        "already_released": False,
    }
    stdout = json.dumps(document)
    steps, already = parse_summary(stdout)
    assert steps["smoke-test"] == 0.55 and not already
    assert steps_wall(stdout) == 1.4


def test_without_a_json_total_the_steps_are_summed() -> None:
    assert steps_wall("  steps:  check 0.1s, build 0.5s (total 0.6s)") is None
    assert steps_wall(json.dumps({"steps": {}})) is None
    assert steps_wall(json.dumps({"total_seconds": "1"})) is None


class _Done:
    returncode = 0
    stderr = ""
    stdout = json.dumps(
        {"steps": {"build": 0.5, "gates": 0.7, "smoke-test": 0.5}, "total_seconds": 1.2}
    )


def test_the_suite_s_time_outside_its_steps_uses_the_wall_total(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    suite = Suite.__new__(Suite)
    monkeypatch.setattr(Suite, "inv", lambda self, *args, env: _Done())
    ticks = iter([10.0, 11.5])
    monkeypatch.setattr("benchmarks.compare.time.perf_counter", lambda: next(ticks))
    elapsed, steps, _ = suite.release("v1")
    assert elapsed == 1.5
    assert round(steps[OUTSIDE], 3) == 0.3  # not 1.5 - 1.7, clipped to 0
