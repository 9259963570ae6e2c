"""How Docker reads the words of a Dockerfile line: its ``--flags``, the words of an
``ARG``, and variable expansion (``$VAR``, ``${VAR:-word}``, ...).

The rules are BuildKit's (``frontend/dockerfile/parser`` and ``shell/lex.go``), which the
classic builder shares for what it supports: quotes ('...' literal, "..." expanding),
the escape token (``\\`` or the ``# escape=`` directive's), and these forms:

- ``$VAR``, ``${VAR}``: the value, or nothing when VAR is unset;
- ``${VAR:-word}`` / ``${VAR-word}``: word when VAR is unset or empty / unset;
- ``${VAR:+word}`` / ``${VAR+word}``: word when VAR is set and not empty / set, else nothing;
- ``${VAR:?message}`` / ``${VAR?message}``: an error when VAR is unset or empty / unset;
- ``${VAR#pattern}``, ``##``, ``%``, ``%%``: the value less its shortest / longest
  prefix / suffix matching the glob ``pattern`` (``*``, ``?``);
- ``${VAR/pattern/word}``, ``${VAR//pattern/word}``: the first / every match replaced.

``word`` may itself hold expansions (``${A:-${B:-x}}``). A name is letters, digits and
``_``, or digits alone, or one of ``@*#?-$!0`` (positional and special parameters, never
set in a Dockerfile). ``${VAR:#pattern}`` and the like are refused, as BuildKit has since
dockerfile 1.10 (1.7 to 1.9 read them as ``${VAR#pattern}``).

``heredocs`` reads the heredocs a line opens (``<<EOF``, ``<<-EOF``, ``<<"EOF"``, ...) as
BuildKit's parser does (``parser.heredocsFromLine``). This module is pure: it reads no
file and knows no instruction.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import NamedTuple

_SPECIAL_PARAMETERS = frozenset("@*#?-$!0")
# A word that opens a heredoc: an optional file descriptor, <<, an optional - (strip tabs),
# blanks, the delimiter (BuildKit's reHeredoc; Go's \s and $ spelled out).
_HEREDOC = r"([0-9]*)<<(-?)[\t\n\f\r ]*([^<]*)"  # re compiles it on first use


class ExpansionError(ValueError):
    """A word Docker refuses to expand; the text is Docker's reason."""


