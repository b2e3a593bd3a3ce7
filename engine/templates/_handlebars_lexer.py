"""Handlebars template text -> tokens, rule for rule as handlebars.js 4.7's lexer (no I/O).

The rules, their order (the first that matches wins, as in jison) and their states (content,
``mu`` inside a tag, ``emu`` after an escaped ``\\{{``, ``raw`` inside ``{{{{raw}}}}``) are
those of handlebars.js's src/handlebars.l. Regular expressions spell JavaScript's ``\\s``
and ``\\b`` out, since Python's differ. Tokens are produced lazily, so the parser reports the
first problem in the text, wherever the lexer would have stopped later.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterator
from typing import NamedTuple

from engine.templates.parser import TemplateError

JS_SPACE = (
    "\t\n\v\f\r \u00a0\u1680"
    + "".join(chr(c) for c in range(0x2000, 0x200B))
    + "\u2028\u2029\u202f\u205f\u3000\ufeff"
)
"""JavaScript's ``\\s``: the whitespace handlebars.js skips in tags and strips with ``~``."""

_S = f"[{JS_SPACE}]"
_ID_CHAR = f'[^{JS_SPACE}!"#%-,./;->@\\[-\\^`{{-~]'
_ID_RUN = re.compile(f"{_ID_CHAR}+")
_NO_WORD = "(?![A-Za-z0-9_])"  # JavaScript's \b after "else"
_LITERAL_END = f"(?=[~}})]|{_S})"

_MU_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(pattern, re.DOTALL), kind)
    for pattern, kind in [
        (r"\(", "OPEN_SEXPR"),
        (r"\)", "CLOSE_SEXPR"),
        (r"\{\{\{\{", "OPEN_RAW_BLOCK"),
        (r"\}\}\}\}", "CLOSE_RAW_BLOCK"),
        (r"\{\{~?>", "OPEN_PARTIAL"),
        (r"\{\{~?#>", "OPEN_PARTIAL_BLOCK"),
        (r"\{\{~?#\*?", "OPEN_BLOCK"),
        (r"\{\{~?/", "OPEN_ENDBLOCK"),
        (rf"\{{\{{~?\^{_S}*~?\}}\}}", "INVERSE"),
        (rf"\{{\{{~?{_S}*else{_S}*~?\}}\}}", "INVERSE"),
        (r"\{\{~?\^", "OPEN_INVERSE"),
        (rf"\{{\{{~?{_S}*else{_NO_WORD}", "OPEN_INVERSE_CHAIN"),
        (r"\{\{~?\{", "OPEN_UNESCAPED"),
        (r"\{\{~?&", "OPEN"),
        (r"\{\{~?!--", "LONG_COMMENT"),
        (r"\{\{~?!.*?\}\}", "COMMENT"),
        (r"\{\{~?\*?", "OPEN"),
        (r"=", "EQUALS"),
        (r"\.\.", "ID"),
        (rf"\.(?=[=~}}/.)|]|{_S})", "ID"),
        (r"[/.]", "SEP"),
        (f"{_S}+", "SPACE"),
        (r"\}~?\}\}", "CLOSE_UNESCAPED"),
        (r"~?\}\}", "CLOSE"),
        (r'"(?:\\"|[^"])*"', "STRING"),
        (r"'(?:\\'|[^'])*'", "STRING"),
        (r"@", "DATA"),
        (f"true{_LITERAL_END}", "BOOLEAN"),
        (f"false{_LITERAL_END}", "BOOLEAN"),
        (f"undefined{_LITERAL_END}", "UNDEFINED"),
        (f"null{_LITERAL_END}", "NULL"),
        (rf"-?[0-9]+(?:\.[0-9]+)?{_LITERAL_END}", "NUMBER"),
        (rf"as{_S}+\|", "OPEN_BLOCK_PARAMS"),
        (r"\|", "CLOSE_BLOCK_PARAMS"),
        (rf"{_ID_CHAR}+(?=[=~}}/.)|]|{_S})", "ID"),
        (r"\[(?:\\\]|[^\]])*\]", "ID"),
        (r".", "INVALID"),
    ]
]
_LEAVES_TAG = {"CLOSE", "CLOSE_UNESCAPED", "INVERSE", "COMMENT"}
_LONG_COMMENT = re.compile(r".*?--~?\}\}", re.DOTALL)
_RAW_END = re.compile(rf"\{{\{{\{{\{{/({_ID_CHAR}+)\}}\}}\}}\}}")


