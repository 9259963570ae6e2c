"""Several services at once: ``inv release`` (and ``plan``, ``--dry-run``) over the
services a project declares (``model/services.py``).

Each service is released by a process of its own (``python -m ecr_release.cli.worker``):
the same code path as ``inv release --service NAME --json``, with everything a single
release has (its check, fingerprint, lock, smoke test, gates and verification) and
nothing shared in memory with the others. A failure, a crash or an interrupt in one
can never half-release another. At most ``--jobs`` run at once, so at most that many
builds and pushes. Their output is passed on line by line, each line whole and
prefixed with the service's name (as compose prefixes its services' logs), on
stderr; stdout holds the summary table, or one JSON document with an entry per
service. The exit code is the highest of the services that failed.

``--fail-fast`` stops the rest at the first failure: the running ones get SIGTERM (each
stops as on Ctrl-C: nothing half-published), the waiting ones never start. Ctrl-C
reaches every child through the terminal; a SIGTERM to this process is passed on.
What is checked here first, for every selected service, before any child starts: the
declaration and each service's settings (one line naming the service), and the
sandbox is started once (so the children do not race to start it).
"""

from __future__ import annotations

import contextlib
import json as json_module
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from invoke.exceptions import Exit

from ..errors import OutputError, SettingsError

if TYPE_CHECKING:
    from ..model.services import Service
    from ..model.settings import Settings
    from .session import Flags

# How many services run at once unless --jobs says.
DEFAULT_JOBS_CAP = 4
MAX_JOBS = 32
# How a child asked to stop ends: as on Ctrl-C (130), or by the SIGTERM itself when it
# came before the child's own handler was in place (143).
STOPPED = (130, 143)
# The outputs a child would write itself: this process writes one set for all.
GITHUB_FILES = ("GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY")


def default_jobs() -> int:
    """The CPUs this process may use (its affinity, as a container's limit sets it), at
    most 4."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on every platform
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, DEFAULT_JOBS_CAP))


def parse_jobs(given: str | int | None) -> int:
    """``--jobs``: a whole number from 1 to 32 (unset: the CPUs, at most 4)."""
    if given is None or given == "":
        return default_jobs()
    text = str(given).strip()
    if not text.isdigit() or not 1 <= int(text) <= MAX_JOBS:
        raise SettingsError(f"--jobs {given!r} must be a whole number from 1 to {MAX_JOBS}")
    return int(text)


@dataclass
class Outcome:
    """What one service's release did: its exit code and JSON document (None: it never
    started), and its wall time."""

    service: str
    exit_code: int | None = None
    document: dict[str, Any] | None = None
    seconds: float = 0.0
    cancelled: bool = False  # stopped by --fail-fast or an interrupt

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def error(self) -> str:
        found = (self.document or {}).get("error")
        if found:
            return str(found)
        if self.exit_code is None:
            return "not started"
        return f"ended without a result (exit {self.exit_code})"


def worst(outcomes: Sequence[Outcome]) -> int:
    """The run's exit code: the highest of the services that failed (those stopped
    because another failed do not count); 130 when an interrupt stopped them all."""
    failed = [o.exit_code for o in outcomes if o.exit_code and not o.cancelled]
    if failed:
        return max(failed)
    if any(o.cancelled for o in outcomes):
        return 130
    return 0


@dataclass
class Child:
    """One service's release, as a spec the worker reads on stdin."""

    service: str | None  # None: the project declares no services
    spec: dict[str, Any]


