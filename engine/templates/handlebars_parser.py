"""Handlebars template text -> a tree of nodes, each with its line and column (no I/O).

Reads what handlebars.js 4.7 reads (its lexer and grammar, src/handlebars.l and .yy) for
the part issue 19 needs: mustaches ``{{a.b}}``, ``{{{a}}}``, ``{{& a}}`` with helper
arguments (paths, ``@data``, ``../``, ``[literal]`` segments, strings, numbers, ``true``,
``false``, ``null``, ``undefined``, ``key=value``), blocks ``{{#x}}``/``{{^x}}`` with
``{{else}}``, ``{{^}}``, ``{{else if y}}`` chains and ``as |a b|``, raw blocks
``{{{{raw}}}}``, comments, ``\\{{`` escapes, and whitespace control: ``~`` and the
standalone-line rule, applied here exactly as lib/handlebars/compiler/whitespace-control.js
does, so the tree holds the final text; sub-expressions ``(lookup a b)`` as arguments. Not
yet: partials and decorators (each a TemplateError saying so). Helper names are not checked:
the compiler decides.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NoReturn

from engine.templates._handlebars_lexer import JS_SPACE, Positions, Token, id_run_end, tokens
from engine.templates.parser import MAX_DEPTH, MAX_TEMPLATE_CHARS, TemplateError

__all__ = [
    "UNDEFINED",
    "Block",
    "Callee",
    "Expr",
    "Literal",
    "Mustache",
    "Node",
    "PathExpr",
    "RawBlock",
    "SubExpr",
    "TemplateError",
    "Text",
    "Undefined",
    "parse_handlebars",
]


class Undefined:
    """JavaScript's ``undefined`` (the literal), distinct from ``null`` (None)."""

    _instance: Undefined | None = None

    def __new__(cls) -> Undefined:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNDEFINED"


UNDEFINED = Undefined()


@dataclass(frozen=True, slots=True)
class PathExpr:
    """``a.b``, ``../a``, ``this.a``, ``@index``, ``@root.a``, ``[odd key]``.

    ``parts`` are the names to follow (``this``, ``.`` and ``..`` removed), ``depth`` the
    number of ``..``, ``data`` whether it starts with ``@``; ``original`` is handlebars'
    spelling (separators kept, brackets removed), which close tags must repeat.
    """

    parts: tuple[str, ...]
    depth: int
    data: bool
    original: str
    line: int
    col: int

    @property
    def scoped(self) -> bool:
        """``this``/``.``-prefixed: never a helper call (handlebars' ``scopedId``)."""
        return self.original.startswith(".") or _has_this_word(self.original)


def _has_this_word(original: str) -> bool:
    """JavaScript's ``/this\\b/``: ``this`` not followed by a word character."""
    at = original.find("this")
    while at >= 0:
        after = original[at + 4 : at + 5]
        if not (after.isascii() and (after.isalnum() or after == "_")) or not after:
            return True
        at = original.find("this", at + 1)
    return False


LiteralValue = str | int | float | bool | None | Undefined


@dataclass(frozen=True, slots=True)
class Literal:
    """A string, number (int when whole, as JavaScript prints it), boolean, null, undefined."""

    value: LiteralValue
    line: int
    col: int


@dataclass(frozen=True, slots=True)
class SubExpr:
    """``(helper params key=value)``: an argument computed by a helper."""

    path: Callee
    params: tuple[Expr, ...]
    hash: Hash
    line: int
    col: int


Callee = PathExpr | Literal
"""What a tag or sub-expression names first: a helper, a path, or a literal read as a path."""

Expr = PathExpr | Literal | SubExpr
Hash = tuple[tuple[str, Expr], ...]


@dataclass(frozen=True, slots=True)
class Text:
    text: str


@dataclass(frozen=True, slots=True)
class Mustache:
    """``{{path params key=value}}``; ``escape`` is False for ``{{{…}}}`` and ``{{& …}}``."""

    path: Callee
    params: tuple[Expr, ...]
    hash: Hash
    escape: bool
    line: int
    col: int


