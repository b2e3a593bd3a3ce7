"""Handlebars tree -> one Python function, generated as source and compiled once.

Only handlebars.js's built-in helpers exist (``if``, ``unless``, ``each``, ``with``,
``lookup``, ``log``), so every block's meaning is known when the template is compiled: a
block becomes Python statements (an ``if``, a ``for``) inside the render function, with
its context, ``../`` levels, ``@data`` frame and block parameters in local variables, and a
run of text and mustaches one f-string. Blocks nested deeper than ``MAX_INLINE_LEVELS``
become functions of their own (Python limits how deeply blocks may nest).

What a helper does is handlebars.js 4.7's, step for step, down to its quirks (see
``handlebars_values`` and the runtime functions below); anything else named as a helper
is a TemplateError at compile time, with its line and column.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from itertools import count
from typing import Any

from engine.templates.compiler import TemplateRenderError, _fstring_literal
from engine.templates.handlebars_parser import (
    UNDEFINED,
    Block,
    Callee,
    Expr,
    Hash,
    Literal,
    Mustache,
    Node,
    PathExpr,
    RawBlock,
    SubExpr,
    Text,
    parse_handlebars,
)
from engine.templates.handlebars_values import (
    NULL_CONTEXT,
    escape,
    get_property,
    is_empty,
    js_string,
    object_keys,
    property_key,
    same_context,
    to_text,
    truthy,
)
from engine.templates.parser import TemplateError
from engine.templates.values import js_number

LOG = logging.getLogger("hookwire.templates")

Renderer = Callable[[Any], str]

BLOCK_HELPERS = ("if", "unless", "each", "with")
VALUE_HELPERS = ("lookup", "log")
BUILT_IN = "the built-in helpers are if, unless, each, with, lookup and log"
INTERNAL_HELPERS = ("helperMissing", "blockHelperMissing")
"""handlebars.js's hooks for a missing helper: its helpers, but not for templates."""
HELPER_NAMES = frozenset((*BLOCK_HELPERS, *VALUE_HELPERS, *INTERNAL_HELPERS))

MAX_INLINE_LEVELS = 8
"""Blocks nested this deep are statements of one function; deeper ones are functions of
their own (CPython refuses more than 20 statically nested blocks)."""

_TOP_FRAME = (None, None, None, None, None)
"""The template's own ``@data``: no parent, key, index, first or last (``@root`` is kept
apart, in ``r``)."""

# A frame is (parent, key, index, first, last); a data path's first name -> its place.
_FRAME_FIELDS = {"key": 1, "index": 2, "first": 3, "last": 4}


# -- what generated code calls -------------------------------------------------------------


def _out(value: object) -> str:
    """``{{value}}``: its text, escaped (a number's never needs it)."""
    kind = type(value)
    if kind is int and -(2**53) <= value <= 2**53:  # type: ignore[operator]
        return str(value)
    if kind is float:
        return js_number(value)  # type: ignore[arg-type]
    return escape(to_text(value))


def _prop(parent: object, name: str) -> Any:
    return None if parent is None else get_property(parent, name)


def _walk(value: Any, names: tuple[str, ...]) -> Any:
    """Follow ``a.b.c``'s later names: a null or undefined step stays as it is."""
    for name in names:
        if value is None:
            return None
        value = get_property(value, name)
    return value


def resolve_path(context: Any, name: str) -> Any:
    """The value ``{{{a.b}}}`` shows, before it becomes text (for typed JSON values)."""
    return _walk(context, tuple(name.split(".")))


def _data(frame: Any, depth: int, names: tuple[str, ...], root: Any) -> Any:
    """``@name.rest`` (``@../name`` with ``depth``): handlebars.js reads data paths with
    ``&&``, so a falsy step (0, "", false) is the result, not undefined."""
    for _ in range(depth):
        if frame is None:
            return None
        frame = frame[0]
    if frame is None:
        return None
    first, *rest = names
    if first == "root":
        value = root
    elif first == "_parent":
        value = NULL_CONTEXT if frame[0] is not None else None
    elif first in _FRAME_FIELDS:
        value = frame[_FRAME_FIELDS[first]]
    else:
        return None
    for name in rest:
        if not truthy(value):
            return value
        value = get_property(value, name)
    return value


def _getter(context: Any) -> Callable[[str], Any]:
    """How names are looked up on ``context``: ``dict.get`` for the usual dict."""
    if type(context) is dict:
        return context.get
    return partial(_prop, context)


