"""Template tree -> one Python function, generated as source and compiled once.

Rendering never re-parses: literal text is a constant, a top-level simple name is one
``dict.get``, a template is one f-string expression and a section a list comprehension
inside it (sections nested deeper than a few levels become functions, so Python's
limits on nesting are never met). Partials are compiled once each and called with the
indentation of their standalone tag, added at every line they begin.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import count
from typing import Any

from engine.templates.parser import (
    LineStart,
    Node,
    Partial,
    Section,
    TemplateError,
    Text,
    Variable,
    parse,
)
from engine.templates.values import escape_html, js_number, to_text, truthy

MAX_PARTIAL_DEPTH = 100
"""Partials calling partials (recursion over nested data) deeper than this are refused."""


class TemplateRenderError(Exception):
    """A render that was refused (header injection, runaway partial recursion)."""


Renderer = Callable[[Any], str]


def _lookup(stack: tuple[Any, ...], name: str) -> Any:
    """The first frame, from the innermost out, that has ``name``; None if none has it."""
    for frame in reversed(stack):
        if type(frame) is dict or isinstance(frame, Mapping):
            if name in frame:
                return frame[name]
        elif isinstance(frame, list | tuple) and name.isdigit():
            index = int(name)
            if index < len(frame):
                return frame[index]
    return None


def _walk(value: Any, parts: tuple[str, ...]) -> Any:
    """Follow a dotted name's later parts; list items by index (``c.0.d``)."""
    for part in parts:
        if type(value) is dict or isinstance(value, Mapping):
            value = value.get(part)
        elif isinstance(value, list | tuple) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def _no_get(name: str) -> None:
    return None


def resolve(context: Any, name: str) -> Any:
    """The value a top-level ``{{name}}`` would show, before it becomes text."""
    if name == ".":
        return context
    first, *rest = name.split(".")
    value = context.get(first) if isinstance(context, Mapping) else None
    return _walk(value, tuple(rest)) if rest else value


def _refuse_line_breaks(text: str, name: str) -> str:
    if "\r" in text or "\n" in text:
        raise TemplateRenderError(
            f'variable "{name}" contains a line break, which is not allowed here (header injection)'
        )
    return text


def _too_deep() -> str:
    raise TemplateRenderError(f"partials nested more than {MAX_PARTIAL_DEPTH} deep")


Body = Callable[[tuple[Any, ...], str, int], str]


MAX_FSTRING_PARTS = 200
"""Beyond this many pieces one expression becomes a join over a tuple (compiler limits)."""

MAX_INLINE_SECTIONS = 6
"""Sections nested this deep are list comprehensions inside one expression; deeper ones
become functions of their own (Python's parser limits how deeply brackets may nest)."""


def _items(value: Any) -> list[Any] | tuple[Any, ...]:
    """What a section iterates over: a list's items, once for any other truthy value."""
    if type(value) is list:
        return value
    if not truthy(value):
        return ()
    return value if isinstance(value, tuple) else (value,)


def _section(value: Any, body: Body, stack: tuple[Any, ...], indent: str, depth: int) -> str:
    """A section: its body once per list item, or once with the value on the stack."""
    return "".join([body((*stack, item), indent, depth) for item in _items(value)])


@dataclass(frozen=True, slots=True)
class _Scope:
    """Where an expression is evaluated: how it finds names, the stack, '.', indent, depth."""

    level: int  # inline sections enclosing it
    stack: str  # an expression for the context stack (a tuple)
    dot: str  # an expression for "."
    top: bool  # only the root context is visible: look names up with get()
    indent: str
    depth: str
    indented: bool


def _needs_stack(nodes: list[Node]) -> bool:
    """Whether rendering ``nodes`` looks anything up beyond "." (so needs the stack)."""
    for node in nodes:
        if isinstance(node, Partial):
            return True
        if isinstance(node, Variable | Section) and node.name != ".":
            return True
        if isinstance(node, Section) and (not node.inverted or _needs_stack(node.children)):
            return True
    return False


