"""Several services at once: the fleet runs a process per service (here a fake worker, a
small Python script that does what its spec says), at most --jobs at a time, passes
their lines on whole and prefixed, and aggregates their results."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ecr_release.cli.fleet import Child, Fleet, Outcome, as_json, parse_jobs, table, worst
from ecr_release.errors import SettingsError

# A fake worker: reads its spec, records when it ran, prints lines (a line may be written
# in two pieces), sleeps, prints its JSON document and exits with the spec's code. SIGTERM
# makes it exit 130, as the real worker does (its session turns SIGTERM into Ctrl-C).
FAKE = r"""
import json, os, signal, sys, time
spec = json.loads(sys.stdin.read())
signal.signal(signal.SIGTERM, lambda *a: (print("stopped", file=sys.stderr, flush=True),
                                          os._exit(130)))
with open(spec["log"], "a") as log:
    log.write(f"start {spec['service']} {time.monotonic()}\n")
for i in range(spec.get("lines", 0)):
    sys.stderr.write(f"{spec['service']}-{i} ")
    sys.stderr.flush()
    time.sleep(0.001)
    sys.stderr.write("whole\n")
    sys.stderr.flush()
sys.stderr.write(f"github={os.environ.get('GITHUB_OUTPUT', '-')}\n")
time.sleep(spec.get("sleep", 0))
with open(spec["log"], "a") as log:
    log.write(f"end {spec['service']} {time.monotonic()}\n")
if spec.get("document", True):
    ok = spec["code"] == 0
    doc = {"ok": ok, "digest": "sha256:" + "ab" * 32, "image": "h/" + spec["service"] + ":v1"}
    if not ok:
        doc = {"ok": False, "error": "smoke test failed", "exit_code": spec["code"]}
    print(json.dumps(doc))
