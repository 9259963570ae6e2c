"""The folder the classic builder is given: only the entries named, as they are, then gone."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from ecr_release.outside import sendcontext


def _context(root: Path) -> Path:
    context = root / "context"
    (context / "app" / "deep").mkdir(parents=True)
    (context / "app" / "main.py").write_text("print('hello')\n")
    (context / "app" / "run.sh").write_text("#!/bin/sh\n")
    (context / "app" / "run.sh").chmod(0o750)
    (context / "app" / "deep" / "data.txt").write_text("data")
    (context / "app" / "link").symlink_to("main.py")
    (context / "assets.bin").write_bytes(b"\0" * 1000)
    os.utime(context / "app" / "deep", ns=(10**18, 10**18))
    (context / "app" / "deep").chmod(0o705)
    return context


ENTRIES = ("app", "app/deep", "app/deep/data.txt", "app/link", "app/main.py", "app/run.sh")


def test_only_the_entries_named_as_they_are(tmp_path: Path) -> None:
    context = _context(tmp_path)
    with sendcontext.only(context, ENTRIES, tmp_path / "build") as sent:
        found = sorted(p.relative_to(sent).as_posix() for p in sent.rglob("*"))
        assert found == sorted(ENTRIES)
        assert (sent / "app" / "main.py").read_text() == "print('hello')\n"
        assert (sent / "app" / "run.sh").stat().st_mode & 0o777 == 0o750
        assert os.readlink(sent / "app" / "link") == "main.py"
        deep = (sent / "app" / "deep").stat()
        assert (deep.st_mode & 0o777, deep.st_mtime_ns) == (0o705, 10**18)
    assert not sent.exists()
    assert list((tmp_path / "build").iterdir()) == []


def test_the_context_is_left_untouched(tmp_path: Path) -> None:
    """Not even a ctime moves (a hard link would): git's index and the digest cache would
    take the files for changed and read them all again on the next run."""
    context = _context(tmp_path)
    before = {p: p.lstat() for p in context.rglob("*")}
    time.sleep(0.02)  # past the kernel's timestamp tick
    with sendcontext.only(context, ENTRIES, tmp_path / "build") as sent:
        assert (sent / "app" / "main.py").read_text() == "print('hello')\n"
    after = {p: p.lstat() for p in context.rglob("*")}
    assert {p: (i.st_ctime_ns, i.st_mtime_ns, i.st_nlink) for p, i in before.items()} == {
        p: (i.st_ctime_ns, i.st_mtime_ns, i.st_nlink) for p, i in after.items()
    }


def test_a_parent_not_named_is_made_and_an_entry_gone_is_skipped(tmp_path: Path) -> None:
    context = _context(tmp_path)
    with sendcontext.only(context, ["app/deep/data.txt", "app/gone.txt"], tmp_path / "b") as sent:
        assert sorted(p.relative_to(sent).as_posix() for p in sent.rglob("*")) == [
            "app",
            "app/deep",
            "app/deep/data.txt",
        ]


def test_the_folder_is_removed_when_the_build_fails(tmp_path: Path) -> None:
    context = _context(tmp_path)
    with pytest.raises(RuntimeError), sendcontext.only(context, ENTRIES, tmp_path / "b") as sent:
        raise RuntimeError("docker build failed")
    assert not sent.exists()