class _Generator:
    """Writes the Python source of one template and its partials.

    Each node list becomes one expression: an f-string of constants and lookups, with
    sections as list comprehensions, so most templates render in one function call.
    """

    def __init__(
        self,
        partials: Mapping[str, str],
        *,
        refuse_line_breaks: bool,
        strict_partials: bool,
    ) -> None:
        self._partial_sources = partials
        self._refuse = refuse_line_breaks
        self._strict = strict_partials
        self._names = count()
        self._constants: dict[str, str] = {}
        self.literals: dict[str, str] = {}  # constant name -> its text, escaped for f'...'
        self._partials: dict[str, str] = {}
        self.functions: list[str] = []

    def constant(self, value: str) -> str:
        """A name for a literal: expressions never quote text themselves."""
        name = self._constants.get(value)
        if name is None:
            name = self._constants[value] = f"_c{len(self._constants)}"
            self.literals[name] = _fstring_literal(value)
        return name

    @property
    def namespace(self) -> dict[str, Any]:
        names: dict[str, Any] = {value: key for key, value in self._constants.items()}
        names.update(
            _lookup=_lookup,
            _walk=_walk,
            _no_get=_no_get,
            _text=to_text,
            _js=js_number,
            _esc=escape_html,
            _refuse=_refuse_line_breaks,
            _too_deep=_too_deep,
            _section=_section,
            _items=_items,
            _truthy=truthy,
            _Mapping=Mapping,
            _MAX_DEPTH=MAX_PARTIAL_DEPTH,
            _empty="",
            _amp="&",
            _lt="<",
            _gt=">",
            _quot='"',
            _e="e",
            _n="n",
            _dot0=".0",
            _cr="\r",
            _lf="\n",
        )
        return names

    def root(self, nodes: list[Node], *, checked: bool = False) -> None:
        """``_render(context)``; ``checked``: re-render with ``_checked`` on a line break."""
        scope = _Scope(0, "(context,)", "context", True, "_empty", "0", indented=False)
        result = self.expression(nodes, scope)
        finish = (
            f"    text = {result}\n"
            "    if _cr in text or _lf in text:\n"
            "        return _checked(context)\n"
            "    return text\n"
            if checked
            else f"    return {result}\n"
        )
        self.functions.append(
            "def _render(context):\n"
            "    if type(context) is dict:\n"
            "        get = context.get\n"
            "    else:\n"
            "        get = context.get if isinstance(context, _Mapping) else _no_get\n"
            f"{finish}"
        )

    def emit_function(self, name: str, nodes: list[Node], *, indented: bool, partial: bool) -> None:
        """``name(stack, indent, depth)``: renders ``nodes`` with ``stack`` as context."""
        guard = "    if depth > _MAX_DEPTH:\n        return _too_deep()\n" if partial else ""
        scope = _Scope(0, "stack", "stack[-1]", False, "indent", "depth", indented)
        body = self.expression(nodes, scope)
        self.functions.append(f"def {name}(stack, indent, depth):\n{guard}    return {body}\n")

    def expression(self, nodes: list[Node], scope: _Scope, *, outermost: bool = True) -> str:
        """One expression that renders ``nodes`` (adjacent literals merged).

        The outermost is an f-string; those nested in it concatenate with ``+``, since an
        f-string may not hold another one with the same quotes before Python 3.12.
        """
        parts: list[str] = []
        pending: list[str] = []
        for node in nodes:
            if isinstance(node, Text):
                pending.append(node.text)
                continue
            if isinstance(node, LineStart):
                if not scope.indented:
                    continue
                item = scope.indent
            else:
                item = self.node(node, scope)
            if pending:
                parts.append(self.constant("".join(pending)))
                pending.clear()
            parts.append(item)
        if pending:
            parts.append(self.constant("".join(pending)))
        if not parts:
            return "_empty"
        if len(parts) == 1 and parts[0].startswith("_c"):
            return parts[0]
        if len(parts) > MAX_FSTRING_PARTS:
            return "_empty.join((" + ", ".join(parts) + ",))"
        if not outermost:
            return "(" + " + ".join(parts) + ")"
        # Literal text goes into the f-string itself: a constant, not a global lookup.
        return "f'" + "".join(self.literals.get(part) or f"{{{part}}}" for part in parts) + "'"

    def value(self, name: str, scope: _Scope, *, walrus: bool = True) -> str:
        """An expression for the value of ``name`` (``walrus``: may bind helper names)."""
        if name == ".":
            return scope.dot
        first, *rest = name.split(".")
        key = self.constant(first)
        found = f"get({key})" if scope.top else f"_lookup({scope.stack}, {key})"
        for part in rest:
            step = self.constant(part)
            if scope.level == 0 and walrus:
                # One dict step inline; anything else (lists, missing) through _walk.
                found = f"(w.get({step}) if type(w := {found}) is dict else _walk(w, ({step},)))"
            else:
                found = f"_walk({found}, ({step},))"
        return found

    def node(self, node: Node, scope: _Scope) -> str:
        if isinstance(node, Variable):
            value = self.value(node.name, scope)
            if value.isidentifier():
                text = f"({value} if type({value}) is str else _text({value}))"
            elif scope.level == 0:
                # Strings, then numbers, inline: the common cases cost no call.
                text = (
                    f"(v if (t := type(v := {value})) is str "
                    "else str(v) if t is int "
                    "else (r if _e not in (r := repr(v)) and _n not in r and r[-2:] != _dot0 "
                    "else _js(v)) if t is float "
                    "else _text(v))"
                )
            else:
                # In a comprehension a walrus would make `v` a cell of the whole function.
                text = f"_text({value})"
            if self._refuse:
                text = f"_refuse({text}, {self.constant(node.name)})"
            if not node.escape:
                return text
            if scope.level == 0:
                # Most values need no escaping: test inline, call only when they do.
                return (
                    f"(e if (e := {text}).isalnum() or (_amp not in e and _lt not in e "
                    "and _gt not in e and _quot not in e) else _esc(e))"
                )
            return f"_esc({text})"
        if isinstance(node, Section):
            return self.section(node, scope)
        if isinstance(node, Partial):
            return self.partial(node, scope)
        raise AssertionError(f"unexpected node {node!r}")

    def section(self, node: Section, scope: _Scope) -> str:
        value = self.value(node.name, scope)
        if node.inverted:
            body = self.expression(node.children, scope, outermost=False)
            return f"(_empty if _truthy({value}) else {body})"
        if scope.level >= MAX_INLINE_SECTIONS:
            body = f"_f{next(self._names)}"
            self.emit_function(body, node.children, indented=scope.indented, partial=False)
            return f"_section({value}, {body}, {scope.stack}, {scope.indent}, {scope.depth})"
        if _needs_stack(node.children) or scope.indented:
            # A walrus may not stand in a comprehension's iterable.
            plain = self.value(node.name, scope, walrus=False)
            return self.section_with_stack(node, scope, f"_items({plain})")
        items = (
            f"(v if type(v := {value}) is list else _items(v))"
            if scope.level == 0
            else f"_items({value})"
        )
        # Text and "." only: one small function mapped over the items.
        body = f"_b{next(self._names)}"
        dot_only = _Scope(0, "()", "item", False, "_empty", "0", indented=False)
        self.functions.append(
            f"def {body}(item):\n    return {self.expression(node.children, dot_only)}\n"
        )
        return f"_empty.join(map({body}, {items}))"

    def section_with_stack(self, node: Section, scope: _Scope, items: str) -> str:
        level = scope.level + 1
        item, stack = f"i{level}", f"s{level}"
        inner = _Scope(level, stack, item, False, scope.indent, scope.depth, scope.indented)
        body = self.expression(node.children, inner, outermost=False)
        loop = f"for {item} in {items}"
        if _needs_stack(node.children):
            loop += f" for {stack} in ((*{scope.stack}, {item}),)"
        return f"_empty.join([{body} {loop}])"

    def partial(self, node: Partial, scope: _Scope) -> str:
        source = self._partial_sources.get(node.name)
        if source is None:
            if self._strict:
                raise TemplateError(f'partial "{node.name}" is not defined', node.line, node.col)
            return "_empty"  # the spec: a missing partial renders as nothing
        function = self._partials.get(node.name)
        if function is None:
            function = self._partials[node.name] = f"_p{len(self._partials)}"
            try:
                tree = parse(source)
            except TemplateError as exc:
                raise TemplateError(
                    f'in partial "{node.name}" at {exc.line}:{exc.col}: {exc.message}',
                    node.line,
                    node.col,
                ) from None
            self.emit_function(function, tree, indented=True, partial=True)
        indent = f"{scope.indent} + {self.constant(node.indent)}" if node.standalone else "_empty"
        return f"{function}({scope.stack}, {indent}, {scope.depth} + 1)"


