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

A walk over a large context whose files did not change still costs a listing of every
directory, a match of every path against ``.dockerignore`` and a look-up of every file.
So the cache also keeps the walk itself, in its order: every directory it entered (the
context's own folder first) and every path it sent, each with its stat, and the walk's
answer (the digest, the secrets found). While the same ignore rules and scan inputs are
asked, ``replay`` stats those paths, nothing else, and when every one is unchanged the
answer is the last walk's: a file added, removed or renamed changes its directory's
stat, a change to a file its own, and a path the walk left out cannot change the answer.
A walk that saw a racy stat (above) keeps no answer: the next one walks again.

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
# f: a file sent; d: a directory sent (and so entered); e: a directory entered but not sent
# (the context itself, an excluded one an exception may reach into); l: a symlink; o: other.
TAGS = frozenset("fdelo")
SENT = frozenset("fdlo")
# A replayed walk: (its digest, its findings as (relpath, why), every path sent).
Replay = tuple[str, list[tuple[str, str]], tuple[str, ...]]


def _key(info: os.stat_result) -> str:
    return f"{info.st_size} {info.st_mtime_ns} {info.st_ctime_ns} {info.st_ino} {info.st_mode}"


class Stored:
    """A cache file's walk as read: one letter a record (its tag), the paths and their stats
    (one list, two fields a record), and the files' digests and secrets, decoded only when
    a walk asks for them (a replay does not)."""

    __slots__ = ("_facts", "_records", "index", "tags")

    def __init__(self, tags: str = "", index: list[str] | None = None, facts: bytes = b"") -> None:
        self.tags = tags
        self.index = index or []
        self._facts = facts
        self._records: list[Record] | None = None

    def records(self) -> list[Record]:
        if self._records is not None:
            return self._records
        fields = self._facts.decode("utf-8", "surrogateescape").split("\0") if self.tags else []
        if len(fields) != 2 * len(self.tags):
            raise ValueError("torn records")
        index = self.index
        self._records = list(
            zip(index[0::2], self.tags, index[1::2], fields[0::2], fields[1::2], strict=True)
        )
        return self._records


def _split(data: bytes) -> tuple[dict[str, object], Stored]:
    """A cache file: its header (one JSON line, which gives the two sections' sizes), the
    walk's index (its records' tags, then their paths and stats, NUL-separated: a path holds
    any byte but NUL; JSON would take twice as long to read back), a NUL, then the files'
    facts (a digest and a secret a record). ``ValueError`` when it is not one."""
    head, _, body = data.partition(b"\n")
    header = json.loads(head)
    if not isinstance(header, dict):
        raise ValueError("no header")
    size, facts = header.get("index_bytes"), header.get("facts_bytes")
    if not (type(size) is int and type(facts) is int and size + 1 + facts == len(body) > size):
        raise ValueError("torn sections")
    tags, _, index = body[:size].decode("utf-8", "surrogateescape").partition("\0")
    fields = index.split("\0") if tags else []
    if len(fields) != 2 * len(tags) or not TAGS.issuperset(tags):
        raise ValueError("torn or unknown records")
    return header, Stored(tags, fields, body[size + 1 :])


def parse(data: bytes) -> tuple[dict[str, object], list[Record]]:
    """A cache file's header and records (see ``_split``)."""
    header, stored = _split(data)
    return header, stored.records()


def render(header: dict[str, object], records: list[Record]) -> bytes:
    tags = "".join(record[1] for record in records)
    index = "\0".join(field for record in records for field in (record[0], record[2]))
    facts = "\0".join(field for record in records for field in record[3:])
    walk = (tags + "\0" + index).encode("utf-8", "surrogateescape")
    known = facts.encode("utf-8", "surrogateescape")
    sizes = {"index_bytes": len(walk), "facts_bytes": len(known)}
    head = json.dumps({**header, **sizes}, separators=(",", ":")).encode()
    return head + b"\n" + walk + b"\0" + known


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
        self._stored = Stored()  # the walk read
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
        real = os.fsencode(context.resolve())
        name = hashlib.sha256(real).hexdigest()[:32] + ".digests"
        return cls(directory / "contexts" / name, context, read_only=read_only, clock=clock)

    def begin(self, rules: str, walk: str = "") -> None:
        """Start a walk: ``rules`` names the content rules in force, ``walk`` what else decides
        the walk's answer (its ignore patterns, what it skips, allows and counts as secret)."""
        self._rules, self._walk = rules, walk
        self._started = self._clock()
        self._records = []
        self._racy = False
        self.reused = self.read = 0
        self._header, self._stored = self._load()
        self._old = None
        written = self._header.get("written_ns")
        self._trusted_before = (written if type(written) is int else 0) - RACY_NS

    def _load(self) -> tuple[dict[str, object], Stored]:
        try:
            header, stored = _split(self.path.read_bytes())
        except FileNotFoundError:
            return {}, Stored()
        except (OSError, ValueError, RecursionError) as exc:  # unreadable, not ours, torn
            log.debug("ignoring the context cache %s: %s", self.path, exc)
            return {}, Stored()
        if not (
            header.get("format") == FORMAT
            and header.get("context") == self._context
            and header.get("rules") == self._rules
            and type(header.get("written_ns")) is int
        ):
            log.debug("ignoring the context cache %s: another format or context", self.path)
            return {}, Stored()
        for size in ("index_bytes", "facts_bytes"):  # the file's layout, not what it says
            header.pop(size, None)
        return header, stored

    def replay(self) -> Replay | None:
        """The last walk's answer, when this walk would give it again: the same ignore rules
        and the same stat for every directory it entered and every path it sent (a directory
        changes its own when an entry is added, removed or renamed). Kept only from a walk
        that saw no racy change (see the module's text). None: walk again."""
        scan = self._header.get("scan")
        if self._header.get("walk") != self._walk or not isinstance(scan, dict):
            return None
        prefix, lstat, index = self._context + os.sep, os.lstat, self._stored.index
        try:  # this loop runs once per path: it calls as little as it can
            for relpath, key in zip(index[0::2], index[1::2], strict=True):
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
        tags = self._stored.tags
        self.reused = tags.count("f")
        sent = tuple(path for path, tag in zip(index[0::2], tags, strict=True) if tag in SENT)
        return digest, found, sent

    def _seen(self, info: os.stat_result) -> None:
        recent = self._started - RACY_NS
        if info.st_mtime_ns >= recent or info.st_ctime_ns >= recent:
            self._racy = True

    def _read_records(self) -> list[Record]:
        """The records read (none when their facts are torn: every file is read again)."""
        try:
            return self._stored.records()
        except ValueError as exc:
            log.debug("ignoring the context cache %s: %s", self.path, exc)
            return []

    def _entries(self) -> Entries:
        """The files' entries read, by path (built once a walk asks: a replay needs none)."""
        if self._old is None:
            self._old = {
                path: (key, digest, secret)
                for path, tag, key, digest, secret in self._read_records()
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
            and self._records == self._read_records()
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
