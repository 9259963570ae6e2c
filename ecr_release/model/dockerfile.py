"""What a Dockerfile says that the release needs: the images its build reads, and which
labels its final stage sets from build arguments.

The images a build reads are its inputs: each ``FROM`` line's image (variables expanded as
Docker expands them: with the ARGs declared before the first ``FROM``, the build
arguments, and the platform arguments BuildKit defines, ``TARGETARCH`` and the like, as
for a build on this machine), and every image a ``COPY --from=`` or a
``RUN --mount=...,from=`` names that is not a stage of the same Dockerfile (by name, or
for ``COPY`` by index). Docker expands no variable in ``--from`` or ``from=`` (BuildKit
refuses one; the classic builder takes ``$X`` as an image name): a ``$`` there is
refused here, before anything runs. The classic builder defines no platform argument;
a FROM that reads one fails there, so resolving it as BuildKit would costs nothing.

The classic builder turns every ``--label`` into a build step of its own (one container
and one commit, about 80 ms each here), after the changed layer. So a label the
Dockerfile's own ``LABEL`` already sets from a build argument travels as that build
argument, and only the rest as ``--label``. ``dockerfile-parse`` splits the lines
(continuations, comments), once the heredoc bodies (``RUN <<EOF`` ... ``EOF``: text, not
instructions) are blanked out as BuildKit's parser reads them; ``dockerwords`` reads the
words and expands them. The fingerprint takes the file's bytes as they are.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import SettingsError
from .dockerwords import ExpansionError, expand, heredocs, split_flags, split_words

# The patterns here are text: re compiles each on its first use.
# A label value that is exactly one build argument: ${NAME} or $NAME.
_ONE_ARG = r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))"
# A parser directive such as `# escape=\``: read only at the top of the file, as Docker does.
_DIRECTIVE = r"#[ \t]*([A-Za-z][A-Za-z0-9]*)[ \t]*=[ \t]*(.+?)[ \t]*"
# `COPY --from=1` names the second stage (Go's strconv.Atoi takes the sign too).
_STAGE_INDEX = r"[+-]?[0-9]+"
# The COPY/ADD flags that change nothing about which context paths are read.
_CONTEXT_FLAGS = frozenset({"--chown", "--chmod", "--link", "--checksum"})
# What uname calls a machine, in Go's names (GOARCH, variant), as containerd's platforms
# package normalises them; an armvNl not listed is arm/vN, anything else keeps its name.
_GO_ARCH = {
    "x86_64": ("amd64", ""), "amd64": ("amd64", ""), "x86-64": ("amd64", ""),
    "aarch64": ("arm64", ""), "arm64": ("arm64", ""), "arm": ("arm", "v7"),
    "i386": ("386", ""), "i486": ("386", ""), "i586": ("386", ""), "i686": ("386", ""),
    "loongarch64": ("loong64", ""), "mips64el": ("mips64le", ""), "mipsel": ("mipsle", ""),
}  # fmt: skip
_ARM = r"armv([3-8])"


@dataclass(frozen=True)
class ImagesRead:
    """The images a build reads that are not stages of its own Dockerfile, by name."""

    bases: tuple[str, ...]  # the FROM lines' images, each once, the final stage's last
    final_base: str | None  # what the final stage builds on; None for ``FROM scratch``
    copied: tuple[str, ...]  # COPY --from / RUN --mount from= images, not among ``bases``

    @property
    def all(self) -> tuple[str, ...]:
        """Every one, in the fingerprint's order: the bases, then the copied-from ones in the
        order the Dockerfile names them (a Dockerfile with no --from keeps its old digest)."""
        return self.bases + self.copied


@dataclass(frozen=True)
class Dockerfile:
    """A parsed Dockerfile: its instructions, and the build arguments it is built with."""

    path: Path
    data: bytes
    structure: list[dict[str, Any]]
    build_args: dict[str, str]
    escape: str = "\\"

    @classmethod
    def read(cls, path: Path, build_args: Mapping[str, str]) -> Dockerfile:
        from dockerfile_parse import DockerfileParser

        try:
            data = path.read_bytes()
            text = data.decode()
            escape = _escape_token(text)
            parser = DockerfileParser(fileobj=io.BytesIO(_without_heredocs(text, escape).encode()))
            structure = list(parser.structure)
        except (OSError, ValueError, KeyError) as exc:
            raise SettingsError(f"cannot read the Dockerfile {path}: {exc}") from exc
        return cls(path, data, structure, dict(build_args), escape)

    def external_bases(self) -> list[str]:
        """The images the FROM lines pull in, in order, not ``scratch`` and not earlier
        stages; the last one is what the final stage builds on."""
        return list(self.images_read().bases)

    def images_read(self) -> ImagesRead:
        """Every image the build reads from outside this Dockerfile (see the module)."""
        # What FROM lines see: BuildKit's platform arguments, then the ARGs before the first
        # FROM; a build argument overrides either. The machine is uname's (what
        # platform.machine() returns on Linux, without importing platform: 3 ms).
        meta = platform_args(os.uname().machine, self._target_stage())
        meta.update((key, value) for key, value in self.build_args.items() if key in meta)
        stages: dict[str, str] = {}  # stage name -> the external image it builds on
        chain: list[str] = []  # each stage's external image, in order
        copied: list[str] = []
        for item in self.structure:
            instruction, value = item["instruction"], item["value"]
            line = int(item["startline"]) + 1
            if instruction == "FROM":
                image, alias = self._from(value, meta, line)
                resolved = stages.get(image.lower(), image)
                if alias:
                    stages[alias] = resolved
                chain.append(resolved)
            elif instruction == "ARG" and not chain:
                self._meta_arg(value, meta, line)
            elif instruction == "COPY" and chain:
                copied += (
                    name
                    for name in self._copied_from(value, line)
                    if name.lower() not in stages and not re.fullmatch(_STAGE_INDEX, name)
                )
            elif instruction == "RUN" and chain:  # BuildKit finds a mount's stage by name only
                copied += (n for n in self._mounted_from(value, line) if n.lower() not in stages)
        bases = [name for name in dict.fromkeys(chain) if name.lower() != "scratch"]
        final = chain[-1] if chain and chain[-1].lower() != "scratch" else None
        if final in bases:  # the final stage's base last: it is what base.name names
            bases.remove(final)
            bases.append(final)
        others = [name for name in dict.fromkeys(copied) if name not in bases]
        return ImagesRead(tuple(bases), final, tuple(others))

    def _from(self, value: str, meta: Mapping[str, str], line: int) -> tuple[str, str | None]:
        """A FROM line's image, expanded, and its stage name (lowercase) if it has one."""
        _, rest = split_flags(value, self.escape)
        words = rest.split()  # before expansion, as Docker splits it: no blank in a ${...}
        if not words:
            raise SettingsError(f"{self.path} has a FROM line that names no image: fix it")
        if len(words) not in (1, 3) or (len(words) == 3 and words[1].lower() != "as"):
            raise SettingsError(
                f"{self.path}, line {line}: FROM {rest}: Docker wants one image and an "
                "optional AS name (FROM IMAGE [AS NAME]), and reads no blank inside ${...}"
            )
        image = self._expand(words[0], meta, line, "FROM")
        if not image.strip():
            raise SettingsError(
                f"a FROM line of {self.path} (line {line}) names no image once its ARGs are "
                "substituted: give the ARG a default or set BASE_IMAGE"
            )
        alias = words[2].lower() if len(words) == 3 else None
        return image, alias

    def _meta_arg(self, value: str, meta: dict[str, str], line: int) -> None:
        """An ARG before the first FROM: a build argument overrides its default, which is
        expanded with the ARGs before it; without either it stays unset."""
        for word in split_words(value, self.escape):
            key, has_default, default = word.partition("=")
            if key in self.build_args:
                meta[key] = self.build_args[key]
            elif has_default:
                meta[key] = self._expand(default, meta, line, "ARG")

    def _expand(self, word: str, env: Mapping[str, str], line: int, instruction: str) -> str:
        try:
            return expand(word, env, self.escape)
        except ExpansionError as exc:
            raise SettingsError(
                f"{self.path}, line {line}: cannot expand {instruction} {word}: {exc}"
            ) from exc

    def _copied_from(self, value: str, line: int) -> Iterator[str]:
        """The ``--from`` of a COPY line (flags come before the sources)."""
        for flag in split_flags(value, self.escape)[0]:
            name, has_value, source = flag.partition("=")
            if name != "--from" or not has_value or not source:
                continue
            if _expands(source, self.escape):
                raise SettingsError(
                    f"{self.path}, line {line}: COPY --from={source}: Docker does not expand "
                    "variables in --from; declare the ARG before the first FROM, name the "
                    "image in a stage of its own (FROM ${ARG} AS name) and COPY --from=name"
                )
            yield source

    def _mounted_from(self, value: str, line: int) -> Iterator[str]:
        """The ``from=`` of each ``--mount`` of a RUN line (BuildKit's syntax: the classic
        builder refuses ``--mount``, but the file is read as written)."""
        for flag in split_flags(value, self.escape)[0]:
            name, has_value, spec = flag.partition("=")
            if name != "--mount" or not has_value:
                continue
            try:
                fields = next(csv.reader([spec]), [])
            except csv.Error:  # BuildKit refuses the line too
                continue
            for field in fields:
                key, has_value, source = field.partition("=")
                if key.lower() != "from" or not has_value or not source:
                    continue
                if "$" in source[:-1]:  # BuildKit's own test for a variable there
                    raise SettingsError(
                        f"{self.path}, line {line}: RUN --mount=...from={source}: Docker does "
                        "not expand variables in a mount's from=; declare the ARG before the "
                        "first FROM, name the image in a stage of its own (FROM ${ARG} AS "
                        "name) and mount from=name"
                    )
                yield source

    def labels_from_args(self) -> dict[str, str]:
        """Label key -> the build argument the final stage's LABEL sets it from, for labels
        whose value is exactly one argument that the stage declares with ARG."""
        final = self._final_stage()
        declared = {
            word.split("=", 1)[0]
            for item in final
            if item["instruction"] == "ARG"
            for word in _words(item["value"])
        }
        found: dict[str, str] = {}
        for item in final:
            if item["instruction"] != "LABEL":
                continue
            for word in _words(item["value"]):
                key, _, value = word.partition("=")
                match = re.fullmatch(_ONE_ARG, value)
                name = match and (match.group(1) or match.group(2))
                if name and name in declared:
                    found[key] = name
        return found

    def _target_stage(self) -> str:
        """The name of the stage the build builds: the last (the suite passes no --target),
        lowercase, as BuildKit names it; ``default`` when it has none."""
        froms = [item["value"] for item in self.structure if item["instruction"] == "FROM"]
        words = split_flags(froms[-1], self.escape)[1].split() if froms else []
        return words[2].lower() if len(words) == 3 and words[1].lower() == "as" else "default"

    def _final_stage(self) -> list[dict[str, Any]]:
        stage: list[dict[str, Any]] = []
        for item in self.structure:
            stage = [] if item["instruction"] == "FROM" else [*stage, item]
        return stage


