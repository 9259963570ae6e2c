"""What the build context's files were found to be, kept between runs, as git's index does.

A rerun must not read every byte of a large build context again. For each file the
cache keeps its sha256, what the secret check found in its content, and the stat it had
when read: size, ``mtime_ns``, ``ctime_ns``, inode and mode. A later walk reuses the
answer while all five are unchanged, and reads the file again when any differs.

Timestamps are coarse on some filesystems (a jiffy, a second, two on FAT), so a file
changed within the same tick as it was read keeps its stat. git calls such entries
"racy" and reads them again; so does this cache: an entry is trusted only when the
file's mtime and ctime are both at least ``RACY_NS`` older than the walk that wrote the
cache. ``ctime`` cannot be set by ``touch`` or ``utime``: a change always moves it.

The cache never changes a result, only the time it takes. A missing, corrupt or foreign
file (another format, another context, other content rules) is ignored and rewritten;
writes go to a temporary file renamed into place, so two releases at once never leave a
torn file (the last one wins, which is as good). A cache that cannot be written is left
alone: the next run reads again. The file holds paths and digests, never content.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

FORMAT = 3
# Changes this close to the walk that wrote the cache are not trusted to show in the stat.
RACY_NS = 2_000_000_000

# relpath -> (its stat as "size mtime_ns ctime_ns inode mode", sha256 hex, secret or "")
Entries = dict[str, tuple[str, str, str]]
# What one walk saw, in its order: (relpath, tag, stat key, sha256 or "", secret or ""); the
# tags are those of ``TAGS``.
Record = tuple[str, str, str, str, str]
FIELDS = 5
# f: a file sent; d: a directory sent (and so entered); e: a directory entered but not sent
# (the context itself, an excluded one an exception may reach into); l: a symlink; o: other.
TAGS = frozenset("fdelo")
SENT = frozenset("fdlo")
# A replayed walk: (its digest, its findings as (relpath, why), every path sent).
Replay = tuple[str, list[tuple[str, str]], tuple[str, ...]]


def _key(info: os.stat_result) -> str:
    return f"{info.st_size} {info.st_mtime_ns} {info.st_ctime_ns} {info.st_ino} {info.st_mode}"


def _split(data: bytes) -> tuple[dict[str, object], list[str]]:
    """A cache file: its header (one JSON line), then its records, five NUL-separated fields
    each (a path holds any byte but NUL; JSON would take twice as long to read back), as
    one list of fields. ``ValueError`` when it is not one."""
    head, _, body = data.partition(b"\n")
    header = json.loads(head)
    if not isinstance(header, dict):
        raise ValueError("no header")
    fields = body.decode("utf-8", "surrogateescape").split("\0") if body else []
    if len(fields) % FIELDS:
        raise ValueError("torn records")
    if not TAGS.issuperset(fields[1::FIELDS]):
        raise ValueError("unknown record")
    return header, fields


def _records(fields: list[str]) -> list[Record]:
    return list(zip(*(fields[i::FIELDS] for i in range(FIELDS)), strict=True))


def parse(data: bytes) -> tuple[dict[str, object], list[Record]]:
    """A cache file's header and records (see ``_split``)."""
    header, fields = _split(data)
    return header, _records(fields)


def render(header: dict[str, object], records: list[Record]) -> bytes:
    body = "\0".join(field for record in records for field in record)
    text = json.dumps(header, separators=(",", ":")) + "\n" + body
    return text.encode("utf-8", "surrogateescape")


