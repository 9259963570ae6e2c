"""Moving tags (``latest``, ``prod``) put beside a released version, on the registry side.

``inv promote`` and ``release --also-tag`` point tags at a released version by ``PUT``-ting
its manifest's exact bytes under each tag (nothing is pulled or pushed), then read each
tag back. Before any change, every tag is checked (``model.tags``): a released version is
never moved, whatever the repository allows, and the repository's tag mutability must
let the tag move. A rerun of a released version only finishes its tags: it puts the
missing ones, and leaves a tag that has moved on since where it is.

A dry run is wired with :class:`PlanningPromoter`: the registry shows the tags it would
put, and nothing is read back.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..errors import RegistryError, SettingsError, VersionExistsError
from ..model.tags import missing_only, refuse_released_versions, tags_to_put
from ..outside.registry import RawManifest, Registry

if TYPE_CHECKING:
    from .published import Published

log = logging.getLogger("ecr_release")

# Each tag's digest now (None: no such tag).
Current = dict[str, str | None]


class Promoter:
    """One repository's moving tags, read and put through the registry."""

    def __init__(self, published: Published) -> None:
        self.published = published

    def promote(self, version: str, tags: Sequence[str]) -> str:
        """Point each tag at the released version, then read each back; return its digest."""
        raw = self._released(version)
        digest = raw.manifest.digest
        self._put_all(version, raw, self.to_put(tags, digest))
        self._verify(version, tags, digest)
        return digest

    def also_tag(self, version: str, tags: Sequence[str]) -> None:
        """``release --also-tag``: point the tags at the version this run just released."""
        self.promote(version, tags)

    def finish(self, version: str, tags: Sequence[str]) -> tuple[str, ...]:
        """A rerun of a released version: put the tags that are missing, leave alone those
        that point elsewhere (they moved on since: a rerun never moves a tag back); return
        the tags that point at the version now."""
        raw = self._released(version)
        digest, name = raw.manifest.digest, self.published.name
        keep, moved = missing_only(tags, self._current(tags), digest)
        for tag in moved:
            log.info(
                "tag %s:%s points elsewhere now: left alone (a rerun never moves a tag back; "
                "`inv promote --version %s --tag %s` moves it)",
                *(name, tag, version, tag),
            )
        self._put_all(version, raw, self.to_put(keep, digest))
        self._verify(version, keep, digest)
        return tuple(keep)

    def put_version(self, version: str, candidate: str, digest: str) -> str:
        """The version tag, put on the registry side with the candidate's exact manifest
        bytes (its digest: ``digest``), then read back; return the version's digest.

        The check asked the registry about the version before the build; another machine
        may have released it since (the gates take a while). Asked again just before the
        put: released as another image, it is never overwritten (exit 6; on a MUTABLE
        repository the put would have overwritten it silently); as this very image, it is
        not put again."""
        name = self.published.name
        now = self.published.digest_of(version)
        if now is not None and now != digest:
            raise VersionExistsError(
                f"{name}:{version} was released by another run while the gates ran (as "
                f"{now}); released versions are never overwritten: release this image under a "
                "new --version"
            )
        if now is None:  # else released meanwhile as this very image (and its candidate gone)
            raw = self.published.ecr.read(lambda registry: registry.raw_manifest(name, candidate))
            if raw is None:
                raise RegistryError(
                    f"the candidate tag {name}:{candidate} was removed while the gates ran (by "
                    "hand, or by another run of the same inputs): release again"
                )
            if raw.manifest.digest != digest:
                raise RegistryError(
                    f"the candidate {candidate} moved to {raw.manifest.digest} while the gates "
                    f"ran (it was {digest}): release again"
                )
            self._put_all(version, raw, [version], what="version")
        self._verify(version, [version], digest)
        return digest

    def to_put(
        self, tags: Sequence[str], digest: str | None, current: Current | None = None
    ) -> list[str]:
        """The tags to put to point at ``digest`` (None: a release not pushed yet); refuses,
        before any change, a released version (exit 2) and a tag the repository's
        mutability does not let move (exit 6). ``current``: what ``refuse_released`` found
        (it is asked then)."""
        current = self.refuse_released(tags, digest) if current is None else current
        mutability, exclusions = self.published.mutability()
        return tags_to_put(self.published.name, mutability, exclusions, tags, current, digest)

    def refuse_released(self, tags: Sequence[str], digest: str | None) -> Current:
        """What each tag points to now, read from the registry alone (no AWS call); refuses
        (exit 2) a tag that is a released version and would move from it."""
        current = self._current(tags)
        moving = [tag for tag, now in current.items() if now is not None and now != digest]
        versions = {tag: self.published.version_of(tag) for tag in moving}
        refuse_released_versions(self.published.name, current, versions)
        return current

    def _current(self, tags: Sequence[str]) -> Current:
        return {tag: self.published.digest_of(tag) for tag in tags}

    def _released(self, version: str) -> RawManifest:
        name = self.published.name
        raw = self.published.ecr.read(lambda registry: registry.raw_manifest(name, version))
        if raw is None:
            raise SettingsError(
                f"{name}:{version} is not released, so there is nothing to promote: "
                f"release it first (inv release --version {version})"
            )
        return raw

    def _put_all(
        self, version: str, raw: RawManifest, tags: Sequence[str], *, what: str = "tag"
    ) -> None:
        name, digest = self.published.name, raw.manifest.digest
        for tag in tags:
            self.published.progress(f"{what} {name}:{tag} -> {version} ({digest})")
            self.published.ecr.read(functools.partial(_put, name=name, tag=tag, raw=raw))

    def _verify(self, version: str, tags: Sequence[str], digest: str) -> None:
        for tag in tags:
            now = self.published.digest_of(tag)
            if now != digest:
                raise RegistryError(
                    f"verification failed: tag {tag} resolves to {now or 'nothing'}, "
                    f"not {version} ({digest})"
                )
            log.info("verified %s:%s -> %s", self.published.name, tag, digest)


def _put(registry: Registry, *, name: str, tag: str, raw: RawManifest) -> str:
    return registry.put_manifest(name, tag, raw)


class PlanningPromoter(Promoter):
    """A dry run's tags: checked as for real, put by the planning registry (a plan line),
    and not read back (nothing was put). Where the registry could not be asked, every tag
    is planned."""

    def to_put(
        self, tags: Sequence[str], digest: str | None, current: Current | None = None
    ) -> list[str]:
        if self.published.unreachable:
            return list(tags)  # the plan cannot tell which are in place already
        return super().to_put(tags, digest, current)

    def refuse_released(self, tags: Sequence[str], digest: str | None) -> Current:
        if self.published.unreachable:
            return dict.fromkeys(tags)  # nothing can be told of them
        return super().refuse_released(tags, digest)

    def also_tag(self, version: str, tags: Sequence[str]) -> None:
        """The dry run released nothing, so there is no manifest to read: each tag that
        would be put is a plan line."""
        name = self.published.name
        for tag in self.to_put(tags, None):
            log.info(
                "[dry-run] promote: PUT /v2/%s/manifests/%s (the manifest of %s, once released)",
                *(name, tag, version),
            )

    def _verify(self, version: str, tags: Sequence[str], digest: str) -> None:
        """Nothing was put: nothing to read back."""

    def put_version(self, version: str, candidate: str, digest: str) -> str:
        name = self.published.name
        log.info(
            "[dry-run] version: PUT /v2/%s/manifests/%s (the candidate %s's manifest)",
            *(name, version, candidate),
        )
        return digest
