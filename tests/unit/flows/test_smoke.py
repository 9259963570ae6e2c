"""The smoke test's state machine, through Docker over a scripted engine on a fake clock
(nothing sleeps)."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from ecr_release.errors import DockerError, ReleaseError, SmokeTestError
from ecr_release.flows.smoke import (
    HEALTHY,
    ONE_SHOT,
    WATCHDOG_GRACE_SECONDS,
    SmokeResult,
    health_command,
    smoke_test,
    thread_watchdog,
)
from ecr_release.outside.docker import ANSWER_SECONDS, TIMED_OUT, Docker, Result

IMAGE = "widget-server:v1"
NAME = "ecr-release-smoke-test0001"
HTTP_CHECK = {
    "Test": [
        "CMD",
        "python3",
        "-c",
        "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz')",
    ],
    "Interval": 10_000_000_000,
}
REFUSED = (
    "Traceback (most recent call last):\n"
    '  File "<string>", line 1, in <module>\n'
    "ConnectionRefusedError: [Errno 111] Connection refused\n"
    "\n"
    "During handling of the above exception, another exception occurred:\n"
    "urllib.error.URLError: <urlopen error [Errno 111] Connection refused>\n"
)


class Clock:
    """Monotonic time that moves only when something sleeps or a command runs."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.sleeps.append(seconds)
        self.now += seconds


@dataclass
class Engine:
    """A scripted docker: the image's config, one container's life on the fake clock (its
    process ends at ``exits_at``), and its health command, which passes from the
    ``healthy_after``-th failure on (never when None). ``during`` runs a hook inside a
    command (by verb: ``run``, ``exec``, ``inspect``, ``rm``...), as a signal would arrive."""

    clock: Clock = field(default_factory=Clock)
    healthcheck: object = None
    image_shell: object = None
    exits_at: float | None = None
    exit_code: int = 0
    oom: bool = False
    healthy_after: int | None = 0
    logs: str = ""
    run_answer: Result = field(default_factory=lambda: Result(0, "f00dfeed\n"))
    cost: float = 0.05
    during: dict[str, Callable[[], None]] = field(default_factory=dict)
    calls: list[list[str]] = field(default_factory=list)
    limits: list[tuple[str, float | None]] = field(default_factory=list)  # (verb, timeout)
    started: bool = False
    start_time: float = 0.0
    removed: bool = False
    probes: int = 0

    def __call__(
        self,
        args: Sequence[str],
        *,
        input: str | None = None,
        stream: bool = False,
        timeout: float | None = None,
        idle: float | None = None,
        cancel: threading.Event | None = None,
    ) -> Result:
        self.calls.append(list(args))
        verb = args[1]
        self.limits.append((verb, timeout))
        if verb in self.during:
            self.during[verb]()
        self.clock.now += self.cost
        if verb == "image":
            return Result(0, image_config(self.healthcheck, self.image_shell))
        if verb == "version":
            return Result(0, "20.10.24\n")
        if verb == "run":
            self.started = self.run_answer.returncode == 0
            self.start_time = self.clock.now
            return self.run_answer
        if self.removed or (not self.started and verb != "rm"):
            return Result(1, f"Error response from daemon: No such container: {args[-1]}\n")
        if verb == "exec":
            if not self.running:
                return Result(1, f"Error response from daemon: Container {NAME} is not running\n")
            self.probes += 1
            passing = self.healthy_after is not None and self.probes > self.healthy_after
            return Result(0, "") if passing else Result(1, REFUSED)
        if verb == "inspect":
            state = {
                "Status": "running" if self.running else "exited",
                "Running": self.running,
                "OOMKilled": self.oom and not self.running,
                "ExitCode": 0 if self.running else self.exit_code,
                "Error": "",
            }
            return Result(0, json.dumps(state) + "\n")
        if verb == "logs":
            return Result(0, self.logs)
        if verb == "rm":
            self.removed = True
            return Result(0, f"{args[-1]}\n")
        raise AssertionError(f"unexpected command {args}")

    @property
    def running(self) -> bool:
        return (
            self.started
            and not self.removed
            and (self.exits_at is None or self.clock.now < self.exits_at)
        )

    def verbs(self) -> list[str]:
        return [args[1] for args in self.calls]