def _depth(depths: tuple[Any, ...], depth: int) -> Any:
    return depths[depth] if depth < len(depths) else None


def _push(context: Any, depths: tuple[Any, ...]) -> tuple[Any, ...]:
    """The ``../`` levels inside a block whose context is ``context``."""
    return depths if same_context(context, depths[0]) else (context, *depths)


def _cond(value: object) -> bool:
    """``{{#if value}}``: truthy and not an empty array."""
    if value is True:
        return True
    if value is None or value is False:
        return False
    kind = type(value)
    if kind is str or kind is list or kind is int:
        return bool(value)
    return truthy(value) and not is_empty(value)


def _cond_zero(value: object) -> bool:
    """``{{#if value includeZero=true}}``: not empty (0 counts)."""
    return not is_empty(value)


def _lookup(obj: object, field: object) -> Any:
    if not truthy(obj):
        return obj
    return get_property(obj, property_key(field))


def _log(level: object, *values: object) -> None:
    """``{{log …}}``: to the engine's debug log, whatever ``level=`` says."""
    if LOG.isEnabledFor(logging.DEBUG):
        shown = " ".join(js_string(value) for value in values)
        LOG.debug("template log (level %s): %s", js_string(level), shown)


def _each_seq(value: Any) -> tuple[Sequence[Any], list[str] | None]:
    """What ``{{#each value}}`` goes over, when ``value`` is not a list: an object's values
    and keys (in JavaScript's order), a tuple's items, nothing for anything else."""
    if isinstance(value, tuple):
        return value, None
    if not isinstance(value, Mapping):
        return (), None
    keys = object_keys(value)
    return [value[key] for key in keys], keys


def _section_seq(value: Any, context: Any) -> tuple[Sequence[Any], bool]:
    """``{{#name}}`` where name is no helper (handlebars.js's blockHelperMissing): the
    contexts its body renders in, and whether they are an array's items (with @data and
    block parameters): the same context for true, each item of a non-empty array, the
    value for anything else; none (the inverse) for false, null and []."""
    if value is True:
        return (context,), False
    if value is None or value is False:
        return (), False
    if isinstance(value, list | tuple):
        return value, True
    return (value,), False


class _NotGiven:
    """A block parameter of a section that is not over an array."""


_NOT_GIVEN = _NotGiven()


def _given(value: Any) -> Any:
    if value is _NOT_GIVEN:
        raise TemplateRenderError(
            "a block parameter of a section has a value only when the section's value is an "
            "array (handlebars.js fails the same way)"
        )
    return value


def _line_break() -> None:
    raise TemplateRenderError(
        "a value contains a line break, which is not allowed here (header injection)"
    )


def _not_null(context: Any) -> Any:
    """A helper's ``this``: the context, or nullContext for null."""
    return NULL_CONTEXT if context is None else context


RUNTIME: dict[str, Any] = {
    "_out": _out,
    "_txt": to_text,
    "_prop": _prop,
    "_walk": _walk,
    "_data": _data,
    "_depth": _depth,
    "_push": _push,
    "_cond": _cond,
    "_cond_zero": _cond_zero,
    "_truthy": truthy,
    "_empty": is_empty,
    "_lookup": _lookup,
    "_log": _log,
    "_each_seq": _each_seq,
    "_section_seq": _section_seq,
    "_NOT_GIVEN": _NOT_GIVEN,
    "_nz": _not_null,
    "_getter": _getter,
    "_given": _given,
    "_TOP": _TOP_FRAME,
    "_js": js_number,
    "_MIN_SAFE": -(2**53),
    "_MAX_SAFE": 2**53,
    "_e": "e",
    "_n": "n",
    "_dot0": ".0",
    "_cr": "\r",
    "_lf": "\n",
    "_line_break": _line_break,
}


# -- the generator ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Scope:
    """Where statements are written: the variables of the context, the ``../`` levels
    (None when the template has no ``../``), the frame (None when it reads no ``@data``),
    each block parameter's, and how deep the Python blocks are."""

    c: str
    d: str | None
    f: str | None
    params: Mapping[str, str]
    level: int
    indent: str
    fields: Mapping[str, str] | None = None  # @index... of an #each's frame, as expressions


@dataclass(frozen=True, slots=True)
class _Uses:
    depths: bool
    data: bool