sys.exit(spec["code"])
"""


def child(tmp_path: Path, service: str, code: int = 0, **spec: Any) -> Child:
    return Child(service, {"service": service, "code": code, "log": str(tmp_path / "log"), **spec})


def fleet(jobs: int, out: io.StringIO, **options: Any) -> Fleet:
    return Fleet(
        jobs,
        out=out,
        command=[sys.executable, "-c", FAKE],
        environ={"PATH": "/usr/bin:/bin", "GITHUB_OUTPUT": "/nowhere"},
        **options,
    )


def overlap(log: Path) -> int:
    """The most children that ran at the same time, from their start and end marks."""
    events = []
    for line in log.read_text().splitlines():
        what, _, moment = line.split()
        events.append((float(moment), 1 if what == "start" else -1))
    running = most = 0
    for _, change in sorted(events):
        running += change
        most = max(most, running)
    return most


def test_lines_are_passed_on_whole_and_prefixed_with_the_services_name(tmp_path: Path) -> None:
    out = io.StringIO()
    outcomes = fleet(2, out).run(
        [child(tmp_path, "api", lines=200), child(tmp_path, "worker", lines=200)]
    )

    assert [o.exit_code for o in outcomes] == [0, 0]
    lines = out.getvalue().splitlines()
    progress = [line for line in lines if "whole" in line]
    assert len(progress) == 400
    for line in progress:  # never two services in one line, never half a line
        assert re.fullmatch(r"(api    \| api|worker \| worker)-\d+ whole", line), line
    # The children write no GitHub files: the fleet writes one set for all.
    assert "api    | github=-" in lines
    assert "worker | github=-" in lines


def test_at_most_jobs_children_run_at_once_and_every_one_runs(tmp_path: Path) -> None:
    names = ["a", "b", "c", "d", "e"]
    outcomes = fleet(2, io.StringIO()).run([child(tmp_path, n, sleep=0.3) for n in names])

    assert [o.service for o in outcomes] == names
    assert all(o.ok for o in outcomes)
    assert overlap(tmp_path / "log") == 2
    assert all(o.seconds >= 0.3 for o in outcomes)


def test_by_default_a_failure_stops_nothing_else_and_the_worst_code_wins(tmp_path: Path) -> None:
    children = [child(tmp_path, "api", 3), child(tmp_path, "web", 0), child(tmp_path, "job", 8)]
    outcomes = fleet(1, io.StringIO()).run(children)

    assert [o.exit_code for o in outcomes] == [3, 0, 8]
    assert worst(outcomes) == 8
    assert outcomes[2].error == "smoke test failed"
    document = as_json(outcomes, "v1")
    assert document["ok"] is False
    assert document["exit_code"] == 8
    assert [s["service"] for s in document["services"]] == ["api", "web", "job"]
    assert document["services"][1]["image"] == "h/web:v1"
    assert document["services"][2]["result"] == "failed (exit 8)"


def test_fail_fast_stops_the_running_and_never_starts_the_waiting(tmp_path: Path) -> None:
    out = io.StringIO()
    start = time.monotonic()
    outcomes = fleet(2, out, fail_fast=True).run(
        [
            child(tmp_path, "slow", sleep=30),
            child(tmp_path, "bad", 8, sleep=0.5),  # after slow has started
            child(tmp_path, "later", sleep=30),
        ]
    )

    assert time.monotonic() - start < 15
    slow, bad, later = outcomes
    assert (bad.exit_code, bad.cancelled) == (8, False)
    assert (slow.exit_code, slow.cancelled) == (130, True)
    assert (later.exit_code, later.cancelled) == (None, True)
    assert "slow  | stopped" in out.getvalue()
    assert worst(outcomes) == 8  # the cause, not the stops it caused
    text = table(outcomes, {"slow": "r/slow", "bad": "r/bad", "later": "r/later"})
    assert "stopped (--fail-fast)" in text
    assert "not started (--fail-fast)" in text
    assert "  bad: smoke test failed" in text
    assert "0 of 3 services done" in text


def test_a_child_with_no_document_is_a_failure_that_says_so(tmp_path: Path) -> None:
    (outcome,) = fleet(1, io.StringIO()).run([child(tmp_path, "api", 1, document=False)])

    assert outcome.document is None
    assert outcome.error == "ended without a result (exit 1)"
    assert worst([outcome]) == 1


def test_the_table_has_a_row_per_service_and_says_what_each_did() -> None:
    doc = {"ok": True, "digest": "sha256:" + "c" * 64, "already_released": True}
    outcomes = [
        Outcome("api", 0, {"ok": True, "digest": "sha256:" + "d" * 64}, 12.34),
        Outcome("worker", 0, doc, 0.4),
    ]

    lines = table(outcomes, {"api": "shop/api", "worker": "shop/worker"}).splitlines()
    assert lines[0].split() == ["service", "repository", "result", "digest", "time"]
    assert lines[1].split()[:2] == ["api", "shop/api"]
    assert "released and verified" in lines[1] and "12.3s" in lines[1]
    assert "already released" in lines[2]
    assert lines[-1] == "2 of 2 services done"
    assert worst(outcomes) == 0


def test_an_interrupt_counts_as_130_when_nothing_failed() -> None:
    assert worst([Outcome("a", 0), Outcome("b", 130, cancelled=True)]) == 130


@pytest.mark.parametrize("given", ["0", "33", "two", "-1"])
def test_jobs_is_a_whole_number_from_1_to_32(given: str) -> None:
    with pytest.raises(SettingsError, match="--jobs"):
        parse_jobs(given)


def test_jobs_defaults_to_the_cpus_at_most_4() -> None:
    assert 1 <= parse_jobs(None) <= 4
    assert parse_jobs("7") == 7


def test_the_worker_answers_a_bad_setting_with_one_json_document_and_its_code(
    tmp_path: Path,
) -> None:
    (tmp_path / "api").mkdir()
    (tmp_path / "api" / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "pyproject.toml").write_text('[tool.ecr-release.services.api]\ncontext = "api"\n')
    spec = {
        "root": str(tmp_path),
        "service": "api",
        "given": {"version": "v1", "repository": None, "region": None, "profile": None},
        "env_file": None,
        "dry_run": False,
    }
    done = subprocess.run(
        [sys.executable, "-m", "ecr_release.cli.worker"],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "AWS_CONFIG_FILE": "/nonexistent"},
        timeout=60,
    )

    assert done.returncode == 2, done.stderr
    assert json.loads(done.stdout) == {
        "ok": False,
        "error": done.stderr.strip().splitlines()[-1].removeprefix("error: "),
        "exit_code": 2,
    }
    assert "service api: AWS_REGION is not set" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_plan_is_a_matrix_of_the_services_not_released_from_the_same_inputs() -> None:
    from ecr_release.cli.fleet import matrix

    outcomes = [
        Outcome("api", 0, {"ok": True, "dry_run": True, "already_released": False}),
        Outcome("worker", 0, {"ok": True, "dry_run": True, "already_released": True}),
        Outcome("jobs", 0, {"ok": True, "dry_run": True, "already_released": False}),
    ]
    repositories = {"api": "shop/api", "worker": "shop/worker", "jobs": "shop/jobs"}

    assert matrix(outcomes, repositories) == {
        "include": [
            {"service": "api", "repository": "shop/api"},
            {"service": "jobs", "repository": "shop/jobs"},
        ]
    }
    assert matrix(outcomes[1:2], repositories) == {"include": []}
    # A project without a declaration: one entry, service "" (every service, the one).
    single = [Outcome("", 0, {"ok": True, "already_released": False})]
    assert matrix(single, {"": "widget-server"}) == {
        "include": [{"service": "", "repository": "widget-server"}]
    }


def test_github_gets_one_services_output_and_one_table(tmp_path: Path) -> None:
    from ecr_release.cli.fleet import github_files

    outcomes = [
        Outcome("api", 0, {"ok": True, "image": "h/api:v1", "digest": "sha256:1"}),
        Outcome("jobs", 8, {"ok": False, "error": "smoke", "exit_code": 8}),
    ]
    output, summary = tmp_path / "out", tmp_path / "summary"
    github_files(outcomes, {"GITHUB_OUTPUT": str(output), "GITHUB_STEP_SUMMARY": str(summary)})

    key, _, value = output.read_text().strip().partition("=")
    assert key == "services"
    assert json.loads(value) == [
        {"service": "api", "ok": True, "image": "h/api:v1", "digest": "sha256:1"},
        {"service": "jobs", "ok": False, "image": None, "digest": None},
    ]
    table_text = summary.read_text()
    assert "| api | released and verified | `h/api:v1` | `sha256:1` |" in table_text
    assert "| jobs | failed (exit 8) | `-` | `-` |" in table_text


def test_an_unwritable_github_file_is_an_output_error(tmp_path: Path) -> None:
    from ecr_release.cli.fleet import github_files
    from ecr_release.errors import OutputError

    with pytest.raises(OutputError, match="GITHUB_OUTPUT"):
        github_files([Outcome("api", 0, {})], {"GITHUB_OUTPUT": str(tmp_path / "no" / "file")})


def test_a_child_killed_by_a_signal_has_the_shells_exit_code(tmp_path: Path) -> None:
    script = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    (outcome,) = Fleet(1, out=io.StringIO(), command=[sys.executable, "-c", script]).run(
        [child(tmp_path, "api")]
    )

    assert outcome.exit_code == 137
    assert worst([outcome]) == 137
    assert outcome.error == "ended without a result (exit 137)"


# A fake worker that records every signal it gets, and stops (130) at the first.
COUNTING = r"""
import json, os, signal, sys, time
spec = json.loads(sys.stdin.read())
got = []
def note(signum, frame):
    got.append(signum)
    print(f"signal {signal.Signals(signum).name}", file=sys.stderr, flush=True)
    if len(got) == 1:
        time.sleep(0.5)  # its clean-up: a second signal would cut it short
        print(f"cleaned up after {len(got)} signal(s)", file=sys.stderr, flush=True)
        os._exit(130)
