"""The fingerprint of a build's inputs: what changes it, what does not, and its labels."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from ecr_release.errors import SettingsError, VersionExistsError
from ecr_release.model.buildcontext import scan_context
from ecr_release.model.dockerfile import Dockerfile
from ecr_release.model.fingerprint import (
    BASE_DIGEST,
    BASE_NAME,
    NAMESPACE,
    Fingerprint,
    base_labels,
    build_args_digest,
    fingerprint,
)
from ecr_release.model.inputs import judge
from ecr_release.outside.registry import Manifest

BASE_ID = "sha256:" + "ba5e" * 16
ARGS = {"APP_VERSION": "v1", "BUILD_DATE": "2026-11-27T12:00:00Z", "VCS_REF": "abc"}


def _project(root: Path, files: dict[str, str], dockerignore: str = "") -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (root / "Dockerfile").write_text("ARG BASE_IMAGE=python:3.12-slim\nFROM ${BASE_IMAGE}\n")
    (root / ".dockerignore").write_text(dockerignore)
    return root


def _print(
    root: Path,
    args: dict[str, str] | None = None,
    resolve: Callable[[str], str] = lambda name: BASE_ID,
) -> Fingerprint:
    args = ARGS if args is None else args
    digest = scan_context(root, root / "Dockerfile").digest
    return fingerprint(digest, Dockerfile.read(root / "Dockerfile", args), args, resolve)[0]


FILES = {"app/main.py": "print(1)\n", "app/util.py": "x = 2\n", "README.md": "hi\n"}


def test_the_same_inputs_give_the_same_fingerprint_whatever_the_order(tmp_path: Path) -> None:
    one = _project(tmp_path / "one", FILES)
    two = _project(tmp_path / "two", dict(reversed(list(FILES.items()))))
    assert _print(one) == _print(two)
    assert _print(one).digest == _print(two).digest


def test_time_is_not_an_input(tmp_path: Path) -> None:
    root = _project(tmp_path, FILES)
    later = {**ARGS, "BUILD_DATE": "2030-01-01T00:00:00Z"}
    assert _print(root) == _print(root, later)
    assert build_args_digest(ARGS) == build_args_digest(later)


def test_changes_to_ignored_files_are_ignored(tmp_path: Path) -> None:
    root = _project(tmp_path, {**FILES, "notes/todo.txt": "a"}, dockerignore="notes/\n*.md\n")
    before = _print(root)
    (root / "notes" / "todo.txt").write_text("b")
    (root / "README.md").write_text("changed\n")
    (root / "notes" / "new.txt").write_text("new")
    assert _print(root) == before


@pytest.mark.parametrize(
    "change",
    [
        "content",
        "new file",
        "removed file",
        "renamed file",
        "empty directory",
        "exec bit",
        "symlink target",
        "file becomes symlink",
    ],
)
def test_each_change_to_what_docker_sends_changes_the_context_part(
    tmp_path: Path, change: str
) -> None:
    root = _project(tmp_path, FILES)
    (root / "app" / "link").symlink_to("main.py")
    before = _print(root)
    main = root / "app" / "main.py"
    if change == "content":
        main.write_text("print(2)\n")
    elif change == "new file":
        (root / "app" / "new.py").write_text("")
    elif change == "removed file":
        (root / "app" / "util.py").unlink()
    elif change == "renamed file":
        (root / "app" / "util.py").rename(root / "app" / "helpers.py")
    elif change == "empty directory":
        (root / "app" / "data").mkdir()
    elif change == "exec bit":
        main.chmod(0o755)
    elif change == "symlink target":
        (root / "app" / "link").unlink()
        (root / "app" / "link").symlink_to("util.py")
    elif change == "file becomes symlink":
        (root / "app" / "util.py").unlink()
        (root / "app" / "util.py").symlink_to("main.py")
    after = _print(root)
    assert after.context != before.context
    assert before.differences(after) == ["the build context"]


def test_the_dockerfile_is_a_part_of_its_own(tmp_path: Path) -> None:
    root = _project(tmp_path, FILES)
    before = _print(root)
    with (root / "Dockerfile").open("a") as dockerfile:
        dockerfile.write("USER 10001\n")
    assert before.differences(_print(root)) == ["the Dockerfile"]


def test_a_changed_base_image_is_noticed(tmp_path: Path) -> None:
    root = _project(tmp_path, FILES)
    before = _print(root)
    newer = _print(root, resolve=lambda name: "python@sha256:" + "1" * 64)
    assert before.differences(newer) == ["the images the build reads"]
    other = _print(root, {**ARGS, "BASE_IMAGE": "python:3.13-slim"})  # another name, same ID
    assert before.differences(other) == ["the images the build reads", "the build arguments"]


def test_a_changed_build_argument_is_noticed(tmp_path: Path) -> None:
    root = _project(tmp_path, FILES)
    assert _print(root).differences(_print(root, {**ARGS, "VCS_REF": "def"})) == [
        "the build arguments"
    ]


def test_labels_carry_every_part_and_round_trip(tmp_path: Path) -> None:
    found = _print(_project(tmp_path, FILES))
    labels = found.labels()
    assert labels[NAMESPACE] == found.digest
    assert set(labels) == {
        NAMESPACE,
        f"{NAMESPACE}.context",
        f"{NAMESPACE}.dockerfile",
        f"{NAMESPACE}.base",
        f"{NAMESPACE}.build-args",
    }
    assert Fingerprint.from_labels(labels) == found


@pytest.mark.parametrize("broken", ["missing part", "edited part", "no labels"])
def test_an_image_without_a_whole_fingerprint_has_none(tmp_path: Path, broken: str) -> None:
    labels = _print(_project(tmp_path, FILES)).labels()
    if broken == "missing part":
        del labels[f"{NAMESPACE}.base"]
    elif broken == "edited part":
        labels[f"{NAMESPACE}.context"] = "sha256:" + "0" * 64
    else:
        labels = {}
    assert Fingerprint.from_labels(labels) is None


# -- which base images a Dockerfile uses --------------------------------------------------


@pytest.mark.parametrize(
    ("dockerfile", "args", "bases"),
    [
        ("ARG BASE_IMAGE=python:3.12-slim\nFROM ${BASE_IMAGE}\n", {}, ["python:3.12-slim"]),
        ("ARG BASE_IMAGE=python:3.12-slim\nFROM $BASE_IMAGE\n", {"BASE_IMAGE": "x:1"}, ["x:1"]),
        ("FROM scratch\n", {}, []),
        (
            "FROM golang:1.23 AS Build\nRUN go build\nFROM --platform=linux/amd64 alpine:3\n"
            "COPY --from=build /app /app\n",
            {},
            ["golang:1.23", "alpine:3"],
        ),
        # The final stage builds on an earlier stage: its external base is what base.name names.
        ("FROM alpine:3 AS base\nFROM golang:1.23 AS tools\nFROM base\n", {},
         ["golang:1.23", "alpine:3"]),
        ("# comment\nFROM \\\n  python:3.12 \\\n  AS app\n", {}, ["python:3.12"]),
    ],
)  # fmt: skip
def test_external_bases(
    tmp_path: Path, dockerfile: str, args: dict[str, str], bases: list[str]
) -> None:
    (tmp_path / "Dockerfile").write_text(dockerfile)
    assert Dockerfile.read(tmp_path / "Dockerfile", args).external_bases() == bases


@pytest.mark.parametrize("text", ["ARG BASE\nFROM ${BASE}\n", b"\xff\xfe FROM x"])
def test_a_dockerfile_whose_base_cannot_be_told_is_one_line(
    tmp_path: Path, text: str | bytes
) -> None:
    path = tmp_path / "Dockerfile"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(SettingsError) as info:
        Dockerfile.read(path, {}).external_bases()
    assert str(path) in info.value.message and "\n" not in info.value.message


def test_oci_base_labels_name_the_final_stage_base(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM golang:1.23 AS b\nFROM python:3.12-slim\n")
    identities = {
        "golang:1.23": "sha256:" + "a" * 64,
        "python:3.12-slim": "python@sha256:" + "b" * 64,
    }
    dockerfile = Dockerfile.read(tmp_path / "Dockerfile", {})
    _, bases = fingerprint("sha256:x", dockerfile, {}, identities.__getitem__)
    assert base_labels(bases) == {BASE_NAME: "python:3.12-slim", BASE_DIGEST: "sha256:" + "b" * 64}
    assert base_labels([]) == {}


def test_a_heredoc_body_is_in_the_dockerfile_part_but_names_no_base(tmp_path: Path) -> None:
    # COPY <<EOF writes its body into the image: the bytes count, its "FROM" line does not.
    text = "FROM python:3.12-slim\nCOPY <<EOF /etc/motd\nFROM evil:9\nEOF\n"
    (tmp_path / "Dockerfile").write_text(text)
    dockerfile = Dockerfile.read(tmp_path / "Dockerfile", {})
    found, bases = fingerprint("sha256:x", dockerfile, {}, lambda name: BASE_ID)
    assert [base.name for base in bases] == ["python:3.12-slim"]
    assert base_labels(bases) == {BASE_NAME: "python:3.12-slim", BASE_DIGEST: BASE_ID}
    assert found.dockerfile == "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    (tmp_path / "Dockerfile").write_text(text.replace("evil:9", "evil:10"))
    edited, _ = fingerprint(
        "sha256:x", Dockerfile.read(tmp_path / "Dockerfile", {}), {}, lambda name: BASE_ID
    )
    assert edited.differences(found) == ["the Dockerfile"]


def test_a_fifo_in_the_context_is_not_read(tmp_path: Path) -> None:
    root = _project(tmp_path, FILES)
    before = _print(root)
    os.mkfifo(root / "app" / "pipe")  # reading it would block forever
    assert _print(root) == before


def test_how_the_checkout_names_its_remote_is_not_an_input(tmp_path: Path) -> None:
    root = _project(tmp_path, FILES)
    laptop = _print(root, {**ARGS, "SOURCE_URL": "git@github.com:org/widget.git"})
    runner = _print(root, {**ARGS, "SOURCE_URL": "https://github.com/org/widget"})
    assert laptop == runner


def test_a_from_line_without_an_image_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM\nRUN true\n")
    with pytest.raises(SettingsError, match="has a FROM line that names no image"):
        Dockerfile.read(tmp_path / "Dockerfile", {}).external_bases()


# -- the images COPY --from and RUN --mount from= read ------------------------------------

SIDE_DOCKERFILE = (
    "ARG BASE_IMAGE=python:3.12-slim\nFROM ${BASE_IMAGE}\n"
    "COPY --from=side-image:1 /side.txt /side.txt\n"
    "RUN --mount=type=cache,from=cache-image:1,target=/c true\n"
)


def _side_print(root: Path, identities: dict[str, str]) -> Fingerprint:
    (root / "Dockerfile").write_text(SIDE_DOCKERFILE)
    return _print(root, resolve=identities.__getitem__)


IDENTITIES = {
    "python:3.12-slim": BASE_ID,
    "side-image:1": "sha256:" + "5" * 64,
    "cache-image:1": "sha256:" + "c" * 64,
    "alpine:3": "sha256:" + "a" * 64,
}


@pytest.mark.parametrize("moved", ["side-image:1", "cache-image:1"])
def test_a_changed_from_image_changes_the_fingerprint_and_is_refused(
    tmp_path: Path, moved: str
) -> None:
    root = _project(tmp_path, FILES)
    released = _side_print(root, IDENTITIES)
    rebuilt = _side_print(root, {**IDENTITIES, moved: "sha256:" + "6" * 64})
    assert rebuilt.base != released.base
    assert rebuilt.differences(released) == ["the images the build reads"]
    manifest = Manifest("sha256:" + "d" * 64, "sha256:" + "e" * 64, "docker-v2")
    labels = {**released.labels(), "org.opencontainers.image.revision": "0123abcdef"}
    with pytest.raises(VersionExistsError) as refused:
        judge("widget", "v1", manifest, labels, rebuilt, lambda: None, "widget:v1")
    assert refused.value.exit_code == 6
    assert refused.value.message == (
        f"widget:v1 is already released as {manifest.digest} and the images the build reads "
        "differ from the one released as v1 (commit 0123abc): released versions are never "
        "overwritten; choose a new --version"
    )
    same = _side_print(root, IDENTITIES)
    assert judge("widget", "v1", manifest, labels, same, lambda: None, "widget:v1") == (
        "released from identical inputs (commit 0123abc)"
    )


def test_every_image_read_is_resolved_and_the_oci_labels_name_the_final_base(
    tmp_path: Path,
) -> None:
    (tmp_path / "Dockerfile").write_text(SIDE_DOCKERFILE)
    asked: list[str] = []

    def resolve(name: str) -> str:
        asked.append(name)
        return IDENTITIES[name]

    dockerfile = Dockerfile.read(tmp_path / "Dockerfile", {})
    _, bases = fingerprint("sha256:x", dockerfile, {}, resolve)
    assert asked == ["python:3.12-slim", "side-image:1", "cache-image:1"]
    assert [base.final for base in bases] == [True, False, False]
    assert base_labels(bases) == {BASE_NAME: "python:3.12-slim", BASE_DIGEST: BASE_ID}
    (tmp_path / "Dockerfile").write_text("FROM alpine:3 AS b\nFROM scratch\nCOPY --from=b / /\n")
    _, bases = fingerprint("sha256:x", Dockerfile.read(tmp_path / "Dockerfile", {}), {}, resolve)
    assert [base.name for base in bases] == ["alpine:3"]
    assert base_labels(bases) == {}  # the final stage is FROM scratch: no base to name


def test_a_dockerfile_docker_would_refuse_fails_before_any_image_is_resolved(
    tmp_path: Path,
) -> None:
    asked: list[str] = []

    def resolve(name: str) -> str:
        asked.append(name)
        return BASE_ID

    (tmp_path / "Dockerfile").write_text(
        "FROM python:3.12-slim\nCOPY --from=side:1 / /\nFROM ${BASE:?required}\n"
    )
    with pytest.raises(SettingsError, match=r"line 3: cannot expand FROM \$\{BASE:\?required\}"):
        fingerprint("sha256:x", Dockerfile.read(tmp_path / "Dockerfile", {}), {}, resolve)
    assert asked == []  # nothing pulled for a build that cannot start


def test_the_verb_agrees_with_what_differs() -> None:
    from ecr_release.model.fingerprint import verb_for

    assert verb_for(["the Dockerfile"]) == "differs"
    assert verb_for(["the build context"]) == "differs"
    assert verb_for(["the build arguments"]) == "differ"
    assert verb_for(["the images the build reads"]) == "differ"
    assert verb_for(["the Dockerfile", "the build context"]) == "differ"