@dataclass(frozen=True, slots=True)
class Block:
    """``{{#path …}}body{{else}}inverse{{/path}}``; ``{{else if y}}`` is an inverse holding
    one Block. ``inverted`` (``{{^path}}``): body and inverse are already swapped as
    handlebars does, and ``block_params`` then belong to the inverse."""

    path: Callee
    params: tuple[Expr, ...]
    hash: Hash
    block_params: tuple[str, ...]
    body: tuple[Node, ...]
    inverse: tuple[Node, ...]
    inverted: bool
    line: int
    col: int


@dataclass(frozen=True, slots=True)
class RawBlock:
    """``{{{{path …}}}}text{{{{/path}}}}``: the text is not parsed."""

    path: Callee
    params: tuple[Expr, ...]
    hash: Hash
    text: str
    line: int
    col: int


Node = Text | Mustache | Block | RawBlock

_CLOSERS = {"OPEN_UNESCAPED": "CLOSE_UNESCAPED", "OPEN_RAW_BLOCK": "CLOSE_RAW_BLOCK"}
_CLOSE_TEXT = {"CLOSE": '"}}"', "CLOSE_UNESCAPED": '"}}}"', "CLOSE_RAW_BLOCK": '"}}}}"'}
_PARAM_START = {"ID", "DATA", "STRING", "NUMBER", "BOOLEAN", "UNDEFINED", "NULL", "OPEN_SEXPR"}
_LITERALS = {"STRING", "NUMBER", "BOOLEAN", "UNDEFINED", "NULL"}
_PARTIALS = "partials ({{> name}}) are not supported in Handlebars templates yet"
_DECORATORS = "decorators ({{* …}}) are not supported in Handlebars templates"


def parse_handlebars(text: str) -> tuple[Node, ...]:
    """The tree of ``text``; raises TemplateError naming the line and column of a problem."""
    if len(text) > MAX_TEMPLATE_CHARS:
        raise TemplateError(
            f"template is {len(text)} characters; the limit is {MAX_TEMPLATE_CHARS}"
        )
    program = _Parser(text).parse()
    _visit_program(program, is_root=True)
    return _nodes(program)


# What the grammar builds before whitespace control, shaped as handlebars.js's AST is, so
# that its whitespace-control pass can be followed statement for statement.

Strip = tuple[bool, bool]
"""A tag's "~" flags: (right after its "{{", right before its "}}")."""

_NO_STRIP: Strip = (False, False)


@dataclass(slots=True, eq=False)
class _Content:
    original: str
    value: str
    left_stripped: bool = False
    right_stripped: bool = False


@dataclass(slots=True, eq=False)
class _Tag:
    """A mustache, or a comment (``node`` None): only their "~" flags matter here."""

    strip: Strip
    node: Mustache | None


@dataclass(frozen=True, slots=True)
class _Call:
    path: Callee
    params: tuple[Expr, ...]
    hash: Hash
    block_params: tuple[str, ...]
    line: int
    col: int


@dataclass(slots=True, eq=False)
class _Block:
    call: _Call
    program: _Program | None
    inverse: _Program | None
    inverted: bool
    open_strip: Strip
    inverse_strip: Strip
    close_strip: Strip | None
    raw: bool = False


_Statement = _Content | _Tag | _Block


@dataclass(slots=True, eq=False)
class _Program:
    body: list[_Statement]
    chained: bool = False


@dataclass(slots=True, eq=False)
class _Inverse:
    """What follows an ``{{else}}`` (``chain``: an ``{{else name …}}``, as one Block)."""

    strip: Strip
    program: _Program
    chain: bool


def _strip_flags(open_text: str, close_text: str) -> Strip:
    return open_text[2:3] == "~", close_text[-3:-2] == "~"


def _nodes(program: _Program | None) -> tuple[Node, ...]:
    """The final nodes: adjacent texts merged, comments and emptied texts gone."""
    out: list[Node] = []
    pending = ""
    for statement in program.body if program else ():
        if isinstance(statement, _Content):
            pending += statement.value
        elif isinstance(statement, _Tag) and statement.node is None:
            continue
        else:
            if pending:
                out.append(Text(pending))
                pending = ""
            out.append(_node(statement))
    if pending:
        out.append(Text(pending))
    return tuple(out)


