"""The context's file digests kept between runs: reused only while a file cannot have
changed, never a different result, never a traceback for a bad cache file."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ecr_release.model import buildcontext
from ecr_release.model.buildcontext import scan_context
from ecr_release.outside import contextcache
from ecr_release.outside.contextcache import FORMAT, RACY_NS, DigestCache, parse, render
from ecr_release.outside.localstate import LocalState

from ..fakes import count_reads

PRIVATE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END"
LATER = 3600 * 10**9  # an hour: every file in the context is old by then


def _context(root: Path) -> Path:
    context = root / "context"
    for name, text in {
        "Dockerfile": "FROM scratch\nCOPY . /app\n",
        "app/main.py": "print('hello')\n",
        "app/data.txt": "x" * 5000,
        "README.md": "readme\n",
    }.items():
        (context / name).parent.mkdir(parents=True, exist_ok=True)
        (context / name).write_text(text)
    return context


def _cache(root: Path, context: Path, *, offset: int = LATER, **options: bool) -> DigestCache:
    return DigestCache.for_context(
        root / "cache", context, clock=lambda: time.time_ns() + offset, **options
    )


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files the scan reads, in order."""
    return count_reads(monkeypatch)


def test_a_rerun_reads_no_file_and_gives_the_same_digest(tmp_path: Path, reads: list[str]) -> None:
    context = _context(tmp_path)
    fresh = scan_context(context, context / "Dockerfile")
    first = scan_context(context, context / "Dockerfile", cache=_cache(tmp_path, context))
    assert len(reads) == 2 * 4  # the fresh scan, then the cache's first walk: all read
    reads.clear()
    cache = _cache(tmp_path, context)
    again = scan_context(context, context / "Dockerfile", cache=cache)
    assert reads == []
    assert (cache.reused, cache.read) == (4, 0)
    assert fresh.digest == first.digest == again.digest


def test_only_the_changed_file_is_read_again(tmp_path: Path, reads: list[str]) -> None:
    context = _context(tmp_path)
    scan_context(context, cache=_cache(tmp_path, context))
    (context / "app" / "main.py").write_text("print('changed')\n")
    reads.clear()
    found = scan_context(context, cache=_cache(tmp_path, context))
    assert reads == ["app/main.py"]
    assert found.digest == scan_context(context).digest


def test_a_file_changed_close_to_the_cache_write_is_read_again(
    tmp_path: Path, reads: list[str]
) -> None:
    """git's racy rule: a stat no older than the walk that wrote the cache proves nothing."""
    context = _context(tmp_path)
    scan_context(context, cache=_cache(tmp_path, context, offset=0))
    reads.clear()
    # Written just now: every file's ctime is within RACY_NS of the cache's write.
    cache = _cache(tmp_path, context, offset=0)
    scan_context(context, cache=cache)
    assert sorted(reads) == ["Dockerfile", "README.md", "app/data.txt", "app/main.py"]
    assert cache.reused == 0
    # Once the cache was written long after the files' last change, they are trusted.
    scan_context(context, cache=_cache(tmp_path, context, offset=RACY_NS + 10**9))
    reads.clear()
    trusted = _cache(tmp_path, context)
    scan_context(context, cache=trusted)
    assert (reads, trusted.reused) == ([], 4)


def test_a_same_size_change_with_the_old_mtime_is_caught_by_its_ctime(
    tmp_path: Path, reads: list[str]
) -> None:
    """A coarse clock can leave mtime as it was; ctime, which no program can set, moves."""
    context = _context(tmp_path)
    path = context / "app" / "main.py"
    before = path.stat()
    time.sleep(0.02)  # past the kernel's timestamp tick
    scan_context(context, cache=_cache(tmp_path, context))
    path.write_text("print('HELLO')\n")  # same size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    reads.clear()
    found = scan_context(context, cache=_cache(tmp_path, context))
    assert reads == ["app/main.py"]
    assert found.digest == scan_context(context).digest


def test_mode_rename_and_delete_change_the_digest_as_from_scratch(tmp_path: Path) -> None:
    context = _context(tmp_path)
    scan_context(context, cache=_cache(tmp_path, context))
    edits: list[Callable[[], object]] = [
        lambda: (context / "README.md").chmod(0o755),
        lambda: (context / "app" / "data.txt").rename(context / "app" / "moved.txt"),
        lambda: (context / "README.md").unlink(),
        lambda: os.utime(context / "app" / "main.py"),  # touched, content unchanged
    ]
    digests = set()
    for edit in edits:
        edit()
        found = scan_context(context, cache=_cache(tmp_path, context))
        assert found.digest == scan_context(context).digest
        digests.add(found.digest)
    assert len(digests) == 3  # the touch changed nothing