def _escape_token(text: str) -> str:
    """The escape token a ``# escape=`` directive at the top of the file sets, else ``\\``."""
    escape = "\\"
    for line in text.splitlines():
        directive = re.fullmatch(_DIRECTIVE, line)
        if directive is None:
            break  # directives end at the first line that is not one
        if directive.group(1).lower() == "escape" and directive.group(2) in ("\\", "`"):
            escape = directive.group(2)
    return escape


def platform_args(machine: str, target_stage: str) -> dict[str, str]:
    """The arguments BuildKit defines for the FROM lines (``defaultArgs`` in its
    ``dockerfile2llb/platform.go``), for a build on a Linux ``machine`` (what uname calls
    it) with no --platform: build and target platform both the machine's."""
    arch, variant = _go_platform(machine)
    spec = "/".join(part for part in ("linux", arch, variant) if part)
    found: dict[str, str] = {}
    for side in ("BUILD", "TARGET"):
        found |= {
            f"{side}PLATFORM": spec,
            f"{side}OS": "linux",
            f"{side}OSVERSION": "",
            f"{side}ARCH": arch,
            f"{side}VARIANT": variant,
        }
    return {**found, "TARGETSTAGE": target_stage}


def _go_platform(machine: str) -> tuple[str, str]:
    """A machine's architecture and variant as Go and containerd name them."""
    machine = machine.lower()
    if machine in _GO_ARCH:
        return _GO_ARCH[machine]
    arm = re.match(_ARM, machine)
    return ("arm", f"v{arm.group(1)}") if arm else (machine, "")


