"""Benchmark: the release suite side by side with the seed tutorial's manual flow (issue #11).

Prints figures; asserts nothing. Needs what the end-to-end tests need (root, a Docker
engine that can start) except for the ``list`` case. Run:

    uv run --group dev python -m benchmarks.compare [--runs N] [--cases rerun,new,gated,first,list]

The manual flow is the tutorial's commands, command for command, with the aws CLI
(reaching moto through ``AWS_ENDPOINT_URL``) and docker (its own ``DOCKER_CONFIG``)::

    aws ecr describe-repositories --repository-names R    # create-repository when first
    aws ecr get-login-password --region REGION | docker login --username AWS \\
        --password-stdin HOST
    docker build -t R:V --build-arg BASE_IMAGE=BASE .
    docker tag R:V HOST/R:V
    docker push HOST/R:V

Each tool releases from its own throwaway copy of the project (same Dockerfile, same
context) into its own repository. Runs alternate ABBA (suite, manual, manual, suite, ...)
so that a machine getting busier or calmer weighs on both alike. Cases and goals:

- rerun: an already released version again, docker holding a valid login (suite <= 0.4x);
- new:   a fresh code-only change released as a new version (suite <= 0.75x);
- gated: the same with the suite's gates on, as by default: the smoke test beside the
         candidate's push, the scan (suite <= 0.75x; the manual flow has no gates);
- first: the first release to an empty registry, everything pushed (suite <= 1.05x);
- list:  ``inv --list`` in the project vs. in a one-task tasks.py (<= 1.1x).

The suite runs with ``SMOKE_TEST=false`` (the manual flow has no smoke test) and
``--json``, except in ``gated``; its per-step times come from the ``steps`` of that JSON
document.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from tests.e2e.backends import StackBackend
from tests.e2e.project import INV, Project, docker
from tests.e2e.stack import Stack, StackState

AWS = Path(sys.executable).with_name("aws")
CASES = ("rerun", "new", "gated", "first", "list")
GOALS = {"rerun": 0.4, "new": 0.75, "gated": 0.75, "first": 1.05, "list": 1.1}
TITLES = {
    "rerun": "rerun (already released)",
    "new": "new version, code change",
    "gated": "new version, gates on",
    "first": "first release, empty reg.",
    "list": "inv --list (vs one-task)",
}
DEFAULT_RUNS = {"rerun": 7, "new": 7, "gated": 7, "first": 3, "list": 21}
SUITE_ENV = {"SMOKE_TEST": "false"}
ONE_TASK = "from invoke import task\n\n\n@task\ndef hello(c):\n    pass\n"
OUTSIDE = "(outside steps)"


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- figures ---------------------------------------------------------------------------


@dataclass
class Series:
    """The wall times of one tool's runs in one case, and the time of each of its steps."""

    totals: list[float] = field(default_factory=list)
    steps: dict[str, list[float]] = field(default_factory=dict)

    def add(self, total: float, steps: dict[str, float]) -> None:
        self.totals.append(total)
        for name, seconds in steps.items():
            self.steps.setdefault(name, []).append(seconds)

    @property
    def median(self) -> float:
        return statistics.median(self.totals)

    def breakdown(self) -> str:
        parts = []
        for name, values in self.steps.items():
            seen = "" if len(values) == len(self.totals) else f" ({len(values)}/{len(self.totals)})"
            parts.append(f"{name} {statistics.median(values):.2f}s{seen}")
        return ", ".join(parts) or "-"


@dataclass
class Result:
    case: str
    suite: Series = field(default_factory=Series)
    manual: Series = field(default_factory=Series)  # in `list`: the one-task tasks.py


def timed(pairs: int) -> Iterator[tuple[int, str]]:
    """ABBA order: (0, suite), (0, manual), (1, manual), (1, suite), (2, suite), ..."""
    for i in range(pairs):
        order = ("suite", "manual") if i % 2 == 0 else ("manual", "suite")
        for tool in order:
            yield i, tool


# -- the two tools -------------------------------------------------------------------------


