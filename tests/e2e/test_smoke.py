"""The smoke test against the real engine: tiny images that pass and fail each way, the
shipped image, and no container left behind, whatever happens (a signal included)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ecr_release.errors import SmokeTestError
from ecr_release.flows.smoke import HEALTHY, ONE_SHOT, SMOKE_LABEL, SmokeResult, smoke_test
from ecr_release.outside.docker import Docker, SubprocessRunner
from ecr_release.outside.engine import local_engine
from ecr_release.outside.localstate import cache_dir

from .backends import Backend
from .project import ROOT, Project, docker, one_line_error

LEFT = ("ps", "-a", "--filter", f"label={SMOKE_LABEL}=1", "-q")

# Loopback only: with --network none the container keeps 127.0.0.1, and nothing else.
SERVE = 'CMD ["python3", "-m", "http.server", "8000", "--bind", "127.0.0.1", "--directory", "/tmp"]'
PROBE = (
    'HEALTHCHECK --interval=10s --timeout=3s CMD ["python3", "-c", '
    "\"import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/', timeout=2)\"]"
)
# The same, naming localhost: Docker writes /etc/hosts, which the API's container must get too.
BY_NAME = (
    'HEALTHCHECK --interval=10s --timeout=3s CMD ["python3", "-c", '
    "\"import urllib.request; urllib.request.urlopen('http://localhost:8000/', timeout=2)\"]"
)
SLEEP = 'CMD ["python3", "-c", "import time; time.sleep(600)"]'
CRASH = 'CMD ["python3", "-c", "import sys; print(\'boom: no config\', flush=True); sys.exit(1)"]'

Build = Callable[..., str]


@pytest.fixture
def build(engine: str, tmp_path: Path) -> Iterator[Build]:
    """``build(*instructions)``: an image FROM the e2e base image, removed after the test."""
    tags: list[str] = []

    def make(*instructions: str) -> str:
        context = tmp_path / f"image-{len(tags)}"
        context.mkdir()
        body = "\n".join((f"FROM {engine}", *instructions))
        (context / "Dockerfile").write_text(body + "\n")
        tag = f"smoke-e2e-{uuid.uuid4().hex[:10]}:latest"
        tags.append(tag)
        docker("build", "-q", "-t", tag, str(context))
        return tag

    yield make
    for tag in tags:
        docker("rmi", "-f", tag, check=False)


@pytest.fixture(autouse=True)
def _no_smoke_container_survives() -> Iterator[None]:
    yield
    # Clean up after a failed test (each test asserts there is nothing to clean).
    left = docker(*LEFT, check=False).split()
    if left:
        docker("rm", "-f", *left, check=False)


Smoke = Callable[..., SmokeResult]


def through(way: str) -> Docker:
    """Docker with the smoke test's container run by the CLI (``docker run --network
    none``), or through the engine's API on its local socket, as a release here runs it."""
    if way == "cli":
        return Docker(SubprocessRunner())
    engine = local_engine(os.environ, cache_dir(os.environ) / "engine")  # as a release's
    assert engine is not None, "the e2e engine is not on a local socket"
    return Docker(SubprocessRunner(), engine=engine)


@pytest.fixture(params=["cli", "api"])
def smoke(request: pytest.FixtureRequest) -> Smoke:
    """``smoke(image, timeout=8)``, once each way the container can be run."""
    docker = through(request.param)
    return lambda image, timeout=8: smoke_test(docker, image, timeout=timeout)


def failed(smoke: Smoke, image: str, timeout: float = 8) -> tuple[SmokeTestError, float]:
    start = time.monotonic()
    with pytest.raises(SmokeTestError) as info:
        smoke(image, timeout)
    return info.value, time.monotonic() - start


def assert_nothing_left() -> None:
    assert docker(*LEFT) == ""


def test_a_healthy_image_passes_long_before_dockers_first_check(build: Build, smoke: Smoke) -> None:
    image = build(SERVE, PROBE)
    result = smoke(image)
    print(f"\nhealthy image (HEALTHCHECK --interval=10s): passed in {result.seconds:.2f} s")
    assert result.outcome == HEALTHY
    assert result.seconds < 5
    assert_nothing_left()


def test_a_health_check_that_names_localhost_passes(build: Build, smoke: Smoke) -> None:
    result = smoke(build(SERVE, BY_NAME))
    assert result.outcome == HEALTHY
    assert_nothing_left()