def test_a_secret_found_in_content_is_reported_from_the_cache_too(
    tmp_path: Path, reads: list[str]
) -> None:
    context = _context(tmp_path)
    (context / "certs").mkdir()
    (context / "certs" / "server.pem").write_text(PRIVATE_KEY)
    first = scan_context(context, cache=_cache(tmp_path, context))
    reads.clear()
    again = scan_context(context, cache=_cache(tmp_path, context))
    assert reads == []
    assert [str(f) for f in first.secrets] == [str(f) for f in again.secrets]
    assert [str(f) for f in again.secrets] == ["certs/server.pem (a private key)"]


def test_files_gone_are_dropped_from_the_cache(tmp_path: Path) -> None:
    context = _context(tmp_path)
    cache = _cache(tmp_path, context)
    scan_context(context, cache=cache)
    (context / "README.md").unlink()
    scan_context(context, cache=_cache(tmp_path, context))
    header, kept = parse(cache.path.read_bytes())
    assert sorted(path for path, tag, *_ in kept if tag == "f") == [
        "Dockerfile",
        "app/data.txt",
        "app/main.py",
    ]
    assert header["format"] == FORMAT and header["context"] == str(context.resolve())
    assert b"hello" not in cache.path.read_bytes()  # digests and stats, never content


def _header(**changes: object) -> bytes:
    return render({"format": FORMAT, "written_ns": 1, **changes}, [])


@pytest.mark.parametrize(
    "content",
    [
        b"not json at all",
        b"\xff\xfe garbage",
        b"[]",
        b'{"format": 999}',
        b"{}",
        _header(context="/elsewhere", rules="x"),
        _header(written_ns="soon"),
        b"[" * 100_000,  # nested past what the JSON reader recurses into
        b'{"format": 3}\na.txt\x00f\x001 2 3 4 5\x00abc',  # torn: four fields of five
        b'{"format": 3}\na.txt\x00?\x001 2 3 4 5\x00abc\x00',  # an unknown record
    ],
)
def test_a_corrupt_or_foreign_cache_is_ignored_and_rewritten(
    tmp_path: Path, reads: list[str], content: bytes
) -> None:
    context = _context(tmp_path)
    cache = _cache(tmp_path, context)
    cache.path.parent.mkdir(parents=True)
    cache.path.write_bytes(content)
    found = scan_context(context, cache=cache)
    assert found.digest == scan_context(context).digest
    header, records = parse(cache.path.read_bytes())
    assert header["format"] == FORMAT and [r[1] for r in records].count("f") == 4
    reads.clear()
    scan_context(context, cache=_cache(tmp_path, context))
    assert reads == []


def test_entries_of_the_wrong_shape_are_read_again(tmp_path: Path, reads: list[str]) -> None:
    context = _context(tmp_path)
    cache = _cache(tmp_path, context)
    scan_context(context, cache=cache)
    header, records = parse(cache.path.read_bytes())
    del header["scan"]  # no answer for the whole walk: each file's entry is asked
    for i, (path, tag, key, digest, secret) in enumerate(records):
        if path == "README.md":
            records[i] = (path, tag, key, "short", secret)  # not a sha256
        elif path == "app/main.py":
            records[i] = (path, tag, "1 2 3", digest, secret)  # not a stat
    cache.path.write_bytes(render(header, records))
    reads.clear()
    found = scan_context(context, cache=_cache(tmp_path, context))
    assert sorted(reads) == ["README.md", "app/main.py"]
    assert found.digest == scan_context(context).digest


def test_a_path_that_is_not_utf8_is_kept(tmp_path: Path, reads: list[str]) -> None:
    context = _context(tmp_path)
    (context / os.fsdecode(b"caf\xe9.txt")).write_text("latin-1 name")
    scan_context(context, cache=_cache(tmp_path, context))
    reads.clear()
    found = scan_context(context, cache=_cache(tmp_path, context))
    assert reads == []
    assert found.digest == scan_context(context).digest


