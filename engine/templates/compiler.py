"""Template tree -> one Python function, generated as source and compiled once.

Rendering never re-parses: literal text is a constant, a top-level simple name is one
``dict.get``, and each section body is its own small function (so nesting depth never
meets Python's limit on nested blocks). Partials are compiled once each and called
with the indentation of their standalone tag, added at every line they begin.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
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
from engine.templates.values import escape_html, to_text, truthy

MAX_PARTIAL_DEPTH = 100
"""Partials calling partials (recursion over nested data) deeper than this are refused."""


class TemplateRenderError(Exception):
    """A render that was refused (header injection, runaway partial recursion)."""


Renderer = Callable[[Any], str]


def _lookup(stack: list[Any], name: str) -> Any:
    """The first frame, from the innermost out, that has ``name``; None if none has it."""
    for frame in reversed(stack):
        if isinstance(frame, Mapping):
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
        if isinstance(value, Mapping):
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


def _too_deep() -> None:
    raise TemplateRenderError(f"partials nested more than {MAX_PARTIAL_DEPTH} deep")


class _Generator:
    """Writes the Python source of one template and its partials."""

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
        self._partials: dict[str, str] = {}
        self.functions: list[str] = []

    def constant(self, value: str) -> str:
        name = self._constants.get(value)
        if name is None:
            name = self._constants[value] = f"_c{len(self._constants)}"
        return name

    @property
    def namespace(self) -> dict[str, Any]:
        names: dict[str, Any] = {value: key for key, value in self._constants.items()}
        names.update(
            _lookup=_lookup,
            _walk=_walk,
            _no_get=_no_get,
            _text=to_text,
            _esc=escape_html,
            _truthy=truthy,
            _refuse=_refuse_line_breaks,
            _too_deep=_too_deep,
            _Mapping=Mapping,
            _MAX_DEPTH=MAX_PARTIAL_DEPTH,
        )
        return names

    def root(self, nodes: list[Node]) -> None:
        body = self.block(nodes, top=True, indented=False)
        self.functions.append(
            "def _render(context):\n"
            "    stack = [context]\n"
            "    get = context.get if isinstance(context, _Mapping) else _no_get\n"
            "    out = []\n"
            "    w = out.append\n"
            "    indent = ''\n"
            "    depth = 0\n"
            f"{body}"
            "    return ''.join(out)\n"
        )

    def function(self, nodes: list[Node], *, indented: bool, partial: bool = False) -> str:
        name = f"_f{next(self._names)}"
        self.emit_function(name, nodes, indented=indented, partial=partial)
        return name

    def emit_function(self, name: str, nodes: list[Node], *, indented: bool, partial: bool) -> None:
        guard = "    if depth > _MAX_DEPTH:\n        _too_deep()\n" if partial else ""
        body = self.block(nodes, top=False, indented=indented)
        self.functions.append(f"def {name}(stack, w, indent, depth):\n{guard}{body}    pass\n")

    def block(self, nodes: list[Node], *, top: bool, indented: bool) -> str:
        lines: list[str] = []
        pending: list[str] = []

        def flush() -> None:
            if pending:
                lines.append(f"    w({self.constant(''.join(pending))})\n")
                pending.clear()

        for node in nodes:
            if isinstance(node, Text):
                pending.append(node.text)
            elif isinstance(node, LineStart):
                if indented:
                    flush()
                    lines.append("    if indent:\n        w(indent)\n")
            else:
                flush()
                lines.append(self.node(node, top=top, indented=indented))
        flush()
        return "".join(lines)

    def value(self, name: str, *, top: bool) -> str:
        if name == ".":
            return "stack[-1]"
        first, *rest = name.split(".")
        found = f"get({first!r})" if top else f"_lookup(stack, {first!r})"
        return f"_walk({found}, {tuple(rest)!r})" if rest else found

    def node(self, node: Node, *, top: bool, indented: bool) -> str:
        if isinstance(node, Variable):
            text = "(v if type(v) is str else _text(v))"
            if self._refuse:
                text = f"_refuse({text}, {node.name!r})"
            if node.escape:
                text = f"_esc({text})"
            return f"    v = {self.value(node.name, top=top)}\n    w({text})\n"
        if isinstance(node, Section):
            body = self.function(node.children, indented=indented)
            value = self.value(node.name, top=top)
            if node.inverted:
                return f"    if not _truthy({value}):\n        {body}(stack, w, indent, depth)\n"
            return (
                f"    v = {value}\n"
                "    if _truthy(v):\n"
                "        for item in (v if isinstance(v, (list, tuple)) else (v,)):\n"
                "            stack.append(item)\n"
                f"            {body}(stack, w, indent, depth)\n"
                "            stack.pop()\n"
            )
        if isinstance(node, Partial):
            return self.partial(node)
        raise AssertionError(f"unexpected node {node!r}")

    def partial(self, node: Partial) -> str:
        source = self._partial_sources.get(node.name)
        if source is None:
            if self._strict:
                raise TemplateError(f'partial "{node.name}" is not defined', node.line, node.col)
            return ""  # the spec: a missing partial renders as nothing
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
        indent = f"indent + {node.indent!r}" if node.standalone else "''"
        return f"    {function}(stack, w, {indent}, depth + 1)\n"


def compile_tree(
    nodes: list[Node],
    partials: Mapping[str, str] | None = None,
    *,
    refuse_line_breaks: bool = False,
    strict_partials: bool = False,
) -> Renderer:
    """One callable that renders ``nodes`` against a context."""
    generator = _Generator(
        partials or {}, refuse_line_breaks=refuse_line_breaks, strict_partials=strict_partials
    )
    generator.root(nodes)
    source = "\n".join(generator.functions)
    namespace = generator.namespace
    # The source is ours, generated from the parsed tree: names are repr()-quoted literals.
    exec(compile(source, "<template>", "exec"), namespace)
    render: Renderer = namespace["_render"]
    return render
