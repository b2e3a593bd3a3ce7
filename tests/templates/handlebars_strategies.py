"""Generated Handlebars templates and contexts, for comparing our engine with handlebars.js
(issue 19): a small grammar of the built-in constructs, written once and driven either by
hypothesis (``templates()``, ``contexts()``, ``cases()``) or by a seeded ``random.Random``
(``random_cases``), which makes a batch of hundreds in milliseconds for one node run.

The grammar (``Grammar.template``), with nesting up to ``MAX_DEPTH`` blocks::

    template  := element{1,5}
    body      := element{0,4}
    element   := text | mustache | block | comment | raw
    mustache  := {{~? path ~?}} | {{~?{ path }~?}} | {{~?& path ~?}}
               | {{lookup arg key}} | {{log arg [level="..."]}}
    block     := {{#if arg [includeZero=true]}} body ({{else if|unless arg}} body)* [else body]
                 {{/if}}
               | the same with unless
               | {{#each arg [as |item i|]}} body [else body] {{/each}}
               | {{#with arg [as |w|]}} body [else body] {{/with}}
               | {{#path}} body [else body] {{/path}} | {{^path}} body {{/path}}
    else      := {{else}} | {{^}}
    comment   := {{! text }} | {{!-- text --}}
    raw       := {{{{name}}}} text with {{mustaches}} {{{{/name}}}}
    arg       := path | literal | (lookup path key)
    path      := name(.name)* | this | . | this.name | ./name | ../name | ../../name | @root(.name)?
               | @index | @key | @first | @last | @../index | item(.name)? | i | w | name.[0]
    literal   := 0 | 1 | -1 | "" | "x" | true | false | null | undefined

where every tag may carry ``~`` on either side, and text mixes letters, spaces, newlines
(``\\n`` and ``\\r\\n``, so standalone lines occur), ``<>&"'=`` and backquotes, unicode, and
single braces and backslashes where they cannot open or close a tag. Names are few (``a``,
``b``, ``c``, ``length``...) and contexts are built of the same keys, so paths mostly resolve.

Only valid Handlebars comes out: a helper always has its one argument, raw blocks are named
by context paths (not helpers, which would get no argument), text never forms ``{{``, ``}}}``
or ``\\{{`` with its neighbours, and a comment never holds its own end.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from hypothesis import strategies as st

T = TypeVar("T")

MAX_DEPTH = 3
"""Blocks nest this deep at most: deep enough for ``../../`` and ``@../index`` to matter."""

MAX_ELEMENTS = 4
"""Elements in one body: with MAX_DEPTH, templates stay under a few hundred characters."""

NAMES = ("a", "b", "c", "items", "a", "b", "items", "length", "constructor")
"""Path segments (repeats make them likelier): the context's keys, plus an array's own
``length`` and a prototype property handlebars.js refuses to read."""

KEYS = ("a", "b", "c", "items", "0", "1", "10", "")
"""Context keys: the names paths use, and integer-like ones that JavaScript enumerates first
(``{{#each}}`` over an object follows that order, not the JSON's)."""

STRINGS = (
    "",
    " ",
    "x",
    "0",
    "false",
    "<b>&amp;</b>",
    "\"'=`",
    "<>&\"'=`",
    "a\nb",
    "é ñ 中文",
    "😀",
    "\u2028\u0085",
    "[object Object]",
    "{{a}}",
)
"""String values: every character handlebars.js escapes, and text that looks like markup."""

NUMBERS: tuple[int | float, ...] = (0, 1, -1, 42, 1.5, 0.1, -0.0, 1e21, 2**53 + 1)
"""Numbers whose JavaScript rendering differs from Python's: 1e+21, -0 as 0, 2**53+1 rounded."""

TEXT_PIECES = (
    "a",
    "Hi",
    " ",
    "  ",
    "\n",
    "\r\n",
    "\t",
    "<",
    ">",
    "&",
    '"',
    "'",
    "=",
    "`",
    "é",
    "😀",
    "{",
    "}",
    "\\",
    "--",
    "!",
)
"""What literal text is made of; braces and backslashes are cleaned where they touch a tag."""

LITERALS = ("0", "1", "-1", '""', '"x"', "true", "false", "null", "undefined")
LOG_LEVELS = ("debug", "info", "warn", "error")


class Source(Protocol):
    """Where the grammar's choices come from: hypothesis' draws or a seeded Random."""

    def choice(self, options: Sequence[T]) -> T: ...

    def integer(self, low: int, high: int) -> int: ...

    def chance(self, percent: int) -> bool: ...


class RandomSource:
    """Choices from a ``random.Random``: fast, and the same for the same seed."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def choice(self, options: Sequence[T]) -> T:
        return self._rng.choice(options)

    def integer(self, low: int, high: int) -> int:
        return self._rng.randint(low, high)

    def chance(self, percent: int) -> bool:
        return self._rng.randrange(100) < percent


class DrawSource:
    """Choices drawn by hypothesis, so a failing case shrinks."""

    def __init__(self, draw: Callable[[st.SearchStrategy[Any]], Any]) -> None:
        self._draw = draw

    def choice(self, options: Sequence[T]) -> T:
        result: T = self._draw(st.sampled_from(options))
        return result

    def integer(self, low: int, high: int) -> int:
        result: int = self._draw(st.integers(low, high))
        return result

    def chance(self, percent: int) -> bool:
        # Shrinks towards "no": the simpler template leaves the optional part out.
        return bool(self._draw(st.integers(0, 99)) >= 100 - percent)


class _Scope:
    """What a position in the template can refer to."""

    def __init__(self, depth: int = 0, each_depth: int = 0, params: tuple[str, ...] = ()) -> None:
        self.depth = depth
        self.each_depth = each_depth
        self.params = params

    def inside(self, *, each: bool = False, params: tuple[str, ...] = ()) -> _Scope:
        return _Scope(self.depth + 1, self.each_depth + each, self.params + params)


class Grammar:
    """The template and context grammar over one source of choices."""

    def __init__(self, source: Source) -> None:
        self.s = source

    # -- templates --------------------------------------------------------------------------

    def template(self) -> str:
        parts = [self._element(_Scope()) for _ in range(self.s.integer(1, MAX_ELEMENTS + 1))]
        return _join_text(parts)

    def _body(self, scope: _Scope) -> str:
        parts = [self._element(scope) for _ in range(self.s.integer(0, MAX_ELEMENTS))]
        return _join_text(parts)

    def _element(self, scope: _Scope) -> str:
        kinds = ["text", "text", "mustache", "mustache", "mustache", "comment", "raw"]
        if scope.depth < MAX_DEPTH:
            kinds += ["block", "block", "block"]
        kind = self.s.choice(kinds)
        if kind == "text":
            return self._text()
        if kind == "mustache":
            return self._mustache(scope)
        if kind == "comment":
            return self._comment()
        if kind == "raw":
            return self._raw()
        return self._block(scope)

    def _tag(self, inner: str) -> str:
        """``{{inner}}`` with whitespace control on either side, or none."""
        left = "~" if self.s.chance(20) else ""
        right = "~" if self.s.chance(20) else ""
        return "{{" + left + inner + right + "}}"

    def _text(self) -> str:
        text = "".join(self.s.choice(TEXT_PIECES) for _ in range(self.s.integer(1, 6)))
        while "{{" in text:
            text = text.replace("{{", "{")
        return text

    def _mustache(self, scope: _Scope) -> str:
        form = self.s.choice(("path", "path", "path", "triple", "amp", "lookup", "log"))
        if form == "triple":
            return self._tag("{" + self._path(scope) + "}")
        if form == "amp":
            return self._tag("&" + self._path(scope))
        if form == "lookup":
            return self._tag(f"lookup {self._arg(scope)} {self._key(scope)}")
        if form == "log":
            level = f' level="{self.s.choice(LOG_LEVELS)}"' if self.s.chance(30) else ""
            return self._tag(f"log {self._arg(scope)}{level}")
        return self._tag(self._path(scope))

    def _key(self, scope: _Scope) -> str:
        """The second argument of ``lookup``: a name, an index or a path."""
        return self.s.choice(('"a"', '"b"', '"1"', '"length"', "0", "1", self._path(scope)))

    def _path(self, scope: _Scope) -> str:
        kinds = ["name", "name", "name", "dotted", "this", "root", "index"]
        if scope.depth > 0:
            kinds += ["parent", "parent"]
        if scope.each_depth > 0:
            kinds += ["data", "data", "data"]
        if scope.params:
            kinds += ["param", "param"]
        kind = self.s.choice(kinds)
        name = self.s.choice(NAMES)
        if kind == "dotted":
            return f"{name}.{self.s.choice(NAMES)}"
        if kind == "this":
            return self.s.choice(("this", ".", f"this.{name}", f"./{name}"))
        if kind == "root":
            return self.s.choice(("@root", f"@root.{name}"))
        if kind == "index":
            return f"{name}.[{self.s.choice(('0', '1'))}]"
        if kind == "parent":
            return "../" * self.s.integer(1, min(scope.depth, 2)) + name
        if kind == "data":
            data = ["@index", "@key", "@first", "@last"]
            if scope.each_depth > 1:
                data += ["@../index", "@../index"]
            return self.s.choice(data)
        if kind == "param":
            param = self.s.choice(scope.params)
            return f"{param}.{name}" if self.s.chance(30) else param
        return name

    def _arg(self, scope: _Scope) -> str:
        kind = self.s.choice(("path", "path", "path", "literal", "lookup"))
        if kind == "literal":
            return self.s.choice(LITERALS)
        if kind == "lookup":
            return f"(lookup {self._path(scope)} {self._key(scope)})"
        return self._path(scope)

    def _else(self) -> str:
        return self._tag(self.s.choice(("else", "else", "^")))

    def _block(self, scope: _Scope) -> str:
        helper = self.s.choice(("if", "unless", "each", "each", "with", "section", "inverted"))
        if helper in ("if", "unless"):
            zero = " includeZero=true" if self.s.chance(20) else ""
            parts = [self._tag(f"#{helper} {self._arg(scope)}{zero}")]
            parts.append(self._body(scope.inside()))
            for _ in range(self.s.integer(0, 2) if self.s.chance(30) else 0):
                chained = self.s.choice(("if", "unless"))
                parts.append(self._tag(f"else {chained} {self._arg(scope)}"))
                parts.append(self._body(scope.inside()))
            if self.s.chance(40):
                parts += [self._else(), self._body(scope.inside())]
            parts.append(self._tag(f"/{helper}"))
            return _join_text(parts)
        if helper in ("each", "with"):
            params: tuple[str, ...] = ()
            if self.s.chance(30):
                params = ("item", "i") if helper == "each" else ("w",)
            as_params = f" as |{' '.join(params)}|" if params else ""
            parts = [self._tag(f"#{helper} {self._arg(scope)}{as_params}")]
            parts.append(self._body(scope.inside(each=helper == "each", params=params)))
            if self.s.chance(40):
                parts += [self._else(), self._body(scope.inside())]
            parts.append(self._tag(f"/{helper}"))
            return _join_text(parts)
        name = self.s.choice((*NAMES[:4], f"{self.s.choice(NAMES[:4])}.{self.s.choice(NAMES)}"))
        if helper == "inverted":
            body = self._body(scope.inside())
            return _join_text([self._tag(f"^{name}"), body, self._tag(f"/{name}")])
        parts = [self._tag(f"#{name}"), self._body(scope.inside())]
        if self.s.chance(30):
            parts += [self._else(), self._body(scope.inside())]
        parts.append(self._tag(f"/{name}"))
        return _join_text(parts)

    def _comment(self) -> str:
        text = self._text().replace("{", "(").replace("}", ")")
        left = "~" if self.s.chance(20) else ""
        right = "~" if self.s.chance(20) else ""
        if self.s.chance(50):
            return "{{" + left + "!--" + text.replace("--", "- -") + "--" + right + "}}"
        # A short comment's text must not start with "--", which would open a long one.
        return "{{" + left + "! " + text + right + "}}"

    def _raw(self) -> str:
        # Named by a context path: with no raw helper, the block renders as a section of it
        # (once for true or an object, once per item of an array, not at all when falsy).
        name = self.s.choice(NAMES[:4])
        pieces = [self._text() for _ in range(self.s.integer(0, 2))]
        if self.s.chance(60):
            pieces.insert(self.s.integer(0, len(pieces)), "{{" + self.s.choice(NAMES) + "}}")
        if self.s.chance(30):
            pieces.append("{{#if a}}{{/if}}")
        content = _join_text(pieces)
        return "{{{{" + name + "}}}}" + content + "{{{{/" + name + "}}}}"

    # -- contexts ---------------------------------------------------------------------------

    def context(self) -> object:
        if self.s.chance(90):
            return self._object(0, every_name=True)
        return self._value(1)

    def _object(self, depth: int, *, every_name: bool = False) -> dict[str, object]:
        keys = [key for key in KEYS if self.s.chance(80 if every_name else 30)]
        return {key: self._value(depth + 1) for key in keys}

    def _value(self, depth: int) -> object:
        kinds = ["null", "bool", "number", "string", "string"]
        if depth < 3:
            kinds += ["list", "list", "object", "object"]
        kind = self.s.choice(kinds)
        if kind == "null":
            return None
        if kind == "bool":
            return self.s.chance(50)
        if kind == "number":
            return self.s.choice(NUMBERS)
        if kind == "string":
            return self.s.choice(STRINGS)
        if kind == "list":
            return [self._value(depth + 1) for _ in range(self.s.integer(0, 3))]
        return self._object(depth)


def _join_text(parts: Sequence[str]) -> str:
    """Concatenate template parts so that text next to a tag or other text cannot change it:
    no ``{{`` formed where two parts meet, no ``}`` after a tag's ``}}`` (it would read as
    ``}}}``), no ``{`` or ``\\`` before a tag's ``{{`` (``{{{``, or an escaped mustache)."""
    out = ""
    for part in parts:
        if part.startswith("{{"):
            out = out.rstrip("{\\")
        else:
            if out.endswith("{"):
                part = part.lstrip("{")
            if out.endswith("}}"):
                part = part.lstrip("}")
        out += part
    # A part ends where a tag may follow (a raw block's close, the next element).
    return out.rstrip("{\\")


def random_cases(count: int, seed: int) -> list[tuple[str, object]]:
    """``count`` (template, context) pairs from a seeded generator: the same list each run."""
    grammar = Grammar(RandomSource(random.Random(seed)))
    return [(grammar.template(), grammar.context()) for _ in range(count)]


@st.composite
def templates(draw: st.DrawFn) -> str:
    """A template of the grammar above."""
    return Grammar(DrawSource(draw)).template()


@st.composite
def contexts(draw: st.DrawFn) -> object:
    """A JSON context of odd values, keyed by the names templates use."""
    return Grammar(DrawSource(draw)).context()


def cases() -> st.SearchStrategy[tuple[str, object]]:
    """A (template, context) pair."""
    return st.tuples(templates(), contexts())
