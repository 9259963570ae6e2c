"""Glue between invoke and the library: settings, wiring, output and error mapping.

``tasks.py`` stays a list of commands; this module turns the flags a task received
into settings and their help into invoke's (both made from the settings' declaration
in ``model/settings.py``), loads the settings once, wires the run's ``Release`` (the
only place that picks the docker binary, hands ``ecr.connect`` in and makes a dry run
a planner), shows the library's log to the person, and turns a ``ReleaseError`` into
``invoke.Exit``: one line, a non-zero code, no traceback. Importing it imports neither
boto3, botocore nor python-dotenv: ``inv --list`` stays fast.
"""

from __future__ import annotations

import contextlib
import functools
import json as json_module
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TextIO

from invoke.exceptions import Exit

from ..errors import ReleaseError
from ..model.settings import FLAGS, Setting

if TYPE_CHECKING:  # the rest is imported when a task runs: `inv --list` stays fast
    from ..flows.doctor import Check
    from ..flows.release import Clock, Release, Summary
    from ..model.services import Service
    from ..model.settings import Settings
    from ..outside.docker import Runner
    from ..outside.ecr import Authorization, Ecr, Repository
    from ..outside.registry import Registry
    from ..outside.sandbox import Sandbox, Target

# --env-file: every task has it; it says where the settings are, so it is none of them.
ENV_FILE_HELP = "settings file to read (default: .env)"
# The flags some tasks add that set no setting.
TASK_FLAGS_HELP: Mapping[str, str] = {
    "dry_run": "print every step's command, change nothing",
    "force": "log in even when a valid login exists",
    "json": "print one JSON document on stdout (docker's progress and the log go to stderr)",
    "service": "the declared services to act on, comma-separated (default: all of them)",
    "jobs": "services released at once (default: the number of CPUs, at most 4)",
    "fail_fast": "stop the other services' releases at the first failure",
}
# The flags every task has, by name: each a declared setting's.
SHARED_FLAGS: Mapping[str, Setting] = {
    name: setting for name, setting in FLAGS.items() if setting.flag and setting.flag.shared
}


def select_services(root: Path, wanted: str | None, flags: Flags) -> tuple[Service, ...]:
    """The declared services ``--service`` selects (all when it is left out; none when the
    project declares none). ``--repository`` names one repository: refused when it would
    send several services to it."""
    from ..errors import SettingsError
    from ..model.services import read_services

    chosen = read_services(root).select(wanted)
    if len(chosen) > 1 and flags.given.get("repository"):
        raise SettingsError(
            "--repository names one repository, and each of the services has its own "
            "(in pyproject.toml): leave it out, or name one service with --service"
        )
    return chosen


def one_service(root: Path, task: str, wanted: str | None) -> Service | None:
    """The declared service a one-image task acts on: the one ``--service`` names, or the
    only one declared; None when the project declares none (the settings are the one)."""
    from ..errors import SettingsError
    from ..model.services import read_services

    chosen = read_services(root).select(wanted)
    if len(chosen) > 1 and task == "login":  # the services share the registry: one login
        return chosen[0]
    if len(chosen) > 1:
        names = ", ".join(service.name for service in chosen)
        raise SettingsError(
            f"{len(chosen)} services are declared ({names}): name one with --service "
            f"(inv {task} --service {chosen[0].name} ...)"
        )
    return chosen[0] if chosen else None


def promote_all(c: Any, flags: Flags, version: str | None, *, service: str | None) -> None:
    """``inv promote``: the tags on VERSION of the service, or of every selected service
    once each of them has VERSION released (else nothing moves: ``latest`` never points
    at a mix of releases)."""
    with errors_as_exit():
        chosen = select_services(project_root(c), service, flags)
    with contextlib.ExitStack() as stack:
        names: list[str | None] = [one.name for one in chosen] or [None]
        runs = [
            (name, stack.enter_context(session(c, "promote", flags, service=name)))
            for name in names
        ]
        assert version is not None  # the task's needs require it
        if len(runs) > 1:
            _require_everywhere(version, runs)
        moved: list[str] = []
        for name, run in runs:
            try:
                digest = run.steps.promote(version, run.steps.settings.tags)
            except ReleaseError as exc:
                if not moved:
                    raise
                raise type(exc)(  # say where the tags already point at the new version
                    f"{exc.message} (the tags of {', '.join(moved)} already point at "
                    f"{version}: run the promote again once this is fixed)"
                ) from exc
            moved.append(str(name))
            where = f"{name}: " if len(runs) > 1 else ""
            for tag in run.steps.settings.tags:
                print(f"{where}{tag} -> {version} ({digest})")


