"""Property-based tests: no parser of outside input ever fails with anything but our errors.

Whatever a user writes in ``.env`` or on the command line, whatever a registry answers and
whatever docker prints, the suite either accepts it or says so in one ``ReleaseError`` line:
never a traceback. The ``.dockerignore`` matcher is also checked against docker-py's port of
Docker's rules, on the syntax where the two agree.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from docker.utils.build import PatternMatcher  # type: ignore[import-untyped]
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ecr_release.errors import RegistryError, SettingsError
from ecr_release.model import buildcontext
from ecr_release.model.buildcontext import DockerIgnore, scan_context
from ecr_release.model.settings import REGION_RE, REPOSITORY_RE, TAG_RE, load_settings
from ecr_release.outside.contextcache import DigestCache
from ecr_release.outside.docker import PushFailure, classify_push_failure, last_error_line
from ecr_release.outside.registry import _parse_manifest

PROPERTY = settings(
    deadline=None, max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# -- settings --------------------------------------------------------------------------------

env_lines = st.lists(
    st.one_of(
        st.text(max_size=60),
        st.builds(
            "{}={}".format,
            st.sampled_from(
                [
                    "AWS_REGION",
                    "ECR_REPOSITORY",
                    "IMAGE_NAME",
                    "ECR_SCAN_ON_PUSH",
                    "ECR_TAG_MUTABILITY",
                    "ECR_TAG_MUTABILITY_EXCLUSIONS",
                    "ECR_ENCRYPTION",
                    "ECR_KMS_KEY",
                    "AWS_ACCOUNT_ID",
                    "DOCKERFILE",
                    "BUILD_CONTEXT",
                    "SECRET_SCAN_ALLOW",
                    "export AWS_PROFILE",
                ]
            ),
            st.text(max_size=40),
        ),
    ),
    max_size=12,
)


@PROPERTY
@given(lines=env_lines)
@example(lines=["AWS_REGION=sa-east-1#prod"])
@example(lines=['AWS_REGION="eu-west-1', "ECR_REPOSITORY='x"])
@example(lines=["\x00AWS_REGION=\udcff"])
def test_any_dotenv_text_is_accepted_or_one_settings_error(
    tmp_path: Path, lines: list[str]
) -> None:
    env = tmp_path / ".env"
    env.write_text("\n".join(lines), encoding="utf-8", errors="surrogateescape")
    try:
        found = load_settings(task="config", environ={}, root=tmp_path)
    except SettingsError as exc:
        assert "\n" not in exc.message
        return
    assert found.region is not None and re.fullmatch(REGION_RE, found.region)
    assert re.fullmatch(REPOSITORY_RE, found.repository)


@PROPERTY
@given(
    version=st.text(max_size=140),
    repository=st.text(max_size=260),
    region=st.text(max_size=30),
    scan=st.text(max_size=8),
)
@example(version="v1", repository="a" * 256, region="eu-west-1", scan="true")
@example(version="-v1", repository="team/app", region="us-gov-west-1", scan="1")
def test_any_flags_are_accepted_or_one_settings_error(
    tmp_path: Path, version: str, repository: str, region: str, scan: str
) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    flags: dict[str, str | bool | None] = {
        "version": version,
        "ECR_REPOSITORY": repository,
        "AWS_REGION": region,
    }
    try:
        found = load_settings(flags, task="push", environ={"ECR_SCAN_ON_PUSH": scan}, root=tmp_path)
    except SettingsError as exc:
        assert "\n" not in exc.message
        return
    assert found.version is not None and re.fullmatch(TAG_RE, found.version)
    assert found.region is not None and re.fullmatch(REGION_RE, found.region)
    assert len(f"000000000000.dkr.ecr.{found.region}.amazonaws.com/{found.repository}") <= 255


# -- the registry's manifests ----------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["config", "digest", "mediaType", "schemaVersion", "layers", "x"]),
            children,
            max_size=5,
        )
    ),
    max_leaves=20,
)


def _bad(problem: str) -> RegistryError:
    return RegistryError(f"manifest {problem}")


@PROPERTY
@given(
    body=st.one_of(st.binary(max_size=200), json_values.map(lambda v: json.dumps(v).encode())),
    digest=st.one_of(st.just("sha256:" + "a" * 64), st.text(max_size=30)),
    content_type=st.text(max_size=30),
)
@example(body=b'{"config": "x"}', digest="sha256:" + "a" * 64, content_type="")
@example(body=b"[" * 5000, digest="sha256:" + "a" * 64, content_type="")
def test_any_manifest_answer_is_parsed_or_one_registry_error(
    body: bytes, digest: str, content_type: str
) -> None:
    try:
        manifest = _parse_manifest(body, digest, content_type, _bad)
    except RegistryError as exc:
        assert "\n" not in exc.message
        return
    assert manifest.digest == digest
    assert manifest.config_digest is None or ":" in manifest.config_digest


# -- docker's push output ---------------------------------------------------------------------


@PROPERTY
@given(output=st.text(max_size=400))
@example(output="")
@example(output="\n\n  \n")
@example(output="5f70bf18a086: Pushed\nThe push refers to repository [x]\n")
def test_any_push_output_is_classified_in_one_line(output: str) -> None:
    kind, message = classify_push_failure(output)
    assert isinstance(kind, PushFailure)
    assert message and "\n" not in message and "\r" not in message
    assert "\n" not in last_error_line(output)


# -- .dockerignore ------------------------------------------------------------------------


@PROPERTY
@given(text=st.text(max_size=80), path=st.text(min_size=1, max_size=40))
@example(text="[", path="a")
@example(text="!", path="a")
@example(text="a\\", path="a\\")
def test_any_dockerignore_matches_or_is_one_settings_error(text: str, path: str) -> None:
    try:
        ignore = DockerIgnore(text)
    except SettingsError as exc:
        assert "\n" not in exc.message
        return
    assert ignore.excludes(path) in (True, False)


# Where docker-py and Docker agree: lowercase names, no '**' (docker-py checks only the
# parent at the pattern's depth), no leading '..', no escapes, no character classes.
segment = st.text(alphabet="ab.*?-_", min_size=1, max_size=4).filter(lambda s: s != "..")
patterns = st.lists(
    st.builds(
        lambda neg, parts: ("!" if neg else "") + "/".join(parts),
        st.booleans(),
        st.lists(segment, min_size=1, max_size=3),
    ).filter(lambda p: "**" not in p and p.strip("!").strip("/.") != ""),
    min_size=1,
    max_size=5,
)
paths = st.lists(st.text(alphabet="ab.-_", min_size=1, max_size=4), min_size=1, max_size=4).map(
    "/".join
)


@PROPERTY
@given(rules=patterns, path=paths)
@example(rules=["a", "!a/b"], path="a/b")
@example(rules=["*", "!a"], path="a/b")
def test_the_matcher_agrees_with_docker_py(rules: list[str], path: str) -> None:
    if path.split("/")[-1] in (".", "..") or any(p in (".", "..") for p in path.split("/")):
        return
    theirs: Any = PatternMatcher(list(rules))
    assert DockerIgnore("\n".join(rules)).excludes(path) is bool(theirs.matches(path))


@pytest.mark.parametrize(
    ("rules", "path", "ours"),
    [
        # Docker (moby) checks every parent; docker-py only the one at the pattern's depth.
        (["**/cache"], "a/b/cache/x", True),
        # Docker matches case-sensitively on Linux; docker-py lowercases both sides.
        (["Secret"], "secret", False),
        # filepath.Clean keeps a leading "..", which no path in the context matches;
        # docker-py drops it.
        (["../?"], "_", False),
    ],
)
def test_where_docker_py_differs_we_follow_docker(rules: list[str], path: str, ours: bool) -> None:
    theirs: Any = PatternMatcher(list(rules))
    assert DockerIgnore("\n".join(rules)).excludes(path) is ours
    assert bool(theirs.matches(path)) is not ours


# Every shape the matcher treats apart: exact names, *SUFFIX, PREFIX*, other wildcards, each
# with or without "**/" in front, exceptions among them.
any_rule = st.builds(
    lambda neg, deep, parts: ("!" if neg else "") + ("**/" if deep else "") + "/".join(parts),
    st.booleans(),
    st.booleans(),
    st.lists(st.text(alphabet="ab.*?", min_size=1, max_size=4), min_size=1, max_size=2),
).filter(lambda p: p.strip("!").strip("/.*") != "" and ".." not in p)
deep_paths = st.lists(st.text(alphabet="ab.", min_size=1, max_size=4), min_size=1, max_size=4).map(
    "/".join
)


def _one_rule_at_a_time(rules: list[str], path: str) -> bool:
    """Docker's rule, the slow way: each pattern against the path and every parent, in order,
    the last match deciding (moby's MatchesOrParentMatches)."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for line in rules:
        exception = line.startswith("!")
        pattern = buildcontext._clean(line.removeprefix("!").strip())
        regex = re.compile(buildcontext._translate(pattern))
        if any(regex.match(candidate) for candidate in candidates):
            excluded = not exception
    return excluded


@PROPERTY
@given(rules=st.lists(any_rule, min_size=1, max_size=8), path=deep_paths)
@example(rules=["**/*.pyc", "!**/keep.pyc"], path="a/keep.pyc")
@example(rules=["**/a*", "**/ab"], path="b/ab")
@example(rules=["a", "!**/a"], path="a")  # a whole-path pattern, then a name pattern
@example(rules=["**/*a", "!**/*ba"], path="b/ba")  # two suffixes: the last pattern wins
@example(rules=["**/a*", "!**/ab*"], path="ab")  # two prefixes
@example(rules=["!**/*a", "**/a?a"], path="b/aba")  # a suffix, then another wildcard
def test_one_match_per_path_agrees_with_every_pattern_in_turn(rules: list[str], path: str) -> None:
    if any(part in (".", "..") for part in path.split("/")):
        return
    assert DockerIgnore("\n".join(rules)).excludes(path) is _one_rule_at_a_time(rules, path)


# -- the context's digest cache ------------------------------------------------------------

SECOND = 10**9
FILES = ["a.txt", "b.txt", "sub/c.txt", "sub/deep/d.bin"]
edits = st.lists(
    st.tuples(
        st.sampled_from(["write", "same-size", "mode", "rename", "delete", "touch", "create"]),
        st.sampled_from(FILES),
        st.integers(min_value=0, max_value=3 * SECOND),  # time passing before the edit
        st.booleans(),  # scan (with the cache) after this edit
    ),
    min_size=1,
    max_size=12,
)


def _edit(context: Path, kind: str, name: str, now: int, count: int) -> None:
    """One edit, on a filesystem whose clock ticks once a second (mtime is ``now`` rounded
    down): a same-size change within the second leaves size and mtime as they were."""
    path = context / name
    if kind == "create" or not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"new {name} {count}".encode())
    elif kind == "write":
        path.write_bytes(path.read_bytes() + b"+")
    elif kind == "same-size":
        data = path.read_bytes()
        path.write_bytes(bytes([data[0] ^ 1]) + data[1:])
    elif kind == "mode":
        path.chmod(path.stat().st_mode ^ 0o111)  # ctime only
        return
    elif kind == "rename":
        path.rename(path.with_name(path.name + ".moved"))
        return
    elif kind == "delete":
        path.unlink()
        return
    tick = now // SECOND * SECOND
    os.utime(path, ns=(tick, tick))


