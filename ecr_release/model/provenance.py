"""Which uncommitted changes reach the image, and what they make of its revision.

A change counts when it can reach the image: its path (or a rename's source) lies in the
build context and ``.dockerignore`` does not exclude it, or it is the Dockerfile or the
``.dockerignore`` itself (both shape the build wherever they are). A change anywhere else
cannot reach the image and is not counted. An image built with counted changes is
*dirty*: its revision label is the commit with ``-dirty``, and the label
``io.ecr-release.uncommitted`` holds a digest of the counted changes (each path, its kind
and its bytes as they are now; an untracked folder by every file in it; a submodule by
its path and kind).

:func:`judge_tree` says what a dirty tree means for a new version: a warning at a desk, a
refusal where a clean tree is required (CI, ``--require-clean``) unless ``--allow-dirty``.
It reads the changed files, nothing else.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import SettingsError, VersionExistsError
from ..outside.git import Revision
from .buildcontext import DockerIgnore

log = logging.getLogger("ecr_release")

UNCOMMITTED_LABEL = "io.ecr-release.uncommitted"
SHOWN = 5  # paths a message names


@dataclass(frozen=True)
class Provenance:
    """The commit an image is built from and the uncommitted changes that reach it."""

    commit: str | None
    dirty: tuple[str, ...] = ()  # counted changes' paths, from the repository's top
    digest: str | None = None  # of the counted changes (None: clean)
    unknown: str | None = None  # why there is no commit (no git, no repository)

    @property
    def revision(self) -> str | None:
        """The revision label's value: the commit, with ``-dirty`` when changes count."""
        if self.commit is None:
            return None
        return f"{self.commit}-dirty" if self.dirty else self.commit

    def listed(self) -> str:
        """Up to five of the counted paths, and how many more."""
        shown = ", ".join(self.dirty[:SHOWN])
        more = len(self.dirty) - SHOWN
        return f"{shown} (+{more} more)" if more > 0 else shown


def provenance(revision: Revision, context: Path, dockerfile: Path) -> Provenance:
    """What of ``revision``'s uncommitted changes reaches an image built from ``context``
    with ``dockerfile``."""
    if revision.top is None or not revision.changes:
        return Provenance(revision.commit, unknown=revision.unknown)
    top, context = revision.top.resolve(), context.resolve()
    dockerfile = dockerfile.resolve()
    ignore = DockerIgnore.for_build(context, dockerfile)
    counted = [
        change
        for change in revision.changes
        if any(
            _reaches(top / path, context, dockerfile, ignore)
            for path in (change.path, change.original)
            if path
        )
    ]
    if not counted:
        return Provenance(revision.commit, unknown=revision.unknown)
    counted.sort(key=lambda change: change.path)
    digest = hashlib.sha256()
    for change in counted:
        digest.update(f"{change.kind}\0{change.path}\0{_content(top / change.path)}\n".encode())
    paths = tuple(change.path for change in counted)
    return Provenance(revision.commit, paths, "sha256:" + digest.hexdigest(), revision.unknown)


@contextlib.contextmanager
def naming_uncommitted(made: Provenance) -> Iterator[None]:
    """A refusal to overwrite a released version names the tree's uncommitted changes (they
    may be why the inputs differ); without git, one line says the revision is unknown."""
    if made.unknown:
        log.info("revision unknown: %s", made.unknown)
    try:
        yield
    except VersionExistsError as exc:
        if not made.dirty:
            raise
        raise VersionExistsError(
            f"{exc.message} (this tree has uncommitted changes: {made.listed()})"
        ) from exc


def judge_tree(made: Provenance, require_clean: bool, allow_dirty: bool) -> None:
    """A new version from uncommitted changes: refused (``SettingsError``, exit 2) where a
    clean tree is required (CI, ``--require-clean``) unless ``--allow-dirty``; a warning
    otherwise."""
    if not made.dirty:
        return
    if require_clean and not allow_dirty:
        raise SettingsError(
            f"the working tree has uncommitted changes that reach the image "
            f"({made.listed()}): a clean tree is required (CI=true or REQUIRE_CLEAN); "
            f"commit them, or pass --allow-dirty to release them as {made.revision}"
        )
    allowed = " (--allow-dirty)" if require_clean else ""
    log.warning(
        "warning: releasing uncommitted changes%s: %s; the image's revision is %s",
        *(allowed, made.listed(), made.revision),
    )


def _reaches(path: Path, context: Path, dockerfile: Path, ignore: DockerIgnore) -> bool:
    if path == dockerfile:
        return True
    try:
        relative = path.relative_to(context).as_posix()
    except ValueError:
        return False  # outside the context: it cannot reach the image
    if relative == ".dockerignore":
        return True
    if path.is_dir() and not path.is_symlink():  # an untracked folder, as git lists it
        return not ignore.excludes(relative) or ignore.may_reinclude_below(relative)
    return not ignore.excludes(relative)


def _content(path: Path) -> str:
    """What a changed path holds now: its bytes' digest, a link's target, or what it is."""
    try:
        if path.is_symlink():
            return "link:" + os.readlink(path)
        if path.is_dir():  # an untracked folder: everything in it, by path and bytes
            inside = hashlib.sha256()
            for folder, dirs, files in os.walk(path):
                dirs.sort()
                for name in sorted(files):
                    file = Path(folder) / name
                    inside.update(f"{file.relative_to(path).as_posix()}\0".encode())
                    inside.update(_content(file).encode() + b"\n")
            return "directory:" + inside.hexdigest()
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return "deleted"
    except OSError as exc:
        return f"unreadable: {exc.strerror}"