def _uses(nodes: tuple[Node, ...]) -> _Uses:
    """Whether any path of the template has ``../`` or ``@``."""
    depths = data = False

    def visit_expr(expr: Expr | Callee) -> None:
        nonlocal depths, data
        if isinstance(expr, PathExpr):
            depths |= expr.depth > 0 and not expr.data
            data |= expr.data
        elif isinstance(expr, SubExpr):
            visit_call(expr.path, expr.params, expr.hash)

    def visit_call(path: Callee, params: tuple[Expr, ...], pairs: Hash) -> None:
        visit_expr(path)
        for param in params:
            visit_expr(param)
        for _, value in pairs:
            visit_expr(value)

    def visit(items: tuple[Node, ...]) -> None:
        for node in items:
            if isinstance(node, Mustache | RawBlock | Block):
                visit_call(node.path, node.params, node.hash)
            if isinstance(node, Block):
                visit(node.body)
                visit(node.inverse)

    visit(nodes)
    return _Uses(depths, data)


def _as_path(callee: Callee) -> PathExpr:
    """A literal where a name belongs is read as that name (``{{"a b"}}`` is ``{{[a b]}}``)."""
    if isinstance(callee, PathExpr):
        return callee
    value = callee.value
    text = "undefined" if value is UNDEFINED else js_string(value)
    return PathExpr((text,), 0, False, text, callee.line, callee.col)