def image_config(healthcheck: object, shell: object = None) -> str:
    """What `docker image inspect --format` prints for the image, as Docker asks it."""
    config: dict[str, object] = {"id": "sha256:" + "1" * 64, "digests": [], "labels": None}
    return json.dumps({**config, "healthcheck": healthcheck, "shell": shell}) + "\n"


@dataclass
class Watchdog:
    """Records the deadline it was armed with; a test fires it by hand."""

    armed: list[float] = field(default_factory=list)
    action: Callable[[], None] | None = None
    cancelled: bool = False

    def __call__(self, seconds: float, action: Callable[[], None]) -> Callable[[], None]:
        self.armed.append(seconds)
        self.action = action
        return self.cancel

    def cancel(self) -> None:
        self.cancelled = True

    def fire(self) -> None:
        assert self.action is not None
        self.action()


def smoke(
    engine: Engine,
    *,
    watchdog: Watchdog | None = None,
    timeout: float = 8,
    binary: str = "docker",
    **kw: object,
) -> SmokeResult:
    return smoke_test(
        Docker(engine, binary, environ={}),
        IMAGE,
        timeout=timeout,
        clock=engine.clock,
        sleep=engine.clock.sleep,
        name=NAME,
        watchdog=watchdog or Watchdog(),
        **kw,  # type: ignore[arg-type]
    )


def failure(engine: Engine, **kw: object) -> SmokeTestError:
    with pytest.raises(SmokeTestError) as info:
        smoke(engine, **kw)  # type: ignore[arg-type]
    assert "\n" not in info.value.message
    assert IMAGE in info.value.message
    assert info.value.message.endswith("the version was not released")
    assert engine.calls[-1][1:] == ["rm", "-f", NAME]
    assert engine.removed
    return info.value


def assert_removed_last(engine: Engine) -> None:
    assert engine.calls[-1] == ["docker", "rm", "-f", NAME]
    assert engine.verbs().count("rm") == 1


# -- with a HEALTHCHECK ---------------------------------------------------------------------


def test_a_healthcheck_that_passes_at_once_passes_without_waiting() -> None:
    engine = Engine(healthcheck=HTTP_CHECK)
    result = smoke(engine)
    assert result.outcome == HEALTHY == "health check passed"
    assert result.image == IMAGE
    assert engine.verbs() == ["image", "run", "exec", "rm"]
    assert engine.clock.sleeps == []
    assert result.seconds == pytest.approx(4 * engine.cost)


def test_the_cmd_form_is_execd_as_its_argv() -> None:
    engine = Engine(healthcheck=HTTP_CHECK)
    smoke(engine)
    assert engine.calls[2] == ["docker", "exec", NAME, *HTTP_CHECK["Test"][1:]]  # type: ignore[index]


def test_the_cmd_shell_form_runs_in_bin_sh() -> None:
    engine = Engine(healthcheck={"Test": ["CMD-SHELL", "curl -f http://localhost/ || exit 1"]})
    smoke(engine)
    assert engine.calls[2] == [
        "docker",
        "exec",
        NAME,
        "/bin/sh",
        "-c",
        "curl -f http://localhost/ || exit 1",
    ]


def test_the_cmd_shell_form_runs_in_the_images_shell_when_it_sets_one() -> None:
    engine = Engine(
        healthcheck={"Test": ["CMD-SHELL", "test -f /ready"]},
        image_shell=["/bin/bash", "-o", "pipefail", "-c"],
    )
    smoke(engine)
    assert engine.calls[2][3:] == ["/bin/bash", "-o", "pipefail", "-c", "test -f /ready"]


def test_a_healthcheck_that_passes_after_a_few_failures_polls_every_fifth_of_a_second() -> None:
    engine = Engine(healthcheck=HTTP_CHECK, healthy_after=3)
    result = smoke(engine)
    assert result.outcome == HEALTHY
    # each failure: is the container still up? then wait and try again
    assert engine.verbs() == ["image", "run", *["exec", "inspect"] * 3, "exec", "rm"]
    assert engine.clock.sleeps == [0.2, 0.2, 0.2]
    assert result.seconds < 1.5


def test_a_healthcheck_that_never_passes_fails_at_the_timeout_with_its_last_output() -> None:
    engine = Engine(healthcheck=HTTP_CHECK, healthy_after=None, logs="starting\nstuck on db\n")
    error = failure(engine, timeout=8)
    assert error.message == (
        f"smoke test of {IMAGE} failed: health check still failing after 8 s (exit 1: "
        "urllib.error.URLError: <urlopen error [Errno 111] Connection refused>); "
        "the version was not released"
    )
    assert error.exit_code == 8
    assert isinstance(error, ReleaseError)
    # it gave up at the deadline, not before and not much after
    elapsed = engine.clock.now - 100.0
    assert 8 <= elapsed < 8 + 0.2 + 4 * engine.cost
    assert error.log_tail == ["starting", "stuck on db"]
    assert engine.verbs()[-2:] == ["logs", "rm"]