def _require_everywhere(version: str, runs: list[tuple[str | None, Run]]) -> None:
    from ..errors import SettingsError

    found = {name: run.steps.published.released(version) for name, run in runs}
    missing = [str(name) for name, released in found.items() if released is None]
    if missing:
        raise SettingsError(
            f"{version} is not released for {', '.join(missing)}: no tag was moved (every "
            f"service must have it first, so that no tag points at a mix): inv release "
            f"--version {version}"
        )
    for name, run in runs:  # and every tag may move, everywhere, before any does
        released = found[name]
        assert released is not None
        run.steps.published.tags.to_put(run.steps.settings.tags, released.manifest.digest)


def run_doctor(c: Any, flags: Flags, *, service: str | None = None) -> None:
    """``inv doctor``: every check, one line each; exit with the first failing area's code.
    With services declared, what they share (docker, AWS, the registry) is shown once and
    then each selected service's own checks (settings, build context, working tree,
    repository). With ``--sandbox`` the sandbox is started (or healed) first, and checked."""
    from ..flows.doctor import Check, exit_code, render

    tty = sys.stdout.isatty()
    try:
        chosen = select_services(project_root(c), service, flags)
    except ReleaseError as exc:
        print(render([Check("settings", "services", False, exc.message, "fix it")], tty=tty))
        raise Exit(code=exc.exit_code) from exc
    found = [(one, _doctor(c, flags, one)) for one in chosen or (None,)]
    shown = [found[0][1]]
    if chosen:
        shown = [[c for c in found[0][1] if c.name not in SERVICE_CHECKS]]
        print(render(shown[0], tty=tty))
        for one, checks in found:
            assert one is not None
            shown.append([c for c in checks if c.name in SERVICE_CHECKS])
            print(f"service {one.name}:\n" + _indented(render(shown[-1], tty=tty)))
    else:
        print(render(shown[0], tty=tty))
    worst = max(exit_code(checks) for checks in shown)  # what was shown, nothing else
    if worst:
        raise Exit(code=worst)


# The doctor's checks that differ from one declared service to another.
SERVICE_CHECKS = frozenset({"settings", "build context", "working tree", "repository"})


def _doctor(c: Any, flags: Flags, service: Service | None) -> list[Check]:
    from ..flows.doctor import run_checks
    from ..model.settings import Sources
    from ..outside.ecr import SandboxApi, connect_probe

    env_file, root = flags.env_file or ".env", project_root(c)
    connect = None
    with contextlib.suppress(ReleaseError):  # unreadable settings: the checks say so
        src = Sources.read(flags.settings(), os.environ, Path(env_file), root)
        if src.sandbox:
            sandbox = sandbox_for(src.get("SANDBOX_REGISTRY_IMAGE") or "registry:2")
            try:  # under invoke's --dry, nothing is started: a running sandbox is checked
                target = sandbox.target() if c.config.run.dry else sandbox.up()
            except ReleaseError as exc:
                raise Exit(f"error: {exc.message}", code=exc.exit_code) from exc
            if target is None:
                raise Exit("error: the sandbox is not running, and --dry starts nothing", code=2)
            api = SandboxApi(target.api, target.access_key)
            connect = functools.partial(connect_probe, sandbox=api)
    return run_checks(
        flags.settings(),
        environ=os.environ,
        root=root,
        env_file=env_file,
        env_file_required=flags.env_file is not None,
        connect=connect,
        service=service,
    )


def show_scan(run: Run, *, json: bool = False) -> None:
    """``inv scan``: a released version's scan findings (read once, by its tag), in the
    lines the release's gate prints; a ``ScanGateError`` (exit 10) when ``SCAN_FAIL_ON``
    would refuse them. With ``json`` stdout holds one document, a refusal's too."""
    from ..errors import ScanGateError
    from ..flows.scan import judge, scan_of_version
    from . import report

    settings = run.steps.settings
    assert settings.version is not None  # the task's needs require it
    found = scan_of_version(
        run.steps.ecr.api, settings.repository, settings.version, ignore=settings.scan_ignore
    )
    if not json:
        print("\n".join(found.lines()))
    try:
        judge(found, settings.scan_fail_on, settings.scan_ignore)
    except ScanGateError as exc:
        if not json:
            raise
        _print_json({**report.error_json(exc.message, exc.exit_code), **found.as_json()})
        raise Exit(f"error: {exc.message}", code=exc.exit_code) from exc
    if json:
        _print_json({"ok": True, "version": settings.version, **found.as_json()})


