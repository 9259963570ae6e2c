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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..errors import VersionExistsError
from ..outside.ecr import tag_is_mutable


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
