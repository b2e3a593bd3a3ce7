"""JSON request bodies from templates: a structure whose keys and strings are templates,
or one template string whose render must be JSON."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from engine.templates import Template, TemplateError, TemplateRenderError, compile_template
from engine.templates.compiler import resolve
from engine.templates.handlebars_compiler import HELPER_NAMES, resolve_path

_SINGLE_VARIABLE = re.compile(r"\{\{\{\s*([^{}\s]+)\s*\}\}\}|\{\{&\s*([^{}\s]+)\s*\}\}")
_PLAIN_NAME = re.compile(r"[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)*")

Part = Callable[[Any], Any]


class JsonTemplateError(TemplateError):
    """A template error inside a JSON structure; ``path`` says where (``value``, ``a[2]``).
    ``others``: the structure's further errors, each found too (one compile says them all)."""

    def __init__(self, path: str, error: TemplateError) -> None:
        super().__init__(error.message, error.line, error.col)
        self.path = path
        self.others: list[JsonTemplateError] = []

    @property
    def every(self) -> list[JsonTemplateError]:
        return [self, *self.others]


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
        language: str = "mustache",
    ) -> None:
        self._text: Template | None = None
        self._build: Part | None = None
        if isinstance(value, str):
            try:
                self._text = compile_template(
                    value, partials, strict_partials=strict_partials, language=language
                )
            except TemplateError as exc:
                raise JsonTemplateError("", exc) from None
            never = never_json(value, language)
            if never is not None:
                raise JsonTemplateError("", TemplateError(never))
        else:
            options = _Options(partials, typed, strict_partials, language, [])
            self._build = _compile(value, "", options)
            if options.errors:
                first, *others = options.errors
                first.others = others
                raise first

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


@dataclass(frozen=True, slots=True)
class _Options:
    partials: Mapping[str, str] | None
    typed: bool
    strict: bool
    language: str
    errors: list[JsonTemplateError]  # every string's that does not compile


def _compile(value: object, path: str, options: _Options) -> Part:
    if isinstance(value, str):
        return _string(value, path, options, options.typed)
    if isinstance(value, Mapping):
        items = [
            (
                _string(key, path, options, False),
                _compile(item, f"{path}.{key}" if path else key, options),
            )
            for key, item in value.items()
        ]
        return lambda context: {key(context): item(context) for key, item in items}
    if isinstance(value, list | tuple):
        parts = [_compile(item, f"{path}[{i}]", options) for i, item in enumerate(value)]
        return lambda context: [part(context) for part in parts]
    return lambda context: value  # numbers, booleans, null: as written


def _string(text: str, path: str, options: _Options, typed: bool) -> Part:
    if "{{" not in text:
        return lambda context: text
    if typed and (name := _single_variable(text, options.language)) is not None:
        if options.language == "handlebars":
            return lambda context: resolve_path(context, name)
        return lambda context: resolve(context, name)
    try:
        template = compile_template(
            text, options.partials, strict_partials=options.strict, language=options.language
        )
    except TemplateError as exc:
        options.errors.append(JsonTemplateError(path, exc))
        return lambda context: ""
    return template.render


def _single_variable(text: str, language: str) -> str | None:
    """The name a typed string's lone ``{{{name}}}`` or ``{{& name}}`` shows, if it is one:
    in Handlebars only a plain dotted name (``../a``, ``@index``, helpers render as text)."""
    single = _SINGLE_VARIABLE.fullmatch(text)
    if single is None:
        return None
    name = single.group(1) or single.group(2)
    if language == "handlebars" and not (
        _PLAIN_NAME.fullmatch(name) and name.split(".")[0] not in HELPER_NAMES
    ):
        return None
    return name


_TAG = re.compile(r"\{\{\{[^{}]*\}\}\}|\{\{[^{}]*\}\}")
_SECTION = re.compile(r"\{\{[#^]\s*([^}]*?)\s*\}\}.*?\{\{/\s*\1\s*\}\}", re.DOTALL)


def never_json(text: str, language: str) -> str | None:
    """Why a template whose render must be JSON can never render JSON, or None when some
    values might make it. Probes: every variable written as ``0``, with every section shown
    once, then with every section left out; JSON in neither is JSON in no render. (A
    Handlebars ``{{else}}`` makes the probes unsure: no verdict then.)"""
    if language == "handlebars" and re.search(r"\{\{\s*else\b", text):
        return None

    def probe(source: str) -> str:
        return _TAG.sub(lambda tag: "" if tag[0][2:3] in "#^/!>" else "0", source)

    shown = probe(text)
    left_out = probe(_SECTION.sub("", text))
    for candidate in (shown, left_out):
        try:
            orjson.loads(candidate)
        except orjson.JSONDecodeError:
            continue
        return None
    try:
        orjson.loads(shown)
    except orjson.JSONDecodeError as exc:
        return (
            "can never render valid JSON: whatever the variables hold, the text around them"
            f" is not JSON (with each variable as 0: {exc})"
        )
    return None  # unreachable: shown failed above