def show_config(c: Any, flags: Flags, *, json: bool = False, service: str | None = None) -> None:
    """``inv config``: every setting, its value and its source (for each selected service:
    its own values come from its declaration); exit 2 when not usable."""
    from .configview import view

    root = project_root(c)
    with errors_as_exit(json):
        chosen = select_services(root, service, flags)
        found = {
            (one.name if one else None): view(
                flags.settings(),
                environ=os.environ,
                env_file=flags.env_file or ".env",
                env_file_required=flags.env_file is not None,
                root=root,
                sandbox=_sandbox_words,
                service=one,
            )
            for one in chosen or (None,)
        }
    if json:
        views = {name: one.as_json() for name, one in found.items()}
        _print_json(views.get(None, {"services": views}))
    else:
        print("\n".join(
            one.as_text() if name is None else f"service {name}:\n" + _indented(one.as_text())
            for name, one in found.items()
        ))  # fmt: skip
    if any(one.problems is not None for one in found.values()):
        raise Exit(code=2)


def _indented(text: str) -> str:
    return "\n".join(f"  {line}" for line in text.splitlines())


@contextlib.contextmanager
def errors_as_exit(json: bool = False) -> Iterator[None]:
    """A ``ReleaseError`` as ``invoke.Exit``: one line, its exit code, no traceback (and,
    with ``json``, one error document on stdout)."""
    try:
        yield
    except ReleaseError as exc:
        if json:
            from . import report

            _print_json(report.error_json(exc.message, exc.exit_code))
        raise Exit(f"error: {exc.message}", code=exc.exit_code) from exc


class Flags:
    """The flags a task received, by name: the shared ones (every task has them), the
    task's own that set a setting (``version``, ``also_tag``, ...), and ``env_file``.
    Which setting each flag sets, and how, is declared with the setting."""

    def __init__(self, *, env_file: str | None = None, **given: str | bool | None) -> None:
        unknown = sorted(set(given) - set(FLAGS))
        if unknown:
            raise TypeError(f"no setting declares the flag {', '.join(unknown)}")
        self.env_file = env_file
        self.given: Mapping[str, str | bool | None] = dict(given)

    @classmethod
    def of(cls, params: Mapping[str, Any]) -> Flags:
        """A task's flags from its parameters (``locals()`` where the task starts): what
        is not a setting's flag (``c``, ``json``, ``dry_run``, ...) is left out."""
        given = {name: value for name, value in params.items() if name in FLAGS}
        return cls(env_file=params.get("env_file"), **given)

    def settings(self) -> dict[str, str | None]:
        """The settings these flags set, keyed by setting key (a shared flag that was not
        given too, as None)."""
        given = {name: self.given.get(name) for name in SHARED_FLAGS} | dict(self.given)
        return {FLAGS[name].key: FLAGS[name].flag_value(value) for name, value in given.items()}


def flag_help(*own: str) -> dict[str, str]:
    """invoke's ``help=`` for a task: its own flags, then the shared ones."""
    names = {
        name: TASK_FLAGS_HELP[name] if name in TASK_FLAGS_HELP else FLAGS[name].flag_help
        for name in own
    }
    shared = {name: setting.flag_help for name, setting in SHARED_FLAGS.items()}
    return {**names, **shared, "env_file": ENV_FILE_HELP}


