"""Git facts about the checkout being built: its commit, a credential-free source URL and
its uncommitted changes.

They become OCI labels and build arguments. Outside a git checkout, or without git, the
commit and source are None (``unknown`` says why): a build never fails for want of git.
The changes come from one ``git status --porcelain=v2 -z``: modified, staged, deleted,
renamed, unmerged, untracked (not ignored by git; a folder with nothing tracked in it is
one change, its path ending in ``/``, as git lists it: listing each file in it would cost
a walk of every untracked folder) and submodules with changes, by path from the
repository's top. Which of them reach the image is the
model's to decide (``model/provenance.py``). Nothing here writes.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from .process import inherited_environ


@dataclass(frozen=True)
class Change:
    """One uncommitted change: its path from the repository's top (``/``-separated), what
    it is, and a rename's or copy's source."""

    path: str
    kind: str  # modified, staged, deleted, renamed, unmerged, untracked, submodule
    original: str | None = None


@dataclass(frozen=True)
class Revision:
    """The checkout's commit and the public URL of its ``origin`` remote (None when unknown),
    its top folder and its uncommitted changes; ``unknown`` says why there is no commit."""

    commit: str | None = None
    source: str | None = None
    top: Path | None = None
    changes: tuple[Change, ...] = ()
    unknown: str | None = None


def revision(path: Path) -> Revision:
    """The revision of the checkout that holds ``path``, with its uncommitted changes."""
    try:
        found = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "--show-toplevel"],
            capture_output=True,
            text=True,
            timeout=10,
            env=inherited_environ(),  # never .env's AWS keys (see process.ENVIRON_LOCK)
        )
    except (OSError, subprocess.SubprocessError):
        return Revision(unknown="git is not installed")
    top = found.stdout.strip()
    if found.returncode != 0 or not top:
        lines = found.stderr.strip().splitlines() or ["git answered nothing"]
        return Revision(unknown=lines[-1].removeprefix("fatal: "))
    status = _git(
        Path(top),
        *("status", "--porcelain=v2", "-z", "--branch", "--untracked-files=normal"),
        strip=False,
    )
    commit, changes = parse_status(status or "")
    remote = _git(path, "config", "--get", "remote.origin.url") if commit else None
    unknown = None if commit else "the repository has no commit yet"
    return Revision(commit, public_url(remote), Path(top), changes, unknown)


def parse_status(text: str) -> tuple[str | None, tuple[Change, ...]]:
    """The commit (``# branch.oid``) and the changes of ``git status --porcelain=v2 -z
    --branch`` output."""
    commit: str | None = None
    changes: list[Change] = []
    tokens = iter(text.split("\0"))
    for token in tokens:
        if token.startswith("# branch.oid "):
            oid = token.removeprefix("# branch.oid ").strip()
            commit = None if oid == "(initial)" else oid
        elif token.startswith("1 "):
            fields = token.split(" ", 8)
            changes.append(Change(fields[8], _kind(fields[1], fields[2])))
        elif token.startswith("2 "):
            fields = token.split(" ", 9)
            changes.append(Change(fields[9], "renamed", next(tokens, None)))
        elif token.startswith("u "):
            changes.append(Change(token.split(" ", 10)[10], "unmerged"))
        elif token.startswith("? "):
            changes.append(Change(token[2:], "untracked"))
    return commit, tuple(changes)


def _kind(xy: str, submodule: str) -> str:
    if submodule.startswith("S"):
        return "submodule"
    if "D" in xy:
        return "deleted"
    return "modified" if xy[1:] != "." else "staged"


def _git(path: Path, *args: str, strip: bool = True) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(path), *args],
            capture_output=True,
            text=True,
            timeout=10,
            env=inherited_environ(),
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    out = done.stdout.strip() if strip else done.stdout
    return out or None


def public_url(url: str | None) -> str | None:
    """A remote URL without any user or token in it; None for local paths."""
    if not url or "://" not in url:
        # scp-like git@host:org/repo is safe to show; a bare path says nothing useful.
        return url if url and "@" in url and ":" in url and not url.startswith("/") else None
    parts = urlsplit(url)
    if parts.scheme == "file":
        return None
    host = parts.hostname or ""
    try:
        port = parts.port
    except ValueError:  # ssh://git@host:org/repo: not a port, and nothing to show
        return None
    if port:
        host = f"{host}:{port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))
