"""Handlebars templates in the engine, without node: how a hook chooses the language, what is
refused with line and column, and the pieces of handlebars.js's semantics we rebuilt
(handlebars_values). That every render equals handlebars.js's is
test_handlebars_differential's job."""

from __future__ import annotations

import logging
import math

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.core.model import Event
from engine.templates import TemplateError, TemplateRenderError, compile_template
from engine.templates.context import event_context
from engine.templates.handlebars_compiler import MAX_INLINE_LEVELS, compile_handlebars
from engine.templates.handlebars_values import (
    NULL_CONTEXT,
    escape,
    is_empty,
    js_string,
    loosely_equal,
    object_keys,
    to_number,
    truthy,
)
from engine.templates.json_template import JsonTemplate
from engine.templates.parser import MAX_DEPTH
from tests.conftest import WriteConfig


def render(source: str, context: object) -> str:
    return compile_template(source, language="handlebars").render(context)


def test_the_language_decides_what_a_template_means() -> None:
    source = "{{#a}}[{{b}}]{{/a}}{{c}}"
    context = {"a": {"x": 1}, "b": "outer", "c": "<'=>"}
    # Mustache looks names up through the enclosing contexts and escapes four characters;
    # Handlebars reads only the current one and escapes seven.
    assert compile_template(source).render(context) == "[outer]&lt;'=&gt;"
    assert render(source, context) == "[]&lt;&#x27;&#x3D;&gt;"
    with pytest.raises(ValueError, match="unknown template language 'jinja'"):
        compile_template("x", language="jinja")


def test_a_trackle_hook_body_renders() -> None:
    body = (
        '{"device":"{{TRACKLE_DEVICE_ID}}","readings":['
        "{{#each readings}}{{#if @index}},{{/if}}"
        # "{{/if}}}" would read as "}}}": a brace after a tag needs a space before it.
        '{"t":{{t}},"v":{{v}}{{#if ../unit}},"unit":"{{../unit}}"{{/if}} }'
        '{{/each}}]{{#unless alert}},"ok":true{{else}},"alert":"{{alert}}"{{/unless}} }'
    )
    data = '{"readings":[{"t":1,"v":2.5},{"t":2,"v":-0.0}],"unit":"C","alert":null}'
    context = event_context(Event(7, "env", data, 60, False, "now", "dev1", None))
    assert orjson.loads(render(body, context)) == {
        "device": "dev1",
        "readings": [{"t": 1, "v": 2.5, "unit": "C"}, {"t": 2, "v": 0, "unit": "C"}],
        "ok": True,
    }


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{#foo a}}x{{/foo}}", '1:4: unknown helper "foo": the built-in helpers are if'),
        ("a\n  {{eq a 1}}", '2:5: unknown helper "eq"'),
        ("{{a.b c}}", '1:3: unknown helper "a.b"'),
        ("{{#if (eq a b)}}x{{/if}}", '1:8: unknown helper "eq"'),
        ("{{x y=1}}", '1:3: unknown helper "x"'),
        ("{{if a}}", '1:1: "if" is a block helper: write {{#if …}}…{{/if}}'),
        ("{{each a}}", '1:1: "each" is a block helper'),
        ("{{#if}}x{{/if}}", '1:1: "#if" needs exactly one argument, got 0'),
        ("{{#with a b}}x{{/with}}", '1:1: "#with" needs exactly one argument, got 2'),
        ("{{#lookup a b}}x{{/lookup}}", '1:1: "lookup" is not a block helper'),
        ("{{lookup a}}", '1:1: "lookup" needs exactly two arguments (an object and a key), got 1'),
        ("{{lookup (if a) b}}", '1:10: "if" is a block helper and cannot compute an argument'),
        ("{{helperMissing}}", '1:3: "helperMissing" is internal to handlebars.js'),
        ("{{#if a as |x|}}{{x}}{{/if}}", '1:19: block parameter "x" has no value'),
        ("{{> partial}}", "1:1: partials ({{> name}}) are not supported"),
        ("{{#if a}}", '1:1: block "if" is never closed: expected "{{/if}}"'),
    ],
)
def test_mistakes_are_refused_with_line_and_column(source: str, message: str) -> None:
    with pytest.raises(TemplateError) as caught:
        compile_handlebars(source)
    assert str(caught.value).startswith(message)


