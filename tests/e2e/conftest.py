"""Fixtures for the end-to-end tests: one local ECR stand-in per pytest session.

``stack`` is the session's :class:`~.stack.Stack`, up; its facts are at ``stack.info``
(a :class:`~.stack.StackState`). A test that takes it (directly or through ``project``,
``cli_env``, ...) may break it on purpose: the ``stack`` fixture heals it after the test.
Where the machine cannot host the stack (not root, no Docker engine can be started) the
tests are skipped, or fail when ``CI=true``.
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

import pytest

from .project import Project
from .stack import Stack, StackError, StackState, StackUnavailable

HERE = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Everything under tests/e2e is an e2e test (before -m selects on it)."""
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.e2e)


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
            msg = f"e2e stack unavailable: {exc.reason}"
            if os.environ.get("CI") == "true":
                pytest.fail(msg, pytrace=False)
            pytest.skip(msg)
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


@pytest.fixture
def project(
    stack: Stack,
    tmp_path: Path,
    ecr_repo_name: str,
    docker_config: Path,
    aws_secret_marker: str,
) -> Iterator[Project]:
    """A copy of the shipped project with its own .env, repository and caches; its images
    are removed from the engine afterwards."""
    proj = Project.create(
        tmp_path,
        repository=ecr_repo_name,
        stack_info=stack.info,
        docker_config=docker_config,
        marker=aws_secret_marker,
    )
    yield proj
    listed = subprocess.run(
        ["docker", "images", "--format", "{{.Repository}}:{{.Tag}}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    mine = [ref for ref in listed if ref.split(":")[0].endswith(ecr_repo_name)]
    if mine:
        subprocess.run(["docker", "rmi", "-f", *mine], capture_output=True, check=False)