def _node(statement: _Tag | _Block) -> Node:
    if isinstance(statement, _Tag):
        assert statement.node is not None
        return statement.node
    call = statement.call
    if statement.raw:
        assert statement.program is not None
        text = "".join(c.value for c in statement.program.body if isinstance(c, _Content))
        return RawBlock(call.path, call.params, call.hash, text, call.line, call.col)
    return Block(
        call.path,
        call.params,
        call.hash,
        call.block_params,
        _nodes(statement.program),
        _nodes(statement.inverse),
        statement.inverted,
        call.line,
        call.col,
    )


# Whitespace control: lib/handlebars/compiler/whitespace-control.js, step for step (its
# quirks included: they decide what handlebars.js renders).


@dataclass(slots=True)
class _Wants:
    open: bool = False
    close: bool = False
    inline_standalone: bool = False
    open_standalone: bool = False
    close_standalone: bool = False


def _visit_program(program: _Program, is_root: bool = False) -> None:
    body = program.body
    for i, current in enumerate(body):
        if isinstance(current, _Content):
            continue
        if isinstance(current, _Block):
            wants = _visit_block(current)
        else:
            wants = _Wants(*current.strip, inline_standalone=current.node is None)
        prev_space = _prev_is_space(body, i, is_root)
        next_space = _next_is_space(body, i, is_root)
        if wants.close:
            _omit_right(body, i, multiple=True)
        if wants.open:
            _omit_left(body, i, multiple=True)
        if wants.inline_standalone and prev_space and next_space:
            _omit_right(body, i)
            _omit_left(body, i)
        if isinstance(current, _Block) and wants.open_standalone and prev_space:
            _omit_right(_first_of(current.program, current.inverse).body, None)
            _omit_left(body, i)
        if isinstance(current, _Block) and wants.close_standalone and next_space:
            _omit_right(body, i)
            _omit_left(_first_of(current.inverse, current.program).body, None)


def _first_of(first: _Program | None, second: _Program | None) -> _Program:
    found = first or second
    assert found is not None
    return found


def _chained_program(program: _Program, index: int) -> _Program:
    block = program.body[index]
    assert isinstance(block, _Block) and block.program is not None
    return block.program


def _visit_block(block: _Block) -> _Wants:
    for part in (block.program, block.inverse):
        if part is not None:
            _visit_program(part)
    program = _first_of(block.program, block.inverse)
    inverse = block.inverse if block.program is not None else None
    first_inverse = last_inverse = inverse
    if inverse is not None and inverse.chained:
        first_inverse = _chained_program(inverse, 0)
        while last_inverse.chained:  # type: ignore[union-attr]
            last_inverse = _chained_program(last_inverse, -1)  # type: ignore[arg-type]
    close_strip = block.close_strip or _NO_STRIP
    wants = _Wants(
        open=block.open_strip[0],
        close=close_strip[1],
        open_standalone=_next_is_space(program.body, None),
        close_standalone=_prev_is_space((first_inverse or program).body, None),
    )
    if block.open_strip[1]:
        _omit_right(program.body, None, multiple=True)
    if first_inverse is not None and last_inverse is not None:
        if block.inverse_strip[0]:
            _omit_left(program.body, None, multiple=True)
        if block.inverse_strip[1]:
            _omit_right(first_inverse.body, None, multiple=True)
        if close_strip[0]:
            _omit_left(last_inverse.body, None, multiple=True)
        if _prev_is_space(program.body, None) and _next_is_space(first_inverse.body, None):
            _omit_left(program.body, None)
            _omit_right(first_inverse.body, None)
    elif close_strip[0]:
        _omit_left(program.body, None, multiple=True)
    return wants


def _prev_is_space(body: list[_Statement], i: int | None, is_root: bool = False) -> bool:
    """Whether the text before ``body[i]`` ends with blanks holding a newline."""
    i = len(body) if i is None else i
    if i < 1:
        return is_root
    prev = body[i - 1]
    if not isinstance(prev, _Content):
        return False
    trail = prev.original[len(prev.original.rstrip(JS_SPACE)) :]
    return "\n" in trail or (is_root and i < 2 and trail == prev.original)