def test_other_content_rules_ignore_the_cache(
    tmp_path: Path, reads: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    context = _context(tmp_path)
    scan_context(context, cache=_cache(tmp_path, context))
    monkeypatch.setattr(buildcontext, "MAX_SCAN_BYTES", 10)  # what a file's verdict means
    reads.clear()
    scan_context(context, cache=_cache(tmp_path, context))
    assert len(reads) == 4


def test_a_dry_run_reads_the_cache_but_never_writes_it(tmp_path: Path, reads: list[str]) -> None:
    context = _context(tmp_path)
    planning = _cache(tmp_path, context, read_only=True)
    scan_context(context, cache=planning)
    assert not planning.path.exists()
    scan_context(context, cache=_cache(tmp_path, context))
    reads.clear()
    scan_context(context, cache=_cache(tmp_path, context, read_only=True))
    assert reads == []


def test_a_cache_that_cannot_be_written_costs_only_time(tmp_path: Path) -> None:
    context = _context(tmp_path)
    (tmp_path / "cache").write_text("a file where the directory should be")
    found = scan_context(context, cache=_cache(tmp_path, context))
    assert found.digest == scan_context(context).digest


def test_a_failed_write_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context = _context(tmp_path)
    cache = _cache(tmp_path, context)
    scan_context(context, cache=cache)
    before = cache.path.read_bytes()
    (context / "new.txt").write_text("new")

    def torn(header: object, entries: object) -> bytes:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(contextcache, "render", torn)
    scan_context(context, cache=_cache(tmp_path, context))
    assert cache.path.read_bytes() == before
    assert sorted(p.name for p in cache.path.parent.iterdir()) == [cache.path.name]


WRITER = """
import sys, time
from pathlib import Path
from ecr_release.model.buildcontext import scan_context
from ecr_release.outside.contextcache import DigestCache

class EveryTime(DigestCache):  # every walk walks and writes: the race is the point
    def replay(self):
        return None

    def finish(self, digest, secrets):
        self.read += 1
        super().finish(digest, secrets)

context, cache = Path(sys.argv[1]), Path(sys.argv[2])
for _ in range(15):
    digests = EveryTime.for_context(cache, context, clock=lambda: time.time_ns() + 3600 * 10**9)
    print(scan_context(context, cache=digests).digest)
"""


def test_two_releases_at_once_never_leave_a_torn_cache(tmp_path: Path) -> None:
    context = _context(tmp_path)
    for i in range(300):  # a cache file of some size, so that a write takes a while
        (context / "assets" / f"{i:03}.txt").parent.mkdir(exist_ok=True)
        (context / "assets" / f"{i:03}.txt").write_text(str(i))
    expected = scan_context(context).digest
    argv = [sys.executable, "-c", WRITER, str(context), str(tmp_path / "cache")]
    writers = [subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) for _ in range(3)]
    outputs = [writer.communicate(timeout=120)[0].split() for writer in writers]
    assert all(writer.returncode == 0 for writer in writers)
    assert {digest for output in outputs for digest in output} == {expected}
    cache = _cache(tmp_path, context)
    assert [record[1] for record in parse(cache.path.read_bytes())[1]].count("f") == 304
    assert [p.name for p in cache.path.parent.iterdir()] == [cache.path.name]