def test_a_container_that_exits_while_checking_fails_at_once_with_its_exit_code() -> None:
    engine = Engine(
        healthcheck=HTTP_CHECK, healthy_after=None, exits_at=100.6, exit_code=3, logs="boom\n"
    )
    error = failure(engine, timeout=60)
    assert "exited with code 3 before its health check passed" in error.message
    assert engine.clock.now < 102  # not the 60 s timeout
    assert error.log_tail == ["boom"]
    assert engine.verbs()[-2:] == ["logs", "rm"]


def test_a_container_with_a_healthcheck_that_exits_0_fails_too() -> None:
    engine = Engine(healthcheck=HTTP_CHECK, healthy_after=None, exits_at=100.3, exit_code=0)
    error = failure(engine)
    assert "exited with code 0 before its health check passed" in error.message


def test_healthcheck_none_counts_as_no_healthcheck() -> None:
    engine = Engine(healthcheck={"Test": ["NONE"]})
    result = smoke(engine)
    assert result.outcome == "running after 3 s"
    assert "exec" not in engine.verbs()


@pytest.mark.parametrize(
    ("healthcheck", "shell", "argv"),
    [
        (None, None, None),
        ({}, None, None),
        ({"Test": []}, None, None),
        ({"Test": ["NONE"]}, None, None),
        ({"Test": ["CMD"]}, None, None),
        ({"Test": ["CMD", "true"]}, None, ["true"]),
        ({"Test": ["CMD-SHELL", "exit 0"]}, None, ["/bin/sh", "-c", "exit 0"]),
        ({"Test": ["CMD-SHELL", "exit 0"]}, [], ["/bin/sh", "-c", "exit 0"]),
        ({"Test": ["CMD-SHELL", "exit 0"]}, ["pwsh", "-c"], ["pwsh", "-c", "exit 0"]),
        ({"Test": ["BOGUS", "x"]}, None, None),
        ({"Test": "CMD true"}, None, None),
    ],
)
def test_health_command_from_the_image_config(
    healthcheck: object, shell: object, argv: list[str] | None
) -> None:
    # as docker reports it, read by Docker's image inspection
    found = Docker(lambda *a, **k: Result(0, image_config(healthcheck, shell))).inspect(IMAGE)
    assert found is not None
    assert health_command(found.health_test, found.shell) == argv


# -- without a HEALTHCHECK --------------------------------------------------------------------


def test_without_healthcheck_a_container_still_running_after_3_s_passes() -> None:
    engine = Engine()
    result = smoke(engine)
    assert result.outcome == "running after 3 s"
    assert "exec" not in engine.verbs()
    # it waited the settle time (from the start of the container), no longer
    assert engine.clock.now - engine.start_time >= 3.0
    assert sum(engine.clock.sleeps) <= 3.0
    assert engine.verbs()[-2:] == ["inspect", "rm"]


def test_the_settle_time_is_the_callers() -> None:
    engine = Engine()
    assert smoke(engine, settle=1.0).outcome == "running after 1 s"
    assert sum(engine.clock.sleeps) <= 1.0


def test_without_healthcheck_exiting_0_passes_as_a_one_shot_image() -> None:
    engine = Engine(exits_at=100.5, exit_code=0)
    result = smoke(engine)
    assert result.outcome == ONE_SHOT == "exited 0 (one-shot)"
    assert engine.clock.now < 101.5  # seen when it happened, not after the settle time
    assert_removed_last(engine)


def test_without_healthcheck_exiting_1_fails_with_the_log_tail() -> None:
    engine = Engine(exits_at=100.5, exit_code=1, logs="Traceback\nValueError: bad PORT\n")
    error = failure(engine)
    assert error.message == (
        f"smoke test of {IMAGE} failed: exited with code 1; the version was not released"
    )
    assert error.log_tail == ["Traceback", "ValueError: bad PORT"]
    assert engine.clock.now < 101.5