def test_a_section_block_parameter_over_a_non_array_fails_the_render() -> None:
    template = compile_handlebars("{{#a as |x|}}{{x}}{{/a}}")
    assert template({"a": ["p", "q"]}) == "pq"
    with pytest.raises(TemplateRenderError, match="only when the section's value is an array"):
        template({"a": {"k": 1}})


def test_header_templates_refuse_line_breaks_from_values() -> None:
    header = compile_template("Bearer {{t}}", refuse_line_breaks=True, language="handlebars")
    assert header.render({"t": "abc"}) == "Bearer abc"
    with pytest.raises(TemplateRenderError, match=r"line break.*header injection"):
        header.render({"t": "abc\r\nX-Evil: 1"})


def test_json_bodies_in_handlebars() -> None:
    text = JsonTemplate('{"n": {{n}}, "s": "{{s}}"}', language="handlebars")
    assert orjson.loads(text.render({"n": 2, "s": "x"})) == {"n": 2, "s": "x"}
    with pytest.raises(TemplateRenderError, match="not valid JSON"):
        text.render({"n": "", "s": ""})
    typed = JsonTemplate(
        {"list": "{{{r}}}", "count": "{{{r.length}}}", "up": "{{{../r}}}", "i": "{{{@index}}}"},
        typed=True,
        language="handlebars",
    )
    # Plain names keep their JSON type (r.length as handlebars.js reads it); anything else
    # is a template, and renders as text.
    assert typed.render_value({"r": [1, 2]}) == {"list": [1, 2], "count": 2, "up": "", "i": ""}


def test_hook_templates_use_the_hooks_language(write_config: WriteConfig) -> None:
    [mustache, handlebars] = write_config(
        """
        [templates]
        language = "handlebars"

        [[hooks]]
        event = "a"
        url = "http://127.0.0.1:9000/{{#l}}{{.}}{{/l}}"
        template_language = "mustache"
        body = "{{#l}}{{.}}{{/l}}"

        [[hooks]]
        event = "b"
        url = "http://127.0.0.1:9000/{{#each l}}{{@index}}{{/each}}"
        json = { n = "{{#if l}}{{l.length}}{{/if}}" }
        headers = { "X-L" = "{{#each l}}{{this}}{{/each}}" }
        """
    ).hooks
    context = {"l": [7, 8]}
    assert mustache.templates is not None and handlebars.templates is not None
    assert mustache.templates.url.render(context) == "http://127.0.0.1:9000/78"
    assert mustache.templates.body is not None
    assert mustache.templates.body.render(context) == "78"
    assert handlebars.templates.url.render(context) == "http://127.0.0.1:9000/01"
    assert handlebars.templates.json is not None
    assert orjson.loads(handlebars.templates.json.render(context)) == {"n": "2"}
    assert handlebars.templates.headers is not None
    [(_, value)] = handlebars.templates.headers
    assert value.render(context) == "78"


def test_log_writes_to_the_debug_log(caplog: pytest.LogCaptureFixture) -> None:
    template = compile_handlebars('a{{log "seen" n level="warn"}}b')
    with caplog.at_level(logging.DEBUG, logger="hookwire.templates"):
        assert template({"n": [1, 2]}) == "ab"
    assert [record.getMessage() for record in caplog.records] == [
        "template log (level warn): seen 1,2"
    ]
    assert [record.levelno for record in caplog.records] == [logging.DEBUG]