class _Generator:
    """Writes the functions of one template. Their names: ``s`` the output; ``c``, ``d``,
    ``f``, ``r`` the context, ``../`` levels, frame and root (numbered in blocks); ``g`` a
    context's getter; ``v``, ``t``, ``q`` one expression's temporaries; ``_k`` constants,
    ``_p`` functions, ``_w``, ``_b``, ``_v``, ``_x``, ``_n``, ``_i`` a block's own."""

    def __init__(self, uses: _Uses) -> None:
        self.uses = uses
        self.names = count()
        self.constants: dict[tuple[type, object], str] = {}
        self.functions: list[str] = []
        self.checked: set[str] = set()  # block parameters that may be _NOT_GIVEN
        # Statements written only if what they set is used: a context's getter (``g3 =
        # c3.get`` for a dict), an #each's frame. Until then: where it would go, and what
        # it needs set first.
        self.deferred: dict[str, _Deferred] = {}
        self.getters: dict[str, str] = {}  # context variable -> its getter's

    # -- names -------------------------------------------------------------------------

    def fresh(self, prefix: str) -> str:
        return f"{prefix}{next(self.names)}"

    def constant(self, value: object) -> str:
        key = (type(value), value)
        name = self.constants.get(key)
        if name is None:
            name = self.constants[key] = f"_k{len(self.constants)}"
        return name

    @property
    def namespace(self) -> dict[str, Any]:
        names = dict(RUNTIME)
        names.update({name: key[1] for key, name in self.constants.items()})
        return names

    # -- functions ------------------------------------------------------------------------

    def root(self, nodes: tuple[Node, ...], *, refuse_line_breaks: bool = False) -> None:
        lines = ["def _render(r):", "    c = r", "    s = ''"]
        self.entered("c", lines, "    ")
        if self.uses.depths:
            lines.append("    d = (r,)")
        if self.uses.data:
            lines.append("    f = _TOP")
        scope = _Scope(
            "c", "d" if self.uses.depths else None, "f" if self.uses.data else None, {}, 0, "    "
        )
        self.program(nodes, scope, lines)
        if refuse_line_breaks:
            lines.append("    if _cr in s or _lf in s:")
            lines.append("        _line_break()")
        lines.append("    return s")
        self.functions.append("\n".join(lines))

    def function(self, nodes: tuple[Node, ...], scope: _Scope) -> str:
        """``nodes`` as a function of their own: a call that renders them in ``scope``."""
        name = self.fresh("_p")
        params = sorted(
            {value for value in scope.params.values() if value not in ("None", _NO_VALUE)}
        )
        frame = self.need(scope.f) if scope.f else "None"
        arguments = ", ".join([scope.c, scope.d or "None", frame, "r", *params])
        c, d, f = self.fresh("c"), self.fresh("d"), self.fresh("f")
        inner = _Scope(c, d if scope.d else None, f if scope.f else None, scope.params, 0, "    ")
        lines = [f"def {name}({', '.join([c, d, f, 'r', *params])}):", "    s = ''"]
        self.entered(c, lines, "    ")
        self.program(nodes, inner, lines)
        lines.append("    return s")
        self.functions.append("\n".join(lines))
        return f"{name}({arguments})"

    # -- statements -----------------------------------------------------------------------

    def program(self, nodes: tuple[Node, ...], scope: _Scope, lines: list[str]) -> None:
        """Statements appending the render of ``nodes`` to ``s``."""
        pieces: list[tuple[bool, str]] = []  # (is text, text or expression)
        for node in nodes:
            if isinstance(node, Text):
                pieces.append((True, node.text))
            elif isinstance(node, Mustache):
                expression = self.mustache(node, scope, lines, pieces)
                if expression is not None:
                    pieces.append((False, expression))
            else:
                self.flush(pieces, scope, lines)
                self.block(_as_block(node), scope, lines)
        self.flush(pieces, scope, lines)

    def flush(self, pieces: list[tuple[bool, str]], scope: _Scope, lines: list[str]) -> None:
        if not pieces:
            return
        if all(is_text for is_text, _ in pieces):
            text = "".join(part for _, part in pieces)
            lines.append(f"{scope.indent}s += {self.constant(text)}")
        else:
            body = "".join(
                _fstring_literal(part) if is_text else "{" + part + "}" for is_text, part in pieces
            )
            lines.append(f"{scope.indent}s += f'{body}'")
        pieces.clear()

    def mustache(
        self, node: Mustache, scope: _Scope, lines: list[str], pieces: list[tuple[bool, str]]
    ) -> str | None:
        """The expression ``{{…}}`` shows, or None for ``{{log …}}`` (a statement)."""
        path = _as_path(node.path)
        helper = self.helper_name(path, node.params, node.hash, scope)
        if helper is None:
            value = self.path(path, scope)
        elif helper in BLOCK_HELPERS:
            raise TemplateError(
                f'"{helper}" is a block helper: write {{{{#{helper} …}}}}…{{{{/{helper}}}}}',
                node.line,
                node.col,
            )
        elif helper == "log":
            self.flush(pieces, scope, lines)
            lines.append(f"{scope.indent}{self.call(helper, node, scope)}")
            return None
        else:
            value = self.call(helper, node, scope)
        # Strings, then numbers, inline: the common cases cost no call.
        string = " and v.isalnum()" if node.escape else ""  # escaping needs no call
        return (
            f"(v if (t := type(v := {value})) is str{string} "
            "else str(v) if t is int and _MIN_SAFE <= v <= _MAX_SAFE "
            "else (q if _e not in (q := repr(v)) and _n not in q and q[-2:] != _dot0 "
            "else _js(v)) if t is float "
            f"else {'_out' if node.escape else '_txt'}(v))"
        )

    def block(self, node: Block, scope: _Scope, lines: list[str]) -> None:
        path = _as_path(node.path)
        helper = self.helper_name(path, node.params, node.hash, scope)
        if helper in VALUE_HELPERS:
            raise TemplateError(
                f'"{helper}" is not a block helper: write {{{{{helper} …}}}}', node.line, node.col
            )
        if helper is not None and len(node.params) != 1:
            raise TemplateError(
                f'"#{helper}" needs exactly one argument, got {len(node.params)}',
                node.line,
                node.col,
            )
        if scope.level >= MAX_INLINE_LEVELS and scope.level > 0:  # else: a function's top
            call = self.function((node,), scope)
            lines.append(f"{scope.indent}s += {call}")
            return
        if helper in ("if", "unless"):
            self.conditional(node, helper == "unless", scope, lines)
        elif helper == "with":
            self.with_block(node, scope, lines)
        elif helper == "each":
            self.loop(node, self.expr(node.params[0], scope), scope, lines, section=False)
        else:
            value = self.path(path, scope)
            self.loop(node, value, scope, lines, section=True)

    def conditional(self, node: Block, unless: bool, scope: _Scope, lines: list[str]) -> None:
        value = self.expr(node.params[0], scope)
        zero = dict(node.hash).get("includeZero")
        if zero is None:  # true, false and null decided inline, the rest by a call
            test = f"((v := {value}) is True or v is not False and v is not None and _cond(v))"
        elif isinstance(zero, Literal):
            test = f"_cond_zero({value})" if truthy(zero.value) else f"_cond({value})"
        else:
            zero_value = self.expr(zero, scope)
            test = f"(_cond_zero({value}) if _truthy({zero_value}) else _cond({value}))"
        body, inverse = (node.inverse, node.body) if unless else (node.body, node.inverse)
        inner = self.inside(self.this(scope, node, lines))
        if node.block_params:  # handlebars.js gives them no array: reading one throws
            unset = dict.fromkeys(node.block_params, _NO_VALUE)
            inner = replace(inner, params={**inner.params, **unset})
        if not body and not inverse:
            lines.append(f"{scope.indent}{test}")  # evaluated for its sub-expressions' logs
        elif body:
            lines.append(f"{scope.indent}if {test}:")
            self.program_or_pass(body, inner, lines)
            if inverse:
                lines.append(f"{scope.indent}else:")
                self.program_or_pass(inverse, inner, lines)
        else:
            lines.append(f"{scope.indent}if not {test}:")
            self.program_or_pass(inverse, inner, lines)

    def with_block(self, node: Block, scope: _Scope, lines: list[str]) -> None:
        value = self.fresh("_w")
        lines.append(f"{scope.indent}{value} = {self.expr(node.params[0], scope)}")
        lines.append(f"{scope.indent}if not _empty({value}):")
        inner = self.push(self.inside(scope), value, lines)
        if node.block_params:
            first, *rest = node.block_params
            inner = replace(inner, params={**inner.params, first: value})
            inner = _without_values(inner, tuple(rest))
        self.program_or_pass(node.body, inner, lines)
        if node.inverse:
            lines.append(f"{scope.indent}else:")
            other = self.this(self.inside(scope), node, lines)
            self.program_or_pass(node.inverse, other, lines)

    def loop(self, node: Block, value: str, scope: _Scope, lines: list[str], section: bool) -> None:
        """``{{#each}}`` and blocks on a non-helper (``section``): the body once per item (an
        array's, an object's values, or a section's one context), or else the inverse."""
        n = next(self.names)
        values, keys, last, index = f"_v{n}", f"_x{n}", f"_n{n}", f"_i{n}"
        context, frame = self.fresh("c"), self.fresh("f")
        indent, inner_indent = scope.indent, scope.indent + "        "
        if section:  # `keys` says whether they are an array's items
            lines.append(f"{indent}{values}, {keys} = _section_seq({value}, {scope.c})")
        else:  # `keys`: an object's, None for an array
            lines.append(f"{indent}{values} = {value}")
            lines.append(f"{indent}{keys} = None")
            lines.append(f"{indent}if type({values}) is not list:")
            lines.append(f"{indent}    {values}, {keys} = _each_seq({values})")
        lines.append(f"{indent}if {values}:")
        if scope.f is not None:
            lines.append(f"{indent}    {last} = len({values}) - 1")
        lines.append(f"{indent}    for {index}, {context} in enumerate({values}):")
        key = index if section else f"({index} if {keys} is None else {keys}[{index}])"
        fields = None
        if scope.f is not None:
            made = f"({scope.f}, {key}, {index}, {index} == 0, {index} == {last})"
            made = f"{made} if {keys} else {scope.f}" if section else made
            self.defer(frame, f"{frame} = {made}", lines, inner_indent, needs=(scope.f,))
            if not section:
                first, final = f"({index} == 0)", f"({index} == {last})"
                fields = {"key": key, "index": index, "first": first, "last": final}
        params = dict(scope.params)
        for i, name in enumerate(node.block_params):
            if i >= 2:
                params[name] = "None"
                continue
            variable = self.fresh("_b")
            given = (context, key)[i]
            if section:
                given = f"{given} if {keys} else _NOT_GIVEN"
                self.checked.add(variable)
            lines.append(f"{inner_indent}{variable} = {given}")
            params[name] = variable
        inner = self.push(self.inside(scope, 2), context, lines)
        inner = replace(inner, f=frame if scope.f else None, params=params, fields=fields)
        self.program_or_pass(node.body, inner, lines)
        if node.inverse:
            lines.append(f"{indent}else:")
            other = self.inside(scope)
            if not section:  # a helper's inverse gets its `this`; a section's, the context
                other = self.this(other, node, lines)
            self.program_or_pass(node.inverse, other, lines)

    def program_or_pass(self, nodes: tuple[Node, ...], scope: _Scope, lines: list[str]) -> None:
        before = len(lines)
        self.program(nodes, scope, lines)
        if len(lines) == before:
            lines.append(f"{scope.indent}pass")

    # -- scopes ---------------------------------------------------------------------------

    @staticmethod
    def inside(scope: _Scope, levels: int = 1) -> _Scope:
        """The scope of statements ``levels`` Python blocks deeper."""
        return replace(scope, level=scope.level + levels, indent=scope.indent + "    " * levels)

    def this(self, scope: _Scope, node: Block, lines: list[str]) -> _Scope:
        """``scope`` with a helper's ``this`` (nullContext for null) as its context, set at
        ``scope``'s indent; unchanged when the block has nothing but text."""
        if not _reads_context(node):
            return scope
        this = self.fresh("c")
        lines.append(f"{scope.indent}{this} = _nz({scope.c})")
        self.entered(this, lines, scope.indent)
        return replace(scope, c=this)

    def push(self, scope: _Scope, context: str, lines: list[str]) -> _Scope:
        """``scope`` entered with ``context``: its ``../`` levels pushed when it differs."""
        inner = replace(scope, c=context)
        self.entered(context, lines, scope.indent)
        if scope.d is None:
            return inner
        depths = self.fresh("d")
        lines.append(f"{scope.indent}{depths} = _push({context}, {scope.d})")
        return replace(inner, d=depths)

    def entered(self, context: str, lines: list[str], indent: str) -> None:
        """``context`` is set here: its getter goes here, if a lookup ever needs it."""
        getter = self.getters[context] = self.fresh("g")
        get = f"{context}.get if type({context}) is dict else _getter({context})"
        self.defer(getter, f"{getter} = {get}", lines, indent)

    def getter(self, context: str) -> str | None:
        """The variable holding ``context``'s lookup function (``dict.get`` for a dict)."""
        getter = self.getters.get(context)
        return self.need(getter) if getter is not None else None

    def defer(
        self, name: str, statement: str, lines: list[str], indent: str, needs: tuple[str, ...] = ()
    ) -> None:
        """``statement`` (setting ``name``) belongs here, and is written if ``name`` is used."""
        self.deferred[name] = _Deferred(lines, len(lines), indent + statement, needs)

    def need(self, name: str) -> str:
        """``name``, its deferred statement (and those it needs) written first."""
        if name not in self.deferred:
            return name
        for other in self.deferred[name].needs:  # written first: this one's index moves
            self.need(other)
        deferred = self.deferred.pop(name)
        lines, index = deferred.lines, deferred.index
        lines.insert(index, deferred.statement)
        for other, later in self.deferred.items():
            if later.lines is lines and later.index >= index:
                self.deferred[other] = replace(later, index=later.index + 1)
        return name

    # -- expressions ----------------------------------------------------------------------

    def helper_name(
        self, path: PathExpr, params: tuple[Expr, ...], pairs: Hash, scope: _Scope
    ) -> str | None:
        """The built-in helper a tag calls, None for a value; unknown helpers are errors."""
        simple = len(path.parts) == 1 and not path.scoped and path.depth == 0
        if simple and path.parts[0] in scope.params:
            return None  # a block parameter is never a helper
        name = path.parts[0] if path.parts else ""
        called = bool(params or pairs)
        if name in INTERNAL_HELPERS and (called or simple):
            raise TemplateError(
                f'"{name}" is internal to handlebars.js, not a helper for templates',
                path.line,
                path.col,
            )
        if (name in BLOCK_HELPERS or name in VALUE_HELPERS) and (called or simple):
            return name
        if called:
            raise TemplateError(
                f'unknown helper "{path.original}": {BUILT_IN}', path.line, path.col
            )
        return None

    def call(self, helper: str, node: Mustache | SubExpr, scope: _Scope) -> str:
        """An expression calling ``lookup`` or ``log``."""
        args = [self.expr(param, scope) for param in node.params]
        if helper == "log":
            level = dict(node.hash).get("level")
            shown = self.expr(level, scope) if level is not None else self.constant("info")
            return f"_log({', '.join([shown, *args])})"
        if len(args) != 2:
            raise TemplateError(
                f'"lookup" needs exactly two arguments (an object and a key), got {len(args)}',
                node.line,
                node.col,
            )
        key = node.params[1]
        if isinstance(key, Literal) and (key.value is None or key.value is UNDEFINED):
            # null and undefined differ as property names ("null", "undefined"); None in a
            # context stands for both, and reads "undefined" (a missing key, the usual case).
            args[1] = self.constant("null" if key.value is None else "undefined")
        return f"_lookup({args[0]}, {args[1]})"

    def expr(self, expr: Expr, scope: _Scope) -> str:
        """An expression for an argument's value."""
        if isinstance(expr, Literal):
            value = None if expr.value is UNDEFINED else expr.value
            if value is None or isinstance(value, bool | int):
                return repr(value)
            return self.constant(value)
        if isinstance(expr, SubExpr):
            path = _as_path(expr.path)
            helper = self.helper_name(path, expr.params, expr.hash, scope)
            if helper is None:
                raise TemplateError(
                    f'unknown helper "{path.original}": {BUILT_IN}', expr.line, expr.col
                )
            if helper in BLOCK_HELPERS:
                raise TemplateError(
                    f'"{helper}" is a block helper and cannot compute an argument',
                    expr.line,
                    expr.col,
                )
            return self.call(helper, expr, scope)
        return self.path(expr, scope)

    def path(self, path: PathExpr, scope: _Scope) -> str:
        """An expression for a path's value, read as handlebars.js reads it."""
        names = path.parts
        if path.depth == 0 and not path.scoped and names and names[0] in scope.params:
            value = scope.params[names[0]]
            if value == _NO_VALUE:
                raise TemplateError(
                    f'block parameter "{names[0]}" has no value: #if and #unless give none '
                    "(only #each and #with do)",
                    path.line,
                    path.col,
                )
            if value in self.checked:
                value = f"_given({value})"
            return self.walk(value, names[1:])
        if path.data:
            if path.depth == 0 and names == ("root",):
                return "r"
            if path.depth == 0 and len(names) == 1 and scope.fields and names[0] in scope.fields:
                return scope.fields[names[0]]
            frame = self.need(scope.f) if scope.f else "_TOP"
            if path.depth == 0 and len(names) == 1 and names[0] in _FRAME_FIELDS:
                return f"{frame}[{_FRAME_FIELDS[names[0]]}]"
            constants = ", ".join(self.constant(name) for name in names)
            return f"_data({frame}, {path.depth}, ({constants},), r)"
        context = scope.c if path.depth == 0 else f"_depth({scope.d}, {path.depth})"
        if not names:
            return context
        first = self.constant(names[0])
        getter = self.getter(context) if path.depth == 0 else None
        value = f"{getter}({first})" if getter else f"_prop({context}, {first})"
        return self.walk(value, names[1:])

    def walk(self, value: str, names: tuple[str, ...]) -> str:
        if not names:
            return value
        return f"_walk({value}, ({', '.join(self.constant(name) for name in names)},))"


