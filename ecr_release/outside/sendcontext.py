"""A build context holding only what the build reads, for Docker's classic builder.

The classic builder (an engine without BuildKit) uploads the whole context to the daemon
before the first instruction runs, whatever the ``COPY`` lines read: beside a large
folder of assets, a one-line change takes as long to build as the assets take to send.
BuildKit sends only what the ``COPY``/``ADD`` lines read. :func:`only` gives the
classic builder the same: a temporary folder with just those entries, files copied with
their mode and times (a hard link would change the file's ctime: git would then refresh
its index, and the digest cache read the file again), symlinks as links, directories
with their mode and times; removed afterwards.
Which entries those are is decided in ``model.buildcontext.needed``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path


@contextlib.contextmanager
def only(context: Path, entries: Sequence[str], under: Path) -> Iterator[Path]:
    """A folder under ``under`` holding ``entries`` of ``context`` (relative paths, each
    directory before what it holds), removed when the block ends."""
    under.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="context-", dir=under))
    folders: list[tuple[Path, os.stat_result]] = []
    try:
        for relpath in entries:
            source, target = context / relpath, root / relpath
            try:
                info = source.lstat()
            except FileNotFoundError:
                continue  # gone since the walk: the CLI would not send it either
            target.parent.mkdir(parents=True, exist_ok=True)
            if stat.S_ISDIR(info.st_mode):
                target.mkdir(exist_ok=True)
                folders.append((target, info))
            elif stat.S_ISLNK(info.st_mode):
                os.symlink(os.readlink(source), target)
            elif stat.S_ISREG(info.st_mode):
                # Copied, not hard-linked: a link would move the file's ctime, and git (its
                # index) and the digest cache would read the file again on the next run.
                shutil.copy2(source, target)
        for folder, info in reversed(folders):  # the deepest first: filling one moves its time
            os.chmod(folder, stat.S_IMODE(info.st_mode))
            os.utime(folder, ns=(info.st_atime_ns, info.st_mtime_ns))
        yield root
    finally:
        for folder, _ in folders:  # a folder without write permission could not be emptied
            with contextlib.suppress(OSError):
                os.chmod(folder, 0o700)
        shutil.rmtree(root, ignore_errors=True)