def expand(word: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """``word`` with its variables expanded and its quotes and escapes removed, as Docker
    expands a ``FROM`` image or an ``ARG`` default; a name missing from ``env`` is unset."""
    return _Lexer(word, env, escape).until(None, raw_escapes=False)


def split_flags(line: str, escape: str = "\\") -> tuple[list[str], str]:
    """The leading ``--flag=value`` words of an instruction's arguments (quotes and escapes
    removed, as Docker's parser does) and the rest of the line."""
    flags: list[str] = []
    pos, length = 0, len(line)
    while True:
        while pos < length and line[pos].isspace():
            pos += 1
        if not line.startswith("--", pos):
            return flags, line[pos:].strip()
        word: list[str] = []
        quote = ""
        blank_ok = False
        while pos < length and (quote or not line[pos].isspace()):
            ch = line[pos]
            pos += 1
            if quote and ch == quote:
                quote = ""
                continue
            if not quote and ch in "'\"":
                quote, blank_ok = ch, True
                continue
            if ch == escape:
                if pos == length:
                    continue  # an escape token at the end of the line is dropped
                ch = line[pos]
                pos += 1
            word.append(ch)
        text = "".join(word)
        if text == "--":  # the end of the flags
            return flags, line[pos:].strip()
        if blank_ok or text:
            flags.append(text)
        if pos >= length:
            return flags, ""


def split_words(rest: str, escape: str = "\\") -> list[str]:
    """An ``ARG`` line's words, split on blanks outside quotes, quotes and escapes kept
    (expansion removes them later), as Docker's parser splits them."""
    words: list[str] = []
    word: list[str] = []
    quote = ""
    in_word = blank_ok = False
    pos, length = 0, len(rest)
    while pos < length:
        ch = rest[pos]
        pos += 1
        if not in_word:
            if ch.isspace():
                continue
            in_word = True
        if quote:
            if ch == quote:
                quote = ""
            elif ch == escape and quote != "'":  # nothing escapes inside '...'
                if pos == length:
                    continue
                word.append(ch)
                ch = rest[pos]
                pos += 1
            word.append(ch)
            continue
        if ch.isspace():
            if blank_ok or word:
                words.append("".join(word))
            word, in_word, blank_ok = [], False, False
            continue
        if ch in "'\"":
            quote, blank_ok = ch, True
        elif ch == escape:
            if pos == length:
                continue  # an escape token at the end of the line is dropped
            word.append(ch)
            ch = rest[pos]
            pos += 1
        word.append(ch)
    if in_word and (blank_ok or word):
        words.append("".join(word))
    return words


class Heredoc(NamedTuple):
    """A heredoc a line opens: its body ends at a line that is exactly ``name`` (after
    leading tabs, with ``strip_tabs``, the ``<<-`` form)."""

    name: str
    strip_tabs: bool


def heredocs(line: str) -> list[Heredoc]:
    """The heredocs a RUN, COPY or ADD line opens, in order: each word (quotes and escapes
    kept, unset variables as written) that is ``<<`` and a delimiter, ``<<-`` and one, or
    either after a file descriptor (``3<<EOF``). The delimiter loses its quotes
    (``<<"EOF"`` ends at ``EOF``). Raises ExpansionError where Docker refuses the file."""
    try:
        words = _shell_words(line, raw=True)
    except ExpansionError:
        return []  # BuildKit reads no heredoc from a line its lexer refuses
    found: list[Heredoc] = []
    for word in words:
        match = re.fullmatch(_HEREDOC, word)
        if match is None or not match.group(3):
            continue
        names = _shell_words(match.group(3), raw=False)
        if len(names) == 1:  # `<<EOF sh` in one word is no heredoc
            found.append(Heredoc(names[0], match.group(2) == "-"))
    return found


def _shell_words(text: str, *, raw: bool) -> list[str]:
    """BuildKit's ``ProcessWords`` as its heredoc reader calls it: the escape token ``\\``,
    no variable set and each kept as written (``SkipUnsetEnv``), blanks splitting words
    outside quotes, ``<<`` and the blanks after it one piece; ``raw`` keeps quotes and
    escapes (``RawQuotes``, ``RawEscapes``)."""
    lexer = _Lexer(text, {}, "\\", skip_unset=True)
    words: list[str] = []
    word: list[str] = []

    def add(chars: str) -> None:  # characters that blanks split
        for char in chars:
            if not char.isspace():
                word.append(char)
            elif "".join(word):
                words.append("".join(word))
                word.clear()

    while (ch := lexer.peek()) is not None:
        start = lexer.pos
        if ch == "$":  # what a variable gives is split on blanks, quoted or not
            add(lexer.dollar())
        elif ch in "'\"":
            inner = lexer.single_quoted() if ch == "'" else lexer.double_quoted(raw)
            word.append(text[start : lexer.pos] if raw else inner)
        elif ch == "<":
            lexer.pos += 1
            if lexer.peek() == "<":
                lexer.pos += 1
                while lexer.peek() in (" ", "\t", "\r"):
                    lexer.pos += 1
            word.append(text[start : lexer.pos])
        elif ch == "\\":
            lexer.pos += 1
            escaped = lexer.take()
            word.append("\\" if raw else "")
            if escaped is None:
                break
            word.append(escaped)
        else:
            lexer.pos += 1
            add(ch)
    add(" ")
    return words


class _Lexer:
    """One word, read left to right (BuildKit's ``shellWord``); ``skip_unset`` keeps an
    unset variable's expansion as written (its ``SkipUnsetEnv``)."""

    def __init__(
        self, text: str, env: Mapping[str, str], escape: str, *, skip_unset: bool = False
    ) -> None:
        self.text, self.env, self.escape = text, env, escape
        self.skip_unset = skip_unset
        self.pos = 0

    def peek(self) -> str | None:
        return self.text[self.pos] if self.pos < len(self.text) else None

    def take(self) -> str | None:
        ch = self.peek()
        if ch is not None:
            self.pos += 1
        return ch

    def until(self, stop: str | None, raw_escapes: bool) -> str:
        """Up to ``stop`` (consumed) or the end; ``raw_escapes`` keeps escape tokens, for
        the glob patterns of ``#``, ``%`` and ``/``, which read them themselves."""
        out: list[str] = []
        while (ch := self.peek()) is not None:
            if ch == stop:
                self.pos += 1
                return "".join(out)
            if ch == "$":
                out.append(self.dollar())
            elif ch == "'":
                out.append(self.single_quoted())
            elif ch == '"':
                out.append(self.double_quoted(raw_escapes))
            else:
                self.pos += 1
                if ch == self.escape:
                    if raw_escapes:
                        out.append(ch)
                    escaped = self.take()
                    if escaped is None:
                        break
                    ch = escaped
                out.append(ch)
        if stop is not None:
            raise ExpansionError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(out)

    def single_quoted(self) -> str:
        self.pos += 1
        end = self.text.find("'", self.pos)
        if end < 0:
            raise ExpansionError("unexpected end of statement while looking for matching '")
        found, self.pos = self.text[self.pos : end], end + 1
        return found

    def double_quoted(self, raw_escapes: bool) -> str:
        self.pos += 1
        out: list[str] = []
        while True:
            ch = self.peek()
            if ch is None:
                raise ExpansionError('unexpected end of statement while looking for matching "')
            if ch == '"':
                self.pos += 1
                return "".join(out)
            if ch == "$":
                out.append(self.dollar())
                continue
            self.pos += 1
            if ch == self.escape:
                if raw_escapes:
                    out.append(ch)
                following = self.peek()
                if following is None:
                    continue
                if following in ('"', "$", self.escape):  # only these escape inside "..."
                    ch = following
                    self.pos += 1
            out.append(ch)

    def name(self) -> str:
        start = self.pos
        first = self.peek()
        if first is None:
            return ""
        if first.isdecimal():  # $1, ${123}: positional, never set
            while (ch := self.peek()) is not None and ch.isdecimal():
                self.pos += 1
        elif first in _SPECIAL_PARAMETERS:
            self.pos += 1
        else:
            while (ch := self.peek()) is not None and (ch.isalpha() or ch.isdecimal() or ch == "_"):
                self.pos += 1
        return self.text[start : self.pos]

    def dollar(self) -> str:
        start = self.pos
        self.pos += 1
        if self.peek() != "{":
            name = self.name()
            if name and self.skip_unset and name not in self.env:
                return self.text[start : self.pos]
            return self.env.get(name, "") if name else "$"
        self.pos += 1
        if self.peek() is None:
            raise ExpansionError("syntax error: missing '}'")
        if self.peek() in ("{", "}", ":"):
            raise ExpansionError("syntax error: bad substitution")
        name = self.name()
        ch = self.take()
        if ch is None:
            raise ExpansionError("syntax error: missing '}'")
        if ch == "}":
            return self.kept(start, name) or self.env.get(name, "")
        if ch == "/":
            return self.replaced(name, start)
        modifier, null_is_unset = ch or "", ch == ":"
        if ch == ":":
            ch = self.take()
            modifier += ch or ""
            if ch in ("#", "%"):  # no ${VAR:#pattern}
                raise ExpansionError(f"unsupported modifier ({modifier}) in substitution")
        elif ch not in ("+", "-", "?", "#", "%"):
            raise ExpansionError(f"unsupported modifier ({modifier}) in substitution")
        try:
            word = self.until("}", raw_escapes=ch in ("#", "%"))
        except ExpansionError:
            if self.peek() is None:
                raise ExpansionError("syntax error: missing '}'") from None
            raise
        if kept := self.kept(start, name):
            return kept
        value = self.env.get(name)
        unset = value is None or (null_is_unset and value == "")
        if ch == "-":
            return word if unset else (value or "")
        if ch == "+":
            return "" if unset else word
        if ch == "?":
            if value is None:
                raise ExpansionError(f"{name}: {word or 'is not allowed to be unset'}")
            if unset:
                raise ExpansionError(f"{name}: {word or 'is not allowed to be empty'}")
            return value
        if ch in ("#", "%"):
            greedy = word.startswith(ch)
            pattern = word[1:] if greedy else word
            if ch == "#":
                return _trim_prefix(pattern, value or "", greedy)
            return _trim_suffix(pattern, value or "", greedy)
        raise ExpansionError(f"unsupported modifier ({modifier}) in substitution")

    def kept(self, start: int, name: str) -> str:
        """The ``${...}`` read since ``start`` as written, when unset variables are kept."""
        return self.text[start : self.pos] if self.skip_unset and name not in self.env else ""

    def replaced(self, name: str, start: int) -> str:
        every = self.peek() == "/"
        if every:
            self.pos += 1
        try:
            pattern = self.until("/", raw_escapes=True)
        except ExpansionError:
            if self.peek() is None:
                raise ExpansionError("syntax error: missing '/' in ${}") from None
            raise
        try:
            replacement = self.until("}", raw_escapes=True)
        except ExpansionError:
            if self.peek() is None:
                raise ExpansionError("syntax error: missing '}'") from None
            raise
        if kept := self.kept(start, name):
            return kept
        regex = _glob_regex(pattern, greedy=True, anchored=False)
        return regex.sub(lambda _: replacement, self.env.get(name, ""), count=0 if every else 1)


def _glob_regex(pattern: str, *, greedy: bool, anchored: bool) -> re.Pattern[str]:
    """A shell glob (``*``, ``?``, ``\\`` escaping ``*``, ``?``, ``\\``) as a regex."""
    out = ["^"] if anchored else []
    pos = 0
    while pos < len(pattern):
        ch = pattern[pos]
        pos += 1
        if ch == "*":
            out.append(".*" if greedy else ".*?")
        elif ch == "?":
            out.append(".")
        elif ch == "\\":
            following = pattern[pos] if pos < len(pattern) else ""
            if following in ("}", "/"):  # escaped only to get past the ${} reader
                continue
            if following not in ("*", "?", "\\"):
                raise ExpansionError(f"invalid pattern ({pattern}) in substitution")
            out.append("\\" + following)
            pos += 1
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out))


def _trim_prefix(pattern: str, value: str, greedy: bool) -> str:
    match = _glob_regex(pattern, greedy=greedy, anchored=True).search(value)
    return value[match.end() :] if match else value


def _trim_suffix(pattern: str, value: str, greedy: bool) -> str:
    # A regex finds the leftmost match, not the shortest rightmost one: reverse both.
    return _trim_prefix(_reverse_pattern(pattern), value[::-1], greedy)[::-1]


def _reverse_pattern(pattern: str) -> str:
    pairs: list[str] = []
    pos = 0
    while pos < len(pattern):
        if pattern[pos] == "\\" and pos + 1 < len(pattern):  # keep \* together
            pairs.append(pattern[pos : pos + 2])
            pos += 2
        else:
            pairs.append(pattern[pos])
            pos += 1
    return "".join(reversed(pairs))
