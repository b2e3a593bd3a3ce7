"""Templates compiled ahead of time into Python callables: Mustache (Particle's) or
Handlebars (Trackle's, with its built-in helpers).

``compile_template(text)`` parses once and returns a ``Template`` whose ``render(context)``
runs generated code: no parsing at render time. See ``parser`` for what of the Mustache
spec is covered (lambdas and the optional ``~`` modules are not) and
``handlebars_compiler`` for Handlebars.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.templates.compiler import Renderer, TemplateRenderError, compile_tree
from engine.templates.handlebars_compiler import compile_handlebars
from engine.templates.parser import TemplateError, parse

__all__ = [
    "LANGUAGES",
    "Template",
    "TemplateError",
    "TemplateRenderError",
    "compile_template",
]

LANGUAGES = ("mustache", "handlebars")
"""The template languages a hook may be written in; the first is the default."""


class Template:
    """A compiled template: ``render(context) -> str``; made by ``compile_template``."""

    __slots__ = ("render", "source")

    def __init__(self, source: str, render: Renderer) -> None:
        self.source = source
        self.render = render

    def __repr__(self) -> str:
        shown = self.source if len(self.source) <= 40 else self.source[:37] + "..."
        return f"<Template {shown!r}>"


def compile_template(
    source: str,
    partials: Mapping[str, str] | None = None,
    *,
    refuse_line_breaks: bool = False,
    strict_partials: bool = False,
    language: str = "mustache",
) -> Template:
    """Parse and compile ``source``; raises TemplateError ("LINE:COL: problem").

    ``refuse_line_breaks``: for URLs and header values, a variable whose value holds CR or
    LF makes ``render`` raise TemplateRenderError naming it. ``strict_partials``: a partial
    missing from ``partials`` is an error (the spec renders it as nothing). ``language``:
    "mustache" or "handlebars" (which has no partials).
    """
    if language == "handlebars":
        return Template(source, compile_handlebars(source, refuse_line_breaks=refuse_line_breaks))
    if language != "mustache":
        raise ValueError(f"unknown template language {language!r}: expected one of {LANGUAGES}")
    renderer = compile_tree(
        parse(source),
        partials,
        refuse_line_breaks=refuse_line_breaks,
        strict_partials=strict_partials,
    )
    return Template(source, renderer)


def render(source: str, context: Any, partials: Mapping[str, str] | None = None) -> str:
    """Compile and render once (for tools and tests; hooks keep their compiled Template)."""
    return compile_template(source, partials).render(context)