def test_an_oom_kill_says_so() -> None:
    engine = Engine(exits_at=100.3, exit_code=137, oom=True)
    error = failure(engine)
    assert "exited with code 137 (killed: out of memory)" in error.message


def test_an_oom_kill_in_a_one_shot_image_is_no_pass_even_if_it_exits_0() -> None:
    # Docker marks OOMKilled when any process in the container was killed for memory.
    engine = Engine(exits_at=100.3, exit_code=0, oom=True)
    error = failure(engine)
    assert "exited with code 0 (killed: out of memory)" in error.message


def test_the_log_tail_is_the_last_20_lines() -> None:
    engine = Engine(exits_at=100.3, exit_code=2, logs="".join(f"line {i}\n" for i in range(30)))
    error = failure(engine)
    assert engine.calls[-2] == ["docker", "logs", "--tail", "20", NAME]
    assert error.log_tail == [f"line {i}" for i in range(10, 30)]


# -- the commands ---------------------------------------------------------------------------


def test_the_run_argument_list_is_exact_no_network_no_published_port() -> None:
    engine = Engine(healthcheck=HTTP_CHECK)
    smoke(engine)
    inspect = engine.calls[0]
    assert inspect[:4] == ["docker", "image", "inspect", "--format"]
    assert '"healthcheck": {{json .Config.Healthcheck}}' in inspect[4]
    assert '"shell": {{json .Config.Shell}}' in inspect[4]
    assert inspect[5:] == [IMAGE]
    run = engine.calls[1]
    assert run == [
        "docker",
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        NAME,
        "--label",
        "io.ecr-release.smoke=1",
        IMAGE,
    ]
    assert not {"-p", "-P", "--publish", "--publish-all", "--rm"} & set(run)


def test_the_state_and_cleanup_commands_are_exact_and_use_the_binary() -> None:
    engine = Engine(exits_at=100.3, exit_code=1)
    failure(engine, binary="/opt/docker")
    assert engine.calls[0][0] == "/opt/docker"
    assert engine.calls[2] == ["/opt/docker", "inspect", "--format", "{{json .State}}", NAME]
    assert engine.calls[-2:] == [
        ["/opt/docker", "logs", "--tail", "20", NAME],
        ["/opt/docker", "rm", "-f", NAME],
    ]
    assert {args[0] for args in engine.calls} == {"/opt/docker"}


def test_each_run_gets_its_own_container_name() -> None:
    names = []
    for _ in range(2):
        engine = Engine(healthcheck=HTTP_CHECK)
        smoke_test(
            Docker(engine),
            IMAGE,
            timeout=8,
            clock=engine.clock,
            sleep=engine.clock.sleep,
            watchdog=Watchdog(),
        )
        run = engine.calls[1]
        names.append(run[run.index("--name") + 1])
        assert engine.calls[-1] == ["docker", "rm", "-f", names[-1]]
    assert names[0] != names[1]
    assert all(name.startswith("ecr-release-smoke-") for name in names)


# -- failures of docker itself -----------------------------------------------------------------


def test_a_missing_image_is_a_docker_error_and_no_container_is_made() -> None:
    def runner(args: Sequence[str], **_: object) -> Result:
        calls.append(list(args))
        return Result(1, "Error response from daemon: No such image: widget-server:v1\n")

    calls: list[list[str]] = []
    with pytest.raises(DockerError) as info:
        smoke_test(Docker(runner), IMAGE, timeout=8, name=NAME, watchdog=Watchdog())
    assert not isinstance(info.value, SmokeTestError)
    assert info.value.message == (
        "there is no local image widget-server:v1 to smoke-test: run `inv build` first"
    )
    assert [args[1] for args in calls] == ["image"]


def test_an_image_that_cannot_start_fails_with_dockers_line_and_is_removed() -> None:
    line = (
        "docker: Error response from daemon: failed to create shim task: OCI runtime create "
        'failed: exec: "python3": executable file not found in $PATH: unknown.'
    )
    engine = Engine(run_answer=Result(127, line + "\n"))
    error = failure(engine)
    assert error.message == (
        f"smoke test of {IMAGE} failed: could not start: {line}; the version was not released"
    )
    assert "version" in engine.verbs()  # docker itself was checked first: it answers


