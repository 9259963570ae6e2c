"""Git metadata for the labels: a real git checkout in a temp dir, and URL cleaning."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ecr_release.outside.git import Change, Revision, public_url, revision


def git(path: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(path), "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def test_revision_of_a_checkout_names_its_commit_and_a_clean_remote(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    (tmp_path / "f").write_text("x")
    git(tmp_path, "add", "f")
    git(tmp_path, "commit", "-qm", "one")
    git(tmp_path, "remote", "add", "origin", "https://ci:s3cret@git.example.com/org/widget.git")
    sub = tmp_path / "sub"
    sub.mkdir()
    found = revision(sub)
    assert found == Revision(
        git(tmp_path, "rev-parse", "HEAD"),
        "https://git.example.com/org/widget.git",
        Path(git(tmp_path, "rev-parse", "--show-toplevel")),
    )
    assert "s3cret" not in repr(found)


def test_revision_outside_git_is_unknown(tmp_path: Path) -> None:
    found = revision(tmp_path)
    assert (found.commit, found.source, found.changes) == (None, None, ())
    assert found.unknown is not None and "not a git repository" in found.unknown


def test_revision_without_git_on_path_is_unknown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert revision(tmp_path) == Revision(unknown="git is not installed")


def test_a_repository_without_a_commit_has_no_revision(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    (tmp_path / "f").write_text("x")
    found = revision(tmp_path)
    assert found.commit is None and found.unknown == "the repository has no commit yet"
    assert found.changes == (Change("f", "untracked"),)


def test_the_status_of_every_kind_of_change(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    for name in ("kept", "edited", "staged", "gone", "old name", "indexed"):
        (tmp_path / name).write_text(name)
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "one")
    (tmp_path / "edited").write_text("changed")
    (tmp_path / "staged").write_text("changed")
    git(tmp_path, "add", "staged")
    (tmp_path / "gone").unlink()
    git(tmp_path, "mv", "old name", "new name")
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "new file").write_text("new")
    git(tmp_path, "rm", "-q", "--cached", "indexed")  # staged deletion, file still here
    found = revision(tmp_path)
    assert sorted(found.changes, key=lambda c: c.path) == [
        Change("dir/", "untracked"),  # a folder with nothing tracked: one change
        Change("edited", "modified"),
        Change("gone", "deleted"),
        Change("indexed", "deleted"),
        Change("indexed", "untracked"),
        Change("new name", "renamed", "old name"),
        Change("staged", "staged"),
    ]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://x-access-token:ghp_abc@github.com/org/r.git", "https://github.com/org/r.git"),
        ("https://github.com/org/r.git?token=abc#frag", "https://github.com/org/r.git"),
        ("ssh://git@host.example:2222/org/r.git", "ssh://host.example:2222/org/r.git"),
        ("git@github.com:org/r.git", "git@github.com:org/r.git"),
        ("file:///srv/git/r.git", None),
        ("ssh://git@github.com:org/repo.git", None),  # scp syntax in a URL: no port
        ("/srv/git/r.git", None),
        ("../r", None),
        (None, None),
        ("", None),
    ],
)
def test_public_url_never_carries_credentials(url: str | None, shown: str | None) -> None:
    assert public_url(url) == shown


def test_git_never_inherits_an_overlay_made_on_another_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """git is asked while the context is walked, when a boto3 session may be being made on
    another thread with .env's keys overlaid on this process's environment."""
    import threading
    import time

    from ecr_release.outside.ecr import _overlay_environ

    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    envs: list[dict[str, str] | None] = []
    real = subprocess.run

    def recording(*args: object, **kwargs: object) -> object:
        envs.append(kwargs.get("env"))  # type: ignore[arg-type]
        return real(*args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(subprocess, "run", recording)
    inside = threading.Event()

    def overlaid() -> None:
        with _overlay_environ({"AWS_SECRET_ACCESS_KEY": "from-dotenv"}):
            inside.set()
            time.sleep(0.3)

    other = threading.Thread(target=overlaid)
    other.start()
    inside.wait(5)
    revision(tmp_path)
    other.join(10)
    assert envs and all(env is not None and "AWS_SECRET_ACCESS_KEY" not in env for env in envs)
