"""Fixtures for the end-to-end tests: two targets, the root stack and the local sandbox.

``stack`` is the session's :class:`~.stack.Stack`, up; its facts are at ``stack.info``
(a :class:`~.stack.StackState`). A test that takes it (directly or through ``project``,
``cli_env``, ...) may break it on purpose: the ``stack`` fixture heals it after the test.
It needs root: where the machine cannot host it (not root, no Docker engine can be
started) its tests are skipped, or fail when ``CI=true``.

``session_sandbox`` is the product's own local sandbox (``inv sandbox up``), one per
session, under a private ``XDG_CACHE_HOME``; it needs no root, only ``engine``: a Docker
engine that answers, with the base image and the registry image (root makes them; a
non-root user's run fails when ``CI=true`` and they are missing, and skips otherwise).

``project`` releases to a ``backend``: the stack unless the test (or its module) says
``@pytest.mark.backends("stack", "sandbox")``; then it runs once on each. Every e2e test
is marked by what it needs: ``root_stack`` (the root stack) or ``sandbox`` (no root: the
sandbox, or the engine alone). A non-root CI run selects ``-m sandbox``: the root-only
tests are deselected there, never skipped.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import NoReturn

import pytest

from .backends import Backend, SandboxBackend, StackBackend
from .project import Project
from .stack import Stack, StackError, StackState, StackUnavailable
from .stack.machine import BASE_IMAGE, REGISTRY_IMAGE, ensure_images, image_exists
from .stack.services import docker_answers

HERE = Path(__file__).resolve().parent
BACKENDS = ("stack", "sandbox")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``backend`` (and so ``project``) runs on the backends the closest ``backends``
    marker names (the stack when none does), each variant marked with what it needs."""
    if "backend" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("backends")
    names = marker.args if marker else ("stack",)
    unknown = set(names) - set(BACKENDS)
    if unknown:
        raise pytest.UsageError(f"unknown backends {sorted(unknown)}: know {BACKENDS}")
    params = [
        pytest.param(name, id=name, marks=pytest.mark.root_stack if name == "stack" else [])
        for name in names
    ]
    metafunc.parametrize("backend", params, indirect=True)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Everything under tests/e2e is an e2e test, and needs either the root stack or not
    (before -m selects on them)."""
    for item in items:
        if not item.path.is_relative_to(HERE):
            continue
        item.add_marker(pytest.mark.e2e)
        names = set(getattr(item, "fixturenames", ()))
        callspec = getattr(item, "callspec", None)
        chosen = callspec.params.get("backend") if callspec is not None else None
        if chosen == "stack" or "session_stack" in names:
            if item.get_closest_marker("root_stack") is None:
                item.add_marker(pytest.mark.root_stack)
        elif chosen == "sandbox" or "engine" in names:
            item.add_marker(pytest.mark.sandbox)
        else:
            raise pytest.UsageError(f"{item.nodeid} needs neither the stack nor the engine")


def _unavailable(reason: str) -> NoReturn:
    """In CI a target that cannot come up is a failure, never a skip."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def _sigterm_as_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="session")
def session_stack() -> Iterator[Stack]:
    """The local ECR stand-in, up for the whole session and torn down at its end."""
    s = Stack()
    # SIGTERM would kill pytest without running finalizers; make it an interrupt instead.
    old_term = signal.getsignal(signal.SIGTERM)
    if old_term is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    atexit.register(s.down)  # last resort; down() is idempotent
    try:
        try:
            s.up()
        except StackUnavailable as exc:
            _unavailable(f"e2e stack unavailable: {exc.reason}")
        except StackError as exc:
            pytest.fail(f"e2e stack failed to come up: {exc}", pytrace=False)
        yield s
    finally:
        try:
            s.down()
        finally:
            atexit.unregister(s.down)
            if old_term is signal.SIG_DFL:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)


@pytest.fixture
def stack(session_stack: Stack) -> Iterator[Stack]:
    """The session's stack; after the test (which may have broken it on purpose) it is healed.

    Every fixture that needs the stack takes this one, so exactly the tests that use it heal it.
    """
    yield session_stack
    session_stack.heal()