def _next_is_space(body: list[_Statement], i: int | None, is_root: bool = False) -> bool:
    """Whether the text after ``body[i]`` starts with blanks holding a newline."""
    i = -1 if i is None else i
    if i + 1 >= len(body):
        return is_root
    after = body[i + 1]
    if not isinstance(after, _Content):
        return False
    lead = after.original[: len(after.original) - len(after.original.lstrip(JS_SPACE))]
    return "\n" in lead or (is_root and i + 2 >= len(body) and lead == after.original)


def _omit_right(body: list[_Statement], i: int | None, multiple: bool = False) -> None:
    """Strip the start of the text after ``body[i]``: all blanks, or those up to a newline."""
    index = 0 if i is None else i + 1
    current = body[index] if index < len(body) else None
    if not isinstance(current, _Content) or (not multiple and current.right_stripped):
        return
    before = current.value
    if multiple:
        current.value = before.lstrip(JS_SPACE)
    else:
        value = before.lstrip(" \t")
        value = value[1:] if value.startswith("\r") else value
        current.value = value[1:] if value.startswith("\n") else value
    current.right_stripped = current.value != before


def _omit_left(body: list[_Statement], i: int | None, multiple: bool = False) -> bool:
    """Strip the end of the text before ``body[i]``: all blanks, or spaces and tabs."""
    index = len(body) - 1 if i is None else i - 1
    current = body[index] if index >= 0 else None
    if not isinstance(current, _Content) or (not multiple and current.left_stripped):
        return False
    before = current.value
    current.value = before.rstrip(JS_SPACE if multiple else " \t")
    current.left_stripped = current.value != before
    return current.left_stripped


# The grammar: src/handlebars.yy, by recursive descent, with an error of our own (what,
# where, what was expected) wherever handlebars.js's parser would stop.

_UNBRACKETED = re.compile(r"\[[^\n\r\u2028\u2029]*\]")


def _id(raw: str) -> tuple[str, str]:
    """An ID token -> (its text, the name it stands for), as the lexer and yy.id make them."""
    text = re.sub(r"\\([\\\]])", r"\1", raw) if raw.startswith("[") else raw
    return text, text[1:-1] if _UNBRACKETED.fullmatch(text) else text


def _literal(token: Token) -> LiteralValue:
    kind, text = token.kind, token.text
    if kind == "STRING":
        return text[1:-1].replace("\\" + text[0], text[0])
    if kind == "NUMBER":
        number = float(text)
        return int(number) if number.is_integer() and abs(number) < 2**53 else number
    return {"BOOLEAN": text == "true", "NULL": None}.get(kind, UNDEFINED)


def _original(expr: Callee) -> object:
    """What close tags are compared by (JavaScript's ``===`` on ``path.original``)."""
    if isinstance(expr, PathExpr):
        return expr.original
    value = expr.value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return ("number", float(value))
    return (type(value), value)