def test_blocks_nest_as_deep_as_the_parser_allows() -> None:
    # Deeper than MAX_INLINE_LEVELS, blocks become functions of their own; Python's limit
    # of 20 nested blocks is never reached.
    assert MAX_DEPTH > MAX_INLINE_LEVELS * 2
    depth = MAX_DEPTH - 1
    inner = "{{#each x as |x i|}}" * (depth - 1)
    source = (
        "{{#each a as |x i|}}" + inner + "{{x}}{{i}}{{@index}}{{@root.b}}" + "{{/each}}" * depth
    )
    nested: object = ["leaf"]
    for _ in range(depth - 1):
        nested = [nested]
    assert render(source, {"a": nested, "b": "B"}) == "leaf00B"
    sections = "{{#a}}" * depth + "{{@index}}{{b}}x" + "{{/a}}" * depth
    assert render(sections, {"a": {"a": True, "b": "B"}}) == "Bx"
    many = "{{#if a}}x{{/if}}" * 2000
    assert render(many, {"a": True}) == "x" * 2000


# -- handlebars_values ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "null"),
        (True, "true"),
        (2**53, "9007199254740992"),
        (2**53 + 1, "9007199254740992"),
        (-(2**60), "-1152921504606847000"),
        (1e21, "1e+21"),
        (-0.0, "0"),
        (0.000001, "0.000001"),
        (1e-7, "1e-7"),
        ([1, [None, "a"], {}, True], "1,,a,[object Object],true"),
        ({}, "[object Object]"),
        (NULL_CONTEXT, "[object Object]"),
    ],
)
def test_values_print_as_javascripts_string(value: object, text: str) -> None:
    assert js_string(value) == text


def test_escape_the_seven_characters() -> None:
    assert escape("&<>\"'`= x") == "&amp;&lt;&gt;&quot;&#x27;&#x60;&#x3D; x"
    assert escape("plain é") == "plain é"


@pytest.mark.parametrize(
    ("value", "is_truthy", "empty"),
    [
        (0, False, False),
        (-0.0, False, False),
        ("", False, True),
        (None, False, True),
        (False, False, True),
        ([], True, True),
        ({}, True, False),
        ("0", True, False),
        (math.nan, False, True),
    ],
)
def test_truth_and_emptiness(value: object, is_truthy: bool, empty: bool) -> None:
    assert (truthy(value), is_empty(value)) == (is_truthy, empty)


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        (1, "1", True),
        (0, "", True),
        (0, " \n", True),
        (1, "0x1", True),
        (1, True, True),
        ("1", True, True),
        ([1], 1, True),
        ([1, 2], "1,2", True),
        ([], False, True),
        ({}, "[object Object]", True),
        ({}, {}, False),
        (None, 0, False),
        (None, None, True),
        ("a", "b", False),
        (1, "1e0", True),
        (1, "1_0", False),
        (math.inf, "Infinity", True),
        (math.inf, "inf", False),
    ],
)
def test_loose_equality(a: object, b: object, equal: bool) -> None:
    assert loosely_equal(a, b) is equal
    assert loosely_equal(b, a) is equal


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.sampled_from(["", "0", "1", "a", " 1 "]),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=2), inner),
    max_leaves=4,
)


@given(json_values, json_values)
def test_loose_equality_is_symmetric(a: object, b: object) -> None:
    assert loosely_equal(a, b) == loosely_equal(b, a)
    assert loosely_equal(a, a)


def test_to_number_reads_what_javascript_reads() -> None:
    assert [to_number(t) for t in ("", " 12 ", "-1.5e3", ".5", "0b11", "0o7", "0XfF")] == [
        0,
        12,
        -1500,
        0.5,
        3,
        7,
        255,
    ]
    assert all(math.isnan(to_number(t)) for t in ("1_0", "nan", "-0x1", "1e", "inf", "x"))


def test_object_keys_in_javascripts_order() -> None:
    keys = {"b": 0, "10": 0, "a": 0, "2": 0, "01": 0, "4294967295": 0, "4294967294": 0, "-1": 0}
    assert object_keys(keys) == ["2", "10", "4294967294", "b", "a", "01", "4294967295", "-1"]
