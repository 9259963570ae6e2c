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

FORMAT = 2
# Changes this close to the walk that wrote the cache are not trusted to show in the stat.
RACY_NS = 2_000_000_000

# relpath -> (its stat as "size mtime_ns ctime_ns inode mode", sha256 hex, secret or "")
Entries = dict[str, tuple[str, str, str]]


def _key(info: os.stat_result) -> str:
    return f"{info.st_size} {info.st_mtime_ns} {info.st_ctime_ns} {info.st_ino} {info.st_mode}"


def parse(data: bytes) -> tuple[dict[str, object], Entries]:
    """A cache file: its header (one JSON line), then its entries, four NUL-separated fields
    each (a path holds any byte but NUL; JSON would take twice as long to read back).
    ``ValueError`` when it is not one."""
    head, _, body = data.partition(b"\n")
    header = json.loads(head)
    if not isinstance(header, dict):
        raise ValueError("no header")
    fields = body.decode("utf-8", "surrogateescape").split("\0") if body else []
    if len(fields) % 4:
        raise ValueError("torn entries")
    entries = dict(
        zip(fields[0::4], zip(fields[1::4], fields[2::4], fields[3::4], strict=True), strict=True)
    )
    return header, entries


def render(header: dict[str, object], entries: Entries) -> bytes:
    body = "\0".join(field for path, entry in entries.items() for field in (path, *entry))
    text = json.dumps(header, separators=(",", ":")) + "\n" + body
    return text.encode("utf-8", "surrogateescape")


class DigestCache:
    """One build context's file digests, in one file (see the module's text).

    Implements ``model.buildcontext.FileDigests``: ``begin`` reads the file, ``lookup`` and
    ``store`` serve the walk, ``finish`` writes what this walk saw (files gone since are
    dropped) when anything changed. ``read_only`` (a dry run) never writes."""

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
        self._old: Entries = {}
        self._new: Entries = {}
        self._rules = ""
        self._trusted_before = 0  # files changed at or after this time are read again
        self._started = 0
        self._changed = False
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

    def begin(self, rules: str) -> None:
        self._rules = rules
        self._started = self._clock()
        self._new = {}
        self._changed = False
        self.reused = self.read = 0
        self._old, written = self._load()
        self._trusted_before = written - RACY_NS

    def _load(self) -> tuple[Entries, int]:
        try:
            header, entries = parse(self.path.read_bytes())
        except FileNotFoundError:
            self._changed = True
            return {}, 0
        except (OSError, ValueError) as exc:  # unreadable, not ours, torn
            log.debug("ignoring the context cache %s: %s", self.path, exc)
            self._changed = True
            return {}, 0
        written = header.get("written_ns")
        if not (
            header.get("format") == FORMAT
            and header.get("context") == self._context
            and header.get("rules") == self._rules
            and type(written) is int
        ):
            log.debug("ignoring the context cache %s: another format or context", self.path)
            self._changed = True
            return {}, 0
        return entries, written

    def lookup(self, relpath: str, info: os.stat_result) -> tuple[str, str | None] | None:
        entry = self._old.get(relpath)
        if (
            entry is not None
            and info.st_mtime_ns < self._trusted_before
            and info.st_ctime_ns < self._trusted_before
            and entry[0]
            == f"{info.st_size} {info.st_mtime_ns} {info.st_ctime_ns} {info.st_ino} {info.st_mode}"
            and len(entry[1]) == 64
        ):
            self._new[relpath] = entry
            self.reused += 1
            return entry[1], entry[2] or None
        return None

    def store(self, relpath: str, info: os.stat_result, digest: str, secret: str | None) -> None:
        self._new[relpath] = (_key(info), digest, secret or "")
        self.read += 1
        self._changed = True

    def finish(self) -> None:
        """Write what this walk saw, when it differs from what was read."""
        if self._read_only or not (self._changed or len(self._new) != len(self._old)):
            return
        header: dict[str, object] = {
            "format": FORMAT,
            "context": self._context,
            "rules": self._rules,
            "written_ns": self._started,  # the walk's start: what it read is at least as new
        }
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".tmp-")
            try:
                with os.fdopen(handle, "wb") as out:
                    out.write(render(header, self._new))
                os.replace(temporary, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
                raise
        except OSError as exc:  # a read-only or full cache directory: read again next time
            log.debug("cannot write the context cache %s: %s", self.path, exc)