def test_a_daemon_that_stops_answering_is_a_docker_error_not_a_smoke_failure() -> None:
    down = (
        "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
        "Is the docker daemon running?\n"
    )

    def runner(args: Sequence[str], **_: object) -> Result:
        calls.append(list(args))
        if args[1] == "image":
            return Result(0, image_config(None))
        return Result(1, down)

    calls: list[list[str]] = []
    with pytest.raises(DockerError) as info:
        smoke_test(Docker(runner), IMAGE, timeout=8, name=NAME, watchdog=Watchdog())
    assert not isinstance(info.value, SmokeTestError)
    assert "not answering" in info.value.message
    assert calls[-1] == ["docker", "rm", "-f", NAME]


def test_a_runner_exception_propagates_and_the_container_is_still_removed() -> None:
    def explode() -> None:
        raise OSError("docker went away")

    engine = Engine(healthcheck=HTTP_CHECK, during={"exec": explode})
    with pytest.raises(OSError, match="docker went away"):
        smoke(engine)
    assert_removed_last(engine)


def test_a_failing_removal_does_not_hide_the_error_that_stopped_the_test() -> None:
    def explode() -> None:
        raise OSError("first")

    def explode_again() -> None:
        raise OSError("second")

    engine = Engine(healthcheck=HTTP_CHECK, during={"exec": explode, "rm": explode_again})
    with pytest.raises(OSError, match="first"):
        smoke(engine)
    assert engine.verbs()[-1] == "rm"


def test_a_refused_removal_after_a_pass_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    engine = Engine(healthcheck=HTTP_CHECK)

    def refuse(args: Sequence[str], **kw: Any) -> Result:
        if args[1] == "rm":
            engine.calls.append(list(args))
            return Result(1, "Error response from daemon: permission denied\n")
        return engine(args, **kw)

    with caplog.at_level(logging.WARNING, logger="ecr_release"):
        result = smoke_test(
            Docker(refuse),
            IMAGE,
            timeout=8,
            clock=engine.clock,
            sleep=engine.clock.sleep,
            name=NAME,
            watchdog=Watchdog(),
        )
    assert result.outcome == HEALTHY
    assert [r.getMessage() for r in caplog.records] == [
        f"could not remove the smoke-test container {NAME}: "
        "Error response from daemon: permission denied"
    ]


# -- interrupts and the watchdog ------------------------------------------------------------


def test_ctrl_c_during_the_check_removes_the_container() -> None:
    def interrupt() -> None:
        raise KeyboardInterrupt

    engine = Engine(healthcheck=HTTP_CHECK, healthy_after=None, during={"inspect": interrupt})
    with pytest.raises(KeyboardInterrupt):
        smoke(engine)
    assert_removed_last(engine)


def test_ctrl_c_during_docker_run_removes_the_container() -> None:
    def interrupt() -> None:
        raise KeyboardInterrupt

    engine = Engine(during={"run": interrupt})
    with pytest.raises(KeyboardInterrupt):
        smoke(engine)
    assert engine.verbs() == ["image", "run", "rm"]


def test_sigterm_during_the_check_interrupts_and_removes_the_container() -> None:
    before = signal.getsignal(signal.SIGTERM)
    engine = Engine(
        healthcheck=HTTP_CHECK,
        healthy_after=None,
        during={"exec": lambda: os.kill(os.getpid(), signal.SIGTERM)},
    )
    with pytest.raises(KeyboardInterrupt, match=f"signal {int(signal.SIGTERM)}"):
        smoke(engine)
    assert_removed_last(engine)
    assert engine.verbs().count("exec") == 1
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_signal_during_removal_waits_until_the_container_is_gone() -> None:
    before_int = signal.getsignal(signal.SIGINT)
    before_term = signal.getsignal(signal.SIGTERM)
    engine = Engine(
        healthcheck=HTTP_CHECK, during={"rm": lambda: os.kill(os.getpid(), signal.SIGINT)}
    )
    with pytest.raises(KeyboardInterrupt):
        smoke(engine)
    assert engine.removed  # the removal finished before the interrupt went on
    assert signal.getsignal(signal.SIGINT) is before_int
    assert signal.getsignal(signal.SIGTERM) is before_term