class Fleet:
    """Runs the children, at most ``jobs`` at once, and passes their lines on."""

    def __init__(
        self,
        jobs: int,
        *,
        fail_fast: bool = False,
        out: IO[str] | None = None,
        environ: Mapping[str, str] | None = None,
        command: Sequence[str] = (sys.executable, "-m", "ecr_release.cli.worker"),
        clock: Callable[[], float] = time.monotonic,
        shown: Callable[[str], bool] = lambda line: True,
    ) -> None:
        self.jobs, self.fail_fast = jobs, fail_fast
        self._out = out or sys.stderr
        environ = os.environ if environ is None else environ
        self._env = {k: v for k, v in environ.items() if k not in GITHUB_FILES}
        self._env["PYTHONUNBUFFERED"] = "1"
        # The worker imports this package from where this process found it (a checkout
        # beside tasks.py that is not installed, too).
        here = str(Path(__file__).resolve().parents[2])
        self._env["PYTHONPATH"] = os.pathsep.join(
            part for part in (here, self._env.get("PYTHONPATH", "")) if part
        )
        self._command = list(command)
        self._clock = clock
        self._shown = shown  # which of the children's lines are passed on
        self._write = threading.Lock()  # one whole line at a time
        self._state = threading.Lock()
        self._stop = threading.Event()
        self._running: set[subprocess.Popen[bytes]] = set()
        self._width = 0
        self._silenced = False  # our stderr failed (a closed pipe): lines are dropped
        self.interrupted = False  # Ctrl-C or SIGTERM stopped the run

    def run(self, children: Sequence[Child]) -> list[Outcome]:
        """Every child's outcome, in the order given. Ctrl-C (or SIGTERM made one) asks
        every running child to stop, once, waits for them, and returns the outcomes with
        ``interrupted`` set; a second one while they stop is raised."""
        self._width = max((len(child.service or "") for child in children), default=0)
        with ThreadPoolExecutor(self.jobs, thread_name_prefix="service") as pool:
            futures = [pool.submit(self._one, child) for child in children]
            try:
                return [future.result() for future in futures]
            except KeyboardInterrupt:
                self.interrupted = True
                self.stop()
                return [future.result() for future in futures]

    def stop(self) -> None:
        """No child starts any more; the running ones are asked to stop (SIGTERM)."""
        with self._state:
            self._stop.set()
            running = list(self._running)
        for proc in running:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    def _one(self, child: Child) -> Outcome:
        name = child.service or ""
        with self._state:
            if self._stop.is_set():
                return Outcome(name, cancelled=True)
            # A process group of its own: the terminal's Ctrl-C reaches this process only,
            # which then asks each child to stop exactly once (a second signal would cut
            # its clean-up short).
            proc = subprocess.Popen(
                self._command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=self._env,
                process_group=0,
            )
            self._running.add(proc)
        start = self._clock()
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        lines = threading.Thread(target=self._pass_on, args=(name, proc.stderr), daemon=True)
        lines.start()
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.write(json_module.dumps(child.spec).encode())
            proc.stdin.close()
        data = proc.stdout.read()
        code = proc.wait()
        if code < 0:  # killed by a signal: as a shell says it (SIGTERM: 143)
            code = 128 - code
        lines.join()
        document = _document(data)
        if document is not None and document.get("ok") is True:
            code = 0  # it reported its release done: a signal after that changes nothing
        with self._state:
            self._running.discard(proc)
            stopped = self._stop.is_set() and code in STOPPED
        outcome = Outcome(name, code, document, self._clock() - start, stopped)
        if code != 0 and self.fail_fast and not stopped:
            self.stop()
        return outcome

    def _pass_on(self, name: str, stream: IO[bytes]) -> None:
        prefix = f"{name:<{self._width}} | " if name else ""
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            if self._silenced or not self._shown(line):
                continue  # still read: a child never blocks on a full pipe
            with self._write:
                try:
                    self._out.write(f"{prefix}{line}\n")
                    self._out.flush()
                except (OSError, ValueError):
                    self._silenced = True


def _document(data: bytes) -> dict[str, Any] | None:
    try:
        found = json_module.loads(data.decode("utf-8", errors="replace"))
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


def child_spec(
    *,
    root: Path,
    service: Service | None,
    given: Mapping[str, str | bool | None],
    env_file: str | None,
    dry_run: bool,
) -> Child:
    """The worker's instructions for one service: ``inv release`` with these flags."""
    spec = {
        "root": str(root),
        "service": service.name if service else None,
        "given": dict(given),
        "env_file": env_file,
        "dry_run": dry_run,
    }
    return Child(service.name if service else None, spec)


# -- what the person and the pipeline see -----------------------------------------------


def result_words(outcome: Outcome) -> str:
    doc = outcome.document or {}
    if outcome.ok:
        if doc.get("dry_run"):
            return "dry run: " + ("already released" if doc.get("already_released") else "new")
        return "already released" if doc.get("already_released") else "released and verified"
    if outcome.exit_code is None:
        return "not started (--fail-fast)" if outcome.cancelled else "not started"
    if outcome.cancelled:
        return "stopped (--fail-fast)"
    return f"failed (exit {outcome.exit_code})"