signal.signal(signal.SIGINT, note)
signal.signal(signal.SIGTERM, note)
print("started", file=sys.stderr, flush=True)
time.sleep(30)
"""

DRIVER = r"""
import io, json, sys
from ecr_release.cli.fleet import Child, Fleet
fleet = Fleet(2, out=sys.stderr, command=[sys.executable, "-c", sys.argv[1]])
children = [Child(n, {"service": n}) for n in ("api", "worker", "later")]
outcomes = fleet.run(children)
print(json.dumps({"interrupted": fleet.interrupted,
                  "outcomes": [[o.service, o.exit_code, o.cancelled] for o in outcomes]}))
"""


def test_ctrl_c_asks_each_child_to_stop_once_and_reports_every_outcome() -> None:
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, COUNTING],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a terminal's foreground group: Ctrl-C goes to all of it
    )
    assert driver.stderr is not None
    started = 0
    while started < 2:
        line = driver.stderr.readline()
        assert line, "the children never started"
        started += "started" in line
    os.killpg(driver.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
    out, err = driver.communicate(timeout=30)

    found = json.loads(out)
    assert found["interrupted"] is True
    assert found["outcomes"] == [["api", 130, True], ["worker", 130, True], ["later", None, True]]
    assert err.count("signal SIGTERM") == 2  # one each, from the fleet
    assert "SIGINT" not in err  # the terminal's went to the fleet only
    assert err.count("cleaned up after 1 signal(s)") == 2
    assert "Traceback" not in err


def test_a_broken_stderr_never_stalls_a_chatty_child(tmp_path: Path) -> None:
    class Closed(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError("the reader went away")

    chatty = (  # a megabyte of lines: far more than a pipe holds
        "import sys; sys.stdin.read(); sys.stderr.write('progress line\\n' * 80000); "
        "print('{\"ok\": true}')"
    )
    start = time.monotonic()
    (outcome,) = Fleet(1, out=Closed(), command=[sys.executable, "-c", chatty]).run(
        [child(tmp_path, "api")]
    )

    assert outcome.exit_code == 0
    assert time.monotonic() - start < 30


def test_a_child_that_reported_its_release_done_is_done_whatever_its_exit(
    tmp_path: Path,
) -> None:
    script = "import sys; sys.stdin.read(); print('{\"ok\": true}'); sys.exit(143)"
    (outcome,) = Fleet(1, out=io.StringIO(), command=[sys.executable, "-c", script]).run(
        [child(tmp_path, "api")]
    )

    assert (outcome.exit_code, outcome.ok) == (0, True)


def test_the_worker_stops_itself_when_the_fleet_is_gone(tmp_path: Path) -> None:
    marker = tmp_path / "stopped"
    grandchild = (
        "import signal, sys; from pathlib import Path; "
        "from ecr_release.cli.worker import _stop_when_orphaned; "
        f"signal.signal(signal.SIGTERM, lambda *a: (Path({str(marker)!r}).touch(), sys.exit(0))); "
        "import os; _stop_when_orphaned(int(sys.argv[1])); import time; time.sleep(30)"
    )
    middle = (
        "import os, subprocess, sys; "
        f"subprocess.Popen([sys.executable, '-c', {grandchild!r}, str(os.getpid())]); "
        "import time; time.sleep(0.5)"  # then exits: the grandchild is orphaned
    )
    subprocess.run([sys.executable, "-c", middle], check=True, timeout=30)
    deadline = time.monotonic() + 10
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.1)

    assert marker.exists()
