"""Which uncommitted changes reach the image: a real git repository in a temp folder."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from ecr_release.model.inputs import REVISION, build_metadata
from ecr_release.model.provenance import UNCOMMITTED_LABEL, Provenance, provenance
from ecr_release.outside.git import Revision, revision


def git(path: Path, *args: str) -> str:
    return subprocess.run(
        [
            *("git", "-C", str(path), "-c", "user.name=t", "-c", "user.email=t@example.invalid"),
            *("-c", "protocol.file.allow=always", *args),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A committed project: the build context is ``app/``, with a Dockerfile and a
    ``.dockerignore``; ``docs/`` lies outside it; git ignores ``*.log``."""
    root = tmp_path / "repo"
    (root / "app" / "src").mkdir(parents=True)
    (root / "docs").mkdir()
    (root / "app" / "Dockerfile").write_text("FROM scratch\nCOPY . /\n")
    (root / "app" / ".dockerignore").write_text("tests/\n*.md\n")
    (root / "app" / "src" / "main.py").write_text("print('hi')\n")
    (root / "app" / "src" / "util.py").write_text("x = 1\n")
    (root / "app" / "notes.md").write_text("notes\n")
    (root / "docs" / "guide.md").write_text("guide\n")
    (root / ".gitignore").write_text("*.log\n")
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "one")
    return root


Made = Callable[[], Provenance]


@pytest.fixture
def made(repo: Path) -> Made:
    app = repo / "app"
    return lambda: provenance(revision(app), app, app / "Dockerfile")


def test_a_clean_tree_is_the_commit(repo: Path, made: Made) -> None:
    found = made()
    assert found == Provenance(git(repo, "rev-parse", "HEAD"))
    assert found.revision == found.commit and found.digest is None


@pytest.mark.parametrize(
    ("change", "paths"),
    [
        (lambda r: (r / "app/src/main.py").write_text("print('bye')\n"), ["app/src/main.py"]),
        (
            lambda r: ((r / "app/src/util.py").write_text("x = 2\n"), git(r, "add", "-A")),
            ["app/src/util.py"],
        ),
        (lambda r: (r / "app/src/new.py").write_text("new\n"), ["app/src/new.py"]),
        (lambda r: (r / "app/src/util.py").unlink(), ["app/src/util.py"]),
        (lambda r: git(r, "mv", "app/src/util.py", "app/src/tools.py"), ["app/src/tools.py"]),
        (lambda r: (r / "app/Dockerfile").write_text("FROM scratch\n"), ["app/Dockerfile"]),
        (lambda r: (r / "app/.dockerignore").write_text("*.md\n"), ["app/.dockerignore"]),
    ],
    ids=["modified", "staged", "untracked", "deleted", "renamed", "dockerfile", "dockerignore"],
)
def test_changes_that_reach_the_image_make_it_dirty(
    repo: Path, made: Made, change: Callable[[Path], object], paths: list[str]
) -> None:
    change(repo)
    found = made()
    assert list(found.dirty) == paths
    assert found.revision == f"{git(repo, 'rev-parse', 'HEAD')}-dirty"
    assert found.digest is not None and found.digest.startswith("sha256:")


@pytest.mark.parametrize(
    "change",
    [
        lambda r: (r / "app" / "build.log").write_text("ignored by git\n"),
        lambda r: (r / "docs" / "guide.md").write_text("outside the context\n"),
        lambda r: (r / "app" / "notes.md").write_text("dockerignored\n"),
        lambda r: ((r / "app" / "tests").mkdir(), (r / "app/tests/t.py").write_text("x\n")),
    ],
    ids=["ignored", "outside-the-context", "dockerignored", "untracked-dockerignored"],
)
def test_changes_that_cannot_reach_the_image_do_not_count(
    repo: Path, made: Made, change: Callable[[Path], object]
) -> None:
    change(repo)
    found = made()
    assert found.dirty == () and found.digest is None
    assert found.revision == git(repo, "rev-parse", "HEAD")


def test_a_rename_into_the_context_counts_by_its_source_or_its_name(repo: Path, made: Made) -> None:
    git(repo, "mv", "docs/guide.md", "app/src/guide.txt")  # from outside, into the context
    assert made().dirty == ("app/src/guide.txt",)


def test_a_changed_submodule_counts(repo: Path, tmp_path: Path, made: Made) -> None:
    library = tmp_path / "library"
    library.mkdir()
    (library / "lib.py").write_text("v = 1\n")
    git(library, "init", "-q")
    git(library, "add", "-A")
    git(library, "commit", "-qm", "lib")
    git(repo, "submodule", "add", "-q", str(library), "app/vendor/library")
    git(repo, "commit", "-qm", "submodule")
    assert made().dirty == ()
    (repo / "app/vendor/library/lib.py").write_text("v = 2\n")
    assert made().dirty == ("app/vendor/library",)


def test_the_digest_follows_the_content_not_the_time(repo: Path, made: Made) -> None:
    (repo / "app/src/main.py").write_text("print('bye')\n")
    first = made().digest
    (repo / "app/src/main.py").write_text("print('bye')\n")  # touched, same bytes
    assert made().digest == first
    (repo / "app/src/main.py").write_text("print('again')\n")
    assert made().digest != first


def test_at_most_five_paths_are_named(repo: Path, made: Made) -> None:
    for i in range(7):
        (repo / "app" / "src" / f"n{i}.py").write_text(f"{i}\n")
    assert made().listed() == (
        "app/src/n0.py, app/src/n1.py, app/src/n2.py, app/src/n3.py, app/src/n4.py (+2 more)"
    )


def test_a_dirty_build_carries_the_dirty_revision_and_the_changes_digest(
    repo: Path, made: Made
) -> None:
    (repo / "app/src/main.py").write_text("print('bye')\n")
    found = made()
    commit = git(repo, "rev-parse", "HEAD")
    build_args, labels = build_metadata("v1", "now", Revision(commit), None, found)
    assert labels[REVISION] == build_args["VCS_REF"] == f"{commit}-dirty"
    assert labels[UNCOMMITTED_LABEL] == found.digest
    _, clean_labels = build_metadata("v1", "now", Revision(commit), None, Provenance(commit))
    assert clean_labels[REVISION] == commit and UNCOMMITTED_LABEL not in clean_labels


def test_outside_a_repository_nothing_is_dirty(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    found = provenance(revision(tmp_path), tmp_path, tmp_path / "Dockerfile")
    assert found.commit is None and found.dirty == ()
    assert found.unknown is not None and "not a git repository" in found.unknown


def test_an_untracked_folder_counts_by_everything_in_it(repo: Path, made: Made) -> None:
    (repo / "app" / "plugins").mkdir()
    (repo / "app" / "plugins" / "a.py").write_text("a\n")
    found = made()
    assert found.dirty == ("app/plugins/",)  # as git lists it: one change
    (repo / "app" / "plugins" / "a.py").write_text("b\n")
    assert made().digest != found.digest  # its files' bytes are in the digest


def test_an_ignored_folder_with_an_exception_inside_counts(repo: Path, made: Made) -> None:
    (repo / "app" / ".dockerignore").write_text("tests/\n!tests/keep.py\n")
    git(repo, "commit", "-qam", "exception")
    (repo / "app" / "tests").mkdir()
    (repo / "app" / "tests" / "keep.py").write_text("k\n")
    assert made().dirty == ("app/tests/",)