def make_release(
    settings: Settings,
    *,
    dry_run: bool = False,
    environ: Mapping[str, str] | None = None,
    runner: Runner | None = None,
    out: TextIO | None = None,
    connect: Callable[[Settings, type[Ecr]], Ecr] | None = None,
    registry_for: Callable[[Authorization], Registry] | None = None,
    clock: Clock | None = None,
    sandbox: Target | None = None,
    **options: Any,
) -> Release:
    """The one place the collaborators are wired: the real ones unless a test hands in
    fakes for an outside system. The dry run is chosen here, once (as chalice's
    ``create_plan_only_deployer`` does): a planning docker runner, a read-only ECR, registry
    and local state, a ``PlanningPublished`` and a smoke test that is a plan line. The
    steps never ask which kind of run it is. So is the target: with ``sandbox`` (a running
    local sandbox) the ECR client is the sandbox's (nothing of the user's AWS set-up is
    read) and the login records and locks are the sandbox's own. ``out`` is where docker's
    progress goes (stdout, or stderr when stdout carries JSON)."""
    from ..flows.published import PlanningPublished, Published
    from ..flows.release import Clock, Release, announce
    from ..outside import ecr
    from ..outside.docker import Docker, PlanningRunner
    from ..outside.engine import local_engine
    from ..outside.localstate import LocalState, StoredLogins, cache_dir
    from ..outside.process import SubprocessRunner
    from ..outside.registry import PlanningRegistry, Registry

    environ = os.environ if environ is None else environ
    # The smoke test's container goes through the daemon's API when the CLI's daemon is on a
    # local socket (see outside/engine.py); a given runner is a test's, and sees every command.
    engine = None
    if runner is None and not dry_run:
        engine = local_engine(environ, cache_dir(environ) / "engine")
    runner = runner or SubprocessRunner(out)
    clock = clock or Clock()
    kind = ecr.PlanningEcr if dry_run else ecr.Ecr
    if sandbox is not None:
        api = ecr.SandboxApi(sandbox.api, sandbox.access_key)
        connect = connect or functools.partial(ecr.connect, sandbox=api)
        state = LocalState(sandbox.directory / "local", read_only=dry_run)
        identity = "sandbox"
    else:
        state = LocalState(cache_dir(environ), read_only=dry_run)
        identity = ecr.aws_identity(settings, environ)
    docker = Docker(  # a base image two runs on this machine need is pulled by one of them
        PlanningRunner(runner) if dry_run else runner,
        environ=environ,
        idle_limit=settings.docker_idle_timeout,
        pull_lock=state.pull_lock,
        engine=engine,
    )
    known = StoredLogins(state.logins, identity, docker, clock.now)
    access = ecr.EcrAccess(
        lambda: (connect or ecr.connect)(settings, kind),
        registry_for or (lambda auth: (PlanningRegistry if dry_run else Registry)(*_login(auth))),
        account_id=settings.account_id,
        known=known,
    )
    progress = _quiet if dry_run else announce
    published = (PlanningPublished if dry_run else Published)(settings, access, docker, progress)
    smoke = _smoke_step(docker, settings, clock, dry_run)
    scan: Callable[..., object]
    if dry_run:
        scan = functools.partial(
            _plan_scan, timeout=settings.scan_timeout, fail_on=settings.scan_fail_on
        )
    else:
        scan = _scan_step(
            lambda: access.api,
            lambda: _scan_on_push(published.described(), settings.scan_on_push),
            settings,
            progress,
            clock,
        )
    options.setdefault("scan", scan)
    return Release(
        settings, docker, access, state, published, smoke, clock=clock, progress=progress, **options
    )


def _smoke_step(
    docker: Any, settings: Settings, clock: Clock, dry_run: bool
) -> Callable[..., object]:
    """The smoke test, its module imported once a build reaches it (a rerun never does)."""

    def smoke(image: str, **options: Any) -> object:
        from ..flows.smoke import plan_smoke_test, smoke_test

        if dry_run:
            plan_smoke_test(image, timeout=settings.smoke_timeout, **options)
            return None
        return smoke_test(
            docker,
            image,
            timeout=settings.smoke_timeout,
            **{"clock": clock.monotonic, "sleep": clock.sleep, **options},
        )

    return smoke


def _scan_step(
    api: Callable[[], Any],
    scan_on_push: Callable[[], bool],
    settings: Settings,
    progress: Callable[[str], None],
    clock: Clock,
) -> Callable[..., object]:
    """The scan gate, its module imported once a candidate reaches it (a rerun never does)."""
    gate: Callable[..., object] | None = None

    def scan(repository_name: str, digest: str, **options: Any) -> object:
        nonlocal gate
        if gate is None:
            from ..flows.scan import ScanGate

            gate = ScanGate(
                api,
                scan_on_push,
                settings.scan_timeout,
                settings.scan_fail_on,
                settings.scan_ignore,
                progress=progress,
                clock=clock.monotonic,
                sleep=clock.sleep,
            )
        return gate(repository_name, digest, **options)

    return scan


def _plan_scan(name: str, digest: str, *, timeout: float, fail_on: str | None, **_: object) -> None:
    from ..flows.scan import plan_scan

    plan_scan(f"{name}@{digest}", timeout=timeout, fail_on=fail_on)


def _scan_on_push(repository: Repository | None, configured: bool) -> bool:
    """The repository's own scan on push, as ECR describes it (the configured value for a
    repository not described yet)."""
    return configured if repository is None else repository.scan_on_push


