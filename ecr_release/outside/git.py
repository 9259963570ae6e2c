"""Git facts about the checkout being built: its commit and a credential-free source URL.

They become OCI labels and build arguments. Outside a git checkout, or without
git, both are None: a build never fails for want of git. Nothing here writes.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit


@dataclass(frozen=True)
class Revision:
    """The checkout's commit and the public URL of its ``origin`` remote (None when unknown)."""

    commit: str | None = None
    source: str | None = None


def revision(path: Path) -> Revision:
    """The revision of the checkout that holds ``path``."""
    commit = _git(path, "rev-parse", "HEAD")
    remote = _git(path, "config", "--get", "remote.origin.url") if commit else None
    return Revision(commit, public_url(remote))


def _git(path: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(path), *args], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


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