def table(outcomes: Sequence[Outcome], repositories: Mapping[str, str]) -> str:
    """One row per service, then each failure's line."""
    rows = [("service", "repository", "result", "digest", "time")]
    for o in outcomes:
        digest = str((o.document or {}).get("digest") or "-")
        short = digest if digest == "-" else digest[:19] + "..."
        where = repositories.get(o.service, "")
        rows.append((o.service, where, result_words(o), short, f"{o.seconds:.1f}s"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]  # fmt: skip
    done = sum(1 for o in outcomes if o.ok)
    lines.append(f"{done} of {len(outcomes)} services done")
    lines += [
        f"  {o.service}: {o.error}"
        for o in outcomes
        if not o.ok and not o.cancelled and o.exit_code is not None
    ]
    return "\n".join(lines)


def as_json(outcomes: Sequence[Outcome], version: str) -> dict[str, Any]:
    code = worst(outcomes)
    return {
        "ok": code == 0,
        "version": version,
        "exit_code": code,
        "services": [
            {
                "service": o.service,
                "result": result_words(o),
                "exit_code": o.exit_code,
                "seconds": round(o.seconds, 3),
                **{k: v for k, v in (o.document or {}).items() if k != "service"},
            }
            for o in outcomes
        ],
    }


def github_files(outcomes: Sequence[Outcome], environ: Mapping[str, str]) -> None:
    """One ``services`` output (a JSON list) and one step-summary table for the run."""
    rows = [
        {
            "service": o.service,
            "ok": o.ok,
            "image": (o.document or {}).get("image"),
            "digest": (o.document or {}).get("digest"),
        }
        for o in outcomes
    ]
    if environ.get("GITHUB_OUTPUT"):
        with _writing("GITHUB_OUTPUT", environ["GITHUB_OUTPUT"]) as handle:
            handle.write(f"services={json_module.dumps(rows, separators=(',', ':'))}\n")
    if environ.get("GITHUB_STEP_SUMMARY"):
        body = "".join(
            f"| {o.service} | {result_words(o)} | `{(o.document or {}).get('image') or '-'}` | "
            f"`{(o.document or {}).get('digest') or '-'}` |\n"
            for o in outcomes
        )
        with _writing("GITHUB_STEP_SUMMARY", environ["GITHUB_STEP_SUMMARY"]) as handle:
            handle.write(
                "### Services\n\n| service | result | image | digest |\n| --- | --- | --- | --- |\n"
                + body
            )


# -- the tasks' side -----------------------------------------------------------------------


def _exits(json: bool) -> contextlib.AbstractContextManager[None]:
    """A ``ReleaseError`` before the children start: as every task says one (session's)."""
    from .session import errors_as_exit

    return errors_as_exit(json)


def _prepare(
    c: Any, flags: Flags, wanted: str | None, jobs: str | int | None, *, json: bool, every: bool
) -> Prepared | None:
    """The selected services, their settings (each checked) and ``--jobs`` (None: fewer
    than two services, and ``every`` is off: the task runs in this process, as for one)."""
    from ..model.settings import load_settings
    from .session import project_root, select_services

    root = project_root(c)
    with _exits(json):
        count = parse_jobs(jobs)
        selected: tuple[Service | None, ...] = select_services(root, wanted, flags)
        if len(selected) < 2 and not every:
            return None
        found = [
            load_settings(
                flags.settings(),
                task="release",
                env_file=flags.env_file or ".env",
                env_file_required=flags.env_file is not None,
                root=root,
                service=service,
            )
            for service in selected or (None,)
        ]
    return Prepared(root, selected or (None,), found, count)


@dataclass(frozen=True)
class Prepared:
    root: Path
    selected: tuple[Service | None, ...]
    settings: list[Settings]
    jobs: int

    @property
    def repositories(self) -> dict[str, str]:
        return {s.service or "": s.repository for s in self.settings}


def _run(
    c: Any,
    flags: Flags,
    prepared: Prepared,
    *,
    fail_fast: bool,
    json: bool,
    dry_run: bool,
    start_sandbox: bool,
    verb: str,
    shown: Callable[[str], bool] = lambda line: True,
) -> tuple[list[Outcome], bool]:
    """Every selected service's outcome, and whether an interrupt stopped them."""
    from .session import _signals_as_interrupts, sandbox_target

    first = prepared.settings[0]
    if first.sandbox and start_sandbox:
        with _exits(json):
            sandbox_target(first, start=True)  # once, before the children ask
    names = [s.name for s in prepared.selected if s is not None]
    if names:
        print(f"==> {verb} {len(names)} services ({', '.join(names)}), up to "
              f"{prepared.jobs} at a time", file=sys.stderr)  # fmt: skip
    children = [
        child_spec(
            root=prepared.root,
            service=s,
            given=flags.given,
            env_file=flags.env_file,
            dry_run=dry_run,
        )
        for s in prepared.selected
    ]
    fleet = Fleet(prepared.jobs, fail_fast=fail_fast, shown=shown)
    try:
        with _signals_as_interrupts():
            outcomes = fleet.run(children)
    except KeyboardInterrupt:  # a second one, while the children were stopping
        if json:
            from . import report

            print(json_module.dumps(report.error_json("interrupted", 130), indent=2))
        raise Exit(
            "interrupted again: the services' releases were asked to stop (a version tag "
            "appears only once its manifest is written)",
            code=130,
        ) from None
    return outcomes, fleet.interrupted


def release_many(
    c: Any,
    flags: Flags,
    *,
    service: str | None,
    jobs: str | int | None,
    fail_fast: bool,
    json: bool,
    dry_run: bool,
) -> bool:
    """``inv release`` over the selected services, when there are two or more (False:
    fewer, and nothing was done: the task releases the one in this process)."""
    prepared = _prepare(c, flags, service, jobs, json=json, every=False)
    if prepared is None:
        return False
    planning = bool(dry_run or c.config.run.dry)
    outcomes, interrupted = _run(
        c, flags, prepared, fail_fast=fail_fast, json=json, dry_run=planning,
        start_sandbox=not planning, verb="dry run of" if planning else "releasing",
    )  # fmt: skip
    problem: OutputError | None = None
    if not planning:  # the files first: stdout's one document then says if they failed
        try:
            github_files(outcomes, os.environ)
        except OutputError as exc:
            problem = exc
    if json:
        document = as_json(outcomes, str(flags.given.get("version")))
        if problem is not None:
            document |= {"ok": False, "error": problem.message}
        print(json_module.dumps(document, indent=2))
    else:
        print(table(outcomes, prepared.repositories))
    _exit_for(outcomes, interrupted, problem)
    return True


def plan(c: Any, flags: Flags, *, service: str | None, jobs: str | int | None, json: bool) -> None:
    """``inv plan``: the services whose version is not released from the same inputs yet,
    as a GitHub Actions matrix (``{"include": [{"service": ...}, ...]}``)."""
    prepared = _prepare(c, flags, service, jobs, json=json, every=True)
    assert prepared is not None
    outcomes, interrupted = _run(
        c, flags, prepared, fail_fast=False, json=json, dry_run=True,
        start_sandbox=not c.config.run.dry, verb="planning", shown=_plan_line,
    )  # fmt: skip
    if worst(outcomes) or interrupted:
        if json:
            print(json_module.dumps(as_json(outcomes, str(flags.given.get("version"))), indent=2))
        else:
            print(table(outcomes, prepared.repositories))
        _exit_for(outcomes, interrupted)
    found = matrix(outcomes, prepared.repositories)
    wanted = {entry["service"] for entry in found["include"]}
    if os.environ.get("GITHUB_OUTPUT"):
        with _exits(json), _writing("GITHUB_OUTPUT", os.environ["GITHUB_OUTPUT"]) as handle:
            compact = json_module.dumps(found, separators=(",", ":"))
            handle.write(f"matrix={compact}\ncount={len(wanted)}\n")
    if json:
        print(json_module.dumps(found, indent=2))
        return
    for o in outcomes:
        state = "to release" if o.service in wanted else "released from the same inputs: left out"
        print(f"{o.service or prepared.repositories[o.service]}: {state}")


def matrix(
    outcomes: Sequence[Outcome], repositories: Mapping[str, str]
) -> dict[str, list[dict[str, str]]]:
    """The services a plan's dry runs found not released from the same inputs, as a GitHub
    Actions ``strategy.matrix`` (``include``: one entry per service, in declaration order)."""
    return {
        "include": [
            {"service": o.service, "repository": repositories[o.service]}
            for o in outcomes
            if o.ok and not (o.document or {}).get("already_released")
        ]
    }


def _plan_line(line: str) -> bool:
    """What ``plan`` passes on of a dry run: its check, warnings and errors, not the rest
    of its plan."""
    return not line.startswith("[dry-run] ") or line.startswith("[dry-run] check:")


def _exit_for(
    outcomes: Sequence[Outcome], interrupted: bool, problem: OutputError | None = None
) -> None:
    """The run's exit: the worst service's code; 130 after an interrupt; 9 when only the
    GitHub files failed."""
    failed = [o for o in outcomes if o.exit_code and not o.cancelled]
    listed = ", ".join(f"{o.service or 'the service'} (exit {o.exit_code})" for o in failed)
    if interrupted:
        done = sum(1 for o in outcomes if o.ok)
        raise Exit(
            f"interrupted: {done} of {len(outcomes)} services done; the others were stopped "
            "before their version tag (a tag appears only once its manifest is written)",
            code=130,
        )
    if failed:
        words = f"error: {len(failed)} of {len(outcomes)} services failed: {listed}"
        if problem is not None:
            words += f"; and {problem.message}"
        raise Exit(words, code=worst(outcomes))
    if problem is not None:
        raise Exit(f"error: {problem.message}", code=problem.exit_code)
    if worst(outcomes):
        raise Exit("interrupted: no service was half-published", code=worst(outcomes))


@contextlib.contextmanager
def _writing(key: str, path: str) -> Iterator[IO[str]]:
    try:
        with Path(path).open("a", encoding="utf-8") as handle:
            yield handle
    except OSError as exc:
        raise OutputError(f"{key} {path} cannot be written: {exc.strerror or exc}") from exc