def test_an_image_whose_command_is_missing_cannot_start(build: Build, smoke: Smoke) -> None:
    # Through the API the daemon refuses to start it: the container is removed and the CLI
    # runs it, so the error reads as it always did.
    image = build('CMD ["/no/such/server"]', PROBE)
    error, took = failed(smoke, image)
    assert error.message.startswith(f"smoke test of {image} failed: could not start: ")
    assert "/no/such/server" in error.message
    assert took < 5
    assert_nothing_left()


def test_a_healthcheck_that_always_fails_fails_at_the_timeout(build: Build, smoke: Smoke) -> None:
    image = build(SLEEP, 'HEALTHCHECK --interval=10s CMD ["python3", "-c", "raise SystemExit(3)"]')
    error, took = failed(smoke, image, timeout=4)
    assert error.message == (
        f"smoke test of {image} failed: health check still failing after 4 s "
        "(exit 3, no output); the version was not released"
    )
    assert 4 <= took < 8
    assert_nothing_left()


@pytest.mark.parametrize("healthcheck", [(), (PROBE,)], ids=["no-healthcheck", "healthcheck"])
def test_a_process_that_exits_1_at_start_fails_with_its_log(
    build: Build, smoke: Smoke, healthcheck: tuple[str, ...]
) -> None:
    image = build(CRASH, *healthcheck)
    error, took = failed(smoke, image, timeout=30)
    assert "exited with code 1" in error.message
    assert error.exit_code == 8
    assert error.log_tail == ["boom: no config"]
    assert took < 5  # seen when it happened, not at the timeout
    assert_nothing_left()


def test_an_image_without_healthcheck_that_keeps_running_passes_after_3_s(
    build: Build, smoke: Smoke
) -> None:
    result = smoke(build(SLEEP))
    assert result.outcome == "running after 3 s"
    assert 3 <= result.seconds < 5
    assert_nothing_left()


def test_a_one_shot_image_that_exits_0_passes(build: Build, smoke: Smoke) -> None:
    result = smoke(build('CMD ["python3", "-c", "print(\'done\')"]'))
    assert result.outcome == ONE_SHOT
    assert result.seconds < 3
    assert_nothing_left()


def test_a_health_command_that_never_returns_is_stopped_after_the_timeout(
    build: Build, smoke: Smoke
) -> None:
    hang = 'HEALTHCHECK --interval=10s CMD ["python3", "-c", "import time; time.sleep(600)"]'
    error, took = failed(smoke, build(SLEEP, hang), timeout=3)
    assert "its health check command did not return within 3 s" in error.message
    assert took < 9  # the timeout, the watchdog's 2 s and the removal
    assert_nothing_left()