@dataclass(frozen=True, slots=True)
class _Deferred:
    lines: list[str]
    index: int
    statement: str  # indented
    needs: tuple[str, ...]


_NO_VALUE = "!"
"""What a block parameter of #if or #unless stands for: nothing, and reading it is refused."""


def _without_values(scope: _Scope, names: tuple[str, ...]) -> _Scope:
    """Block parameters a helper gives no value (``{{#if x as |y|}}``): undefined."""
    if not names:
        return scope
    return replace(scope, params={**scope.params, **dict.fromkeys(names, "None")})


def _as_block(node: Block | RawBlock) -> Block:
    """A raw block is a block whose body is its text."""
    if isinstance(node, Block):
        return node
    body = (Text(node.text),) if node.text else ()
    return Block(node.path, node.params, node.hash, (), body, (), False, node.line, node.col)


def _reads_context(node: Block) -> bool:
    """Whether a block's body or inverse has anything but text (so needs ``this``)."""
    return any(not isinstance(child, Text) for child in (*node.body, *node.inverse))


def compile_handlebars(source: str, *, refuse_line_breaks: bool = False) -> Renderer:
    """One callable that renders ``source`` as handlebars.js would; raises TemplateError.

    ``refuse_line_breaks`` (URLs, header values): a render holding CR or LF raises
    TemplateRenderError. The template's own text has none (hooks check it when loaded), so
    the line break came from a value.
    """
    nodes = parse_handlebars(source)
    generator = _Generator(_uses(nodes))
    generator.root(nodes, refuse_line_breaks=refuse_line_breaks)
    code = "\n\n".join(reversed(generator.functions))
    namespace = generator.namespace
    # The source is ours, generated from the parsed tree; text reaches it only as constants.
    exec(compile(code, "<handlebars template>", "exec"), namespace)
    render: Renderer = namespace["_render"]
    return render