def _without_heredocs(text: str, escape: str) -> str:
    """The Dockerfile with each heredoc's body and closing line blanked (BuildKit reads
    them as text, not instructions), line numbers kept. Lines join as BuildKit's parser
    joins them: a trailing escape token continues one, and comment and blank lines
    inside one are skipped."""
    lines = text.split("\n")
    kept = list(lines)
    token = re.escape(escape)
    continued = re.compile(rf"([^{token}]){token}[ \t]*\Z|\A{token}[ \t]*\Z")
    pos = 0
    while pos < len(lines):
        start, line = pos + 1, lines[pos].rstrip("\r\n").lstrip()
        pos += 1
        if line.startswith("#"):
            continue
        more, parts = bool(continued.search(line)), [continued.sub(r"\1", line)]
        while more and pos < len(lines):
            line = lines[pos].rstrip("\r\n")
            pos += 1
            if line.strip() and not line.lstrip().startswith("#"):
                more = bool(continued.search(line))
                parts.append(continued.sub(r"\1", line))
        logical = "".join(parts)
        if "<<" not in logical or not _takes_heredocs(logical, escape):
            continue
        try:
            opened = heredocs(logical)
        except ExpansionError as exc:
            raise ValueError(f"line {start}: {exc}") from exc
        for heredoc in opened:
            while True:
                if pos == len(lines):
                    raise ValueError(
                        f"line {start}: the heredoc <<{heredoc.name} has no closing "
                        f"{heredoc.name} line"
                    )
                closing = lines[pos].rstrip("\r\n")
                kept[pos] = ""
                pos += 1
                if (closing.lstrip("\t") if heredoc.strip_tabs else closing) == heredoc.name:
                    break
    return "\n".join(kept)


