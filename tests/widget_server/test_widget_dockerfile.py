"""The Dockerfile and .dockerignore, checked without a Docker engine.

The end-to-end suite builds and runs the image; these tests pin the properties
that a careless edit would silently lose (cache order, classic-builder syntax,
non-root user, a working healthcheck, secrets kept out of the context).
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from ecr_release.model.buildcontext import DockerIgnore
from ecr_release.model.dockerfile import Dockerfile, split_labels
from ecr_release.model.fingerprint import BaseImage, Fingerprint, base_labels
from ecr_release.model.inputs import build_metadata
from ecr_release.outside.git import Revision
from widget_server import WidgetServer

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_METADATA_ARGS = ("APP_VERSION", "VCS_REF", "BUILD_DATE", "SOURCE_URL")


def _instructions() -> list[tuple[str, str]]:
    """(KEYWORD, arguments) for each instruction, continuation lines joined."""
    text = (REPO_ROOT / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    result: list[tuple[str, str]] = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, args = line.strip().partition(" ")
            result.append((keyword.upper(), args.strip()))
    return result


def _args(keyword: str) -> list[str]:
    return [args for kw, args in _instructions() if kw == keyword]


def _exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list)
    return [str(part) for part in value]


def test_base_image_is_a_build_argument_defaulting_to_python_slim() -> None:
    assert _instructions()[:2] == [
        ("ARG", "BASE_IMAGE=python:3.12-slim"),
        ("FROM", "${BASE_IMAGE}"),
    ]


def test_build_metadata_is_declared_after_the_last_filesystem_step() -> None:
    # An ARG whose value changes every build (BUILD_DATE) invalidates the
    # classic builder's cache for each RUN after it.
    keywords = [kw for kw, _ in _instructions()]
    last_fs_step = max(i for i, kw in enumerate(keywords) if kw in {"COPY", "ADD", "RUN"})
    declared = {
        word.split("=", 1)[0]: i
        for i, (kw, args) in enumerate(_instructions())
        if kw == "ARG"
        for word in shlex.split(args)
    }
    for name in BUILD_METADATA_ARGS:
        assert declared[name] > last_fs_step, name
    assert "APP_VERSION=dev" in shlex.split(_args("ARG")[-1])


def test_after_the_code_only_one_arg_one_env_one_label() -> None:
    # The classic builder makes a container and a commit for each instruction after a
    # changed layer: a code change should cost three, not one per setting or label.
    keywords = [kw for kw, _ in _instructions()]
    after_copy = keywords[max(i for i, kw in enumerate(keywords) if kw == "COPY") + 1 :]
    assert after_copy == ["ARG", "ENV", "LABEL"]


def test_the_release_suite_finds_every_label_it_stamps(tmp_path: Path) -> None:
    # Each label the suite wants must come from a build argument of the Dockerfile's LABEL,
    # or the suite adds it with --label: one more build step per label.
    build_args, labels = build_metadata("v1", "2026-11-27T12:00:00Z", Revision("abc", None), None)
    found = Fingerprint(*(f"sha256:{c * 64}" for c in "abcd"))
    bases = [BaseImage("python:3.12-slim", "python@sha256:" + "e" * 64, final=True)]
    wanted = {**labels, **found.labels(), **base_labels(bases)}
    dockerfile = Dockerfile.read(REPO_ROOT / "Dockerfile", build_args)
    carried, passed = split_labels(dockerfile, wanted, build_args)
    assert passed == {}
    assert carried["RELEASE_FINGERPRINT"] == found.digest
    assert carried["BASE_DIGEST"] == "sha256:" + "e" * 64


def test_version_and_oci_labels_come_from_the_build_arguments() -> None:
    assert "APP_VERSION=${APP_VERSION}" in _args("ENV")
    labels = " ".join(_args("LABEL"))
    for key, arg in [
        ("version", "APP_VERSION"),
        ("revision", "VCS_REF"),
        ("created", "BUILD_DATE"),
        ("source", "SOURCE_URL"),
    ]:
        assert f'org.opencontainers.image.{key}="${{{arg}}}"' in labels
    assert 'org.opencontainers.image.title="widget-server"' in labels


def test_only_the_package_is_copied() -> None:
    assert _args("COPY") == ["widget_server/ /app/widget_server/"]
    assert _args("ADD") == []


def test_classic_builder_syntax_only() -> None:
    for keyword, args in _instructions():
        for buildkit_only in ("--mount", "--chmod", "--link", "<<"):
            assert buildkit_only not in args, keyword


def test_runs_as_a_numeric_non_root_user() -> None:
    (user,) = _args("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) >= 1000
    assert gid.isdigit() and int(gid) >= 1000


def test_runtime_settings() -> None:
    env = " ".join(_args("ENV"))
    assert "PYTHONUNBUFFERED=1" in env
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert _args("EXPOSE") == ["8080"]
    # Exec form with python3: the process is PID 1 and gets SIGTERM itself,
    # and bases without a `python` alias still work.
    assert _exec_form(_args("CMD")[0]) == ["python3", "-m", "widget_server"]


def _healthcheck_command() -> list[str]:
    """The HEALTHCHECK's argv as it runs here: this Python, and the image's ``/app/``
    (``WORKDIR``, where ``widget_server/`` is copied) as this checkout."""
    (healthcheck,) = _args("HEALTHCHECK")
    _, _, command = healthcheck.partition(" CMD ")
    argv = _exec_form(command)
    assert argv[0] == "python3"
    assert "COPY widget_server/ /app/widget_server/" in [f"COPY {a}" for a in _args("COPY")]
    local = [str(REPO_ROOT / arg[len("/app/") :]) if arg.startswith("/app/") else arg
             for arg in argv[1:]]  # fmt: skip
    return [sys.executable, *local]


def test_healthcheck_passes_against_a_live_server(server: WidgetServer) -> None:
    argv = _healthcheck_command()
    result = subprocess.run(argv, env={"PORT": str(server.port)}, capture_output=True, timeout=10)
    assert result.returncode == 0, result.stderr


def test_healthcheck_fails_when_nothing_listens(server: WidgetServer) -> None:
    port = server.port
    server.shutdown()
    server.server_close()
    result = subprocess.run(
        _healthcheck_command(), env={"PORT": str(port)}, capture_output=True, timeout=10
    )
    assert result.returncode == 1
    assert result.stderr.decode().startswith(f"unhealthy: 127.0.0.1:{port}: ")


def test_healthcheck_imports_nothing_but_the_standard_librarys_socket() -> None:
    """Run by its path with -I, as Docker runs it: none of the service is imported, nor
    urllib (its import alone costs more than the whole check)."""
    argv = _healthcheck_command()
    assert argv[1] == "-I" and argv[2].endswith("widget_server/healthcheck.py")
    probe = (
        "import runpy, sys; sys.argv = [sys.argv[1]]; "
        "import os; os.environ['PORT'] = '1'; "
        "code = 0\n"
        "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n"
        "except SystemExit as exc:\n    code = exc.code\n"
        "print(sorted(m for m in sys.modules if m.startswith(('widget_server', 'urllib', "
        "'http', 'app', 'store'))), code)"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", probe, argv[2]], capture_output=True, text=True, timeout=10
    )
    assert result.stdout.split() == ["[]", "1"], result.stderr


@pytest.mark.parametrize(
    "path",
    [
        ".env",
        ".env.local",
        "config/.env",
        "config/.env.production",
        ".aws/credentials",
        "deploy/.aws/config",
        ".git/HEAD",
        ".venv/pyvenv.cfg",
        "tests/widget_server/conftest.py",
        "widget_server/__pycache__/app.cpython-311.pyc",
        "widget_server/stale.pyc",
        ".pytest_cache/v/cache/nodeids",
        ".mypy_cache/3.11/app.json",
        ".ruff_cache/CACHEDIR.TAG",
    ],
)
def test_dockerignore_keeps_out(path: str) -> None:
    ignore = DockerIgnore((REPO_ROOT / ".dockerignore").read_text())
    assert ignore.excludes(path)


@pytest.mark.parametrize(
    "path", ["widget_server/app.py", "widget_server/__main__.py", "Dockerfile", ".env.example"]
)
def test_dockerignore_lets_through(path: str) -> None:
    ignore = DockerIgnore((REPO_ROOT / ".dockerignore").read_text())
    assert not ignore.excludes(path)
