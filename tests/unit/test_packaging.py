"""The wheel another repository installs: the package and what running it needs, nothing
else. The service this repository ships (``widget_server/``), the tests and the benchmarks
stay out, and so do the dev tools (the ``dev`` group): they never reach a user's install.
The e2e test ``tests/e2e/test_as_a_library.py`` installs this wheel and releases with it.
"""

from __future__ import annotations

import re
import zipfile
from email.parser import Parser
from pathlib import Path

from tests.wheel import ROOT, pyproject


def _names(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


def _metadata(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return archive.read(name).decode()


def _project_name(requirement: str) -> str:
    """``moto[ecr,sts]>=5.0 ; extra == 'x'`` -> ``moto`` (normalized, PEP 503)."""
    found = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert found, requirement
    return re.sub(r"[-_.]+", "-", found.group(1)).lower()


def _requires(wheel: Path) -> set[str]:
    headers = Parser().parsestr(_metadata(wheel), headersonly=True)
    return {_project_name(req) for req in headers.get_all("Requires-Dist") or []}


def test_the_wheel_holds_the_package_and_not_the_service(wheel: Path) -> None:
    names = _names(wheel)
    tops = {name.split("/", 1)[0] for name in names}
    assert "widget_server" not in tops
    assert not [n for n in names if n.startswith(("widget_server/", "tests/", "benchmarks/"))]
    assert "ecr_release/cli/tasks.py" in names
    assert "ecr_release/cli/worker.py" in names  # each service's release runs it (-m)
    assert {t for t in tops if not t.endswith(".dist-info")} == {"ecr_release"}


def test_the_wheel_holds_every_module_of_the_package(wheel: Path) -> None:
    source = {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "ecr_release").rglob("*.py")
        if "__pycache__" not in path.parts
    }
    assert source <= set(_names(wheel))


def test_the_wheel_requires_what_running_needs_and_no_dev_tool(wheel: Path) -> None:
    requires = _requires(wheel)
    assert {"invoke", "boto3", "python-dotenv"} <= requires
    declared = pyproject()
    assert requires == {_project_name(dep) for dep in declared["project"]["dependencies"]}
    assert not requires & {"pytest", "ruff", "mypy"}
    dev = {_project_name(dep) for dep in declared["dependency-groups"]["dev"]}
    # moto is in both: the sandbox needs its ECR and STS; the tests, its server.
    assert not requires & (dev - {"moto"})
