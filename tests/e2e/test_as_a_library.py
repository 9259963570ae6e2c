"""The suite used from another repository: its wheel installed in a project of its own.

The project is what the README's "Use it from another repository" describes: a venv with
the wheel (``uv build --wheel``) installed, a two-line ``tasks.py``, one service declared
in its own ``pyproject.toml``, its Dockerfile, a ``.env``, a git commit. Its ``inv
release --version v1 --sandbox`` releases to the session's sandbox (the same
``XDG_CACHE_HOME``). Nothing of this checkout is on its path: not ``widget_server``, not
the package's source (the scratch venv's ``ecr_release`` is the wheel's).

The dependencies resolve from the package index (or uv's cache) with this project's pinned
resolution as constraints (``[tool.uv] constraint-dependencies``): the versions the rest
of the suite is tested with.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from tests.wheel import constraints, uv_binary

from .backends import SandboxBackend
from .project import remove_images

TASKS_PY = """\
from ecr_release.cli.tasks import namespace

ns = namespace(__file__)
"""
PYPROJECT = """\
[project]
name = "hello"
version = "0.1.0"
requires-python = ">=3.11"

[tool.ecr-release.services.hello]
context = "hello"
repository = "{repository}"
"""
# No HEALTHCHECK: the smoke test passes when the container still runs after 3 s.
DOCKERFILE = """\
FROM {base_image}
CMD ["python3", "-c", "import time; time.sleep(600)"]
"""
# Where the scratch venv's Python finds ecr_release, and whether widget_server is there.
WHERE = """\
import importlib.util, json, ecr_release
print(json.dumps({"ecr_release": ecr_release.__file__,
                  "widget_server": importlib.util.find_spec("widget_server") is not None}))
"""
GIT = ["git", "-c", "user.name=e2e", "-c", "user.email=e2e@example.invalid"]


def run(
    argv: list[str], *, cwd: Path, env: Mapping[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """``argv``, which must exit 0."""
    done = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{' '.join(argv)}: {done.stdout}{done.stderr}"
    return done


def scratch_venv(wheel: Path, where: Path) -> Path:
    """A venv at ``where`` with the same Python as this run and the wheel installed in it;
    its ``bin`` folder."""
    uv = uv_binary()
    run([uv, "venv", "--quiet", "--python", sys.executable, str(where)], cwd=where.parent)
    python = where / "bin" / "python"
    pins = constraints(where.parent / "constraints.txt")
    install = [uv, "pip", "install", "--quiet", "--python", str(python), "-c", str(pins)]
    run([*install, str(wheel)], cwd=where.parent)
    return python.parent


def scratch_project(root: Path, *, repository: str, registry_image: str, base_image: str) -> None:
    """Another repository's project: two-line tasks.py, one declared service, committed."""
    (root / "hello").mkdir(parents=True)
    (root / "tasks.py").write_text(TASKS_PY)
    (root / "pyproject.toml").write_text(PYPROJECT.format(repository=repository))
    (root / "hello" / "Dockerfile").write_text(DOCKERFILE.format(base_image=base_image))
    (root / ".env").write_text(f"SANDBOX_REGISTRY_IMAGE={registry_image}\n")
    (root / ".gitignore").write_text(".env\n")
    run([*GIT, "init", "-q"], cwd=root)
    run([*GIT, "add", "-A"], cwd=root)
    run([*GIT, "commit", "-qm", "hello"], cwd=root)


@pytest.fixture
def repository(ecr_repo_name: str) -> Iterator[str]:
    """The test's repository; its images are removed from the engine afterwards."""
    yield ecr_repo_name
    with contextlib.suppress(AssertionError, OSError):
        remove_images(ecr_repo_name)


def test_a_project_with_the_wheel_installed_releases_its_own_service(
    session_sandbox: SandboxBackend, wheel: Path, repository: str, tmp_path: Path
) -> None:
    bin_dir = scratch_venv(wheel, tmp_path / "venv")
    root = tmp_path / "project"
    scratch_project(
        root,
        repository=repository,
        registry_image=session_sandbox.image,
        base_image=session_sandbox.base_image,
    )
    (tmp_path / "home").mkdir()
    (tmp_path / "docker-config").mkdir()
    env = session_sandbox.env(tmp_path / "home", tmp_path / "docker-config")
    # As with the scratch venv activated, and without this run's venv on PATH at all.
    ours = str(Path(sys.executable).parent)
    path = [p for p in env["PATH"].split(os.pathsep) if p and p != ours]
    env["PATH"] = os.pathsep.join([str(bin_dir), *path])

    done = run([str(bin_dir / "inv"), "release", "--version", "v1", "--sandbox"], cwd=root, env=env)

    assert "released and verified" in done.stdout, done.stdout
    assert session_sandbox.registry_tags(repository) == ["v1"]
    where = json.loads(run([str(bin_dir / "python"), "-c", WHERE], cwd=root, env=env).stdout)
    assert where["widget_server"] is False
    assert Path(where["ecr_release"]).is_relative_to(tmp_path / "venv")
