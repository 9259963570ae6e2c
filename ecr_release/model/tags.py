"""Moving tags (``latest``, ``prod``) next to immutable versions, put on the registry side.

``inv promote`` and ``release --also-tag`` point tags at a released version's manifest
by ``PUT``-ting its exact bytes under each tag: nothing is pulled or pushed. ECR
enforces its tag mutability itself, but neither moto nor a plain registry does, so the
suite decides from the repository's own settings (``DescribeRepositories``) and refuses
every tag that may not move before it changes anything:

- ``MUTABLE``: any tag moves;
- ``IMMUTABLE``: no tag moves (promote is for moving tags: use
  ``IMMUTABLE_WITH_EXCLUSION`` with a filter for them);
- ``IMMUTABLE_WITH_EXCLUSION``: only tags matching a filter move;
- ``MUTABLE_WITH_EXCLUSION``: tags matching a filter are immutable: set once, and never
  moved to another image.

Released versions are final whatever the repository allows: a tag whose image is labelled
as that very version (``org.opencontainers.image.version``) is a released version, and
is never moved (:func:`refuse_released_versions`); a version that an exclusion filter
would leave mutable is never released (:func:`version_problem`). A rerun of a released
version only finishes its tags: it puts the missing ones and leaves a tag that has moved
on since where it is (:func:`missing_only`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..errors import SettingsError, VersionExistsError
from ..outside.ecr import tag_is_mutable

VERSION_LABEL = "org.opencontainers.image.version"


def tags_to_put(
    repository: str,
    mutability: str,
    exclusions: Sequence[str],
    tags: Sequence[str],
    current: Mapping[str, str | None],
    digest: str | None,
) -> list[str]:
    """The tags that must be put to point at ``digest`` (those already there are skipped).

    ``current`` is each tag's digest now (None: no such tag); ``digest`` None means the
    image is not pushed yet, so every tag must be able to change. Raises
    ``VersionExistsError`` naming the first tag that may not, before anything changes.
    """
    put: list[str] = []
    filters = ",".join(exclusions) or "none"
    for tag in tags:
        now = current.get(tag)
        if now is not None and now == digest:
            continue
        if tag_is_mutable(mutability, exclusions, tag):
            put.append(tag)
        elif mutability == "IMMUTABLE":
            raise VersionExistsError(
                f"repository {repository} is IMMUTABLE: tag {tag} could never move again; "
                f"use IMMUTABLE_WITH_EXCLUSION with ECR_TAG_MUTABILITY_EXCLUSIONS={tag}"
            )
        elif mutability == "IMMUTABLE_WITH_EXCLUSION":
            raise VersionExistsError(
                f"tag {tag} is immutable in repository {repository} (IMMUTABLE_WITH_EXCLUSION, "
                f"exclusion filters: {filters}): add a filter matching {tag} to let it move"
            )
        elif now is not None:
            raise VersionExistsError(
                f"tag {tag} is immutable in repository {repository} (MUTABLE_WITH_EXCLUSION, "
                f"exclusion filters: {filters}) and already points to {now}: it is never moved"
            )
        else:
            put.append(tag)  # an immutable tag may be set once
    return put


def refuse_released_versions(
    repository: str, current: Mapping[str, str | None], versions: Mapping[str, str | None]
) -> None:
    """Refuse (exit 2) to move a tag that is a released version: one that exists
    (``current``) and whose image says it is that version (``versions``: each existing
    tag's image's version label)."""
    for tag, now in current.items():
        if now is not None and versions.get(tag) == tag:
            raise SettingsError(
                f"tag {tag} of {repository} is the released version {tag} (its image is "
                f"labelled {VERSION_LABEL}={tag}): released versions are final, whatever the "
                "repository allows; move tags such as latest or prod instead"
            )


def missing_only(
    tags: Sequence[str], current: Mapping[str, str | None], digest: str
) -> tuple[list[str], list[str]]:
    """A rerun's tags: (the ones in place or missing, which it may finish; the ones that
    exist and point elsewhere, which it leaves alone: they moved on since)."""
    keep = [tag for tag in tags if current.get(tag) in (None, digest)]
    return keep, [tag for tag in tags if tag not in keep]


def version_problem(
    repository: str, mutability: str, exclusions: Sequence[str], version: str
) -> str | None:
    """Why ``version`` may not be released here: an exclusion filter would leave it mutable
    (``IMMUTABLE_WITH_EXCLUSION`` with a filter such as ``v*``). None when it may."""
    if mutability != "IMMUTABLE_WITH_EXCLUSION" or not tag_is_mutable(
        mutability, exclusions, version
    ):
        return None
    return (
        f"version {version} would stay mutable in repository {repository} "
        f"(IMMUTABLE_WITH_EXCLUSION, exclusion filters: {','.join(exclusions)}): released "
        "versions are final, so release it under a version no filter matches, or narrow "
        "the filters to the moving tags (e.g. latest,prod)"
    )