class DigestCache:
    """One build context's file digests, in one file (see the module's text).

    Implements ``model.buildcontext.FileDigests``: ``begin`` reads the file, ``replay``
    answers a whole walk when nothing it saw has changed, ``lookup``, ``store`` and ``note``
    serve a walk, ``finish`` writes what it saw (files gone since are dropped) when anything
    changed. ``read_only`` (a dry run) never writes."""

    def __init__(
        self,
        path: Path,
        context: Path,
        *,
        read_only: bool = False,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.path = path
        self._context = str(context.resolve())
        self._read_only = read_only
        self._clock = clock
        self._header: dict[str, object] = {}
        self._fields: list[str] = []  # the records read, as one list of fields
        self._old: Entries | None = None  # the files' entries read, once a walk asks
        self._records: list[Record] = []
        self._rules = self._walk = ""
        self._trusted_before = 0  # files changed at or after this time are read again
        self._started = 0
        self._racy = False  # did this walk see a change too recent for its stat to show?
        self.reused = 0  # files answered from the cache in the last walk
        self.read = 0  # files read in the last walk

    @classmethod
    def for_context(
        cls,
        directory: Path,
        context: Path,
        *,
        read_only: bool = False,
        clock: Callable[[], int] = time.time_ns,
    ) -> DigestCache:
        """The cache of ``context``, under ``directory``: one file per context, named by a
        hash of its real path (so two checkouts never share one, and a name says nothing)."""
        real = str(context.resolve())
        name = hashlib.sha256(real.encode()).hexdigest()[:32] + ".digests"
        return cls(directory / "contexts" / name, context, read_only=read_only, clock=clock)

    def begin(self, rules: str, walk: str = "") -> None:
        """Start a walk: ``rules`` names the content rules in force, ``walk`` what else decides
        the walk's answer (its ignore patterns, what it skips, allows and counts as secret)."""
        self._rules, self._walk = rules, walk
        self._started = self._clock()
        self._records = []
        self._racy = False
        self.reused = self.read = 0
        self._header, self._fields = self._load()
        self._old = None
        written = self._header.get("written_ns")
        self._trusted_before = (written if type(written) is int else 0) - RACY_NS

    def _load(self) -> tuple[dict[str, object], list[str]]:
        try:
            header, fields = _split(self.path.read_bytes())
        except FileNotFoundError:
            return {}, []
        except (OSError, ValueError) as exc:  # unreadable, not ours, torn
            log.debug("ignoring the context cache %s: %s", self.path, exc)
            return {}, []
        if not (
            header.get("format") == FORMAT
            and header.get("context") == self._context
            and header.get("rules") == self._rules
            and type(header.get("written_ns")) is int
        ):
            log.debug("ignoring the context cache %s: another format or context", self.path)
            return {}, []
        return header, fields

    def replay(self) -> Replay | None:
        """The last walk's answer, when this walk would give it again: the same ignore rules
        and the same stat for every directory it entered and every path it sent (a directory
        changes its own when an entry is added, removed or renamed). Kept only from a walk
        that saw no racy change (see the module's text). None: walk again."""
        scan = self._header.get("scan")
        if self._header.get("walk") != self._walk or not isinstance(scan, dict):
            return None
        prefix, lstat, fields = self._context + os.sep, os.lstat, self._fields
        try:  # this loop runs once per path: it calls as little as it can
            for relpath, key in zip(fields[0::FIELDS], fields[2::FIELDS], strict=True):
                info = lstat(prefix + relpath)  # the context itself: "CONTEXT/"
                if key != (
                    f"{info.st_size} {info.st_mtime_ns} {info.st_ctime_ns} {info.st_ino} "
                    f"{info.st_mode}"
                ):
                    return None
        except OSError:  # gone, or unreadable: the walk says which
            return None
        digest, secrets = scan.get("digest"), scan.get("secrets")
        if not (isinstance(digest, str) and isinstance(secrets, list)):
            return None
        try:
            found = [(str(path), str(why)) for path, why in secrets]
        except (TypeError, ValueError):
            return None
        tags = fields[1::FIELDS]
        self.reused = tags.count("f")
        sent = tuple(path for path, tag in zip(fields[0::FIELDS], tags, strict=True) if tag in SENT)
        return digest, found, sent

    def _seen(self, info: os.stat_result) -> None:
        recent = self._started - RACY_NS
        if info.st_mtime_ns >= recent or info.st_ctime_ns >= recent:
            self._racy = True

    def _entries(self) -> Entries:
        """The files' entries read, by path (built once a walk asks: a replay needs none)."""
        if self._old is None:
            self._old = {
                path: (key, digest, secret)
                for path, tag, key, digest, secret in _records(self._fields)
                if tag == "f"
            }
        return self._old

    def lookup(self, relpath: str, info: os.stat_result) -> tuple[str, str | None] | None:
        entry = (self._old if self._old is not None else self._entries()).get(relpath)
        if (
            entry is not None
            and info.st_mtime_ns < self._trusted_before
            and info.st_ctime_ns < self._trusted_before
            and entry[0]
            == f"{info.st_size} {info.st_mtime_ns} {info.st_ctime_ns} {info.st_ino} {info.st_mode}"
            and len(entry[1]) == 64
        ):
            self._records.append((relpath, "f", *entry))
            self.reused += 1
            self._seen(info)
            return entry[1], entry[2] or None
        return None

    def store(self, relpath: str, info: os.stat_result, digest: str, secret: str | None) -> None:
        self._records.append((relpath, "f", _key(info), digest, secret or ""))
        self._seen(info)
        self.read += 1

    def note(self, relpath: str, info: os.stat_result, tag: str) -> None:
        """A path the walk entered or sent that is not a file: its stat, for ``replay``."""
        self._records.append((relpath, tag, _key(info), "", ""))
        self._seen(info)

    def finish(self, digest: str, secrets: list[tuple[str, str]]) -> None:
        """Write what this walk saw, with its answer, when either differs from what was read."""
        header: dict[str, object] = {
            "format": FORMAT,
            "context": self._context,
            "rules": self._rules,
            "walk": self._walk,
            "written_ns": self._started,  # the walk's start: what it read is at least as new
        }
        if not self._racy:
            header["scan"] = {"digest": digest, "secrets": [list(pair) for pair in secrets]}
        unchanged = (
            not self.read
            and [field for record in self._records for field in record] == self._fields
            and {**self._header, "written_ns": 0} == {**header, "written_ns": 0}
        )
        if self._read_only or unchanged:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".tmp-")
            try:
                with os.fdopen(handle, "wb") as out:
                    out.write(render(header, self._records))
                os.replace(temporary, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
                raise
        except OSError as exc:  # a read-only or full cache directory: read again next time
            log.debug("cannot write the context cache %s: %s", self.path, exc)
