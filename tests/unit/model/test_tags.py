"""Which tags may move: the mutability x exclusion filter x tag matrix, and the refusals."""

from __future__ import annotations

import pytest

from ecr_release.errors import VersionExistsError
from ecr_release.model.tags import tags_to_put
from ecr_release.outside.ecr import tag_is_mutable

FILTERS = ("latest", "dev-*", "*-rc")
OLD, NEW = "sha256:" + "0" * 64, "sha256:" + "1" * 64


@pytest.mark.parametrize(
    ("mutability", "tag", "mutable"),
    [
        ("MUTABLE", "latest", True),
        ("MUTABLE", "v1", True),
        ("IMMUTABLE", "latest", False),
        ("IMMUTABLE", "v1", False),
        # IMMUTABLE_WITH_EXCLUSION: the filters name the tags that may move.
        ("IMMUTABLE_WITH_EXCLUSION", "latest", True),
        ("IMMUTABLE_WITH_EXCLUSION", "dev-42", True),
        ("IMMUTABLE_WITH_EXCLUSION", "dev-", True),  # '*' matches nothing too
        ("IMMUTABLE_WITH_EXCLUSION", "2.0-rc", True),
        ("IMMUTABLE_WITH_EXCLUSION", "v1", False),
        ("IMMUTABLE_WITH_EXCLUSION", "latest-1", False),  # a filter matches the whole tag
        ("IMMUTABLE_WITH_EXCLUSION", "xdev-1", False),
        # MUTABLE_WITH_EXCLUSION: the filters name the tags that may not.
        ("MUTABLE_WITH_EXCLUSION", "latest", False),
        ("MUTABLE_WITH_EXCLUSION", "dev-42", False),
        ("MUTABLE_WITH_EXCLUSION", "v1", True),
        ("MUTABLE_WITH_EXCLUSION", "prod", True),
    ],
)
def test_the_mutability_matrix(mutability: str, tag: str, mutable: bool) -> None:
    assert tag_is_mutable(mutability, FILTERS, tag) is mutable


def test_a_filter_is_a_wildcard_not_a_regular_expression() -> None:
    assert tag_is_mutable("IMMUTABLE_WITH_EXCLUSION", ("v1.*",), "v1.2")
    assert not tag_is_mutable("IMMUTABLE_WITH_EXCLUSION", ("v1.*",), "v1x2")


@pytest.mark.parametrize(
    ("mutability", "current", "put"),
    [
        ("MUTABLE", {"latest": OLD}, ["latest"]),  # moves
        ("MUTABLE", {"latest": None}, ["latest"]),  # created
        ("MUTABLE", {"latest": NEW}, []),  # already there: nothing to put
        ("IMMUTABLE_WITH_EXCLUSION", {"latest": OLD}, ["latest"]),
        ("MUTABLE_WITH_EXCLUSION", {"latest": None}, ["latest"]),  # immutable: set once
        ("MUTABLE_WITH_EXCLUSION", {"latest": NEW}, []),
    ],
)
def test_tags_to_put(mutability: str, current: dict[str, str | None], put: list[str]) -> None:
    assert tags_to_put("app", mutability, ("latest",), ["latest"], current, NEW) == put


@pytest.mark.parametrize(
    ("mutability", "exclusions", "current", "reason"),
    [
        ("IMMUTABLE", (), {"latest": None}, "repository app is IMMUTABLE: tag prod could never"),
        ("IMMUTABLE", (), {"latest": OLD}, "ECR_TAG_MUTABILITY_EXCLUSIONS=prod"),
        ("IMMUTABLE_WITH_EXCLUSION", ("prod",), {"latest": OLD}, "add a filter matching latest"),
        ("MUTABLE_WITH_EXCLUSION", ("latest",), {"latest": OLD}, f"already points to {OLD}"),
    ],
)
def test_a_tag_that_may_not_move_is_refused_before_anything(
    mutability: str, exclusions: tuple[str, ...], current: dict[str, str | None], reason: str
) -> None:
    with pytest.raises(VersionExistsError) as err:
        tags_to_put("app", mutability, exclusions, ["prod", "latest"], current, NEW)
    assert reason in err.value.message
    assert err.value.exit_code == 6


def test_before_a_push_every_tag_must_be_able_to_change() -> None:
    # No digest yet: even a tag that exists must be free to move to the new image.
    assert tags_to_put("app", "MUTABLE", (), ["latest"], {"latest": OLD}, None) == ["latest"]
    with pytest.raises(VersionExistsError):
        tags_to_put("app", "MUTABLE_WITH_EXCLUSION", ("latest",), ["latest"], {"latest": OLD}, None)