def _at(moment: int) -> Callable[[], int]:
    return lambda: moment


@PROPERTY
@given(steps=edits)
@example(steps=[("write", "a.txt", 0, True), ("same-size", "a.txt", 10, True)])
@example(steps=[("touch", "a.txt", 2 * SECOND, True), ("same-size", "a.txt", 0, True)])
def test_the_context_cache_never_changes_the_digest(
    steps: list[tuple[str, str, int, bool]],
) -> None:
    """Whatever was edited, however soon after the cache was written, the digest (and the
    secrets found) with the cache are the ones a walk from scratch gives."""
    with tempfile.TemporaryDirectory() as tmp:
        context = Path(tmp) / "context"
        for name in FILES:
            (context / name).parent.mkdir(parents=True, exist_ok=True)
            (context / name).write_bytes(f"{name} first".encode())
        now = time.time_ns()
        for count, (kind, name, passing, scan) in enumerate(steps):
            now += passing
            _edit(context, kind, name, now, count)
            if not scan:
                continue
            cache = DigestCache.for_context(Path(tmp) / "cache", context, clock=_at(now))
            cached = scan_context(context, cache=cache)
            fresh = scan_context(context)
            assert (cached.digest, cached.secrets, cached.entries) == (
                fresh.digest,
                fresh.secrets,
                fresh.entries,
            )