def test_handlers_are_restored_after_a_pass_and_after_a_failure() -> None:
    before = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
    smoke(Engine(healthcheck=HTTP_CHECK))
    failure(Engine(exits_at=100.2, exit_code=1))
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_a_handler_someone_else_installed_for_sigint_is_left_alone() -> None:
    seen: list[int] = []

    def theirs(signum: int, frame: object) -> None:
        seen.append(signum)

    engine = Engine(
        healthcheck=HTTP_CHECK, during={"exec": lambda: os.kill(os.getpid(), signal.SIGINT)}
    )
    previous = signal.signal(signal.SIGINT, theirs)
    try:
        assert smoke(engine).outcome == HEALTHY
        assert signal.getsignal(signal.SIGINT) is theirs
    finally:
        signal.signal(signal.SIGINT, previous)
    assert seen == [signal.SIGINT]


def test_outside_the_main_thread_no_handler_is_touched() -> None:
    results: list[object] = []
    engine = Engine(healthcheck=HTTP_CHECK)
    before = signal.getsignal(signal.SIGTERM)

    def worker() -> None:
        try:
            results.append(smoke(engine))
        except BaseException as exc:
            results.append(exc)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(10)
    assert isinstance(results[0], SmokeResult)
    assert signal.getsignal(signal.SIGTERM) is before


def test_the_watchdog_is_armed_past_the_timeout_and_cancelled_at_the_end() -> None:
    watchdog = Watchdog()
    smoke(Engine(healthcheck=HTTP_CHECK), watchdog=watchdog, timeout=60)
    assert watchdog.armed == [60 + WATCHDOG_GRACE_SECONDS]
    assert watchdog.cancelled


def test_a_health_command_that_never_returns_is_stopped_by_the_watchdog() -> None:
    watchdog = Watchdog()
    engine = Engine(healthcheck=HTTP_CHECK, healthy_after=None, logs="deadlocked\n")
    # the command hangs until the watchdog removes the container under it
    engine.during["exec"] = watchdog.fire
    error = failure(engine, watchdog=watchdog, timeout=8)
    assert error.message == (
        f"smoke test of {IMAGE} failed: its health check command did not return within 8 s "
        "(stopped by removing the container); the version was not released"
    )
    assert error.log_tail == ["deadlocked"]
    # the watchdog read the logs, then removed the container
    assert engine.verbs()[:5] == ["image", "run", "exec", "logs", "rm"]


def test_thread_watchdog_fires_once_unless_cancelled() -> None:
    fired = threading.Event()
    thread_watchdog(0.0, fired.set)
    assert fired.wait(5)
    never = threading.Event()
    cancel = thread_watchdog(30.0, never.set)
    cancel()
    assert not never.is_set()


# -- what the person sees ---------------------------------------------------------------------


def test_it_logs_one_line_at_the_start_and_one_when_it_passes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG, logger="ecr_release"):
        result = smoke(Engine(healthcheck=HTTP_CHECK, healthy_after=2))
    assert [r.getMessage() for r in caplog.records] == [
        f"==> smoke-test {IMAGE}",
        f"smoke-test passed: health check passed in {result.seconds:.1f} s",
    ]
    assert str(result) == f"health check passed ({result.seconds:.1f} s)"


def test_a_long_multiline_probe_output_becomes_one_short_line() -> None:
    engine = Engine(healthcheck=HTTP_CHECK, healthy_after=None)
    original = engine.__call__

    def noisy(args: Sequence[str], **kw: Any) -> Result:
        result = original(args, **kw)
        if args[1] == "exec":
            return Result(1, "first\n" + "error: " + "x" * 500 + "\n\n")
        return result

    with pytest.raises(SmokeTestError) as info:
        smoke_test(
            Docker(noisy),
            IMAGE,
            timeout=1,
            clock=engine.clock,
            sleep=engine.clock.sleep,
            name=NAME,
            watchdog=Watchdog(),
        )
    message = info.value.message
    assert "\n" not in message
    assert "first" not in message
    assert "error: xxx" in message
    assert len(message) < 320


def test_a_silent_failing_probe_says_so() -> None:
    engine = Engine(healthcheck=HTTP_CHECK, healthy_after=None)
    original = engine.__call__

    def silent(args: Sequence[str], **kw: Any) -> Result:
        result = original(args, **kw)
        return Result(3, "") if args[1] == "exec" else result

    with pytest.raises(SmokeTestError) as info:
        smoke_test(
            Docker(silent),
            IMAGE,
            timeout=2,
            clock=engine.clock,
            sleep=engine.clock.sleep,
            name=NAME,
            watchdog=Watchdog(),
        )
    assert "health check still failing after 2 s (exit 3, no output);" in info.value.message


# -- through Docker: its one image inspection, its limits -------------------------------------