class Suite:
    """``inv release --version V --json`` in a project copy."""

    def __init__(self, project: Project) -> None:
        self.project = project

    def release(self, version: str, *, smoke: bool = False) -> tuple[float, dict[str, float], bool]:
        """Wall time, seconds per step (plus the time outside them), already released?"""
        start = time.perf_counter()
        env = {} if smoke else SUITE_ENV
        done = self.inv("release", "--version", version, "--json", env=env)
        elapsed = time.perf_counter() - start
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise SystemExit(f"suite: release {version} exited {done.returncode}: {last}")
        steps, already = parse_summary(done.stdout)
        counted = steps_wall(done.stdout)
        steps[OUTSIDE] = max(elapsed - (sum(steps.values()) if counted is None else counted), 0.0)
        return elapsed, steps, already

    def inv(self, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return self.project.inv(*args, env=env)


def parse_summary(stdout: str) -> tuple[dict[str, float], bool]:
    """The ``steps`` of the suite's JSON document; else of its ``steps:`` summary line."""
    with contextlib.suppress(ValueError):
        document = json.loads(stdout)
        if isinstance(document, dict) and isinstance(document.get("steps"), dict):
            steps = {str(k): float(v) for k, v in document["steps"].items()}
            return steps, bool(document.get("already_released"))
    for line in stdout.splitlines():
        if line.strip().startswith("steps:"):
            text = line.split(":", 1)[1].split("(total")[0]
            found = re.findall(r"([\w-]+) ([\d.]+)s", text)
            return {name: float(s) for name, s in found}, "already released" in stdout
    return {}, False


def steps_wall(stdout: str) -> float | None:
    """The JSON document's ``total_seconds``: the steps' wall time, in which a step that ran
    during another one (the smoke test, during the gates) counts once; None without it."""
    with contextlib.suppress(ValueError):
        document = json.loads(stdout)
        if isinstance(document, dict) and isinstance(document.get("total_seconds"), int | float):
            return float(document["total_seconds"])
    return None


class Manual:
    """The tutorial's commands, one subprocess each, in a project copy of its own."""

    def __init__(self, project: Project, info: StackState) -> None:
        self.project = project
        self.info = info
        self.env = {
            **project.env,
            "AWS_ENDPOINT_URL": info.moto_endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": info.region,
        }

    def release(self, version: str, *, create: bool = False) -> tuple[float, dict[str, float]]:
        repo, host = self.project.repository, self.info.registry_host
        steps: dict[str, float] = {}
        start = time.perf_counter()
        if create:
            argv = [str(AWS), "ecr", "create-repository", "--repository-name", repo]
            self.run(steps, "create-repository", argv)
        else:
            argv = [str(AWS), "ecr", "describe-repositories", "--repository-names", repo]
            self.run(steps, "describe-repositories", argv)
        self.login(steps, host)
        base = f"BASE_IMAGE={self.info.base_image}"
        self.run(
            steps, "build", ["docker", "build", "-t", f"{repo}:{version}", "--build-arg", base, "."]
        )
        self.run(steps, "tag", ["docker", "tag", f"{repo}:{version}", f"{host}/{repo}:{version}"])
        self.run(steps, "push", ["docker", "push", f"{host}/{repo}:{version}"])
        return time.perf_counter() - start, steps

    def run(self, steps: dict[str, float], name: str, argv: list[str]) -> None:
        start = time.perf_counter()
        done = subprocess.run(
            argv, cwd=self.project.root, env=self.env, capture_output=True, text=True, timeout=900
        )
        steps[name] = time.perf_counter() - start
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise SystemExit(f"manual: {name} exited {done.returncode}: {last}")

    def login(self, steps: dict[str, float], host: str) -> None:
        """``aws ecr get-login-password | docker login ... --password-stdin``: a real pipe."""
        start = time.perf_counter()
        with tempfile.TemporaryFile() as aws_errors:
            aws = subprocess.Popen(
                [str(AWS), "ecr", "get-login-password", "--region", self.info.region],
                cwd=self.project.root,
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=aws_errors,
            )
            assert aws.stdout is not None
            try:
                login = subprocess.Popen(
                    ["docker", "login", "--username", "AWS", "--password-stdin", host],
                    cwd=self.project.root,
                    env=self.env,
                    stdin=aws.stdout,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            finally:
                aws.stdout.close()  # only docker reads the password now
            _, login_errors = login.communicate(timeout=300)
            aws_code = aws.wait(timeout=300)
            steps["get-login-password | docker login"] = time.perf_counter() - start
            if aws_code != 0:
                aws_errors.seek(0)
                last = (aws_errors.read().decode(errors="replace").strip().splitlines() or [""])[-1]
                raise SystemExit(f"manual: aws ecr get-login-password exited {aws_code}: {last}")
        if login.returncode != 0:
            last = (login_errors.strip().splitlines() or ["(no output)"])[-1]
            raise SystemExit(f"manual: docker login exited {login.returncode}: {last}")


# -- the bench: projects, registry resets, clean-up ------------------------------------------


class Bench:
    """Two project copies (suite, manual), each with its own repository and Docker config."""

    def __init__(self, tmp: Path, info: StackState, stack: Stack | None) -> None:
        self.tmp = tmp
        self.info = info
        self.stack = stack
        self.prefix = f"bench-{uuid.uuid4().hex[:6]}-"
        self.suite = Suite(self.project("suite"))
        self.manual = Manual(self.project("manual"), info)
        self.warm = False

    def project(self, tool: str) -> Project:
        home = self.tmp / tool
        (home / "docker").mkdir(parents=True)
        return Project.create(
            home,
            repository=f"{self.prefix}{tool}",
            backend=StackBackend(self.info),
            docker_config=home / "docker",
            marker=f"bench-marker-{uuid.uuid4().hex}",
        )

    def warm_up(self) -> None:
        """Release v1 once with each tool (not timed): the repositories exist, docker is
        logged in (the suite's own login, in its own DOCKER_CONFIG), the layers are pushed."""
        if self.warm:
            return
        progress("warm-up: v1 with each tool (not timed)")
        self.suite.release("v1")
        self.manual.release("v1", create=True)
        self.warm = True

    def rename(self, project: Project, repository: str) -> None:
        project.repository = repository
        project.write_env(ECR_REPOSITORY=repository)

    def empty_registry(self) -> None:
        """Stop the registry, delete everything it stored, start it again."""
        assert self.stack is not None
        self.stack.stop_registry()
        storage = Path(self.info.registry_storage_dir)
        for child in storage.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
        self.stack.start_registry()

    def remove_images(self) -> None:
        """Remove every image this bench tagged (local and registry names); not the base."""
        listed = docker("images", "--format", "{{.Repository}}:{{.Tag}}", check=False).split()
        mine = [
            ref for ref in listed if ref.rsplit(":", 1)[0].split("/")[-1].startswith(self.prefix)
        ]
        if mine:
            docker("rmi", "-f", *mine, check=False)


def image_ids() -> set[str]:
    return set(docker("images", "-a", "-q", "--no-trunc", check=False).split())


# -- the cases -------------------------------------------------------------------------------


def case_rerun(bench: Bench, runs: int, name: str = "rerun") -> Result:
    bench.warm_up()
    result = Result(name)
    for i, tool in timed(runs):
        if tool == "suite":
            total, steps, already = bench.suite.release("v1")
            result.suite.add(total, steps)
            note = "" if already else "  (NOT reported as already released)"
        else:
            total, steps = bench.manual.release("v1")
            result.manual.add(total, steps)
            note = ""
        progress(f"{name:<7} {i + 1}/{runs} {tool:<6} {total:6.2f}s{note}")
    return result


def case_new(bench: Bench, runs: int, *, smoke: bool = False) -> Result:
    """A code-only change as a new version; with ``smoke``, the suite runs its gates as it
    does by default (the smoke test beside the candidate's push, the scan), the manual
    flow as ever (it has neither)."""
    bench.warm_up()
    result = Result("gated" if smoke else "new")
    base = 200 if smoke else 100
    for i, tool in timed(runs):
        version = f"v{base + i}"
        # A change unique to this tool and run: neither tool may reuse the other's COPY layer.
        text = f"benchmark {tool} {version} {uuid.uuid4().hex}"
        if tool == "suite":
            bench.suite.project.change_code(text)
            total, steps, _ = bench.suite.release(version, smoke=smoke)
            result.suite.add(total, steps)
        else:
            bench.manual.project.change_code(text)
            total, steps = bench.manual.release(version)
            result.manual.add(total, steps)
        progress(f"{result.case:<6} {i + 1}/{runs} {tool:<6} {version:<5} {total:6.2f}s")
    return result


def case_first(bench: Bench, runs: int) -> Result:
    result = Result("first")
    for i, tool in timed(runs):
        # An empty registry, a repository name never used, no local image of either project.
        bench.empty_registry()
        bench.remove_images()
        project = bench.suite.project if tool == "suite" else bench.manual.project
        bench.rename(project, f"{bench.prefix}{tool}-first-{i}")
        if tool == "suite":
            total, steps, _ = bench.suite.release("v1")
            result.suite.add(total, steps)
        else:
            total, steps = bench.manual.release("v1", create=True)
            result.manual.add(total, steps)
        progress(f"first  {i + 1}/{runs} {tool:<6} {total:6.2f}s")
    bench.warm = False  # the registry now holds only the last run's repositories
    return result


def case_list(bench: Bench, runs: int) -> Result:
    one_task = bench.tmp / "one-task"
    one_task.mkdir()
    (one_task / "tasks.py").write_text(ONE_TASK)
    result = Result("list")
    where = {"suite": bench.suite.project.root, "manual": one_task}
    for _, tool in timed(runs):
        start = time.perf_counter()
        done = subprocess.run(
            [str(INV), "--list"],
            cwd=where[tool],
            env=bench.suite.project.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        elapsed = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"inv --list in {where[tool]} exited {done.returncode}")
        (result.suite if tool == "suite" else result.manual).add(elapsed, {})
    return result


# -- the report ----------------------------------------------------------------------------


def report(results: Sequence[Result]) -> None:
    sys.stderr.flush()
    print()
    head = f"{'case':<27} {'suite':>8} {'manual':>8} {'ratio':>6} {'goal':>6}  {'':<7}  N"
    print(head)
    print("-" * len(head))
    for r in results:
        ratio = r.suite.median / r.manual.median
        goal = GOALS[r.case]
        met = "met" if ratio <= goal else "NOT met"
        n = f"{len(r.suite.totals)}+{len(r.manual.totals)}"
        print(
            f"{TITLES[r.case]:<27} {r.suite.median:7.2f}s {r.manual.median:7.2f}s "
            f"{ratio:6.2f} {'<=' + format(goal, '.2f'):>6}  {met:<7}  {n}"
        )
    print()
    print("medians per step (suite: its --json steps; manual: each command's wall time)")
    for r in results:
        if r.case == "list":
            print(
                f"  {r.case:<6} manual: `inv --list` of a one-task tasks.py (same Python, invoke)"
            )
            continue
        print(f"  {r.case:<6} suite   {r.suite.breakdown()}")
        print(f"  {'':<6} manual  {r.manual.breakdown()}")
    for r in results:
        if r.case == "gated":
            smoke = statistics.median(r.suite.steps.get("smoke-test", [0.0]))
            print(f"\ngated: the smoke test took {smoke:.2f}s median, beside the push")


# -- main --------------------------------------------------------------------------------------


def _sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def parse_args(argv: Sequence[str] | None = None) -> tuple[list[str], dict[str, int]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--runs",
        type=int,
        help="timed runs per tool in every case (default: "
        + ", ".join(f"{c} {n}" for c, n in DEFAULT_RUNS.items())
        + ")",
    )
    parser.add_argument(
        "--cases", default=",".join(CASES), help=f"comma-separated, of {','.join(CASES)}"
    )
    args = parser.parse_args(argv)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in CASES]
    if unknown or not cases:
        parser.error(
            f"--cases: unknown {','.join(unknown) or '(none given)'}; know {','.join(CASES)}"
        )
    if args.runs is not None and args.runs < 1:
        parser.error("--runs must be at least 1")
    runs = {c: args.runs or n for c, n in DEFAULT_RUNS.items()}
    return [c for c in CASES if c in cases], runs


def main(argv: Sequence[str] | None = None) -> None:
    cases, runs = parse_args(argv)
    signal.signal(signal.SIGTERM, _sigterm)
    needs_stack = any(c != "list" for c in cases)
    stack = Stack() if needs_stack else None
    # `list` alone needs no stack: the projects' .env then names a stack that is not there.
    info = stack.up() if stack else StackState(region="us-east-1", base_image="none")
    bench: Bench | None = None
    images_before = image_ids() if stack else set()
    try:
        with tempfile.TemporaryDirectory(prefix="ecr-bench-") as tmp:
            bench = Bench(Path(tmp), info, stack)
            counts = ", ".join(f"{c} {runs[c]}+{runs[c]}" for c in cases)
            progress(f"python {sys.version.split()[0]}, {os.cpu_count()} cores; runs: {counts}")
            run_case: dict[str, Callable[[Bench, int], Result]] = {
                "rerun": case_rerun,
                "new": case_new,
                "gated": functools.partial(case_new, smoke=True),
                "first": case_first,
            }
            results = []
            for case in cases:
                if case == "list":
                    results.append(case_list(bench, runs[case]))
                else:
                    results.append(run_case[case](bench, runs[case]))
            report(results)
    finally:
        if bench is not None and stack is not None:
            bench.remove_images()
            # Informative only: another process may build images meanwhile.
            left = image_ids() - images_before
            if left:
                progress(f"note: {len(left)} image(s) appeared in the engine during this run")
        if stack is not None:
            stack.down()


if __name__ == "__main__":
    main()
