"""The build context as the Docker CLI sends it, and the secret check before a build.

:class:`DockerIgnore` follows Docker's own rules (moby's ``patternmatcher`` and
``ignorefile``): comments only where ``#`` starts the line, patterns cleaned like
``filepath.Clean``, ``*``/``?`` never cross ``/``, ``**`` spans directories, ``\\``
escapes, a pattern that matches a directory also excludes everything below it,
``!`` re-includes, and the last matching pattern wins. :func:`walk_context`
walks the context the way the CLI does: an excluded directory is skipped unless
an exception pattern lies inside it, symlinks are not followed, and the
Dockerfile and ``.dockerignore`` are always sent.

Before a build, :func:`check_no_secrets` refuses a context that would send
credentials to the daemon (where any ``COPY . .`` bakes them into a layer): by
name (``.env``, ``.aws/``, ``.ssh/``, SSH keys, ``.netrc``, ``.pypirc``, ...) and
by content (PEM/OpenSSH private keys, AWS keys). Paths are named, content never.
Binary files and files over ``MAX_SCAN_BYTES`` are not read.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..errors import SettingsError

MAX_SCAN_BYTES = 1024 * 1024
SHOWN_FINDINGS = 8
_BINARY_SNIFF = 8192

# Regexp metacharacters with no meaning in a Docker pattern (moby's shouldEscape).
_ESCAPE = set(".+()|{}$")


def _translate(pattern: str) -> str:
    """A cleaned Docker pattern as a regular expression (moby's ``Pattern.compile``)."""
    out = ["^"]
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        i += 1
        if ch == "*":
            if i < n and pattern[i] == "*":
                i += 1
                if i < n and pattern[i] == "/":
                    i += 1  # "**/" is "**"
                out.append(".*" if i >= n else "(?:.*/)?")
            else:
                out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch in _ESCAPE:
            out.append("\\" + ch)
        elif ch == "\\":
            if i < n:
                out.append(re.escape(pattern[i]))
                i += 1
            else:
                out.append("\\\\")
        else:
            out.append(ch)  # '[' and ']' keep their regexp meaning, as in moby
    out.append("$")
    return "".join(out)


def _clean(path: str) -> str:
    """``filepath.Clean``: no empty, ``.`` or resolvable ``..`` parts; "." when nothing is left."""
    rooted = path.startswith("/")
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append(part)
            continue
        parts.append(part)
    cleaned = "/".join(parts)
    return ("/" + cleaned) if rooted else (cleaned or ".")


@dataclass(frozen=True)
class _Rule:
    exclusion: bool
    pattern: str
    regex: str  # the pattern as a regular expression (matched in ``DockerIgnore.matcher``)


# One regular expression for several patterns, and the pattern index of each of its groups.
_Matcher = tuple[re.Pattern[str] | None, list[int]]


def _combine(bodies: list[tuple[int, str]]) -> _Matcher:
    """``(index, regex body)`` pairs as one expression whose matching group names the last
    pattern that matches (the alternatives run last first; the first to match wins)."""
    if not bodies:
        return None, []
    ordered = list(reversed(bodies))
    combined = re.compile("^(?:" + "|".join(f"({body})" for _, body in ordered) + ")$")
    return combined, [-1] + [index for index, _ in ordered]


class DockerIgnore:
    """The patterns of one ``.dockerignore``, with Docker's matching rules."""

    def __init__(self, text: str, *, source: str = ".dockerignore") -> None:
        self._rules: list[_Rule] = []
        self._matcher: Callable[[str, str], int] | None = None
        for number, raw in enumerate(text.removeprefix("\ufeff").splitlines(), start=1):
            if raw.startswith("#"):
                continue
            line = raw.strip()
            if not line:
                continue
            exclusion = line.startswith("!")
            if exclusion:
                line = line[1:].strip()
            if line:
                line = _clean(line)
                if len(line) > 1 and line.startswith("/"):
                    line = line[1:]
            elif exclusion:
                raise SettingsError(f'{source} line {number}: "!" alone is not a pattern')
            self.add(line, exclusion=exclusion, where=f"{source} line {number}")

    def add(self, pattern: str, *, exclusion: bool, where: str = ".dockerignore") -> None:
        """Append a cleaned pattern (the CLI appends ``!Dockerfile`` and ``!.dockerignore``)."""
        try:
            regex = _translate(pattern)
            if "[" in pattern:  # a class is the only part that can be malformed
                re.compile(regex)
        except re.error as exc:
            raise SettingsError(
                f"{where}: {pattern!r} is not a valid pattern ({exc.msg}); docker build would "
                "refuse it too: fix the line"
            ) from exc
        self._rules.append(_Rule(exclusion, pattern, regex))
        self._matcher = None

    @classmethod
    def for_build(cls, context: Path, dockerfile: Path | None = None) -> DockerIgnore:
        """The context's ``.dockerignore``, and, like the CLI, never excluding the Dockerfile
        or ``.dockerignore`` itself (the daemon needs both)."""
        path = context / ".dockerignore"
        try:
            text = path.read_text(encoding="utf-8") if path.is_file() else ""
        except (OSError, UnicodeDecodeError) as exc:
            raise SettingsError(f"cannot read {path}: {exc}") from exc
        ignore = cls(text, source=str(path))
        keep = [".dockerignore"]
        # A Dockerfile outside the context is sent apart from it.
        if dockerfile is not None and dockerfile.resolve().is_relative_to(context.resolve()):
            keep.append(dockerfile.resolve().relative_to(context.resolve()).as_posix())
        for name in keep:
            if ignore.excludes(name):
                ignore.add(name, exclusion=True)
        return ignore

    @property
    def signature(self) -> str:
        """The patterns in force, in order: two ignore files with one signature exclude alike."""
        return repr([(rule.exclusion, rule.pattern) for rule in self._rules])

    @property
    def has_exceptions(self) -> bool:
        return any(rule.exclusion for rule in self._rules)

    def excludes(self, relpath: str) -> bool:
        """Is this path (relative, '/'-separated) left out of the context?

        A pattern counts when it matches the path or any directory above it
        (moby's ``MatchesOrParentMatches``); the last such pattern decides.
        """
        parts = relpath.split("/")
        last = -1
        for i in range(1, len(parts) + 1):
            last = max(last, self.last_match("/".join(parts[:i])))
        return self.excluding()[last]

    def last_match(self, relpath: str) -> int:
        """The index of the last pattern that matches this very path (not its parents), or
        -1 (see ``matcher``)."""
        return self.matcher()(relpath, relpath.rpartition("/")[2])

    def matcher(self) -> Callable[[str, str], int]:
        """``last_match`` as one function of (path, its last part), for the walk, which calls
        it once per entry: about one match whatever the number of patterns. One regular
        expression holds the patterns that match a whole path, the last first. Those of the
        form ``**/NAME`` (NAME with no ``/``, ``**``, class or escape) match a path by its
        last part alone: exact names by a dictionary, ``*SUFFIX`` and ``PREFIX*`` by one
        ``endswith``/``startswith`` that turns away most names at once, the rest by another
        expression. The same verdicts, without trying ``.*/`` at every ``/`` of every path."""
        if self._matcher is None:
            self._matcher = self._compile()
        return self._matcher

    def _compile(self) -> Callable[[str, str], int]:
        if not self._rules:
            return lambda relpath, name: -1
        whole_rules: list[tuple[int, str]] = []
        other_rules: list[tuple[int, str]] = []
        exact: dict[str, int] = {}
        suffixes: list[tuple[int, str]] = []  # the last pattern first
        prefixes: list[tuple[int, str]] = []
        for index, rule in enumerate(self._rules):
            name = rule.pattern[3:]
            if not rule.pattern.startswith("**/") or "**" in name or any(c in name for c in "/[\\"):
                whole_rules.append((index, rule.regex[1:-1]))
                continue
            wild = name.count("*") + name.count("?")
            if not wild:
                exact[name] = index
            elif wild == 1 and name.startswith("*"):
                suffixes.insert(0, (index, name[1:]))
            elif wild == 1 and name.endswith("*"):
                prefixes.insert(0, (index, name[:-1]))
            else:
                other_rules.append((index, _translate(name)[1:-1]))
        whole, whole_index = _combine(whole_rules)
        other, other_index = _combine(other_rules)
        any_suffix = tuple(suffix for _, suffix in suffixes)
        any_prefix = tuple(prefix for _, prefix in prefixes)

        def last_match(relpath: str, name: str) -> int:
            last = exact.get(name, -1)
            if whole is not None and (found := whole.match(relpath)) is not None:
                last = max(last, whole_index[found.lastindex or 0])
            if any_suffix and name.endswith(any_suffix):
                last = max(last, next(i for i, end in suffixes if name.endswith(end)))
            if any_prefix and name.startswith(any_prefix):
                last = max(last, next(i for i, start in prefixes if name.startswith(start)))
            if other is not None and (found := other.match(name)) is not None:
                last = max(last, other_index[found.lastindex or 0])
            return last

        return last_match

    def excluding(self) -> list[bool]:
        """Whether each pattern excludes (not an exception), by index; and at -1, for no
        pattern, False: ``excluding()[last_match(path)]`` is the path's own verdict."""
        return [not rule.exclusion for rule in self._rules] + [False]

    def may_reinclude_below(self, reldir: str) -> bool:
        """Does an exception pattern lie inside this excluded directory (so the CLI walks it)?"""
        prefix = reldir + "/"
        return any(
            rule.exclusion and (rule.pattern + "/").startswith(prefix) for rule in self._rules
        )


@dataclass(frozen=True)
class ContextEntry:
    """One path the CLI sends to the daemon."""

    relpath: str  # relative to the context, '/'-separated
    fspath: str  # where it is
    stat: os.stat_result  # lstat: the type bits tell file, directory and symlink apart

    @property
    def path(self) -> Path:
        return Path(self.fspath)

    @property
    def mode(self) -> int:
        return self.stat.st_mode

    @property
    def is_file(self) -> bool:
        return stat.S_ISREG(self.stat.st_mode)

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.stat.st_mode)

    @property
    def is_symlink(self) -> bool:
        return stat.S_ISLNK(self.stat.st_mode)