def test_the_image_is_inspected_once_for_the_whole_run() -> None:
    engine = Engine(healthcheck=HTTP_CHECK)
    docker = Docker(engine)
    assert docker.image_id(IMAGE) == "sha256:" + "1" * 64  # the release looked at it already
    smoke_test(
        docker, IMAGE, timeout=8, clock=engine.clock, sleep=engine.clock.sleep, name=NAME,
        watchdog=Watchdog(),
    )  # fmt: skip
    assert engine.verbs() == ["image", "run", "exec", "rm"]


def test_every_command_is_bounded_and_the_watchdog_acts_before_docker_does() -> None:
    watchdog = Watchdog()
    engine = Engine(healthcheck=HTTP_CHECK, healthy_after=1)
    smoke(engine, watchdog=watchdog, timeout=8)
    failed = Engine(exits_at=100.3, exit_code=1)
    failure(failed)
    assert dict(failed.limits)["logs"] == ANSWER_SECONDS
    limits = dict(engine.limits)
    assert limits["image"] == ANSWER_SECONDS
    assert limits["run"] == 30
    assert limits["inspect"] == limits["rm"] == ANSWER_SECONDS
    # a hung health command: the watchdog removes the container at 8 + 2 s; docker's own
    # limit on `docker exec` is a backstop after that
    assert watchdog.armed == [8 + WATCHDOG_GRACE_SECONDS]
    assert limits["exec"] == 8 + WATCHDOG_GRACE_SECONDS + ANSWER_SECONDS
    assert all(timeout is not None for _, timeout in engine.limits)


def test_a_daemon_that_hangs_mid_test_is_a_docker_error_and_the_container_is_removed() -> None:
    engine = Engine(healthcheck=HTTP_CHECK, healthy_after=None)
    hung = "gave no answer within 10 s"

    def hangs(args: Sequence[str], **kw: Any) -> Result:
        if args[1] == "inspect":
            engine.calls.append(list(args))
            return Result(TIMED_OUT, f"docker inspect {hung}\n", hung, "timeout")
        return engine(args, **kw)

    with pytest.raises(DockerError) as info:
        smoke_test(
            Docker(hangs, environ={"DOCKER_HOST": "unix:///hung.sock"}), IMAGE, timeout=8,
            clock=engine.clock, sleep=engine.clock.sleep, name=NAME, watchdog=Watchdog(),
        )  # fmt: skip
    assert not isinstance(info.value, SmokeTestError)
    assert info.value.message.startswith(f"`docker inspect` {hung}: the Docker daemon at ")
    assert_removed_last(engine)


# -- the removal after a pass, handed to the caller's pool ------------------------------------


def test_a_passed_images_container_is_removed_through_defer_while_the_caller_goes_on() -> None:
    engine = Engine(healthcheck=HTTP_CHECK)
    handed: list[Callable[[], None]] = []
    result = smoke(engine, defer=handed.append)
    assert result.outcome == HEALTHY
    assert engine.verbs() == ["image", "run", "exec"] and not engine.removed  # not yet
    assert result.seconds == pytest.approx(3 * engine.cost)  # the removal is not in it
    assert len(handed) == 1
    handed[0]()  # the pool's thread runs it
    assert_removed_last(engine)


def test_a_failed_images_container_is_removed_before_the_error_even_with_defer() -> None:
    engine = Engine(healthcheck=HTTP_CHECK, healthy_after=None)
    handed: list[Callable[[], None]] = []
    failure(engine, defer=handed.append, timeout=1)
    assert handed == []


def test_ctrl_c_with_defer_removes_the_container_before_the_interrupt_goes_on() -> None:
    engine = Engine(healthcheck=HTTP_CHECK, healthy_after=None)
    engine.during["exec"] = _raise_keyboard_interrupt
    handed: list[Callable[[], None]] = []
    with pytest.raises(KeyboardInterrupt):
        smoke(engine, defer=handed.append)
    assert handed == [] and engine.removed
    assert_removed_last(engine)


def test_a_pool_that_is_shutting_down_gets_no_removal_it_happens_here() -> None:
    engine = Engine(healthcheck=HTTP_CHECK)

    def closed(job: Callable[[], None]) -> None:
        raise RuntimeError("cannot schedule new futures after shutdown")

    assert smoke(engine, defer=closed).outcome == HEALTHY
    assert_removed_last(engine)


def _raise_keyboard_interrupt() -> None:
    raise KeyboardInterrupt
