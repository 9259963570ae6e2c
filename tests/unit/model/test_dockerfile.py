"""Which images a Dockerfile's build reads: FROM lines expanded as Docker expands them, and
the images COPY --from and RUN --mount from= name that are not stages of the file."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecr_release.errors import SettingsError
from ecr_release.model.dockerfile import (
    Dockerfile,
    ImagesRead,
    context_sources,
    platform_args,
    split_labels,
)


def _read(tmp_path: Path, text: str, args: dict[str, str] | None = None) -> ImagesRead:
    (tmp_path / "Dockerfile").write_text(text)
    return Dockerfile.read(tmp_path / "Dockerfile", args or {}).images_read()


def _refusal(tmp_path: Path, text: str, args: dict[str, str] | None = None) -> str:
    with pytest.raises(SettingsError) as info:
        _read(tmp_path, text, args)
    assert "\n" not in info.value.message
    assert info.value.exit_code == 2
    return info.value.message


# -- FROM: the ARGs before the first FROM, overridden by build arguments --------------------


@pytest.mark.parametrize(
    ("text", "args", "base"),
    [
        # The reported case: no ARG, BASE_IMAGE unset.
        ("FROM ${BASE_IMAGE:-python:3.12-slim}\n", {}, "python:3.12-slim"),
        # A build argument reaches FROM only through an ARG declared before the first FROM.
        ("FROM ${BASE_IMAGE:-python:3.12-slim}\n", {"BASE_IMAGE": "x:1"}, "python:3.12-slim"),
        ("ARG BASE_IMAGE\nFROM ${BASE_IMAGE:-python:3.12-slim}\n", {"BASE_IMAGE": "x:1"}, "x:1"),
        ("ARG BASE_IMAGE\nFROM ${BASE_IMAGE:-python:3.12-slim}\n", {}, "python:3.12-slim"),
        ("ARG BASE_IMAGE\nFROM ${BASE_IMAGE:-python:3.12-slim}\n", {"BASE_IMAGE": ""},
         "python:3.12-slim"),
        ("ARG BASE_IMAGE\nFROM ${BASE_IMAGE-python:3.12-slim}\n", {"BASE_IMAGE": "x:1"}, "x:1"),
        ("ARG BASE_IMAGE=\nFROM ${BASE_IMAGE-python:3.12-slim}x:1\n", {}, "x:1"),  # set, empty
        # ARG defaults: quoted, several on one line, built from earlier ARGs.
        ('ARG REG="reg.example" TAG=3\nARG IMAGE=$REG/base:${TAG}\nFROM $IMAGE\n', {},
         "reg.example/base:3"),
        ("ARG REG=reg.example\nARG IMAGE=$REG/base\nFROM $IMAGE\n", {"REG": "other"},
         "other/base"),
        ("ARG SUFFIX\nFROM python:3.12${SUFFIX:+-$SUFFIX}\n", {"SUFFIX": "slim"},
         "python:3.12-slim"),
        ("ARG SUFFIX\nFROM python:3.12${SUFFIX:+-$SUFFIX}\n", {}, "python:3.12"),
        ("ARG A\nFROM ${A:-${B:-alpine:3}}\n", {}, "alpine:3"),
        # Neither a stage's ARG nor ENV reaches a later FROM.
        ("FROM alpine:3 AS a\nARG NEXT=x:1\nENV NEXT=y:1\nFROM ${NEXT:-busybox:1}\n", {},
         "busybox:1"),
        # Flags are not the image; a # escape= directive changes the escape token.
        ("FROM --platform=$BUILDPLATFORM alpine:3\n", {}, "alpine:3"),
        ("# escape=`\nFROM ${A:-alpine`:3}\n", {}, "alpine:3"),
    ],
)  # fmt: skip
def test_from_expands_as_docker_does(
    tmp_path: Path, text: str, args: dict[str, str], base: str
) -> None:
    read = _read(tmp_path, text, args)
    assert read.final_base == base and read.bases[-1] == base and read.copied == ()


def test_a_required_variable_that_is_unset_is_one_line_naming_it(tmp_path: Path) -> None:
    text = "# base\nARG BASE_IMAGE\nFROM ${BASE_IMAGE:?required}\n"
    message = _refusal(tmp_path, text)
    assert message == (
        f"{tmp_path / 'Dockerfile'}, line 3: cannot expand FROM "
        "${BASE_IMAGE:?required}: BASE_IMAGE: required"
    )
    assert "BASE_IMAGE: is not allowed to be empty" in _refusal(
        tmp_path, "ARG BASE_IMAGE=\nFROM ${BASE_IMAGE:?}\n"
    )
    assert _read(tmp_path, text, {"BASE_IMAGE": "x:1"}).bases == ("x:1",)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("FROM ${BASE\n", "line 1: cannot expand FROM ${BASE: syntax error: missing '}'"),
        ('ARG A="${B:?need B}"\nFROM alpine\n',
         'line 1: cannot expand ARG "${B:?need B}": B: need B'),
        # Docker splits FROM on blanks before it expands: a message there cannot hold one.
        ("FROM ${B:?need B}\n", "FROM ${B:?need B}: Docker wants one image and an optional AS"),
        ("FROM alpine:3 stage\n", "Docker wants one image and an optional AS name"),
        ("ARG A\nFROM ${A}\n", "names no image once its ARGs are substituted"),
        ("FROM\n", "has a FROM line that names no image"),
        ("FROM --platform=linux/amd64\n", "has a FROM line that names no image"),
    ],
)  # fmt: skip
def test_a_from_docker_would_refuse_is_one_line(tmp_path: Path, text: str, words: str) -> None:
    assert words in _refusal(tmp_path, text)


# -- COPY --from and RUN --mount from= ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "copied"),
    [
        # A stage, by name (any case) or index: built here, not an input of its own.
        ("FROM golang:1.23 AS build\nFROM alpine:3\nCOPY --from=build /app /app\n", ()),
        ("FROM golang:1.23 AS Build\nFROM alpine:3\nCOPY --from=BUILD /app /app\n", ()),
        ("FROM golang:1.23\nFROM alpine:3\nCOPY --from=0 /app /app\n", ()),
        # An image: an input.
        ("FROM alpine:3\nCOPY --from=side-image:1 /side.txt /side.txt\n", ("side-image:1",)),
        ('FROM alpine:3\nCOPY --chown=1:1 --from="side:1" /a /b\n', ("side:1",)),
        ("FROM alpine:3\nCOPY --from=side:1 \\\n  /a /b\n", ("side:1",)),
        # A stage named only later is not a stage yet (the classic builder pulls the image).
        ("FROM alpine:3\nCOPY --from=later /a /b\nFROM busybox AS later\n", ("later",)),
        # BuildKit's cache and bind mounts read their from= too.
        ("FROM alpine:3\nRUN --mount=type=cache,from=img:2,target=/x true\n", ("img:2",)),
        ("FROM alpine:3 AS deps\nRUN --mount=type=bind,from=deps,target=/d "
         "--mount=type=bind,from=tools:1,source=/bin,target=/t true\n", ("tools:1",)),
        ('FROM alpine:3\nRUN --mount="type=bind,from=img:3,target=/x" true\n', ("img:3",)),
        # No --from, an empty one, a copy from the context, JSON form: nothing read.
        ("FROM alpine:3\nCOPY a b\nCOPY --from= a b\nCOPY [\"--from=x\", \"b\"]\n", ()),
        ("FROM alpine:3\nRUN --mount=type=cache,target=/x true\nRUN echo --from=x\n", ()),
        # Each image once, FROM bases not again.
        ("FROM alpine:3\nCOPY --from=s:1 a b\nCOPY --from=alpine:3 c d\nCOPY --from=s:1 e f\n",
         ("s:1",)),
    ],
)  # fmt: skip
def test_images_copied_from(tmp_path: Path, text: str, copied: tuple[str, ...]) -> None:
    assert _read(tmp_path, text).copied == copied


def test_the_fingerprints_order_bases_then_copied_and_the_final_base(tmp_path: Path) -> None:
    text = (
        "FROM golang:1.23 AS build\nCOPY --from=tools:1 /t /t\n"
        "FROM python:3.12-slim\nCOPY --from=build /app /app\n"
        "RUN --mount=type=cache,from=cache:1,target=/c true\n"
    )
    read = _read(tmp_path, text)
    assert read.all == ("golang:1.23", "python:3.12-slim", "tools:1", "cache:1")
    assert read.final_base == "python:3.12-slim"
    scratch = _read(tmp_path, "FROM alpine:3 AS b\nFROM scratch\nCOPY --from=side:1 / /\n")
    assert scratch.all == ("alpine:3", "side:1") and scratch.final_base is None


@pytest.mark.parametrize(
    "text",
    [
        "ARG BASE_IMAGE=python:3.12-slim\nFROM ${BASE_IMAGE}\n",
        "FROM golang:1.23 AS b\nFROM alpine:3\nCOPY --from=b / /\n",
        "FROM alpine:3 AS base\nFROM golang:1.23 AS tools\nFROM base\n",
    ],
)
def test_without_a_from_image_the_images_are_the_bases_as_before(tmp_path: Path, text: str) -> None:
    # The fingerprint of an image released before --from counted must not change.
    (tmp_path / "Dockerfile").write_text(text)
    dockerfile = Dockerfile.read(tmp_path / "Dockerfile", {})
    assert list(dockerfile.images_read().all) == dockerfile.external_bases()


@pytest.mark.parametrize(
    ("text", "words"),
    [
        # Docker expands no variable in --from: a stage ARG here is a build that fails.
        ("FROM alpine:3\nARG SIDE=side:1\nCOPY --from=${SIDE} /a /b\n",
         "line 3: COPY --from=${SIDE}: Docker does not expand variables in --from"),
        ("ARG SIDE=side:1\nFROM alpine:3\nARG SIDE\nCOPY --from=$SIDE /a /b\n",
         "line 4: COPY --from=$SIDE: Docker does not expand variables in --from"),
        ("FROM alpine:3\nRUN --mount=type=cache,from=$IMG,target=/x true\n",
         "line 2: RUN --mount=...from=$IMG: Docker does not expand variables in a mount's from="),
    ],
)  # fmt: skip
def test_a_variable_in_from_is_refused_with_the_way_out(
    tmp_path: Path, text: str, words: str
) -> None:
    message = _refusal(tmp_path, text)
    assert words in message
    assert "name the image in a stage of its own (FROM ${ARG} AS name)" in message


def test_the_way_out_makes_the_image_a_base(tmp_path: Path) -> None:
    text = "ARG SIDE=side:1\nFROM ${SIDE} AS side\nFROM alpine:3\nCOPY --from=side /a /b\n"
    assert _read(tmp_path, text, {"SIDE": "side:2"}).all == ("side:2", "alpine:3")


# -- heredocs: text, not instructions ----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "base"),
    [
        # The reported cases: a body line that reads like an instruction is not one.
        ("FROM alpine:3\nRUN <<EOF python3\nfrom os import path\nEOF\n", "alpine:3"),
        ("FROM alpine:3\nCOPY <<EOF /x\nFROM evil:9\nEOF\n", "alpine:3"),
        ("FROM alpine:3\nADD <<EOF /x\nFROM evil:9\nEOF\n", "alpine:3"),
        ("FROM alpine:3\nONBUILD RUN <<EOF\nFROM evil:9\nEOF\n", "alpine:3"),
        # Several on one line, each body to its own closing line, in order.
        ("FROM alpine:3\nCOPY <<A <<B /d\nB\nFROM evil:1\nA\nFROM evil:2\nB\n", "alpine:3"),
        # <<- closes on a line of tabs and the delimiter; a quoted delimiter loses its quotes.
        ("FROM alpine:3\nRUN <<-EOF\n\tFROM evil:9\n\t\tEOF\nFROM b:1\n", "b:1"),
        ("FROM alpine:3\nRUN <<'EOF'\nFROM evil:9\nEOF\nFROM b:1\n", "b:1"),
        ('FROM alpine:3\nRUN <<"EOF" sh\nFROM evil:9\nEOF\nFROM b:1\n', "b:1"),
        # Only a line that is exactly the delimiter closes one (not with blanks, nor <<EOF's
        # tabs, nor a line holding it); a CRLF line ending is not part of the line.
        ("FROM alpine:3\nRUN <<EOF\n EOF\n\tEOF\nEOF2\nFROM evil:9\nEOF\nFROM b:1\n", "b:1"),
        ("FROM alpine:3\r\nRUN <<EOF\r\nFROM evil:9\r\nEOF\r\nFROM b:1\r\n", "b:1"),
        # The line is read whole first: a continued line opens its heredoc at its end.
        ("FROM alpine:3\nRUN <<EOF \\\n  # note\n  python3\nFROM evil:9\nEOF\n", "alpine:3"),
        ("# escape=`\nFROM alpine:3\nRUN <<EOF `\n  sh\nFROM evil:9\nEOF\n", "alpine:3"),
        # A body of comment or continued lines ends where its delimiter says.
        ("FROM alpine:3\nRUN <<EOF\n# c\\\nEOF\nFROM b:1\n", "b:1"),
        # No heredoc: another instruction, the exec form, a quoted or embedded <<.
        ("FROM alpine:3\nUSER <<EOF\nFROM b:1\nEOF\n", "b:1"),
        ('FROM alpine:3\nRUN ["<<EOF"]\nFROM b:1\n', "b:1"),
        ("FROM alpine:3\nRUN echo '<<EOF' cat<<EOF\nFROM b:1\n", "b:1"),
    ],
)  # fmt: skip
def test_heredoc_bodies_are_not_instructions(tmp_path: Path, text: str, base: str) -> None:
    read = _read(tmp_path, text)
    assert read.final_base == base and "evil:9" not in read.all


def test_a_heredoc_keeps_the_file_and_its_line_numbers(tmp_path: Path) -> None:
    text = "FROM alpine:3\nCOPY <<EOF /x\nFROM evil:9\nEOF\nFROM ${B:?needed}\n"
    (tmp_path / "Dockerfile").write_text(text)
    dockerfile = Dockerfile.read(tmp_path / "Dockerfile", {})
    assert dockerfile.data == text.encode()  # the fingerprint's bytes, body and all
    assert "line 5: cannot expand FROM ${B:?needed}" in _refusal(tmp_path, text)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("FROM alpine:3\nRUN <<EOF\nFROM evil:9\n", "line 2: the heredoc <<EOF has no closing EOF"),
        ("FROM alpine:3\nRUN <<A <<B\nA\n", "line 2: the heredoc <<B has no closing B"),
        ("FROM alpine:3\nRUN <<${A:-a b}\n", "Dockerfile: line 2: syntax error: missing '}'"),
    ],
)  # fmt: skip
def test_a_heredoc_docker_refuses_is_one_line(tmp_path: Path, text: str, words: str) -> None:
    assert words in _refusal(tmp_path, text)


# -- BuildKit's platform arguments ---------------------------------------------------------


@pytest.mark.parametrize(
    ("machine", "spec", "arch", "variant"),
    [
        ("x86_64", "linux/amd64", "amd64", ""),
        ("AMD64", "linux/amd64", "amd64", ""),
        ("aarch64", "linux/arm64", "arm64", ""),
        ("arm64", "linux/arm64", "arm64", ""),
        ("armv7l", "linux/arm/v7", "arm", "v7"),
        ("armv6l", "linux/arm/v6", "arm", "v6"),
        ("i686", "linux/386", "386", ""),
        ("ppc64le", "linux/ppc64le", "ppc64le", ""),
        ("s390x", "linux/s390x", "s390x", ""),
        ("riscv64", "linux/riscv64", "riscv64", ""),
        ("loongarch64", "linux/loong64", "loong64", ""),
    ],
)
def test_platform_args_name_the_machine_as_go_does(
    machine: str, spec: str, arch: str, variant: str
) -> None:
    found = platform_args(machine, "default")
    assert found == {
        "BUILDPLATFORM": spec,
        "BUILDOS": "linux",
        "BUILDOSVERSION": "",
        "BUILDARCH": arch,
        "BUILDVARIANT": variant,
        "TARGETPLATFORM": spec,
        "TARGETOS": "linux",
        "TARGETOSVERSION": "",
        "TARGETARCH": arch,
        "TARGETVARIANT": variant,
        "TARGETSTAGE": "default",
    }


@pytest.mark.parametrize(
    ("machine", "text", "args", "base"),
    [
        ("x86_64", "FROM img-${TARGETARCH}:1\n", {}, "img-amd64:1"),
        ("aarch64", "FROM img-${TARGETARCH}:1\n", {}, "img-arm64:1"),
        ("armv7l", "FROM img-$TARGETARCH$TARGETVARIANT:1\n", {}, "img-armv7:1"),
        ("aarch64", "FROM reg/$BUILDPLATFORM/$TARGETOS:1\n", {}, "reg/linux/arm64/linux:1"),
        # Set, though empty on Linux and amd64: the forms without a colon tell.
        ("x86_64", "FROM img${TARGETVARIANT-v0}${TARGETOSVERSION+:set}\n", {}, "img:set"),
        # The stage built: the last, lowercase; "default" when it has no name.
        ("x86_64", "FROM a:${TARGETSTAGE} AS Release\n", {}, "a:release"),
        ("x86_64", "FROM b:1 AS x\nFROM a:${TARGETSTAGE}\n", {}, "a:default"),
        # A build argument overrides, declared or not, as does an ARG's default.
        ("x86_64", "FROM img-${TARGETARCH}:1\n", {"TARGETARCH": "s390x"}, "img-s390x:1"),
        ("x86_64", "ARG TARGETARCH=ppc64le\nFROM img-${TARGETARCH}:1\n", {}, "img-ppc64le:1"),
        ("x86_64", "ARG TARGETARCH\nFROM img-${TARGETARCH}:1\n", {}, "img-amd64:1"),
        ("x86_64", "ARG A=${TARGETOS}\nFROM img-${A}:1\n", {}, "img-linux:1"),
    ],
)  # fmt: skip
def test_from_sees_buildkits_platform_arguments(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    machine: str,
    text: str,
    args: dict[str, str],
    base: str,
) -> None:
    monkeypatch.setattr("os.uname", lambda: SimpleNamespace(machine=machine))
    assert _read(tmp_path, text, args).final_base == base


# Lines a hostile Dockerfile might hold, in any order and number.
_LINES = st.lists(
    st.one_of(
        st.sampled_from(
            [
                "FROM alpine:3 AS a", "FROM a", "FROM scratch", "FROM ${B:-x:1}", "ARG B",
                "ARG B=${C:?}", "ARG C=\"q r\"", "COPY --from=a / /", "COPY --from=0 / /",
                "COPY --from=$B / /", "RUN --mount=from=i:1,target=/x true", "# escape=`",
                "RUN --mount=\"from=${B}\" x", "FROM", "COPY --from=\"",
                "RUN <<EOF", "COPY <<-A <<'B' /d", "EOF", "\tA", "B", "FROM ${TARGETARCH}",
            ]
        ),
        st.builds("{} {}".format, st.sampled_from(["FROM", "ARG", "COPY", "RUN"]), st.text()),
    ),
    max_size=6,
)  # fmt: skip


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=_LINES, args=st.dictionaries(st.sampled_from(["B", "C"]), st.text(max_size=5)))
def test_any_dockerfile_gives_images_or_one_settings_line(
    tmp_path: Path, lines: list[str], args: dict[str, str]
) -> None:
    try:
        read = _read(tmp_path, "\n".join(lines) + "\n", args)
    except SettingsError as exc:
        assert "\n" not in exc.message
    else:
        assert read.final_base is None or read.final_base in read.bases
        assert len(set(read.all)) == len(read.all)


def test_a_label_is_not_carried_by_an_argument_that_would_move_a_from(tmp_path: Path) -> None:
    # The final stage's LABEL reads BASE_IMAGE, which the first FROM reads too: carrying the
    # final base's name in it would make Docker build the first stage on alpine.
    (tmp_path / "Dockerfile").write_text(
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE:-golang:1.23} AS build\nFROM alpine:3\n"
        "ARG BASE_IMAGE\nLABEL org.opencontainers.image.base.name=${BASE_IMAGE}\n"
    )
    dockerfile = Dockerfile.read(tmp_path / "Dockerfile", {})
    wanted = {"org.opencontainers.image.base.name": "alpine:3"}
    assert split_labels(dockerfile, wanted, {}) == ({}, wanted)
    # Where the argument already names that image, or FROM does not read it, it carries.
    assert split_labels(dockerfile, wanted, {"BASE_IMAGE": "alpine:3"}) == (
        {"BASE_IMAGE": "alpine:3"},
        {},
    )
    (tmp_path / "Dockerfile").write_text(
        "FROM ${BASE_IMAGE:-alpine:3}\nARG BASE_IMAGE\n"
        "LABEL org.opencontainers.image.base.name=${BASE_IMAGE}\n"
    )
    dockerfile = Dockerfile.read(tmp_path / "Dockerfile", {})
    assert split_labels(dockerfile, wanted, {}) == ({"BASE_IMAGE": "alpine:3"}, {})


# -- what the build reads of the context ---------------------------------------------------


@pytest.mark.parametrize(
    ("body", "sources"),
    [
        ("COPY widget_server/ /app/widget_server/\n", ("widget_server",)),
        ("COPY a.txt b/ /dst/\nADD c.tar.gz /x/\n", ("a.txt", "b", "c.tar.gz")),
        ('COPY ["with space.txt", "/dst/"]\n', ("with space.txt",)),
        ("COPY --chown=1000:1000 --chmod=644 ./app/./lib/../main.py /app/\n", ("app/main.py",)),
        ("COPY /abs/path /dst\n", ("abs/path",)),
        ("ADD https://example.invalid/x.tgz /x\nCOPY app /app\n", ("app",)),
        ("FROM scratch AS build\nCOPY --from=build /out /out\n", ()),  # another stage
        ("RUN echo no context\n", ()),
        ("COPY app /a\nCOPY app /b\n", ("app",)),  # each once
    ],
)
def test_context_sources_name_what_copy_and_add_read(
    tmp_path: Path, body: str, sources: tuple[str, ...]
) -> None:
    path = tmp_path / "Dockerfile"
    path.write_text("FROM python:3.12-slim\n" + body)
    assert context_sources(Dockerfile.read(path, {})) == sources


@pytest.mark.parametrize(
    "body",
    [
        "COPY . /app/\n",  # the whole context
        "COPY ./ /app/\n",
        "COPY *.py /app/\n",  # a wildcard: Docker's matching decides
        "COPY app/file?.txt /app/\n",
        "COPY [ab].txt /app/\n",
        "ARG DIR=app\nCOPY $DIR /app/\n",  # a variable
        "ENV DIR=app\nCOPY ${DIR} /app/\n",
        "COPY ../outside /app/\n",  # leaves the context: Docker refuses it, with the context
        "COPY a/../../b /app/\n",
        "COPY --parents app/ /dst/\n",  # a flag that changes what is read
        "COPY --exclude=*.md app/ /dst/\n",
        "RUN --mount=type=bind,target=/src make\n",  # a bind mount reads the context
        "COPY <<EOF /etc/x\nhello\nEOF\n",  # a heredoc
        'COPY "app" /dst/\n',  # a quote, taken as part of the name by Docker
        "COPY onlyone\n",
    ],
)
def test_context_sources_are_unknown_when_not_certain(tmp_path: Path, body: str) -> None:
    path = tmp_path / "Dockerfile"
    path.write_text("FROM python:3.12-slim\n" + body)
    assert context_sources(Dockerfile.read(path, {})) is None
