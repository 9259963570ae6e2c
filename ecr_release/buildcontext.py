"""The build context: refuse to send secrets to the Docker daemon.

A ``COPY . .`` bakes whatever the context holds into a layer. Before a build we
look for ``.env``, ``.env.*`` (other than ``.env.example``) and ``.aws/`` and
check that ``.dockerignore`` excludes each one, with Docker's own matching rules
(last matching pattern wins, ``!`` re-includes, a pattern also covers what lies
below a matched directory, ``**`` spans directories).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import SettingsError

_PRUNE = {".git", ".venv", "node_modules", "__pycache__"}


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                i += 1
                out.append("(?:.*/)?")
            else:
                out.append(".*")
            continue
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = pattern.find("]", i)
            if end == -1:
                out.append(re.escape(ch))
            else:
                body = pattern[i + 1 : end].replace("\\", "\\\\")
                if body.startswith("^"):
                    body = "!" + body[1:]
                out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
                i = end
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(ch))
        i += 1
    # A pattern matching a directory also excludes everything under it.
    return re.compile("".join(out) + "(?:/.*)?")


class DockerIgnore:
    """The patterns of one ``.dockerignore``."""

    def __init__(self, text: str) -> None:
        self._rules: list[tuple[bool, re.Pattern[str]]] = []
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            if negate:
                line = line[1:].strip()
            line = os.path.normpath(line).lstrip("/")
            if line in ("", "."):
                continue
            self._rules.append((negate, _pattern_regex(line)))

    @classmethod
    def for_context(cls, context: Path) -> DockerIgnore:
        path = context / ".dockerignore"
        return cls(path.read_text() if path.is_file() else "")

    @property
    def has_exceptions(self) -> bool:
        return any(negate for negate, _ in self._rules)

    def excludes(self, relpath: str) -> bool:
        excluded = False
        for negate, regex in self._rules:
            if regex.fullmatch(relpath):
                excluded = not negate
        return excluded


def _is_secret(name: str, is_dir: bool) -> bool:
    if is_dir:
        return name == ".aws"
    return name == ".env" or (name.startswith(".env.") and name != ".env.example")


def unignored_secrets(context: Path) -> list[str]:
    """Paths (relative to the context) of secret files the build would send to the daemon."""
    ignore = DockerIgnore.for_context(context)
    found: list[str] = []
    for root, dirs, files in os.walk(context):
        rel_root = os.path.relpath(root, context)
        prefix = "" if rel_root == "." else rel_root + "/"
        for name in list(dirs):
            rel = prefix + name
            if _is_secret(name, True) and not ignore.excludes(rel):
                found.append(rel + "/")
            # Below an excluded directory nothing is sent, unless a '!' rule re-includes.
            pruned = ignore.excludes(rel) and not ignore.has_exceptions
            if name in _PRUNE or _is_secret(name, True) or pruned:
                dirs.remove(name)
        found.extend(
            prefix + name
            for name in files
            if _is_secret(name, False) and not ignore.excludes(prefix + name)
        )
    return sorted(found)


def check_no_secrets(context: Path) -> None:
    """Refuse a build whose context would carry ``.env`` or AWS credentials into the image."""
    found = unignored_secrets(context)
    if found:
        raise SettingsError(
            f"the build context {str(context)!r} holds {', '.join(found)} and .dockerignore "
            "does not exclude it: add it to .dockerignore (or move it out) so no secret can "
            "reach an image layer"
        )
