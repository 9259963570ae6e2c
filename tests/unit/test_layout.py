"""The package's shape: the layout by role, and the limits the team keeps to.

``outside/`` talks to the outside systems, ``model/`` describes a release, ``flows/`` runs
one, ``cli/`` faces the person. A layer only imports layers below it (cli > flows > model >
outside, and ``errors`` everywhere), so there is no import cycle between them; no class
grows past 200 lines, and the doctor stays small because it is made of the others' parts.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "ecr_release"
LAYERS = ["outside", "model", "flows", "cli"]  # each may import only those before it
MODULES = sorted(PACKAGE.rglob("*.py"))


def _imports(path: Path) -> set[str]:
    """The package's own modules a module imports, as ``layer`` names (``errors`` too)."""
    tree = ast.parse(path.read_text())
    layer = path.parent.name if path.parent != PACKAGE else ""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level == 0 and module.startswith("ecr_release."):
                found.add(module.split(".")[1])
            elif node.level == 1 and layer:
                found.add(layer)
            elif node.level == 2 or (node.level == 1 and not layer):
                found.add(module.split(".")[0] if module else "")
    return found


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_a_layer_imports_only_the_layers_below_it(path: Path) -> None:
    layer = path.parent.name
    if layer not in LAYERS:
        return
    allowed = {"errors", *LAYERS[: LAYERS.index(layer) + 1]}
    assert _imports(path) <= allowed, f"{path.name} reaches above {layer}/"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_class_is_longer_than_200_lines(path: Path) -> None:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ClassDef):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            assert length <= 200, f"{path.name}: class {node.name} is {length} lines"


def test_the_doctor_is_small() -> None:
    lines = (PACKAGE / "flows" / "doctor.py").read_text().count("\n")
    assert lines <= 350


def test_the_top_level_holds_only_the_error_tree() -> None:
    assert sorted(p.name for p in PACKAGE.glob("*.py")) == ["__init__.py", "errors.py"]
    assert sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__") == [
        *sorted(LAYERS)
    ]
