"""Mustache template text -> a tree of nodes, each with its line and column (no I/O).

Covers the official spec's required modules: interpolation (escaped, triple, ampersand,
dotted names, implicit iterator), sections, inverted sections, comments, set-delimiter,
partials, and the standalone-line and indentation rules. Left out on purpose: lambdas
(a context holds data only) and the optional ``~`` modules (dynamic names, inheritance).
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field

MAX_DEPTH = 64
"""Sections nested deeper than any real template needs; bounds compile-time recursion."""

MAX_TEMPLATE_CHARS = 1_000_000
"""Templates live in a config file: a megabyte is already absurd."""

_HANDLEBARS_BLOCKS = frozenset(("if", "unless", "each", "with"))
"""Handlebars' block helpers: a Mustache section named "if x" was meant as one."""

_SIGILS = "#^/!>=&{"
_STANDALONE_KINDS = "#^/!>="


class TemplateError(Exception):
    """A template that cannot be compiled; ``str()`` is ``"LINE:COL: problem"``."""

    def __init__(self, message: str, line: int = 1, col: int = 1) -> None:
        super().__init__(f"{line}:{col}: {message}")
        self.message = message
        self.line = line
        self.col = col


@dataclass(frozen=True, slots=True)
class Text:
    text: str


@dataclass(frozen=True, slots=True)
class Variable:
    name: str
    escape: bool
    line: int
    col: int


@dataclass(frozen=True, slots=True)
class Section:
    name: str
    inverted: bool
    line: int
    col: int
    children: list[Node] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Partial:
    name: str
    standalone: bool
    indent: str
    line: int
    col: int


@dataclass(frozen=True, slots=True)
class LineStart:
    """Where a line of the template begins: a partial's indentation goes here."""


LINE_START = LineStart()

Node = Text | Variable | Section | Partial | LineStart


class _Positions:
    """Offset -> (line, column), both counted from 1."""

    def __init__(self, text: str) -> None:
        self._starts = [0]
        start = text.find("\n")
        while start >= 0:
            self._starts.append(start + 1)
            start = text.find("\n", start + 1)

    def __call__(self, offset: int) -> tuple[int, int]:
        line = bisect_right(self._starts, offset)
        return line, offset - self._starts[line - 1] + 1


def parse(text: str) -> list[Node]:
    """The tree of ``text``; raises TemplateError naming the line and column of a problem."""
    if len(text) > MAX_TEMPLATE_CHARS:
        raise TemplateError(
            f"template is {len(text)} characters; the limit is {MAX_TEMPLATE_CHARS}"
        )
    return _Parser(text).parse()


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.where = _Positions(text)
        self.open, self.close = "{{", "}}"
        self.root: list[Node] = []
        self.sections: list[Section] = []
        self.pending: list[str] = []

    @property
    def into(self) -> list[Node]:
        return self.sections[-1].children if self.sections else self.root

    def at_line_start(self, offset: int) -> bool:
        return offset < len(self.text) and (offset == 0 or self.text[offset - 1] == "\n")

    def emit_text(self, start: int, end: int) -> None:
        """Keep ``text[start:end]``, marking where each of its lines begins."""
        offset = start
        while offset < end:
            newline = self.text.find("\n", offset, end)
            stop = end if newline < 0 else newline + 1
            if self.at_line_start(offset):
                self.into.append(LINE_START)
            self.into.append(Text(self.text[offset:stop]))
            offset = stop

    def emit_node(self, node: Node, offset: int) -> None:
        if self.at_line_start(offset):
            self.into.append(LINE_START)
        self.into.append(node)

    def parse(self) -> list[Node]:
        text = self.text
        pos = 0
        last_tag_end = 0
        while True:
            start = text.find(self.open, pos)
            if start < 0:
                self.emit_text(pos, len(text))
                break
            kind, name, end = self._read_tag(start)
            line_start = text.rfind("\n", 0, start) + 1
            newline = text.find("\n", end)
            line_end = len(text) if newline < 0 else newline + 1
            # A standalone tag is alone on its line but for blanks: the whole line goes.
            standalone = (
                kind != ""
                and kind in _STANDALONE_KINDS
                and last_tag_end <= line_start
                and not text[line_start:start].strip(" \t")
                and text[end:line_end].lstrip(" \t") in ("", "\n", "\r\n")
            )
            if standalone:
                self.emit_text(pos, line_start)
                pos = line_end
            else:
                self.emit_text(pos, start)
                pos = end
            last_tag_end = end
            self._tag(kind, name, start, text[line_start:start] if standalone else None)
        if self.sections:
            open_section = self.sections[-1]
            raise TemplateError(
                f'section "{open_section.name}" is never closed',
                open_section.line,
                open_section.col,
            )
        return self.root

    def _read_tag(self, start: int) -> tuple[str, str, int]:
        """The tag at ``start``: (kind, name, offset just after it)."""
        text = self.text
        inner = start + len(self.open)
        sigil = text[inner : inner + 1]
        kind = sigil if sigil and sigil in _SIGILS else ""
        if kind:
            inner += 1
        closing = {"{": "}" + self.close, "=": "=" + self.close}.get(kind, self.close)
        finish = text.find(closing, inner)
        if finish < 0:
            line, col = self.where(start)
            raise TemplateError(f'tag is never closed: expected "{closing}"', line, col)
        name = text[inner:finish].strip()
        if kind == "{":
            kind = "&"
        if not name and kind != "!":
            line, col = self.where(start)
            raise TemplateError("empty tag: a name is expected", line, col)
        return kind, name, finish + len(closing)

    def _tag(self, kind: str, name: str, start: int, indent: str | None) -> None:
        """Add the tag at ``start``; ``indent`` is its line's indentation if it is standalone."""
        line, col = self.where(start)
        if kind in ("", "&"):
            self.emit_node(Variable(name, kind == "", line, col), start)
        elif kind in ("#", "^"):
            if len(self.sections) >= MAX_DEPTH:
                raise TemplateError(f"sections nested more than {MAX_DEPTH} deep", line, col)
            section = Section(name, kind == "^", line, col)
            if indent is None:
                self.emit_node(section, start)
            else:
                self.into.append(section)
            self.sections.append(section)
        elif kind == "/":
            if not self.sections:
                raise TemplateError(f'closing tag "{name}" has no open section', line, col)
            open_section = self.sections.pop()
            if open_section.name != name:
                helper = open_section.name.split(" ", 1)[0]
                hint = (
                    f' (#{helper} is a Handlebars helper: set template_language = "handlebars")'
                    if helper in _HANDLEBARS_BLOCKS and open_section.name != helper
                    else ""
                )
                raise TemplateError(
                    f'section "{open_section.name}" (opened at {open_section.line}:'
                    f'{open_section.col}) is closed by "{name}"{hint}',
                    line,
                    col,
                )
        elif kind == ">":
            if indent is None:
                self.emit_node(Partial(name, False, "", line, col), start)
            else:
                self.into.append(Partial(name, True, indent, line, col))
        elif kind == "=":
            self._set_delimiters(name, line, col)
        # "!" is a comment: nothing to keep.

    def _set_delimiters(self, spec: str, line: int, col: int) -> None:
        parts = spec.split()
        if len(parts) != 2 or any("=" in part for part in parts):
            raise TemplateError(
                f'bad delimiter tag "{spec}": expected two delimiters without "=" or spaces, '
                "like {{=<% %>=}}",
                line,
                col,
            )
        self.open, self.close = parts