def _unreadable(what: str, exc: OSError) -> SettingsError:
    return SettingsError(
        f"cannot read {what} in the build context: {exc.strerror or exc}; "
        "fix its permissions or add it to .dockerignore"
    )


_FILE, _DIR, _LINK, _OTHER = range(4)
# A name that is not UTF-8 is digested as its bytes (UTF-8 names as ever).
_NAMES = "surrogateescape"


def _listing(directory: str) -> Iterator[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as found:
            return iter(sorted(found, key=lambda item: item.name))
    except OSError as exc:
        raise _unreadable(directory, exc) from exc


def _walk(
    context: Path,
    ignore: DockerIgnore,
    entered: Callable[[str, os.DirEntry[str]], object] | None = None,
) -> Iterator[tuple[str, os.DirEntry[str], int]]:
    """``(relpath, entry, kind)`` of every path the CLI would send: depth first, in name
    order, in one ``os.scandir`` pass (the kind from the listing: no ``stat``). An excluded
    directory is never entered unless an exception pattern lies inside it; each entry is
    matched once against the patterns (its parents' last match is carried down). This loop
    runs once per file of the context: it calls as little as it can. ``entered`` hears of
    each excluded directory the walk enters all the same."""
    stack = [(_listing(os.fspath(context)), "", -1)]
    last_match, excluding = ignore.matcher(), ignore.excluding()
    while stack:
        items, prefix, above = stack[-1]
        for item in items:
            name = item.name
            relpath = prefix + name
            last = last_match(relpath, name)
            if above > last:
                last = above
            try:
                if item.is_dir(follow_symlinks=False):
                    kind = _DIR
                elif item.is_file(follow_symlinks=False):
                    kind = _FILE
                else:
                    kind = _LINK if item.is_symlink() else _OTHER
            except OSError as exc:
                raise _unreadable(relpath, exc) from exc
            if not excluding[last]:
                yield relpath, item, kind
            elif not (kind == _DIR and ignore.may_reinclude_below(relpath)):
                continue
            elif entered is not None:
                entered(relpath, item)
            if kind == _DIR:
                stack.append((_listing(item.path), relpath + "/", last))
                break  # its entries come next
        else:
            stack.pop()


def _lstat(relpath: str, item: os.DirEntry[str]) -> os.stat_result | None:
    """The entry's lstat; None when it is gone since the listing (the CLI would not send it
    either)."""
    try:
        return item.stat(follow_symlinks=False)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _unreadable(relpath, exc) from exc


def _stat(where: Path | os.DirEntry[str], relpath: str) -> os.stat_result:
    """The lstat of a path the walk enters or sends (a directory, a link), for the cache."""
    try:
        return where.stat(follow_symlinks=False)
    except OSError as exc:
        raise _unreadable(relpath, exc) from exc


def walk_context(context: Path, ignore: DockerIgnore) -> Iterator[ContextEntry]:
    """Every path the CLI would send, in a stable (sorted) order (see ``_walk``): symlinks
    are not followed. Unreadable directories raise ``SettingsError`` naming them: docker
    build would fail on them too."""
    for relpath, item, _ in _walk(context, ignore):
        if (info := _lstat(relpath, item)) is not None:
            yield ContextEntry(relpath, item.path, info)


# -- secrets -----------------------------------------------------------------------------

# Directories whose every file is a credential store.
_SECRET_DIRS = {".aws", ".ssh", ".gnupg"}
# Files that hold credentials by their very name.
_SECRET_FILES = {
    "id_rsa",
    "id_dsa",
    "id_ecdsa",
    "id_ed25519",
    "id_ecdsa_sk",
    "id_ed25519_sk",
    ".netrc",
    "_netrc",
    ".git-credentials",
    ".pypirc",
    ".pgpass",
}
_SECRET_SUFFIXES = (".p12", ".pfx")
_CONTENT_RULES = (
    (
        re.compile(
            rb"-----BEGIN (?:RSA |DSA |EC |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?-----"
        ),
        "a private key",
    ),
    (
        re.compile(
            rb"(?i)aws_?secret_?access_?key[\"']?\s*[:=]\s*[\"']?[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+])"
        ),
        "an AWS secret access key",
    ),
    (re.compile(rb"(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])"), "an AWS access key id"),
)
_NPM_TOKEN = re.compile(rb"(?m)^\s*(?:[^=\s]*:)?_(?:authToken|auth|password)\s*=")


@dataclass(frozen=True)
class Finding:
    relpath: str
    why: str

    def __str__(self) -> str:
        return f"{self.relpath} ({self.why})" if self.why else self.relpath


# A name _secret_by_name may say yes to is in _NAMED, ends with one of _NAMED_ENDINGS or
# starts with ".env.".
_NAMED_ENDINGS = (".env", *_SECRET_SUFFIXES)
_NAMED = _SECRET_FILES | {"config.json"}


def _secret_by_name(relpath: str, name: str) -> bool:
    """Does the name say it holds credentials? (The walk asks only for names that
    ``_NAMED``/``_NAMED_ENDINGS`` let through: most files need one look.)"""
    if name == ".env" or (name.startswith(".env.") and name != ".env.example"):
        return True
    if name.endswith(".env") and name != "example.env":  # prod.env, release.env
        return True
    return (
        name in _SECRET_FILES
        or name.endswith(_SECRET_SUFFIXES)
        or relpath == ".docker/config.json"
        or relpath.endswith("/.docker/config.json")
    )


def _secret_in(data: bytes, name: str) -> str | None:
    """What secret a file's content holds, if any (binary content is not looked at)."""
    if b"\0" in data[:_BINARY_SNIFF]:
        return None
    for pattern, what in _CONTENT_RULES:
        if pattern.search(data):
            return what
    if name == ".npmrc" and _NPM_TOKEN.search(data):
        return "an npm auth token"
    return None


@dataclass(frozen=True)
class ContextScan:
    """One walk of the context: the secrets it would send, and a digest of what it sends."""

    secrets: list[Finding]
    digest: str
    entries: tuple[str, ...] = ()  # every path sent, in walk order (a directory before its own)


class FileDigests(Protocol):
    """What a file's bytes were found to be, the last time they were read: its sha256 and
    what secret its content holds (``None``: none, or not looked at). Kept by stat; an
    answer is given only while the file cannot have changed since (see
    ``outside.contextcache``). ``begin`` starts a walk (``rules`` names the content rules
    in force, ``walk`` what else decides the walk's answer: other rules, other answers);
    ``replay`` is the whole last walk's answer (digest, findings, paths sent) while nothing
    it saw can have changed; ``note`` tells of a path that is not a file (a directory
    entered, a link); ``finish`` ends a completed walk with its answer."""

    def begin(self, rules: str, walk: str) -> None: ...

    def replay(self) -> tuple[str, list[tuple[str, str]], tuple[str, ...]] | None: ...

    def lookup(self, relpath: str, info: os.stat_result) -> tuple[str, str | None] | None: ...

    def store(
        self, relpath: str, info: os.stat_result, digest: str, secret: str | None
    ) -> None: ...

    def note(self, relpath: str, info: os.stat_result, tag: str) -> None: ...

    def finish(self, digest: str, secrets: list[tuple[str, str]]) -> None: ...


def content_rules() -> str:
    """A digest of what decides a file's content verdict and a walk's answer: the content
    rules, and this module's own code (its rules by name, how the digest is made). A cached
    verdict or walk from other rules, or from another version of the suite, is not reused."""
    rules = [pattern.pattern for pattern, _ in _CONTENT_RULES] + [_NPM_TOKEN.pattern]
    digest = hashlib.sha256(repr((rules, MAX_SCAN_BYTES, _BINARY_SNIFF)).encode())
    with contextlib.suppress(OSError):  # no source beside the code: the rules alone
        digest.update(Path(__file__).read_bytes())
    return digest.hexdigest()[:16]


def _inside(context: Path, paths: Sequence[Path | None]) -> set[str]:
    """The context-relative paths of those of ``paths`` that lie in the context."""
    root = context.resolve()
    found = set()
    for path in paths:
        if path is not None and (real := path.resolve()).is_relative_to(root):
            found.add(real.relative_to(root).as_posix())
    return found


def scan_context(
    context: Path,
    dockerfile: Path | None = None,
    allow: Sequence[str] = (),
    also: Sequence[Path] = (),
    cache: FileDigests | None = None,
) -> ContextScan:
    """Walk the context once, as the CLI sends it: find secrets (except paths matching
    ``allow``) and digest every entry except the Dockerfile, which is an input of its own.

    The digest covers relative paths, entry types, the executable bit, file contents and
    symlink targets, in a stable order: it changes exactly when what Docker sends changes.
    With a ``cache``, a file whose stat says it is unchanged is not read again, and a walk
    whose every path is unchanged is not walked again (``FileDigests.replay``).
    """
    ignore = DockerIgnore.for_build(context, dockerfile)
    allowed = DockerIgnore("\n".join(allow), source="SECRET_SCAN_ALLOW")
    skip = _inside(context, [dockerfile])
    secret_files = _inside(context, list(also))  # e.g. the settings file in use
    note: Callable[[str, os.stat_result, str], None] | None = None
    if cache is not None:
        root = context.resolve()  # a link to the context, moved since, is another walk
        walk = (str(root), ignore.signature, allowed.signature, sorted(skip), sorted(secret_files))
        cache.begin(content_rules(), repr(walk))
        if (replayed := cache.replay()) is not None:
            digest, findings, entries = replayed
            return ContextScan([Finding(path, why) for path, why in findings], digest, entries)
        note = cache.note
        # The context itself (a link to it followed), before its listing: a change after shows.
        note("", _stat(root, "."), "e")
    found: list[Finding] = []
    reported_dirs: list[str] = []
    total = hashlib.sha256()
    lookup = cache.lookup if cache is not None else None
    sent: list[str] = []
    entered = None
    if note is not None:
        noted = note
        entered = lambda relpath, item: noted(relpath, _stat(item, relpath), "e")  # noqa: E731
    for relpath, item, kind in _walk(context, ignore, entered):
        name = item.name
        secret: str | None = None
        if kind == _FILE:
            try:
                info = item.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # gone since the listing: the CLI would not send it either
            except OSError as exc:
                raise _unreadable(relpath, exc) from exc
            known = lookup(relpath, info) if lookup is not None else None
            content, secret = known or _digest(relpath, item.path, info, cache)
            if relpath not in skip:
                executable = "x" if info.st_mode & 0o111 else "-"
                total.update(f"f {relpath}\0{executable}\0{content}\0".encode(errors=_NAMES))
        else:
            if note is not None:  # before a directory's listing, a link's target
                note(relpath, _stat(item, relpath), "dlo"[kind - 1])
            if kind == _DIR:
                total.update(f"d {relpath}\0".encode(errors=_NAMES))
            elif kind == _LINK:
                total.update(f"l {relpath}\0{os.readlink(item.path)}\0".encode(errors=_NAMES))
        sent.append(relpath)
        if reported_dirs and any(relpath.startswith(d) for d in reported_dirs):
            continue
        if allow and allowed.excludes(relpath):
            continue
        if kind == _DIR:
            if name in _SECRET_DIRS:
                found.append(Finding(relpath + "/", ""))
                reported_dirs.append(relpath + "/")
            continue
        parents = relpath[: -len(name)]
        in_secret_dir = "/." in "/" + parents and not _SECRET_DIRS.isdisjoint(parents.split("/"))
        named = (relpath in secret_files) or (
            (name in _NAMED or name.endswith(_NAMED_ENDINGS) or name.startswith(".env."))
            and _secret_by_name(relpath, name)
        )
        if kind == _FILE and (in_secret_dir or named):
            found.append(Finding(relpath, ""))
        elif secret:
            found.append(Finding(relpath, secret))
    found.sort(key=lambda finding: finding.relpath)
    digest = f"sha256:{total.hexdigest()}"
    if cache is not None:
        cache.finish(digest, [(finding.relpath, finding.why) for finding in found])
    return ContextScan(found, digest, tuple(sent))


def needed(entries: Sequence[str], sources: Sequence[str]) -> tuple[str, ...] | None:
    """Of the context's ``entries`` (walk order), those a build whose ``COPY``/``ADD`` read
    ``sources`` needs: each source and all below it, and ``.dockerignore``. None when a
    source is not among them (Docker then says so itself, from the whole context).

    In walk order a directory's entries follow it at once: each source is one run of
    entries, found by its position (no look at the other entries of a large context)."""
    chosen: set[int] = set()
    if ".dockerignore" in entries:
        chosen.add(entries.index(".dockerignore"))  # the file itself (or an odd folder's name)
    for source in dict.fromkeys(sources):
        try:
            start = entries.index(source)
        except ValueError:
            return None
        end, below = start + 1, source + "/"
        while end < len(entries) and entries[end].startswith(below):
            end += 1
        chosen.update(range(start, end))
    return tuple(entries[i] for i in sorted(chosen))


def _digest(
    relpath: str, fspath: str, info: os.stat_result, cache: FileDigests | None
) -> tuple[str, str | None]:
    """A file's sha256 and the secret its content holds, read (and remembered in the cache)."""
    data, content = _read(fspath, relpath)
    secret = _secret_in(data, relpath.rpartition("/")[2]) if data is not None else None
    if cache is not None:
        cache.store(relpath, info, content, secret)
    return content, secret


def _read(fspath: str, relpath: str) -> tuple[bytes | None, str]:
    """(the content when small enough to scan, else None; the sha256 of the whole file)."""
    digest = hashlib.sha256()
    head = b""
    try:
        with open(fspath, "rb") as handle:
            while chunk := handle.read(1024 * 1024):
                if len(head) <= MAX_SCAN_BYTES:
                    head += chunk
                digest.update(chunk)
    except OSError as exc:
        raise _unreadable(relpath, exc) from exc
    return (head if len(head) <= MAX_SCAN_BYTES else None), digest.hexdigest()


def find_secrets(
    context: Path, dockerfile: Path | None = None, allow: Sequence[str] = ()
) -> list[Finding]:
    """Secrets the build would send to the daemon, except paths matching ``allow``
    (``.dockerignore``-style patterns: files the user means to ship)."""
    return scan_context(context, dockerfile, allow).secrets


def check_no_secrets(
    context: Path, dockerfile: Path | None = None, allow: Sequence[str] = ()
) -> None:
    """Refuse a build whose context would carry credentials into the image."""
    raise_on_secrets(context, find_secrets(context, dockerfile, allow))


def listed(found: Sequence[Finding]) -> str:
    """The first findings, and how many more: ``a, b and 3 more``."""
    shown = ", ".join(map(str, found[:SHOWN_FINDINGS]))
    if len(found) > SHOWN_FINDINGS:
        shown += f" and {len(found) - SHOWN_FINDINGS} more"
    return shown


def raise_on_secrets(context: Path, found: Sequence[Finding]) -> None:
    """The one-line refusal for secrets found in the context (nothing when there are none)."""
    if found:
        shown = listed(found)
        raise SettingsError(
            f"the build context {str(context)!r} holds {shown} and "
            ".dockerignore does not exclude it: add it to .dockerignore (or move it out) so no "
            "secret can reach an image layer; a file you mean to ship goes in SECRET_SCAN_ALLOW"
        )


def unignored_secrets(context: Path) -> list[str]:
    """The paths :func:`find_secrets` reports, without the reasons."""
    return [finding.relpath for finding in find_secrets(context)]