# -- what a build reads of the context ---------------------------------------------------------


def _needed_by_looking_at_every_entry(
    entries: Sequence[str], sources: Sequence[str]
) -> tuple[str, ...] | None:
    """``needed`` as it read before it found each source by its position: every entry looked
    at, in any order."""
    below = tuple(source + "/" for source in sources)
    wanted = set(sources)
    chosen = tuple(
        entry
        for entry in entries
        if entry in wanted or entry.startswith(below) or entry == ".dockerignore"
    )
    return chosen if wanted <= set(chosen) else None


tree_paths = st.lists(
    st.lists(
        st.sampled_from(["a", "a.b", "a-b", "ab", "b", ".dockerignore"]), min_size=1, max_size=4
    ).map("/".join),
    min_size=1,
    max_size=12,
)


@PROPERTY
@given(
    paths=tree_paths,
    picks=st.lists(st.integers(min_value=0, max_value=40), max_size=4),
    missing=st.booleans(),
)
def test_what_a_build_reads_is_found_by_position_as_by_looking_at_every_entry(
    paths: list[str], picks: list[int], missing: bool
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        context = Path(tmp)
        for path in paths:
            target = context / path
            if any(parent.is_file() for parent in target.parents) or target.is_dir():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(path)
        entries = scan_context(context).entries
        sources = [entries[i % len(entries)] for i in picks] if entries else []
        if missing:
            sources.append("not/there")
        assert buildcontext.needed(entries, sources) == _needed_by_looking_at_every_entry(
            entries, sources
        )
