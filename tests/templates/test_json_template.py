"""JSON bodies: structures of templates, typed_json, and string templates that must be JSON."""

from __future__ import annotations

import types

import orjson
import pytest

from engine.templates import TemplateRenderError
from engine.templates.json_template import JsonTemplate, JsonTemplateError

CONTEXT = {"temp": 21.5, "on": True, "o": {"a": [1]}, "q": 'say "hi"', "n": None, "i": 3}


def test_structure_renders_strings_and_keeps_json_escaping_right() -> None:
    template = JsonTemplate(
        types.MappingProxyType({"v": "{{{temp}}}", "q": "{{{q}}}", "k": [1, "{{i}}"], "x": 2.5})
    )
    assert orjson.loads(template.render(CONTEXT)) == {
        "v": "21.5",
        "q": 'say "hi"',
        "k": [1, "3"],
        "x": 2.5,
    }


def test_typed_json_keeps_the_type_of_a_lone_variable() -> None:
    value = {
        "v": "{{{temp}}}",
        "b": "{{& on}}",
        "o": "{{{o}}}",
        "m": "{{{missing}}}",
        "mixed": "{{{temp}}} C",
        "esc": "{{temp}}",
        "n": "{{{ n }}}",
    }
    typed = orjson.loads(JsonTemplate(value, typed=True).render(CONTEXT))
    assert typed == {
        "v": 21.5,
        "b": True,
        "o": {"a": [1]},
        "m": None,
        "mixed": "21.5 C",
        "esc": "21.5",
        "n": None,
    }
    untyped = orjson.loads(JsonTemplate(value).render(CONTEXT))
    assert untyped["v"] == "21.5" and untyped["b"] == "true" and untyped["o"] == '{"a":[1]}'


def test_keys_are_templates_too() -> None:
    rendered = JsonTemplate({"{{{i}}}": "x"}).render(CONTEXT)
    assert orjson.loads(rendered) == {"3": "x"}


def test_string_template_must_render_to_json() -> None:
    assert JsonTemplate('{"t":{{temp}}}').render(CONTEXT) == b'{"t":21.5}'
    with pytest.raises(TemplateRenderError, match="rendered json is not valid JSON"):
        JsonTemplate('{"t":{{q}}}').render(CONTEXT)


def test_errors_say_where_in_the_structure() -> None:
    with pytest.raises(JsonTemplateError) as caught:
        JsonTemplate({"a": {"b": ["ok", "{{#x}}"]}})
    assert caught.value.path == "a.b[1]"
    assert str(caught.value) == '1:1: section "x" is never closed'