def sandbox_for(image: str, environ: Mapping[str, str] | None = None) -> Sandbox:
    """This user's sandbox (under the cache directory), with docker bounded as every run's."""
    from ..outside.docker import Docker
    from ..outside.localstate import cache_dir
    from ..outside.process import SubprocessRunner
    from ..outside.sandbox import Sandbox

    environ = os.environ if environ is None else environ
    docker = Docker(SubprocessRunner(sys.stderr), environ=environ)
    return Sandbox(cache_dir(environ) / "sandbox", docker, image=image)


def sandbox_target(settings: Settings, *, start: bool = True) -> Target:
    """The running sandbox, started (or healed) first unless ``start`` is off (a dry run
    starts nothing: then the sandbox must be running already)."""
    from ..errors import SettingsError

    sandbox = sandbox_for(settings.sandbox_registry_image)
    if start:
        return sandbox.up()
    found = sandbox.target()
    if found is None:
        raise SettingsError(
            "the sandbox is not running, and a dry run starts nothing: run `inv sandbox up` first"
        )
    return found


def run_sandbox(c: Any, action: str, flags: Flags) -> None:
    """``inv sandbox up|down|status``. Only ``SANDBOX_REGISTRY_IMAGE`` is read: a setting
    that is wrong for releases never stands in the way of stopping the sandbox."""
    from ..model.settings import DEFAULTS, Sources

    _setup_logging()
    if action not in ("up", "down", "status"):
        raise Exit(f"error: inv sandbox takes up, down or status, not {action!r}", code=2)
    if action != "status" and c.config.run.dry:
        raise Exit(
            f"error: inv --dry sandbox {action} would {(action == 'up' and 'start') or 'remove'} "
            "the sandbox: `inv sandbox status` shows it; run it without --dry",
            code=2,
        )
    try:
        src = Sources.read(
            {},
            os.environ,
            Path(flags.env_file or ".env"),
            project_root(c),
            env_file_required=flags.env_file is not None,
        )
        sandbox = sandbox_for(
            src.get("SANDBOX_REGISTRY_IMAGE") or DEFAULTS["SANDBOX_REGISTRY_IMAGE"]
        )
        if action == "up":
            target = sandbox.up()
            print(f"sandbox up: ECR API {target.api}, registry {target.registry}")
            print("release to it with: inv release --version v1 --sandbox")
        elif action == "down":
            removed = sandbox.down()
            print("sandbox down: " + (", ".join(removed) if removed else "nothing was running"))
        else:
            print("\n".join(sandbox.status().lines()))
    except ReleaseError as exc:
        raise Exit(f"error: {exc.message}", code=exc.exit_code) from exc


def _sandbox_words() -> str:
    """The sandbox as ``inv config`` shows it: running (where), or not (nothing is started)."""
    sandbox = sandbox_for("registry:2")  # the image matters only to start it
    found = sandbox.target()
    if found is None:
        return (
            "the local sandbox (not running: `inv sandbox up`, or any task with --sandbox, "
            f"starts it; state in {sandbox.directory})"
        )
    return f"the local sandbox (running: ECR API {found.api}, registry {found.registry})"


def _login(auth: Authorization) -> tuple[str, str, str]:
    return auth.host, auth.username, auth.password


def project_root(c: Any) -> Path:
    """The folder of the tasks.py that invoke loaded (it says so in its config), else the
    current one: settings paths are relative to it, wherever inv runs from."""
    root = (c.config.get("ecr_release") or {}).get("root")
    return Path(root) if root else Path.cwd()


def _quiet(what: str) -> None:
    """A dry run's progress: its plan lines already say what each step would do."""


