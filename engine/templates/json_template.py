"""JSON request bodies from templates: a structure whose keys and strings are templates,
or one template string whose render must be JSON."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from engine.templates import Template, TemplateError, TemplateRenderError, compile_template
from engine.templates.compiler import resolve

_SINGLE_VARIABLE = re.compile(r"\{\{\{\s*([^{}\s]+)\s*\}\}\}|\{\{&\s*([^{}\s]+)\s*\}\}")

Part = Callable[[Any], Any]


class JsonTemplateError(TemplateError):
    """A template error inside a JSON structure; ``path`` says where (``value``, ``a[2]``)."""

    def __init__(self, path: str, error: TemplateError) -> None:
        super().__init__(error.message, error.line, error.col)
        self.path = path


class JsonTemplate:
    """Renders to JSON text (bytes): ``render(context)``."""

    __slots__ = ("_build", "_text")

    def __init__(
        self,
        value: object,
        partials: Mapping[str, str] | None = None,
        *,
        typed: bool = False,
        strict_partials: bool = False,
    ) -> None:
        self._text: Template | None = None
        self._build: Part | None = None
        if isinstance(value, str):
            try:
                self._text = compile_template(value, partials, strict_partials=strict_partials)
            except TemplateError as exc:
                raise JsonTemplateError("", exc) from None
        else:
            self._build = _compile(value, "", partials, typed, strict_partials)

    def render(self, context: Any) -> bytes:
        """JSON text; a string template whose render is not JSON raises TemplateRenderError."""
        if self._text is not None:
            text = self._text.render(context)
            _parse(text)
            return text.encode("utf-8")
        assert self._build is not None
        return orjson.dumps(self._build(context), option=orjson.OPT_NON_STR_KEYS)

    def render_value(self, context: Any) -> Any:
        """The rendered JSON as Python data (to add fields before it is encoded)."""
        if self._text is not None:
            return _parse(self._text.render(context))
        assert self._build is not None
        return self._build(context)


def _parse(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise TemplateRenderError(f"rendered json is not valid JSON: {exc}") from None


def _compile(
    value: object, path: str, partials: Mapping[str, str] | None, typed: bool, strict: bool
) -> Part:
    if isinstance(value, str):
        return _string(value, path, partials, typed, strict)
    if isinstance(value, Mapping):
        items = [
            (
                _string(key, path, partials, False, strict),
                _compile(item, f"{path}.{key}" if path else key, partials, typed, strict),
            )
            for key, item in value.items()
        ]
        return lambda context: {key(context): item(context) for key, item in items}
    if isinstance(value, list | tuple):
        parts = [
            _compile(item, f"{path}[{i}]", partials, typed, strict) for i, item in enumerate(value)
        ]
        return lambda context: [part(context) for part in parts]
    return lambda context: value  # numbers, booleans, null: as written


def _string(
    text: str, path: str, partials: Mapping[str, str] | None, typed: bool, strict: bool
) -> Part:
    if "{{" not in text:
        return lambda context: text
    if typed and (single := _SINGLE_VARIABLE.fullmatch(text)):
        name = single.group(1) or single.group(2)
        return lambda context: resolve(context, name)
    try:
        template = compile_template(text, partials, strict_partials=strict)
    except TemplateError as exc:
        raise JsonTemplateError(path, exc) from None
    return template.render