def test_each_context_has_its_own_file_under_the_local_state(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    state = LocalState(tmp_path / "state")
    first, second = state.context_digests(one), state.context_digests(two)
    assert first.path.parent == tmp_path / "state" / "contexts"
    assert first.path != second.path
    assert str(tmp_path) not in first.path.name  # a hash names it, not the path
    assert LocalState(tmp_path / "state", read_only=True).context_digests(one).path == first.path


# -- the whole walk, replayed -----------------------------------------------------------------


@pytest.fixture
def listings(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The directories the scans list from now on (a replayed walk lists none)."""
    seen: list[str] = []
    real = buildcontext._listing

    def counting(directory: str) -> object:
        seen.append(directory)
        return real(directory)

    monkeypatch.setattr(buildcontext, "_listing", counting)
    return seen


def _tree(root: Path) -> Path:
    context = _context(root)
    (context / ".dockerignore").write_text("build/\n!build/keep*\nnotes.md\n")
    (context / "build").mkdir()
    (context / "build" / "keep.txt").write_text("kept")
    (context / "build" / "skip.txt").write_text("left out")
    (context / "certs").mkdir()
    (context / "certs" / "server.pem").write_text(PRIVATE_KEY)
    (context / "link").symlink_to("app/main.py")
    return context


def _scan(root: Path, context: Path) -> buildcontext.ContextScan:
    cache = _cache(root, context)
    return scan_context(context, context / "Dockerfile", ["certs/server.pem"], cache=cache)


def test_an_unchanged_context_is_answered_without_a_walk(
    tmp_path: Path, reads: list[str], listings: list[str]
) -> None:
    context = _tree(tmp_path)
    fresh = scan_context(context, context / "Dockerfile", ["certs/server.pem"])
    _scan(tmp_path, context)
    reads.clear()
    listings.clear()
    cache = _cache(tmp_path, context)
    again = scan_context(context, context / "Dockerfile", ["certs/server.pem"], cache=cache)
    assert (reads, listings) == ([], [])  # not one directory listed, not one file read
    assert (again.digest, again.secrets, again.entries) == (
        fresh.digest,
        fresh.secrets,
        fresh.entries,
    )
    assert cache.reused == 7 and "build/keep.txt" in again.entries
    assert "build/skip.txt" not in again.entries


def _edits(context: Path) -> list[tuple[str, Callable[[], object]]]:
    return [
        ("a file added at the top", lambda: (context / "top.txt").write_text("new")),
        ("a file added deep down", lambda: (context / "app" / "new.py").write_text("new")),
        ("a file let in by an exception", lambda: (context / "build" / "keep2").write_text("k")),
        ("a file left out added", lambda: (context / "build" / "other.txt").write_text("x")),
        ("a left-out file changed", lambda: (context / "build" / "skip.txt").write_text("y!")),
        ("a file's content", lambda: (context / "app" / "data.txt").write_text("z" * 5000)),
        ("a file's mode", lambda: (context / "README.md").chmod(0o755)),
        ("a link's target", lambda: _relink(context / "link", "README.md")),
        ("a directory renamed", lambda: (context / "certs").rename(context / "keys")),
        ("a file deleted", lambda: (context / "app" / "main.py").unlink()),
        ("an ignore rule", lambda: (context / ".dockerignore").write_text("build/\n")),
        ("a secret added", lambda: (context / "app" / ".env").write_text("TOKEN=1\n")),
    ]


def _relink(link: Path, target: str) -> None:
    link.unlink()
    link.symlink_to(target)


@pytest.mark.parametrize("which", range(12))
def test_any_change_since_is_walked_again_and_answered_as_from_scratch(
    tmp_path: Path, listings: list[str], which: int
) -> None:
    context = _tree(tmp_path)
    _scan(tmp_path, context)
    name, edit = _edits(context)[which]
    edit()
    listings.clear()
    found = _scan(tmp_path, context)
    walked = bool(listings)
    fresh = scan_context(context, context / "Dockerfile", ["certs/server.pem"])
    # Walked again, except after a change to a file the build never gets: that answer holds.
    assert walked is (name != "a left-out file changed"), name
    assert (found.digest, found.secrets, found.entries) == (
        fresh.digest,
        fresh.secrets,
        fresh.entries,
    ), name


def test_other_scan_inputs_are_walked_again(tmp_path: Path, listings: list[str]) -> None:
    """The same files, asked otherwise: another Dockerfile, allow list or settings file."""
    context = _tree(tmp_path)
    (context / "Other.Dockerfile").write_text("FROM scratch\n")
    _scan(tmp_path, context)
    for asked in [
        dict(dockerfile=context / "Other.Dockerfile", allow=["certs/server.pem"]),
        dict(dockerfile=context / "Dockerfile", allow=[]),
        dict(
            dockerfile=context / "Dockerfile",
            allow=["certs/server.pem"],
            also=[context / "README.md"],
        ),
    ]:
        listings.clear()
        found = scan_context(context, cache=_cache(tmp_path, context), **asked)  # type: ignore[arg-type]
        assert listings, asked
        assert found.secrets == scan_context(context, **asked).secrets  # type: ignore[arg-type]


def test_a_walk_that_saw_a_recent_change_is_not_replayed(
    tmp_path: Path, listings: list[str]
) -> None:
    """git's racy rule, for the whole walk: a stat taken within RACY_NS of the walk may hide
    a change made in the same tick, so such a walk's answer is not kept for a replay."""
    context = _tree(tmp_path)
    scan_context(context, cache=_cache(tmp_path, context, offset=0))
    header, _ = parse(_cache(tmp_path, context).path.read_bytes())
    assert "scan" not in header
    listings.clear()
    scan_context(context, cache=_cache(tmp_path, context))
    assert listings  # walked again; and now its answer is kept
    assert "scan" in parse(_cache(tmp_path, context).path.read_bytes())[0]
    listings.clear()
    scan_context(context, cache=_cache(tmp_path, context))
    assert listings == []


@pytest.mark.parametrize(
    "answer",
    [{"digest": 5, "secrets": []}, {"digest": "sha256:x", "secrets": [["a"]]}, "not a dict"],
)
def test_a_kept_answer_of_the_wrong_shape_is_walked_again(
    tmp_path: Path, listings: list[str], answer: object
) -> None:
    context = _tree(tmp_path)
    cache = _cache(tmp_path, context)
    scan_context(context, cache=cache)
    header, records = parse(cache.path.read_bytes())
    cache.path.write_bytes(render({**header, "scan": answer}, records))
    listings.clear()
    found = scan_context(context, cache=_cache(tmp_path, context))
    assert listings
    assert found.digest == scan_context(context).digest


def test_sections_of_the_wrong_size_or_shape_are_not_read() -> None:
    """Each section's size is in the header; within them, two fields a record."""
    good = render({"format": FORMAT}, [("a.txt", "f", "1 2 3 4 5", "ab" * 32, "")])
    assert parse(good)[1] == [("a.txt", "f", "1 2 3 4 5", "ab" * 32, "")]
    for bad in [
        good[:-1],  # cut short
        good + b"x",  # longer than said
        good.replace(b"ab" * 32 + b"\x00", b"ab" * 32 + b"\x01"),  # one field, not two
        good.replace(b"f\x00a.txt", b"q\x00a.txt"),  # an unknown record
    ]:
        with pytest.raises(ValueError):
            parse(bad)


def test_another_version_of_the_walk_does_not_replay(
    tmp_path: Path, listings: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scan's own code is part of the cache's rules: an upgrade that adds a secret name
    (or changes how the digest is made) walks again, rather than answer as the old code."""
    context = _tree(tmp_path)
    _scan(tmp_path, context)
    upgraded = tmp_path / "buildcontext.py"
    upgraded.write_text(Path(buildcontext.__file__).read_text() + '\n_SECRET_FILES.add("x")\n')
    monkeypatch.setattr(buildcontext, "__file__", str(upgraded))
    listings.clear()
    _scan(tmp_path, context)
    assert listings


def test_a_link_to_the_context_moved_since_the_cache_was_made_walks_the_new_one(
    tmp_path: Path,
) -> None:
    one, two = _tree(tmp_path / "one"), _tree(tmp_path / "two")
    (two / "extra.txt").write_text("only here")
    link = tmp_path / "ctx"
    link.symlink_to(one)
    scan_context(link, cache=_cache(tmp_path, link))
    cache = _cache(tmp_path, link)  # made while the link points at one
    link.unlink()
    link.symlink_to(two)
    found = scan_context(link, cache=cache)
    assert "extra.txt" in found.entries
    assert found.digest == scan_context(two).digest


def test_a_walk_that_changed_nothing_does_not_rewrite_the_file(tmp_path: Path) -> None:
    """Files long settled, one folder made just now: no answer is kept (the folder is
    racy), every file's digest is reused, and a second such walk leaves the file alone."""
    context = _tree(tmp_path)
    settled = max(os.lstat(p).st_ctime_ns for p in [context, *context.rglob("*")])
    time.sleep(0.05)
    (context / "late").mkdir()
    made = os.lstat(context / "late").st_ctime_ns
    middle = (settled + made) // 2  # files before it, the new folder after it
    scan_context(context, cache=_cache_at(tmp_path, context, middle + RACY_NS))
    path = _cache(tmp_path, context).path
    assert "scan" not in parse(path.read_bytes())[0]
    before = path.stat()
    again = _cache_at(tmp_path, context, middle + RACY_NS)
    scan_context(context, cache=again)
    after = path.stat()
    assert (again.reused, again.read) == (7, 0)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def _cache_at(root: Path, context: Path, moment: int) -> DigestCache:
    return DigestCache.for_context(root / "cache", context, clock=lambda: moment)
