"""Docker's variable expansion and word splitting, rule by rule, then as properties: Docker's
documented cases in any surroundings, and every form for any name, value and word."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ecr_release.model.dockerwords import (
    ExpansionError,
    Heredoc,
    expand,
    heredocs,
    split_flags,
    split_words,
)

# The cases of the Dockerfile reference, "Environment replacement": (word, env, result).
DOCUMENTED = [
    ("${variable:-word}", {"variable": "value"}, "value"),
    ("${variable:-word}", {}, "word"),
    ("${variable:+word}", {"variable": "value"}, "word"),
    ("${variable:+word}", {}, ""),
    ("${str#f*b}", {"str": "foobarbaz"}, "arbaz"),
    ("${str##f*b}", {"str": "foobarbaz"}, "az"),
    ("${string%b*}", {"string": "foobarbaz"}, "foobar"),
    ("${string%%b*}", {"string": "foobarbaz"}, "foo"),
    ("${string/ba/fo}", {"string": "foobarbaz"}, "fooforbaz"),
    ("${string//ba/fo}", {"string": "foobarbaz"}, "fooforfoz"),
    ("\\$foo", {"foo": "/bar"}, "$foo"),
    ("\\${foo}", {"foo": "/bar"}, "${foo}"),
    ("${foo}_bar", {"foo": "/bar"}, "/bar_bar"),
    ("${FOO}", {"FOO": "/bar"}, "/bar"),  # WORKDIR ${FOO}
    ("$FOO", {"FOO": "/bar"}, "/bar"),  # ADD . $FOO
    ("\\$FOO", {"FOO": "/bar"}, "$FOO"),  # COPY \$FOO /quux
]


@pytest.mark.parametrize(("word", "env", "result"), DOCUMENTED)
def test_dockers_documented_cases(word: str, env: dict[str, str], result: str) -> None:
    assert expand(word, env) == result


@pytest.mark.parametrize(
    ("word", "env", "result"),
    [
        # Unset and empty differ only for the forms without a colon.
        ("${V:-w}", {"V": ""}, "w"),
        ("${V-w}", {"V": ""}, ""),
        ("${V-w}", {}, "w"),
        ("${V:+w}", {"V": ""}, ""),
        ("${V+w}", {"V": ""}, "w"),
        ("${V+w}", {}, ""),
        ("${V:?m}", {"V": "x"}, "x"),
        ("${V?m}", {"V": ""}, ""),
        # Words hold expansions, to any depth; the suite's own case first.
        ("${BASE_IMAGE:-python:3.12-slim}", {}, "python:3.12-slim"),
        ("${A:-${B:-x}}", {}, "x"),
        ("${A:-${B:-x}}", {"B": "b"}, "b"),
        ("${A:-$B}/y", {"B": "b"}, "b/y"),
        ("reg/${A:+${B}-}img", {"A": "1", "B": "b"}, "reg/b-img"),
        # Quotes: '...' is literal, "..." expands; both are removed.
        ("'$A'", {"A": "a"}, "$A"),
        ('"$A"', {"A": "a"}, "a"),
        ("${A:-'x y'}", {}, "x y"),
        # Unset is empty; a $ that starts no name is itself.
        ("$A", {}, ""),
        ("a$", {}, "a$"),
        ("$.x", {}, "$.x"),
        ("$1x", {}, "x"),
        # A name is letters, digits and _: $A-b is $A then -b.
        ("$A-b", {"A": "a"}, "a-b"),
        ("$A_b", {"A_b": "1", "A": "a"}, "1"),
        # The escape token escapes anything outside quotes; at the end it is dropped.
        ("a\\b", {}, "ab"),
        ("a\\", {}, "a"),
        ("${A:-\\}}", {}, "}"),
        # Glob patterns, escaped wildcards, suffix reversal.
        ("${A%%\\**}", {"A": "xx**"}, "xx"),
        ("${A#?\\?}", {"A": "???y"}, "?y"),
        ("${A%.*}", {"A": "a.tar.gz"}, "a.tar"),
        ("${A##*/}", {"A": "reg/team/img"}, "img"),
    ],
)
def test_each_rule(word: str, env: dict[str, str], result: str) -> None:
    assert expand(word, env) == result


@pytest.mark.parametrize(
    ("word", "env", "reason"),
    [
        ("${V:?set it}", {}, "V: set it"),
        ("${V:?set it}", {"V": ""}, "V: set it"),
        ("${V?set it}", {}, "V: set it"),
        ("${V:?}", {}, "V: is not allowed to be unset"),
        ("${V:?}", {"V": ""}, "V: is not allowed to be empty"),
        ("${}", {}, "bad substitution"),
        ("${:-x}", {}, "bad substitution"),
        ("${V", {}, "missing '}'"),
        ("${V:-x", {}, "missing '}'"),
        ("${V:=x}", {}, "unsupported modifier (:=)"),
        ("${V=x}", {}, "unsupported modifier (=)"),
        # BuildKit refuses a colon before # and % (dockerfile 1.10 on; 1.7 to 1.9 took them).
        ("${V:#x}", {"V": "x"}, "unsupported modifier (:#)"),
        ("${V:##x}", {"V": "x"}, "unsupported modifier (:#)"),
        ("${V:%x}", {"V": "x"}, "unsupported modifier (:%)"),
        ("${V:%%x}", {"V": "x"}, "unsupported modifier (:%)"),
        ("${V.}", {}, "unsupported modifier (.)"),
        ("'open", {}, "matching '"),
        ('"open', {}, 'matching "'),
        ("${V/a}", {"V": "a"}, "missing '/'"),
        ("${V#a\\b}", {"V": "a"}, "invalid pattern"),
    ],
)
def test_what_docker_refuses(word: str, env: dict[str, str], reason: str) -> None:
    with pytest.raises(ExpansionError) as info:
        expand(word, env)
    assert reason in str(info.value)


def test_another_escape_token() -> None:
    assert expand("`$A\\", {"A": "a"}, escape="`") == "$A\\"


@pytest.mark.parametrize(
    ("line", "flags", "rest"),
    [
        ("--from=side:1 /a /b", ["--from=side:1"], "/a /b"),
        ('--from="side:1"    /a /b', ["--from=side:1"], "/a /b"),
        ("--chown=1:1 --from=build /a /b", ["--chown=1:1", "--from=build"], "/a /b"),
        ("-- --from=x /a", [], "--from=x /a"),
        ('["--from=x", "a", "b"]', [], '["--from=x", "a", "b"]'),
        ("--mount=type=cache,from=img,target=/x echo hi", ["--mount=type=cache,from=img,target=/x"],
         "echo hi"),
        ("--from=a\\ b c", ["--from=a b"], "c"),
        ("python:3.12 AS app", [], "python:3.12 AS app"),
        ("", [], ""),
    ],
)  # fmt: skip
def test_split_flags(line: str, flags: list[str], rest: str) -> None:
    assert split_flags(line) == (flags, rest)


# BuildKit's own cases (parser_heredoc_test.go), and what its code does with a few more.
@pytest.mark.parametrize(
    ("line", "found"),
    [
        ("RUN <<EOF", [("EOF", False)]),
        ("RUN <<-EOF", [("EOF", True)]),
        ("RUN 3<<EOF", [("EOF", False)]),
        ("RUN <<'EOF'", [("EOF", False)]),
        ('RUN <<"EOF"', [("EOF", False)]),
        ('RUN <<-"EOF"', [("EOF", True)]),
        ("RUN <<eo'f'", [("eof", False)]),
        ("RUN <<eo\\'f", [("eo'f", False)]),
        ("RUN <<'e'o\\'f", [("eo'f", False)]),
        ("RUN <<'one two'", [("one two", False)]),
        ("RUN <<$EOF", [("$EOF", False)]),  # no variable is expanded in a delimiter
        ("RUN <<${A:-b}", [("${A:-b}", False)]),
        ("RUN <<  EOF  > foo", [("EOF", False)]),  # blanks after << (dockerfile 1.15)
        ("RUN << -EOF", [("-EOF", False)]),
        ("RUN <<COMPLEX python3", [("COMPLEX", False)]),
        ("COPY <<FILE1 <<FILE2 /dest", [("FILE1", False), ("FILE2", False)]),
        ("RUN --mount=type=cache,target=/foo <<MOUNT", [("MOUNT", False)]),
        # Not a heredoc: quoted, inside a word, no delimiter, a <, a lexer error before it.
        ("RUN '<<EOF'", []),
        ('RUN "<<EOF"', []),
        ("RUN cat<<EOF", []),
        ("RUN \\<<EOF", []),
        ("RUN <<", []),
        ("RUN <<- EOF", []),  # `<<-` and `EOF` are two words
        ("RUN <<<EOF", []),
        ("RUN <<EOF'", []),
        ("RUN echo ${A <<EOF", []),
        ("RUN echo 'open <<EOF", []),
    ],
)
def test_heredocs(line: str, found: list[tuple[str, bool]]) -> None:
    assert heredocs(line) == [Heredoc(name, strip) for name, strip in found]


def test_a_heredoc_delimiter_docker_cannot_read_is_refused() -> None:
    # The line splits inside ${...} (a variable's text splits on blanks), leaving `${A:-a`.
    with pytest.raises(ExpansionError, match="missing '}'"):
        heredocs("RUN <<${A:-a b}")


def test_split_words_keeps_quotes_for_the_expansion() -> None:
    assert split_words("A=1 B=\"x y\" C  D='$E'") == ["A=1", 'B="x y"', "C", "D='$E'"]
    assert [expand(w.partition("=")[2], {"E": "e"}) for w in split_words("B=\"x y\" D='$E'")] == [
        "x y",
        "$E",
    ]


# -- properties ---------------------------------------------------------------------------

names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True)
# A word without special characters: no $, quotes, escape token or braces.
plain = st.text(alphabet="abcxyz019._-/:@+=", max_size=12)
values = st.text(max_size=12)  # a value is never expanded again: anything goes
states = st.one_of(st.none(), st.just(""), values.filter(bool))  # unset, empty, set


@given(
    case=st.sampled_from(DOCUMENTED),
    before=plain,
    after=st.text(alphabet="/.:-@+=", max_size=6),  # nothing that would lengthen a name
)
def test_documented_cases_hold_in_any_surroundings(
    case: tuple[str, dict[str, str], str], before: str, after: str
) -> None:
    word, env, result = case
    assert expand(before + word + after, env) == before + result + after


@given(name=names, value=states, word=plain)
def test_every_form_for_any_name_value_and_word(name: str, value: str | None, word: str) -> None:
    env = {} if value is None else {name: value}
    unset, empty = value is None, value == ""
    current = value or ""
    assert expand(f"${name}", env) == current
    assert expand(f"${{{name}}}", env) == current
    assert expand(f"${{{name}:-{word}}}", env) == (word if unset or empty else current)
    assert expand(f"${{{name}-{word}}}", env) == (word if unset else current)
    assert expand(f"${{{name}:+{word}}}", env) == ("" if unset or empty else word)
    assert expand(f"${{{name}+{word}}}", env) == ("" if unset else word)
    assert expand(f"\\${name}", env) == f"${name}"
    assert expand(f"'${{{name}}}'", env) == f"${{{name}}}"
    for form, fails in ((":?", unset or empty), ("?", unset)):
        if fails:
            with pytest.raises(ExpansionError, match=f"^{name}: "):
                expand(f"${{{name}{form}{word}}}", env)
        else:
            assert expand(f"${{{name}{form}{word}}}", env) == current


@given(outer=names, inner=names, value=states, word=plain)
def test_defaults_nest(outer: str, inner: str, value: str | None, word: str) -> None:
    env = {} if value is None or inner == outer else {inner: value}
    assert expand(f"${{{outer}:-${{{inner}:-{word}}}}}", env) == (env.get(inner) or word)


@given(text=st.text(max_size=30))
def test_any_text_expands_or_is_refused_in_words(text: str) -> None:
    try:
        assert isinstance(expand(text, {"A": "a"}), str)
    except ExpansionError as exc:
        assert str(exc)
