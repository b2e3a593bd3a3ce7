"""The parser: positions on nodes, and a clear error with line:column for every mistake."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.templates import compile_template
from engine.templates.parser import (
    MAX_DEPTH,
    MAX_TEMPLATE_CHARS,
    Section,
    TemplateError,
    Variable,
    parse,
)


def test_nodes_carry_line_and_column() -> None:
    tree = [n for n in parse("a\n  {{#s}}\n x {{v}}\n  {{/s}}") if not hasattr(n, "text")]
    section = next(n for n in tree if isinstance(n, Section))
    assert (section.line, section.col) == (2, 3)
    variable = next(n for n in section.children if isinstance(n, Variable))
    assert (variable.name, variable.line, variable.col) == ("v", 3, 4)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ('{"tags": [{{#tags}}"{{.}}"]}', '1:11: section "tags" is never closed'),
        ("{{#a}}\n{{#b}}\n{{/a}}", '3:1: section "b" (opened at 2:1) is closed by "a"'),
        ("x\n  {{/a}}", '2:3: closing tag "a" has no open section'),
        ("ab {{name", '1:4: tag is never closed: expected "}}"'),
        ("{{{name}}", '1:1: tag is never closed: expected "}}}"'),
        ("{{=<% %>=}}\n<% name", '2:1: tag is never closed: expected "%>"'),
        ("{{= | =}}", '1:1: bad delimiter tag "|": expected two delimiters'),
        ("{{=a b c=}}", '1:1: bad delimiter tag "a b c"'),
        ("{{=a= b=}}", '1:1: bad delimiter tag "a= b"'),
        ("  {{ }}", "1:3: empty tag: a name is expected"),
    ],
)
def test_mistakes_are_named_with_their_position(source: str, message: str) -> None:
    with pytest.raises(TemplateError) as caught:
        parse(source)
    assert str(caught.value).startswith(message)


def test_nesting_is_bounded_without_recursion_errors() -> None:
    deep = "{{#a}}" * MAX_DEPTH + "x" + "{{/a}}" * MAX_DEPTH
    assert compile_template(deep).render({"a": True}) == "x"
    with pytest.raises(TemplateError, match=f"nested more than {MAX_DEPTH} deep"):
        parse("{{#a}}" * (MAX_DEPTH + 1) + "{{/a}}" * (MAX_DEPTH + 1))
    with pytest.raises(TemplateError, match="nested more than"):
        parse("{{#a}}" * 100_000)


def test_huge_templates_are_refused_and_large_ones_fine() -> None:
    big = "{{x}}," * 20_000
    assert compile_template(big).render({"x": 1}) == "1," * 20_000
    with pytest.raises(TemplateError, match="the limit is"):
        parse("x" * (MAX_TEMPLATE_CHARS + 1))


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("{}#^/!>=&.ab \n\t|<%")), max_size=60))
def test_any_text_compiles_or_raises_template_error(source: str) -> None:
    try:
        template = compile_template(source)
    except TemplateError as exc:
        assert exc.line >= 1 and exc.col >= 1
        return
    template.render({"a": [{"b": 1}, {"b": 2}], "b": True})