def _fstring_literal(text: str) -> str:
    """``text`` as the literal part of a single-quoted f-string."""
    escaped = text.encode("unicode_escape").decode("ascii").replace("'", "\\'")
    return escaped.replace("{", "{{").replace("}", "}}")


def compile_tree(
    nodes: list[Node],
    partials: Mapping[str, str] | None = None,
    *,
    refuse_line_breaks: bool = False,
    strict_partials: bool = False,
) -> Renderer:
    """One callable that renders ``nodes`` against a context.

    With ``refuse_line_breaks`` the render checks its result once; only when it holds a
    line break does a second version, which checks every variable, find the culprit.
    """
    checked: Renderer | None = None
    if refuse_line_breaks:
        checked = _build(nodes, partials, refuse=True, strict_partials=strict_partials)
    return _build(nodes, partials, refuse=False, strict_partials=strict_partials, checked=checked)


def _build(
    nodes: list[Node],
    partials: Mapping[str, str] | None,
    *,
    refuse: bool,
    strict_partials: bool,
    checked: Renderer | None = None,
) -> Renderer:
    generator = _Generator(
        partials or {}, refuse_line_breaks=refuse, strict_partials=strict_partials
    )
    generator.root(nodes, checked=checked is not None)
    source = "\n".join(generator.functions)
    namespace = generator.namespace
    namespace["_checked"] = checked
    # The source is ours, generated from the parsed tree; text reaches it only escaped.
    exec(compile(source, "<template>", "exec"), namespace)
    render: Renderer = namespace["_render"]
    return render
