"""Rendering: JavaScript-like values, line-break refusal, partials, odd data."""

from __future__ import annotations

import re

import pytest

from engine.templates import TemplateRenderError, compile_template, render
from engine.templates.compiler import MAX_PARTIAL_DEPTH
from engine.templates.values import js_number


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (True, "true"),
        (False, "false"),
        (None, ""),
        (21.5, "21.5"),
        (3.0, "3"),
        (3, "3"),
        (-0.0, "0"),
        (1e21, "1e+21"),
        (1.5e-7, "1.5e-7"),
        (0.1 + 0.2, "0.30000000000000004"),
        ({"a": [1, "x"]}, '{"a":[1,"x"]}'),
        ([1, 2.5, None], "[1,2.5,null]"),
        ("plain", "plain"),
        (2**70, str(2**70)),
    ],
)
def test_values_render_as_javascript_shows_them(value: object, text: str) -> None:
    assert render("{{{v}}}", {"v": value}) == text


def test_js_number_specials() -> None:
    assert (js_number(float("nan")), js_number(float("inf"))) == ("NaN", "Infinity")


def test_missing_renders_empty_and_escaping_is_the_spec_four() -> None:
    assert render("[{{nope}}][{{a.b.c}}]", {"a": {"b": 1}}) == "[][]"
    assert render("{{v}}", {"v": '<a href="x">&\''}) == "&lt;a href=&quot;x&quot;&gt;&amp;'"


def test_truthiness_follows_javascript() -> None:
    template = compile_template("{{#v}}yes{{/v}}{{^v}}no{{/v}}")
    shown = {repr(v): template.render({"v": v}) for v in (0, 0.0, "", [], None, False)}
    assert set(shown.values()) == {"no"}
    for value in (1, "x", [0], {}, {"a": 1}, True, "0"):
        assert template.render({"v": value}) == "yes"


def test_line_breaks_from_variables_are_refused_with_the_name() -> None:
    url = compile_template("https://x/{{{id}}}?a={{a.b}}", refuse_line_breaks=True)
    assert url.render({"id": "d1", "a": {"b": "ok"}}) == "https://x/d1?a=ok"
    with pytest.raises(
        TemplateRenderError, match=re.escape('variable "a.b" contains a line break')
    ):
        url.render({"id": "d1", "a": {"b": "x\r\nInjected: 1"}})
    with pytest.raises(TemplateRenderError, match='variable "id"'):
        url.render({"id": "a\nb"})
    # Literal line breaks are the config's business, and plain text keeps them.
    assert render("{{v}}", {"v": "a\nb"}) == "a\nb"


def test_binary_and_odd_data_renders_as_is() -> None:
    odd = "\x00\x01\x7f\ufffd\U0001f600 \u2028"
    assert render("[{{{v}}}]", {"v": odd}) == f"[{odd}]"
    assert render("[{{v}}]", {"v": odd}) == f"[{odd}]"


def test_recursive_partials_over_data_and_their_bound() -> None:
    partials = {"node": "{{name}}({{#kids}}{{>node}}{{/kids}})"}
    tree = {"name": "a", "kids": [{"name": "b", "kids": [{"name": "c", "kids": []}]}]}
    assert render("{{>node}}", tree, partials) == "a(b(c()))"
    deep: dict[str, object] = {"name": "x", "kids": []}
    for _ in range(MAX_PARTIAL_DEPTH + 5):
        deep = {"name": "x", "kids": [deep]}
    with pytest.raises(TemplateRenderError, match="partials nested more than"):
        render("{{>node}}", deep, partials)
    with pytest.raises(TemplateRenderError, match="partials nested more than"):
        render("{{>loop}}", {}, {"loop": "{{>loop}}"})


def test_indented_partials_indent_every_line_they_begin() -> None:
    partials = {"row": "- {{v}}\n{{#more}}\n  more\n{{/more}}\n"}
    out = render("list:\n  {{>row}}\nend", {"v": "a\nb", "more": True}, partials)
    assert out == "list:\n  - a\nb\n    more\nend"


def test_a_context_that_is_not_an_object() -> None:
    assert render("{{.}}|{{#.}}<{{.}}>{{/.}}", [1, 2]) == "[1,2]|<1><2>"
    assert render("{{x}}", "text") == ""