class Token(NamedTuple):
    """One token: its kind (handlebars.js's name), its text as written, and its offsets.

    Kinds beyond the grammar's: ``RAW_UNCLOSED`` (a raw block's content runs to the end;
    the parser names the block) and ``EOF``.
    """

    kind: str
    text: str
    start: int
    end: int


class Positions:
    """Offset -> (line, column), both counted from 1."""

    def __init__(self, text: str) -> None:
        self._starts = [0] + [i + 1 for i, char in enumerate(text) if char == "\n"]

    def __call__(self, offset: int) -> tuple[int, int]:
        line = bisect_right(self._starts, offset)
        return line, offset - self._starts[line - 1] + 1


def id_run_end(text: str, start: int) -> int:
    """Where the run of name characters starting at ``start`` ends."""
    found = _ID_RUN.match(text, start)
    return found.end() if found else start


def _refuse_nul(text: str, start: int, end: int, where: Positions) -> None:
    nul = text.find("\x00", start, end)
    if nul >= 0:
        raise TemplateError("a NUL character is not allowed in a template", *where(nul))


def _match_tag_token(text: str, pos: int) -> tuple[str, re.Match[str] | None]:
    for rule, kind in _MU_RULES:
        found = rule.match(text, pos)
        if found:
            return kind, found
    return "INVALID", None


def tokens(text: str, where: Positions) -> Iterator[Token]:
    """The tokens of ``text``, ending with one ``EOF`` (or ``RAW_UNCLOSED``).

    Raises TemplateError for what handlebars.js's lexer cannot read at all: a NUL outside a
    tag or comment, and a ``{{!--`` comment with no ``--}}``.
    """
    pos, end = 0, len(text)
    state = "content"
    raw_depth = 0
    while True:
        if state == "content":
            if pos >= end:
                yield Token("EOF", "", end, end)
                return
            tag = text.find("{{", pos)
            stop = end if tag < 0 else tag
            _refuse_nul(text, pos, stop, where)
            chunk = text[pos:stop]
            state = "mu"
            if tag < 0:
                state = "content"
            elif chunk.endswith("\\\\"):
                chunk = chunk[:-1]  # an escaped backslash: the tag that follows is a tag
            elif chunk.endswith("\\"):
                chunk, state = chunk[:-1], "emu"  # \{{ is text up to the next {{
            if chunk:
                yield Token("CONTENT", chunk, pos, stop)
            pos = stop
        elif state == "emu":
            stop = text.find("{{", pos + 2)
            if stop < 0:
                stop = end
            elif text[stop - 1] == "\\" and stop - 1 >= pos + 2:
                stop -= 2 if text[stop - 2] == "\\" and stop - 2 >= pos + 2 else 1
            _refuse_nul(text, pos, stop, where)
            yield Token("CONTENT", text[pos:stop], pos, stop)
            pos, state = stop, "content"
        elif state == "raw":
            closing = _RAW_END.match(text, pos)
            if text.startswith("{{{{", pos) and text[pos + 4 : pos + 5] not in ("", "/"):
                raw_depth += 1
                stop = pos + 4
            elif closing:
                raw_depth -= 1
                stop = closing.end()
                if not raw_depth:
                    yield Token("END_RAW_BLOCK", closing.group(), pos, stop)
                    pos, state = stop, "content"
                    continue
            else:
                stop = text.find("{{{{", pos + 1)
                _refuse_nul(text, pos, end if stop < 0 else stop, where)
                if stop < 0:
                    yield Token("RAW_UNCLOSED", "", pos, end)
                    return
            yield Token("CONTENT", text[pos:stop], pos, stop)
            pos = stop
        else:
            if pos >= end:
                yield Token("EOF", "", end, end)
                return
            kind, found = _match_tag_token(text, pos)
            if kind == "LONG_COMMENT":
                found = _LONG_COMMENT.match(text, pos)
                if not found:
                    raise TemplateError('comment is never closed: expected "--}}"', *where(pos))
                kind = "COMMENT"
            assert found is not None  # "." matches any character a \s rule did not
            if kind in _LEAVES_TAG:
                state = "content"
            elif kind == "CLOSE_RAW_BLOCK":
                state, raw_depth = "raw", 1
            if kind != "SPACE":
                yield Token(kind, found.group(), pos, found.end())
            pos = found.end()