def _takes_heredocs(line: str, escape: str) -> bool:
    """Is this a RUN, COPY or ADD line (or one ONBUILD adds) in shell form: one BuildKit
    reads heredocs for?"""
    command, *rest = line.split(None, 1)
    if command.lower() == "onbuild" and rest:
        command, *rest = rest[0].split(None, 1)
    if command.lower() not in ("run", "copy", "add"):
        return False
    args = split_flags(rest[0] if rest else "", escape)[1]
    try:
        return not (args.startswith("[") and all(isinstance(a, str) for a in json.loads(args)))
    except ValueError:  # not JSON: the shell form
        return True


def _expands(word: str, escape: str) -> bool:
    """Would Docker's expansion change ``word`` (BuildKit's test for ``COPY --from``)?"""
    try:
        return expand(word, {}, escape) != word
    except ExpansionError:
        return True


def context_sources(dockerfile: Dockerfile) -> tuple[str, ...] | None:
    """The paths of the build context that the build reads: each ``COPY``/``ADD`` source
    (not ``--from``, not an ``ADD`` URL), cleaned, relative to the context. None when
    that cannot be known for certain: a source with a wildcard, a variable, a quote or
    an escape, the whole context (``.``), a path leaving it, a heredoc, a flag other
    than ``--chown``/``--chmod``/``--link``/``--checksum``, or a ``RUN --mount``."""
    found: list[str] = []
    for item in dockerfile.structure:
        instruction, value = item["instruction"], str(item["value"])
        if instruction == "RUN" and "--mount" in value:
            return None
        if instruction not in ("COPY", "ADD"):
            continue
        flags, rest = split_flags(value, dockerfile.escape)
        names = {flag.split("=", 1)[0] for flag in flags}
        if "--from" in names:
            continue  # another stage or image, not the context
        if names - _CONTEXT_FLAGS:
            return None
        words = _json_words(rest)
        if words is None:
            words = rest.split()
        if len(words) < 2:
            return None
        for source in words[:-1]:
            if instruction == "ADD" and re.match(r"[a-z][a-z0-9+.-]*://|git@", source):
                continue
            cleaned = _clean_source(source)
            if cleaned is None:
                return None
            found.append(cleaned)
    return tuple(dict.fromkeys(found))


def _json_words(rest: str) -> list[str] | None:
    """The JSON form's words, or None (Docker then reads the line as words on blanks)."""
    if not rest.startswith("["):
        return None
    try:
        words = json.loads(rest)
    except ValueError:
        return None
    if not isinstance(words, list) or not all(isinstance(word, str) for word in words):
        return None
    return words


def _clean_source(source: str) -> str | None:
    """A COPY/ADD source as a context-relative path, cleaned; None when it is not one plain
    path inside the context (a wildcard, a variable, a quote, an escape, a heredoc, ``.``,
    or a path that leaves the context)."""
    if not source or any(ch in source for ch in "*?[]$\\'\"<"):
        return None
    parts: list[str] = []
    for part in source.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                return None
            parts.pop()
            continue
        parts.append(part)
    return "/".join(parts) or None


def _words(value: str) -> list[str]:
    try:
        return shlex.split(value.replace("\\\n", " "))
    except ValueError:  # unbalanced quotes: docker would refuse the line; claim nothing
        return []


def split_labels(
    dockerfile: Dockerfile, labels: Mapping[str, str], build_args: Mapping[str, str]
) -> tuple[dict[str, str], dict[str, str]]:
    """Which wanted labels go as build arguments the Dockerfile's LABEL reads, and which as
    ``--label``: (extra build arguments, labels to pass).

    An argument the FROM lines read too (``ARG BASE_IMAGE`` before the first FROM) is a
    carrier only if setting it leaves every image they name as it was: a build that reads
    other images than the fingerprinted ones would break the fingerprint's promise."""
    carriers = dockerfile.labels_from_args()
    extra: dict[str, str] = {}
    passed: dict[str, str] = {}
    for key, value in labels.items():
        name = carriers.get(key)
        if (
            name
            and build_args.get(name, value) == value
            and extra.get(name, value) == value
            and (name in build_args or _leaves_images(dockerfile, build_args, name, value))
        ):
            extra[name] = value
        else:
            passed[key] = value
    return extra, passed


def _leaves_images(
    dockerfile: Dockerfile, build_args: Mapping[str, str], name: str, value: str
) -> bool:
    """Does one more build argument leave the images the build reads as they were?"""
    before = replace(dockerfile, build_args=dict(build_args))
    after = replace(dockerfile, build_args={**build_args, name: value})
    try:
        return after.images_read() == before.images_read()
    except SettingsError:
        return False
