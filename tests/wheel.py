"""The package as another repository gets it: the wheel ``uv build --wheel`` makes.

``build_wheel`` builds it from this checkout (the ``wheel`` fixture in ``tests/conftest.py``
does so once per session, for the unit test of its contents and the e2e test that
installs it in a project of its own). ``uv_binary`` is uv itself: ``$UV`` (``uv run``
sets it), else ``uv`` on PATH, resolved through pyenv when that is a shim.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def uv_binary() -> str:
    """uv itself, not a version manager's shim in front of it (which costs a shell's start)."""
    found = os.environ.get("UV") or shutil.which("uv") or "uv"
    if "/shims/" in found:
        done = subprocess.run(["pyenv", "which", "uv"], capture_output=True, text=True)
        found = done.stdout.strip() or found
    return found


def build_wheel(out: Path) -> Path:
    """``uv build --wheel`` of this checkout into ``out``; the wheel's path."""
    done = subprocess.run(
        [uv_binary(), "build", "--wheel", "--out-dir", str(out), str(ROOT)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"uv build --wheel: {done.stdout}{done.stderr}"
    wheels = sorted(out.glob("ecr_release-*.whl"))
    assert len(wheels) == 1, f"uv build --wheel made {wheels}"
    return wheels[0]


def pyproject() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)


def constraints(path: Path) -> Path:
    """The project's pinned resolution (``[tool.uv] constraint-dependencies``) as a
    constraints file for ``uv pip install -c``."""
    pins = pyproject()["tool"]["uv"]["constraint-dependencies"]
    path.write_text("".join(f"{pin}\n" for pin in pins))
    return path
