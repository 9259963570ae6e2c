"""What a Dockerfile says that the release needs: its base images, and which labels its
final stage sets from build arguments.

The classic builder turns every ``--label`` into a build step of its own (one container
and one commit, about 80 ms each here), after the changed layer. So a label the
Dockerfile's own ``LABEL`` already sets from a build argument travels as that build
argument, and only the rest as ``--label``. Parsing leans on ``dockerfile-parse`` for
continuations, comments and ``FROM`` substitution.
"""

from __future__ import annotations

import io
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import SettingsError

# A label value that is exactly one build argument: ${NAME} or $NAME.
_ONE_ARG = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


@dataclass(frozen=True)
class Dockerfile:
    """A parsed Dockerfile (its instructions, with ``FROM`` lines substituted)."""

    path: Path
    data: bytes
    structure: list[dict[str, Any]]
    parent_images: list[str]

    @classmethod
    def read(cls, path: Path, build_args: Mapping[str, str]) -> Dockerfile:
        from dockerfile_parse import DockerfileParser

        try:
            data = path.read_bytes()
            parser = DockerfileParser(fileobj=io.BytesIO(data), build_args=dict(build_args))
            return cls(path, data, list(parser.structure), list(parser.parent_images))
        except (OSError, ValueError, KeyError) as exc:
            raise SettingsError(f"cannot read the Dockerfile {path}: {exc}") from exc

    def external_bases(self) -> list[str]:
        """The images the FROM lines pull in, in order, not ``scratch`` and not earlier
        stages; the last one is what the final stage builds on."""
        froms = [item["value"] for item in self.structure if item["instruction"] == "FROM"]
        if len(froms) != len(self.parent_images) or any(not v.strip() for v in froms):
            raise SettingsError(f"{self.path} has a FROM line that names no image: fix it")
        stages: dict[str, str] = {}  # stage name -> the external image it builds on
        chain: list[str] = []
        for value, image in zip(froms, self.parent_images, strict=True):
            words = value.split()
            alias = words[-1].lower() if len(words) >= 3 and words[-2].lower() == "as" else None
            resolved = stages.get(image.lower(), image)
            if alias:
                stages[alias] = resolved
            chain.append(resolved)
        if any(not name.strip() for name in chain):
            raise SettingsError(
                f"a FROM line of {self.path} names no image once its ARGs are substituted: "
                "give the ARG a default or set BASE_IMAGE"
            )
        external = [name for name in dict.fromkeys(chain) if name.lower() != "scratch"]
        final = chain[-1] if chain else None
        if final in external:  # the final stage's base last: it is what base.name names
            external.remove(final)
            external.append(final)
        return external

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
                match = _ONE_ARG.fullmatch(value)
                name = match and (match.group(1) or match.group(2))
                if name and name in declared:
                    found[key] = name
        return found

    def _final_stage(self) -> list[dict[str, Any]]:
        stage: list[dict[str, Any]] = []
        for item in self.structure:
            stage = [] if item["instruction"] == "FROM" else [*stage, item]
        return stage


def _words(value: str) -> list[str]:
    try:
        return shlex.split(value.replace("\\\n", " "))
    except ValueError:  # unbalanced quotes: docker would refuse the line; claim nothing
        return []


def split_labels(
    dockerfile: Dockerfile, labels: Mapping[str, str], build_args: Mapping[str, str]
) -> tuple[dict[str, str], dict[str, str]]:
    """Which wanted labels go as build arguments the Dockerfile's LABEL reads, and which as
    ``--label``: (extra build arguments, labels to pass)."""
    carriers = dockerfile.labels_from_args()
    extra: dict[str, str] = {}
    passed: dict[str, str] = {}
    for key, value in labels.items():
        name = carriers.get(key)
        if name and build_args.get(name, value) == value and extra.get(name, value) == value:
            extra[name] = value
        else:
            passed[key] = value
    return extra, passed
