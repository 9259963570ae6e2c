"""What shapes an image, as one digest: every input of the build except time.

A release is "the same" when its inputs are: the build context exactly as the Docker
CLI sends it (see ``buildcontext.scan_context``), the Dockerfile's bytes, every image the
build reads (``FROM``, ``COPY --from``, ``RUN --mount=...,from=``; see
``Dockerfile.images_read``), each as what it resolves to here (a repo digest, else the
local image ID), and the build arguments except ``BUILD_DATE``. The classic builder
stamps a fresh ``created`` time into every image, so the image ID cannot tell; the inputs
can, on any machine.

The fingerprint travels with the image as labels under ``io.ecr-release``, each part
apart, so that a refusal can say which part differs. The OCI labels
``org.opencontainers.image.base.name`` and ``.base.digest`` name the final stage's base
(its ``FROM`` image; none for ``FROM scratch``).
This module computes; it reads nothing and runs nothing (the context's digest, the
parsed Dockerfile and a resolver for base images are handed in).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields

from .dockerfile import Dockerfile

NAMESPACE = "io.ecr-release.fingerprint"
BASE_NAME = "org.opencontainers.image.base.name"
BASE_DIGEST = "org.opencontainers.image.base.digest"
# Not inputs: time changes on every build, and SOURCE_URL is how this checkout names its
# remote (ssh on a laptop, https on a CI runner), not what the image is made of.
NOT_INPUTS = frozenset({"BUILD_DATE", "SOURCE_URL"})
# Not an input of a declared service either: the commit. In a repository of several
# services, a commit that changes one service must leave the others' inputs (their
# context, Dockerfile, bases and own arguments) the same, so that a rerun at the next
# commit finds them released. Without a declaration the commit stays an input, as it was.
SERVICE_NOT_INPUTS = frozenset({"VCS_REF"})


def _sha256(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class BaseImage:
    """An image the build reads, as the Dockerfile names it, and what it resolved to here."""

    name: str
    identity: str  # NAME@sha256:... (a repo digest) or sha256:... (a local image ID)
    final: bool = False  # the final stage's FROM image: what the OCI base labels name

    @property
    def digest(self) -> str:
        return self.identity.rsplit("@", 1)[-1]


@dataclass(frozen=True)
class Fingerprint:
    """The digests of a build's inputs; ``digest`` combines them."""

    context: str
    dockerfile: str
    base: str
    build_args: str

    @property
    def digest(self) -> str:
        return _sha256("".join(f"{f.name}={getattr(self, f.name)}\n" for f in fields(self)))

    def labels(self) -> dict[str, str]:
        parts = {f"{NAMESPACE}.{_label(f.name)}": getattr(self, f.name) for f in fields(self)}
        return {NAMESPACE: self.digest, **parts}

    @classmethod
    def from_labels(cls, labels: Mapping[str, str] | None) -> Fingerprint | None:
        """The fingerprint an image carries; None when it carries none (or a broken one)."""
        labels = labels or {}
        try:
            found = cls(
                **{f.name: str(labels[f"{NAMESPACE}.{_label(f.name)}"]) for f in fields(cls)}
            )
        except KeyError:
            return None
        return found if labels.get(NAMESPACE) == found.digest else None

    def differences(self, other: Fingerprint) -> list[str]:
        """The parts that differ, in words: 'the build context', 'the Dockerfile', ..."""
        return [
            _WORDS[f.name] for f in fields(self) if getattr(self, f.name) != getattr(other, f.name)
        ]


_WORDS = {
    "context": "the build context",
    "dockerfile": "the Dockerfile",
    "base": "the images the build reads",
    "build_args": "the build arguments",
}


def verb_for(parts: Sequence[str]) -> str:
    """'differs' or 'differ', to agree with the parts ``differences`` named."""
    plural = (_WORDS["base"], _WORDS["build_args"])
    return "differs" if len(parts) == 1 and parts[0] not in plural else "differ"


def _label(name: str) -> str:
    return name.replace("_", "-")


def build_args_digest(build_args: Mapping[str, str], ignored: frozenset[str] = frozenset()) -> str:
    """The build arguments that shape the image, in a stable order (``ignored``: more that
    do not count, for this build)."""
    kept = sorted((k, v) for k, v in build_args.items() if k not in NOT_INPUTS and k not in ignored)
    return _sha256("".join(f"{k}={v}\0" for k, v in kept))


def base_digest(bases: Sequence[BaseImage]) -> str:
    return _sha256("".join(f"{b.name}={b.identity}\0" for b in bases))


def fingerprint(
    context_digest: str,
    dockerfile: Dockerfile,
    build_args: Mapping[str, str],
    resolve: Callable[[str], str],
    ignored: frozenset[str] = frozenset(),
) -> tuple[Fingerprint, list[BaseImage]]:
    """The fingerprint of a build, and the images it reads (``resolve`` names each one's
    identity, pulling it when it is not here; ``ignored``: build arguments that are not
    inputs of this build)."""
    read = dockerfile.images_read()  # a Dockerfile Docker would refuse fails here, first
    bases = [BaseImage(name, resolve(name), name == read.final_base) for name in read.all]
    found = Fingerprint(
        context=context_digest,
        dockerfile="sha256:" + hashlib.sha256(dockerfile.data).hexdigest(),
        base=base_digest(bases),
        build_args=build_args_digest(build_args, ignored),
    )
    return found, bases


def base_labels(bases: Sequence[BaseImage]) -> dict[str, str]:
    """The OCI base-image labels for the final stage's base (none for ``FROM scratch``)."""
    final = next((base for base in bases if base.final), None)
    if final is None:
        return {}
    return {BASE_NAME: final.name, BASE_DIGEST: final.digest}