@pytest.fixture
def silent_socket(tmp_path: Path) -> Iterator[str]:
    """A daemon socket (for DOCKER_HOST) that takes the connection and never answers."""
    path = tmp_path / "silent.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        sock.listen(16)
        yield f"unix://{path}"


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """An HTTP endpoint (for AWS_ENDPOINT_URL) that takes every connection and never
    answers: a TCP listener on loopback whose backlog nobody reads."""
    with socket.socket(socket.AF_INET) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def stack_info(stack: Stack) -> StackState:
    return stack.info


@pytest.fixture
def docker_config(tmp_path: Path) -> Path:
    """A throwaway DOCKER_CONFIG: `docker login` must not touch the developer's config."""
    d = tmp_path / "docker-config"
    d.mkdir()
    return d


@pytest.fixture
def aws_secret_marker() -> str:
    """The secret access key given to the CLI: a unique string that must never be printed."""
    return f"e2e-SECRET-marker-{uuid.uuid4().hex}"


@pytest.fixture
def cli_env(
    stack: Stack, docker_config: Path, aws_secret_marker: str, tmp_path: Path
) -> dict[str, str]:
    """The complete environment for running the product's CLI as a subprocess."""
    home = tmp_path / "home"
    home.mkdir()
    return stack.cli_env(docker_config, secret_access_key=aws_secret_marker, home=home)


@pytest.fixture
def ecr_repo_name() -> str:
    """A unique ECR repository name per test, so tests never collide."""
    return f"e2e-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def docker_images_to_remove() -> Iterator[list[str]]:
    """Append image references here; they are removed from the engine after the test."""
    refs: list[str] = []
    yield refs
    for ref in refs:
        with contextlib.suppress(OSError):
            subprocess.run(["docker", "rmi", "-f", ref], capture_output=True, check=False)


@pytest.fixture(scope="session")
def engine(request: pytest.FixtureRequest) -> str:
    """A Docker engine that answers, holding the base image and the sandbox's registry
    image; the base image's name. Root makes what is missing (starting the stack when no
    engine answers: it starts dockerd, and stops it last); another user cannot."""
    if not docker_answers():
        if os.geteuid() != 0:
            _unavailable("no Docker engine answers (as a non-root user: in the docker group?)")
        request.getfixturevalue("session_stack")
    if os.geteuid() == 0:
        try:
            ensure_images(BASE_IMAGE, REGISTRY_IMAGE)
        except StackUnavailable as exc:
            _unavailable(f"cannot make the e2e images: {exc.reason}")
    missing = [image for image in (BASE_IMAGE, REGISTRY_IMAGE) if not image_exists(image)]
    if missing:
        _unavailable(
            f"missing images {', '.join(missing)}: as root, run `python -m tests.e2e.stack images`"
        )
    return BASE_IMAGE


@pytest.fixture(scope="session")
def session_sandbox(
    engine: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SandboxBackend]:
    """The local sandbox for the whole session (``inv sandbox up``), down at its end."""
    work = tmp_path_factory.mktemp("sandbox")
    sandbox = SandboxBackend(work / "cache", base_image=engine)
    home, docker_config = work / "home", work / "docker-config"
    home.mkdir()
    docker_config.mkdir()
    try:
        up = sandbox.cli("sandbox", "up", home=home, docker_config=docker_config)
        assert up.returncode == 0, f"inv sandbox up: {up.stdout}{up.stderr}"
        yield sandbox
    finally:
        down = sandbox.cli("sandbox", "down", home=home, docker_config=docker_config)
        assert down.returncode == 0, f"inv sandbox down: {down.stdout}{down.stderr}"


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> Backend:
    """Where ``project`` releases: the root stack (healed after the test) or the sandbox."""
    name = getattr(request, "param", "stack")
    if name == "sandbox":
        sandbox: SandboxBackend = request.getfixturevalue("session_sandbox")
        return sandbox
    stack: Stack = request.getfixturevalue("stack")
    return StackBackend(stack.info)


@pytest.fixture
def project(
    backend: Backend,
    tmp_path: Path,
    ecr_repo_name: str,
    docker_config: Path,
    aws_secret_marker: str,
) -> Iterator[Project]:
    """A copy of the shipped project with its own .env, repository and caches, releasing to
    ``backend``; its images are removed from the engine afterwards."""
    proj = Project.create(
        tmp_path,
        repository=ecr_repo_name,
        backend=backend,
        docker_config=docker_config,
        marker=aws_secret_marker,
    )
    yield proj
    with contextlib.suppress(AssertionError, OSError):
        proj.remove_images()