def test_the_shipped_image_passes_in_about_a_second(
    engine: str, tmp_path: Path, smoke: Smoke
) -> None:
    context = tmp_path / "shipped"
    context.mkdir()
    for name in ("Dockerfile", ".dockerignore"):
        shutil.copy2(ROOT / name, context / name)
    shutil.copytree(
        ROOT / "widget_server",
        context / "widget_server",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    tag = f"smoke-e2e-widget-{uuid.uuid4().hex[:10]}:v1"
    docker("build", "-q", "--build-arg", f"BASE_IMAGE={engine}", "-t", tag, str(context))
    try:
        runs = [smoke(tag, timeout=60) for _ in range(3)]
    finally:
        docker("rmi", "-f", tag, check=False)
    seconds = [round(run.seconds, 2) for run in runs]
    print(f"\nshipped image: smoke test took {seconds} s")
    assert {run.outcome for run in runs} == {HEALTHY}
    assert min(seconds) < 2
    assert_nothing_left()


def test_through_the_api_the_container_has_a_loopback_and_no_network_sandbox(
    build: Build,
) -> None:
    """What the API is for: the isolation of ``--network none`` (a loopback, nothing else)
    without libnetwork's sandbox, whose hook runs dockerd again at each start (Engine < 28)."""
    image = build(SLEEP)
    names = {way: f"ecr-release-smoke-e2e-{way}-{uuid.uuid4().hex[:8]}" for way in ("cli", "api")}
    try:
        for way, name in names.items():
            started = through(way).containers.run_detached(name, image, labels={SMOKE_LABEL: "1"})
            assert started.returncode == 0, started.output
        seen = {}
        for way, name in names.items():
            net = docker("exec", name, "cat", "/proc/net/dev").splitlines()[2:]
            assert [line.split(":")[0].strip() for line in net] == ["lo"], way
            hosts = docker("exec", name, "getent", "hosts", "localhost", check=False)
            assert "localhost" in hosts, way
            probe = (
                "import socket; s = socket.create_server(('127.0.0.1', 0)); "
                "socket.create_connection(s.getsockname()).close(); print('up')"
            )
            assert docker("exec", name, "python3", "-c", probe).strip() == "up", way
            seen[way] = json.loads(docker("inspect", name))[0]
        api, cli = seen["api"], seen["cli"]
        assert api["Config"].get("NetworkDisabled") is True
        assert api["HostConfig"]["NetworkMode"] == "none"
        assert api["NetworkSettings"]["SandboxKey"] == ""  # no sandbox: no hook
        assert cli["NetworkSettings"]["SandboxKey"] != ""
        assert api["Config"]["Labels"][SMOKE_LABEL] == "1"
    finally:
        docker("rm", "-f", *names.values(), check=False)


SCRIPT = """
import sys
from tests.e2e.test_smoke import through
from ecr_release.flows.smoke import smoke_test
smoke_test(through(sys.argv[2]), sys.argv[1], timeout=60)
"""


@pytest.mark.parametrize("way", ["cli", "api"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_mid_test_stops_it_and_removes_the_container(
    build: Build, signum: signal.Signals, way: str
) -> None:
    image = build(SLEEP, 'HEALTHCHECK --interval=10s CMD ["python3", "-c", "raise SystemExit(1)"]')
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, image, way],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not docker(*LEFT) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert docker(*LEFT), "the smoke-test container never appeared"
        time.sleep(0.5)  # inside the health check loop
        proc.send_signal(signum)
        sent = time.monotonic()
        _, stderr = proc.communicate(timeout=30)
        stopped_in = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode != 0
    assert "KeyboardInterrupt" in stderr
    assert stopped_in < 5
    assert_nothing_left()


# -- the gate in `inv release` ------------------------------------------------------------


def _no_smoke_container_left() -> None:
    assert docker(*LEFT) == ""


@pytest.mark.parametrize(
    ("change", "state", "logged"),
    [
        (
            ("HEALTHCHECK --interval=10s", "HEALTHCHECK --interval=10s CMD false\n# was: "),
            "health check still failing after 5 s",
            "widget_server listening",
        ),
        (
            (
                'CMD ["python3", "-m", "widget_server"]',
                'CMD ["python3", "-c", "import sys; sys.exit(\'config file missing\')"]',
            ),
            "exited with code 1",
            "config file missing",
        ),
    ],
    ids=["health-check-fails", "process-exits"],
)
@pytest.mark.backends("stack", "sandbox")
def test_a_release_that_fails_its_smoke_test_pushes_nothing(
    project: Project, backend: Backend, change: tuple[str, str], state: str, logged: str
) -> None:
    dockerfile = project.root / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text().replace(*change, 1))
    project.write_env(SMOKE_TIMEOUT="5")
    done = project.inv("release", "--version", "v1")
    line = one_line_error(done)
    assert done.returncode == 8
    assert state in line and "the version was not released" in line
    # The container's last log lines, above the error.
    assert any(line.startswith("  | ") and logged in line for line in done.stderr.splitlines())
    # The candidate's push ran beside the smoke test; it was stopped, or what it pushed
    # was removed: neither the version nor the candidate tag is left.
    assert backend.registry_tags(project.repository) == []
    _no_smoke_container_left()


@pytest.mark.backends("stack", "sandbox")
def test_the_shipped_image_passes_its_smoke_test_in_a_release(
    project: Project, backend: Backend
) -> None:
    done = project.inv("release", "--version", "v1", "--json")
    assert done.returncode == 0, done.stderr
    steps = json.loads(done.stdout)["steps"]
    assert list(steps) == ["check", "build", "ensure-repo", "login", "gates", "smoke-test"]
    print(f"smoke-test step: {steps['smoke-test']:.2f} s")
    assert "smoke-test passed: health check passed" in done.stderr
    _no_smoke_container_left()