def _setup_logging() -> None:
    logger = logging.getLogger("ecr_release")
    if not any(getattr(h, "_ecr_release", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._ecr_release = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


class Run(NamedTuple):
    """What a task body gets: the steps to run, and how to report a summary."""

    steps: Release
    report: Callable[[Summary], None]


@contextlib.contextmanager
def session(
    c: Any,
    task: str,
    flags: Flags,
    *,
    dry_run: bool = False,
    json: bool = False,
    service: str | None = None,
) -> Iterator[Run]:
    """Validate everything first, then yield the run; map library errors to ``Exit``.

    What is validated is the task's declared needs (``TASK_NEEDS``). With ``json``,
    stdout carries exactly one JSON document, even for an error (the error's line still
    goes to stderr); everything else goes to stderr. ``service`` (``--service``) names
    the declared service the run is for: it may be left out when the project declares
    none, or one.
    """
    from ..model.settings import load_settings
    from . import report

    _setup_logging()
    _no_last_collection()
    plan = _PlanLines()
    logger = logging.getLogger("ecr_release")
    logger.addHandler(plan)
    cleanup = contextlib.ExitStack()
    cleanup.enter_context(_signals_as_interrupts())
    cleanup.enter_context(terminal_kept())
    try:
        root = project_root(c)
        settings = load_settings(
            flags.settings(),
            task=task,
            env_file=flags.env_file or ".env",
            env_file_required=flags.env_file is not None,
            root=root,
            service=one_service(root, task, service),
        )
        for warning in settings.warnings:
            logger.warning("warning: %s", warning)
        planning = bool(dry_run or c.config.run.dry)
        steps = make_release(
            settings,
            dry_run=planning,
            out=sys.stderr if json else None,
            sandbox=sandbox_target(settings, start=not planning) if settings.sandbox else None,
        )

        def report_summary(summary: Summary) -> None:
            # The files first: if they fail, stdout's one document is the error's.
            report.write_github_files(summary, os.environ)
            if json:
                named = {"service": settings.service} if settings.service else {}
                _print_json({**named, **report.as_json(summary, plan.lines)})
            else:  # push alone prints just the digest, for scripts
                print(summary.digest if task == "push" else report.as_text(summary))

        yield Run(steps, report_summary)
    except ReleaseError as exc:
        for line in getattr(exc, "log_tail", ()):  # a failed smoke test's container log
            logger.error("  | %s", line)
        if exc.gates is not None:  # failed at the gates: what they found, for CI
            name = f"{settings.repository}:{settings.version}"
            unwritten = report.write_failure_files(exc.message, name, exc.gates, os.environ)
            if unwritten:
                logger.warning("%s", unwritten)
        if json:
            _print_json(report.error_json(exc.message, exc.exit_code, exc.gates))
        raise Exit(f"error: {exc.message}", code=exc.exit_code) from exc
    except KeyboardInterrupt:
        if json:
            _print_json(report.error_json("interrupted", 130))
        raise Exit(
            "interrupted: nothing was half-published (a tag appears only once its "
            "manifest is written)",
            code=130,
        ) from None
    finally:
        cleanup.close()
        logger.removeHandler(plan)


@functools.cache
def _no_last_collection() -> None:
    """At the process's end, the garbage collector does not walk what the run made once
    more (boto3's models above all: about 0.1 s of CPU after a new version). Everything
    left is frozen (``gc.freeze``) by the first exit handler to run; the rest of the exit
    runs as usual: the other exit handlers, flushing, closing, freeing by reference count.
    Registered once per process, at its first task."""
    import atexit
    import gc

    atexit.register(gc.freeze)


@contextlib.contextmanager
def _signals_as_interrupts() -> Iterator[None]:
    """SIGTERM and SIGHUP (a cancelled CI job, a closed terminal) end a task as Ctrl-C does:
    as ``KeyboardInterrupt``, so the runner stops docker (which runs in a process group of
    its own, out of reach of a signal sent to ours) and nothing is left running."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def terminal_kept(stream: Any = None) -> Iterator[None]:
    """The terminal's settings as they were, when the task ends. A new version asks AWS
    beside the build, on a thread of its own: if botocore is prompting there for an MFA
    code (``getpass`` turns echo off) when Ctrl-C ends the run, that prompt never puts the
    echo back itself. ``stream`` is standard input unless given; not a terminal: nothing."""
    stream = sys.stdin if stream is None else stream
    try:
        import termios
    except ImportError:  # not a POSIX system
        yield
        return
    fd: int | None = None
    try:
        fd = stream.fileno() if stream.isatty() else None
        saved = termios.tcgetattr(fd) if fd is not None else None
    except (AttributeError, OSError, ValueError, termios.error):  # closed, replaced, none
        saved = None
    try:
        yield
    finally:
        if fd is not None and saved is not None:
            with contextlib.suppress(OSError, termios.error):
                termios.tcsetattr(fd, termios.TCSADRAIN, saved)


class _PlanLines(logging.Handler):
    """Keeps a dry run's plan lines, for the JSON document."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("[dry-run] "):
            self.lines.append(message.removeprefix("[dry-run] "))


def _print_json(document: dict[str, Any]) -> None:
    print(json_module.dumps(document, indent=2))