def _display(expr: Callee) -> str:
    if isinstance(expr, PathExpr):
        return expr.original
    value = expr.value
    if value is None or isinstance(value, bool):
        return {True: "true", False: "false", None: "null"}[value]
    return str(value)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.where = Positions(text)
        self._tokens = tokens(text, self.where)
        self._ahead: list[Token] = []
        self.depth = 0

    def peek(self, n: int = 0) -> Token:
        while len(self._ahead) <= n:
            token = next(self._tokens, None)
            self._ahead.append(token if token else self._ahead[-1])
        return self._ahead[n]

    def take(self) -> Token:
        token = self.peek()
        del self._ahead[0]
        return token

    def fail(self, message: str, offset: int) -> NoReturn:
        raise TemplateError(message, *self.where(offset))

    def at(self, offset: int) -> str:
        line, col = self.where(offset)
        return f"{line}:{col}"

    def parse(self) -> _Program:
        program = self.program()
        token = self.peek()
        if token.kind in ("INVERSE", "OPEN_INVERSE_CHAIN"):
            self.fail("{{else}} is outside any block", token.start)
        if token.kind == "OPEN_ENDBLOCK":
            self.take()
            name = _display(self.callee(token, "the name of the block to close"))
            self.fail(f'closing tag "{name}" has no open block', token.start)
        return program

    def program(self) -> _Program:
        body: list[_Statement] = []
        while True:
            token = self.peek()
            kind = token.kind
            if kind == "CONTENT":
                body.append(_Content(self.take().text, token.text))
            elif kind == "COMMENT":
                body.append(_Tag(_strip_flags(token.text, self.take().text), None))
            elif kind in ("OPEN", "OPEN_UNESCAPED"):
                body.append(self.mustache())
            elif kind in ("OPEN_BLOCK", "OPEN_INVERSE"):
                body.append(self.block())
            elif kind == "OPEN_RAW_BLOCK":
                body.append(self.raw_block())
            elif kind in ("OPEN_PARTIAL", "OPEN_PARTIAL_BLOCK"):
                self.fail(_PARTIALS, token.start)
            else:
                return _Program(body)

    def mustache(self) -> _Tag:
        opening = self.peek()
        unescaped = opening.kind == "OPEN_UNESCAPED"
        call, closing = self.call("CLOSE_UNESCAPED" if unescaped else "CLOSE")
        flag = opening.text[3:4] or opening.text[2:3]
        node = Mustache(
            call.path, call.params, call.hash, flag not in ("{", "&"), call.line, call.col
        )
        return _Tag(_strip_flags(opening.text, closing.text), node)

    def block(self) -> _Block:
        opening = self.peek()
        call, closing = self.call("CLOSE", block_params=True)
        self.enter(opening)
        inverted = opening.kind == "OPEN_INVERSE"
        program = self.program()
        token = self.peek()
        inverse = None
        if token.kind == "INVERSE":
            self.take()
            inverse = _Inverse(_strip_flags(token.text, token.text), self.program(), False)
        elif token.kind == "OPEN_INVERSE_CHAIN" and inverted:
            self.fail(
                f'"{token.text}…}}}}" cannot follow "{{{{^{_display(call.path)}}}}}" (opened at '
                f"{self.at(opening.start)}): an inverted block takes only a plain {{{{else}}}}",
                token.start,
            )
        elif token.kind == "OPEN_INVERSE_CHAIN":
            inverse = self.chain()
        close_strip = self.close(opening, call)
        self.depth -= 1
        open_strip = _strip_flags(opening.text, closing.text)
        return self.prepare(call, open_strip, program, inverse, close_strip, inverted)

    def chain(self) -> _Inverse:
        """``{{else name …}}`` and what follows it, up to the enclosing block's close tag."""
        opening = self.peek()
        call, closing = self.call("CLOSE", block_params=True)
        self.enter(opening)
        strip = _strip_flags(opening.text, closing.text)
        program = self.program()
        token = self.peek()
        nested = None
        if token.kind == "INVERSE":
            self.take()
            nested = _Inverse(_strip_flags(token.text, token.text), self.program(), False)
        elif token.kind == "OPEN_INVERSE_CHAIN":
            nested = self.chain()
        block = self.prepare(call, strip, program, nested, nested.strip if nested else None)
        self.depth -= 1
        return _Inverse(strip, _Program([block], chained=True), True)

    @staticmethod
    def prepare(
        call: _Call,
        open_strip: Strip,
        program: _Program,
        inverse: _Inverse | None,
        close_strip: Strip | None,
        inverted: bool = False,
    ) -> _Block:
        """handlebars.js's prepareBlock, which also decides the "~" flags chained blocks see."""
        if inverse is not None and inverse.chain:
            chained = inverse.program.body[0]
            assert isinstance(chained, _Block)
            chained.close_strip = close_strip
        main: _Program | None = program
        other = inverse.program if inverse else None
        if inverted:
            main, other = other, main
        inverse_strip = inverse.strip if inverse else _NO_STRIP
        return _Block(call, main, other, inverted, open_strip, inverse_strip, close_strip)

    def close(self, opening: Token, call: _Call) -> Strip:
        token = self.peek()
        name = _display(call.path)
        if token.kind == "EOF":
            self.fail(f'block "{name}" is never closed: expected "{{{{/{name}}}}}"', opening.start)
        if token.kind != "OPEN_ENDBLOCK":
            self.fail(
                f'block "{name}" (opened at {self.at(opening.start)}) already has an '
                f'{{{{else}}}}: expected "{{{{/{name}}}}}"',
                token.start,
            )
        self.take()
        path = self.callee(token, "the name of the block to close")
        end = self.take()
        if end.kind != "CLOSE":
            self.unexpected(end, token, '"}}" (a closing tag holds only the name)')
        if _original(path) != _original(call.path):
            self.fail(
                f'block "{name}" (opened at {self.at(opening.start)}) is closed by '
                f'"{_display(path)}"',
                token.start,
            )
        return _strip_flags(token.text, end.text)

    def raw_block(self) -> _Block:
        opening = self.peek()
        call, _ = self.call("CLOSE_RAW_BLOCK")
        name = _display(call.path)
        body: list[_Statement] = []
        while (token := self.take()).kind == "CONTENT":
            body.append(_Content(token.text, token.text))
        if token.kind == "RAW_UNCLOSED":
            self.fail(
                f'raw block "{name}" is never closed: expected "{{{{{{{{/{name}}}}}}}}}"',
                opening.start,
            )
        closed_by = token.text[5:-4]
        path = call.path
        if not (isinstance(path, PathExpr) or type(path.value) is str):
            self.fail(
                f"raw block {name} (opened at {self.at(opening.start)}) can never be closed: "
                "its name is a literal, and a close tag holds a name",
                token.start,
            )
        if name != closed_by:
            self.fail(
                f'raw block "{name}" (opened at {self.at(opening.start)}) is closed by '
                f'"{closed_by}"',
                token.start,
            )
        program = _Program(body)
        return _Block(call, program, None, False, _NO_STRIP, _NO_STRIP, _NO_STRIP, raw=True)

    def enter(self, opening: Token) -> None:
        if self.depth >= MAX_DEPTH:
            self.fail(f"blocks nested more than {MAX_DEPTH} deep", opening.start)
        self.depth += 1

    def call(self, closer: str, block_params: bool = False) -> tuple[_Call, Token]:
        """A tag's ``name params key=value as |names|`` and its closing token."""
        opening = self.take()
        if "*" in opening.text:
            self.fail(_DECORATORS, opening.start)
        path = self.callee(opening, "a helper name, a path or a literal")
        params, pairs = self.arguments(opening)
        names: tuple[str, ...] = ()
        if (token := self.peek()).kind == "OPEN_BLOCK_PARAMS":
            if not block_params:
                self.fail('block parameters ("as |x|") belong on a {{#block}} tag', token.start)
            names = self.block_params(opening)
        end = self.take()
        if end.kind != closer:
            self.unexpected(end, opening, "an argument, key=value or " + _CLOSE_TEXT[closer])
        line, col = self.where(opening.start)
        return _Call(path, params, pairs, names, line, col), end

    def arguments(self, opening: Token) -> tuple[tuple[Expr, ...], Hash]:
        """``params key=value``: positional arguments first, then the hash."""
        params: list[Expr] = []
        pairs: list[tuple[str, Expr]] = []
        while (token := self.peek()).kind in _PARAM_START:
            if token.kind == "ID" and self.peek(1).kind == "EQUALS":
                self.take(), self.take()
                key = _id(token.text)[1]
                pairs.append((key, self.value(opening, f'a value after "{key}="')))
            elif pairs:
                self.fail(
                    "an argument after key=value arguments: positional ones come first",
                    token.start,
                )
            else:
                params.append(self.value(opening, "an argument"))
        return tuple(params), tuple(pairs)

    def sub_expression(self, opening: Token, start: int) -> SubExpr:
        """``(helper params key=value)``, its "(" already taken."""
        path = self.callee(opening, 'a helper name after "("')
        params, pairs = self.arguments(opening)
        end = self.take()
        if end.kind != "CLOSE_SEXPR":
            self.unexpected(end, opening, 'an argument, key=value or ")"')
        return SubExpr(path, params, pairs, *self.where(start))

    def block_params(self, opening: Token) -> tuple[str, ...]:
        self.take()
        names: list[str] = []
        while (token := self.take()).kind == "ID":
            if token.text.startswith("["):
                self.fail(f"a block parameter must be a plain name, not {token.text}", token.start)
            names.append(token.text)
        if token.kind != "CLOSE_BLOCK_PARAMS" or not names:
            self.unexpected(token, opening, 'another name or "|"' if names else "a name")
        return tuple(names)

    def callee(self, opening: Token, expected: str) -> Callee:
        value = self.value(opening, expected, argument=False)
        assert not isinstance(value, SubExpr)
        return value

    def value(self, opening: Token, expected: str, *, argument: bool = True) -> Expr:
        token = self.take()
        if token.kind == "OPEN_SEXPR" and argument:
            if self.depth >= MAX_DEPTH:
                self.fail(f"sub-expressions nested more than {MAX_DEPTH} deep", token.start)
            self.depth += 1
            try:
                return self.sub_expression(opening, token.start)
            finally:
                self.depth -= 1
        if token.kind in _LITERALS:
            return Literal(_literal(token), *self.where(token.start))
        if token.kind == "DATA":
            first = self.take()
            if first.kind != "ID":
                self.unexpected(first, opening, 'a name after "@"')
            return self.path(opening, first, token.start)
        if token.kind == "ID":
            return self.path(opening, token, token.start)
        self.unexpected(token, opening, expected)

    def path(self, opening: Token, first: Token, start: int) -> PathExpr:
        data = start != first.start
        original = "@" if data else ""
        parts: list[str] = []
        depth = 0
        separator = ""
        token = first
        while True:
            text, part = _id(token.text)
            original += separator + part
            if text == part and part in ("..", ".", "this"):
                if parts:
                    self.fail(f'invalid path "{original}": "{part}" may only begin a path', start)
                depth += part == ".."
            else:
                parts.append(part)
            if self.peek().kind != "SEP":
                break
            separator = self.take().text
            token = self.take()
            if token.kind != "ID":
                hint = f" (write {original}{separator}[{token.text}])" if token.text else ""
                self.unexpected(token, opening, f'a name after "{original}{separator}"{hint}')
        return PathExpr(tuple(parts), depth, data, original, *self.where(start))

    def unexpected(self, token: Token, opening: Token, expected: str) -> NoReturn:
        closer = _CLOSE_TEXT[_CLOSERS.get(opening.kind, "CLOSE")]
        text, at = self.text, token.start
        if token.text == "!" and opening.end == at and opening.text.endswith(("{{", "~")):
            self.fail('comment is never closed: expected "}}"', opening.start)
        if token.kind == "EOF" or (token.kind == "INVALID" and text.find("}}", at) < 0):
            self.fail(f"tag is never closed: expected {closer}", opening.start)
        if token.text.startswith("{{"):
            self.fail(
                f"tag is never closed: expected {closer} before the {{{{ at {self.at(at)}",
                opening.start,
            )
        if token.kind == "OPEN_SEXPR":
            self.fail(f'unexpected "(": expected {expected} (a sub-expression is an argument)', at)
        if token.kind in _CLOSE_TEXT and expected.endswith(closer):
            self.fail(f'"{opening.text}" is closed by "{token.text}": expected {closer}', at)
        if token.kind == "INVALID" and token.text in "\"'":
            self.fail(f"string is never closed: expected a closing {token.text}", at)
        if token.kind == "INVALID" and token.text == "[":
            self.fail('literal segment is never closed: expected "]"', at)
        if token.kind == "INVALID" and token.text == "~":
            self.fail('"~" may only follow "{{" or come right before "}}"', at)
        stop = id_run_end(text, at) if token.kind == "INVALID" else at
        if stop > at:
            self.fail(
                f'unexpected "{text[stop]}" after "{text[at:stop]}": expected a space, '
                f'".", "/", "=" or {closer}',
                stop,
            )
        self.fail(f'unexpected "{token.text}": expected {expected}', at)
