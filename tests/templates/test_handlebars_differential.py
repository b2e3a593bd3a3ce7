"""Our Handlebars engine against handlebars.js itself (issue 19): every generated case, every
ported spec case and every corner below renders byte for byte as handlebars.js 4.7.10
renders it, or differs in one of the ways docs/templates.md lists, each checked here:

(a) handlebars.js 4.7.10 joins a block's leading ``{{{a}}}{{{b}}}`` with JavaScript's ``+``,
    so two numbers or booleans are added ("3" for 1 and 2) instead of concatenated. Fixed
    upstream after 4.7.10 (#2167); we concatenate. A differing case counts as explained only
    when handlebars.js with that fix applied (``patched``) renders exactly what we render.
(b) What we refuse at compile time that handlebars.js renders (``REFUSED``): an unknown
    helper called with only a hash or nothing (``{{foo a=1}}``, ``(foo)``), which
    handlebars.js renders as an empty string, and ``lookup`` or ``log`` opening a block;
    and what we refuse to render (``RENDER_REFUSED``): a block parameter of a section
    (``{{#a as |x|}}``) whose value is not an array, which handlebars.js binds to the
    enclosing blocks' parameter lists, an accident of its runtime.
Everything handlebars.js refuses (a parse error, ``{{if a}}``, a wrong number of arguments),
we refuse when the template is compiled, with line and column; what it fails on only when
rendering with some data (a block parameter of a section over an object), we fail on then
too. Only that both refuse is compared, not the messages. A block parameter of ``#if`` or
``#unless`` that is read is refused at compile time: handlebars.js fails only when that
branch renders.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.templates import handlebars_compiler
from engine.templates.compiler import TemplateRenderError
from engine.templates.handlebars_compiler import compile_handlebars
from engine.templates.parser import TemplateError
from tests.handlebars_js import render_with_handlebars_js, requires_handlebars_js
from tests.templates.handlebars_strategies import cases, random_cases

SPEC_DIR = Path(__file__).resolve().parent / "handlebars_spec"

GENERATED_SEED = 2019
GENERATED_COUNT = 3000
"""Generated cases compared in every run (the issue asks for at least 2,000): about 2 s of
node and 1 s of ours."""

Result = tuple[bool, str]


def ours(template: str, context: object) -> Result:
    """``(True, output)``, or ``(False, message)`` for a template we refuse to compile or,
    with this context, to render."""
    try:
        return True, compile_handlebars(template)(context)
    except (TemplateError, TemplateRenderError) as exc:
        return False, str(exc)


def agree(mine: Result, theirs: Result) -> bool:
    """Both rendered the same text, or both refused the template."""
    return mine == theirs if mine[0] and theirs[0] else mine[0] == theirs[0]


def unexplained(batch: list[tuple[str, Any]]) -> tuple[list[str], int]:
    """The cases of ``batch`` that differ from handlebars.js and are not explained by its
    bug #2167 (a), as readable reports; and how many differed but were explained."""
    theirs = render_with_handlebars_js(batch)
    mine = [ours(template, context) for template, context in batch]
    differ = [i for i, pair in enumerate(zip(mine, theirs, strict=True)) if not agree(*pair)]
    patched = render_with_handlebars_js([batch[i] for i in differ], patched=True)
    reports = [
        f"template {batch[i][0]!r}\ncontext {json.dumps(batch[i][1])}\n"
        f"handlebars.js {theirs[i]!r}\nours {mine[i]!r}"
        for i, fixed in zip(differ, patched, strict=True)
        if not agree(mine[i], fixed)
    ]
    return reports, len(differ) - len(reports)


@requires_handlebars_js
def test_every_generated_case_renders_as_handlebars_js() -> None:
    batch = random_cases(GENERATED_COUNT, GENERATED_SEED)
    reports, explained = unexplained(batch)
    assert not reports, f"{len(reports)} of {len(batch)} differ:\n\n" + "\n\n".join(reports[:5])
    # The generator reaches the bug (a) a few times in a thousand; far more would mean the
    # patched renderer hides something else.
    assert explained <= GENERATED_COUNT // 100


def test_blocks_as_functions_render_as_blocks_inline(monkeypatch: pytest.MonkeyPatch) -> None:
    # Blocks nested deeper than MAX_INLINE_LEVELS become functions, which the generated
    # cases (3 blocks deep) never reach: with the limit at 0, every block is one.
    batch = random_cases(GENERATED_COUNT, GENERATED_SEED)
    inline = [ours(template, context) for template, context in batch]
    monkeypatch.setattr(handlebars_compiler, "MAX_INLINE_LEVELS", 0)
    assert [ours(template, context) for template, context in batch] == inline


@requires_handlebars_js
@settings(
    max_examples=5,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(cases(), min_size=10, max_size=40))
def test_drawn_cases_render_as_handlebars_js(batch: list[tuple[str, Any]]) -> None:
    reports, _ = unexplained(batch)
    assert not reports, "\n\n".join(reports)


def _spec_cases() -> list[Any]:
    params = []
    for path in sorted(SPEC_DIR.glob("*.json")):
        for case in json.loads(path.read_text(encoding="utf-8")):
            params.append(pytest.param(case, id=f"{path.stem}: {case['name']}"))
    return params


@pytest.mark.parametrize("case", _spec_cases())
def test_handlebars_js_spec_cases_render_as_recorded(case: dict[str, Any]) -> None:
    # The recorded outputs are handlebars.js's own (test_handlebars_oracle proves it): no
    # node needed here.
    assert ours(case["template"], case["context"]) == (True, case["expected"])


CORNERS: list[tuple[str, Any]] = [
    # Sections on a non-helper name: 0 and "" render the body, with the value as context.
    ("{{#x}}[{{this}}]{{else}}no{{/x}}", {"x": 0}),
    ("{{#x}}[{{this}}]{{else}}no{{/x}}", {"x": ""}),
    ("{{#x}}[{{this}}]{{else}}no{{/x}}", {"x": {}}),
    ("{{#x}}[{{this}}]{{else}}no{{/x}}", {"x": []}),
    ("{{#x}}[{{@index}}{{this}}]{{/x}}", {"x": ["a", "b"]}),
    ("{{^x}}none{{/x}}", {"x": 0}),
    ("{{^x}}none{{/x}}", {"x": []}),
    ("{{^x}}none{{/x}}", {"x": False}),
    # if: 0 is false unless includeZero; {} is true; [] is false even with includeZero.
    ("{{#if x}}y{{else}}n{{/if}}", {"x": 0}),
    ("{{#if x includeZero=true}}y{{else}}n{{/if}}", {"x": 0}),
    ("{{#if x includeZero=true}}y{{else}}n{{/if}}", {"x": -0.0}),
    ("{{#if x includeZero=z}}y{{else}}n{{/if}}", {"x": 0, "z": "yes"}),
    ("{{#if x includeZero=false}}y{{else}}n{{/if}}", {"x": 0}),
    ("{{#unless x includeZero=true}}y{{else}}n{{/unless}}", {"x": 0}),
    ("{{#if x}}y{{else}}n{{/if}}", {"x": {}}),
    ("{{#if x includeZero=true}}y{{else}}n{{/if}}", {"x": []}),
    ("{{#with x}}[{{this}}]{{else}}empty{{/with}}", {"x": 0}),
    ("{{#with x}}[{{this}}]{{else}}empty{{/with}}", {"x": ""}),
    # A null context: a helper's body sees handlebars.js's nullContext, an empty object.
    ("{{#each x}}{{#if true}}[{{this}}]{{/if}}({{this}}){{/each}}", {"x": [None, 1]}),
    ("{{#each x}}{{#y}}{{else}}[{{this}}]{{/y}}{{/each}}", {"x": [None]}),
    ("{{#each x}}{{#with this}}w{{else}}[{{this}}]{{/with}}{{/each}}", {"x": [None]}),
    # ../ counts only contexts that differ (loose equality): 1 == "1", [1] == 1, {} != {}.
    ("{{#each a}}{{#each this}}<{{../this}}>{{/each}}{{/each}}", {"a": [[1], ["1"], [[2]]]}),
    ("{{#with a}}{{#with b}}{{../../x}}|{{../x}}{{/with}}{{/with}}", {"a": {"b": {}}, "x": 1}),
    ("{{#each a}}{{#with ../this}}{{../x}}{{/with}}{{/each}}", {"a": [1], "x": "top"}),
    ("{{#each a}}{{../../x}}{{/each}}", {"a": [1], "x": "beyond"}),
    # @data: a falsy step ends a data path (0, "", false are the result).
    ("{{@root.a}}|{{@index.a}}", 0),
    ("{{#each x}}{{@index.a}}{{@first.a}}|{{/each}}", {"x": [1, 2]}),
    (
        "{{#each x}}{{#each this}}{{@../key}}.{{@key}}:{{@../first}}{{@last}} {{/each}}{{/each}}",
        {"x": {"b": [1, 2], "a": {"k": 3}}},
    ),
    ("{{@foo}}{{@root.x}}{{@../index}}", {"x": "root"}),
    # Values as JavaScript writes them.
    (
        "{{a}} {{b}} {{c}} {{d}} {{e}} {{f}} {{g}}",
        {
            "a": 2**53 + 1,
            "b": -0.0,
            "c": 1e21,
            "d": 1e-7,
            "e": [1, [2, None], {}],
            "f": True,
            "g": 0.1,
        },
    ),
    ("{{x}}", {"x": "&<>\"'`="}),
    ("{{{x}}}{{&x}}", {"x": "&<>\"'`="}),
    # Own properties only: length of arrays and strings (UTF-16), never the prototype's.
    (
        "{{a.length}} {{s.length}} {{s.[0]}} {{e.length}} {{o.constructor}} {{a.constructor}}",
        {"a": [1, 2], "s": "😀x", "e": "é", "o": {}},
    ),
    (
        "{{lookup a 1}} {{lookup a -0}} {{lookup o 1.5}} {{lookup s 0}} {{lookup 0 0}}",
        {"a": ["x", "y"], "o": {"1.5": "f"}, "s": "abc"},
    ),
    (
        "{{lookup a b}}{{lookup a null}}{{lookup a undefined}}{{lookup a true}}",
        {"a": {"null": "N", "undefined": "U", "true": "T"}},
    ),
    # each over objects: integer-like keys first, ascending; strings and numbers do nothing.
    ("{{#each o}}{{@key}}={{this}},{{/each}}", {"o": {"b": 1, "10": 2, "a": 3, "2": 4, "01": 5}}),
    ("{{#each s}}x{{else}}not iterable{{/each}}", {"s": "abc"}),
    ("{{#each n}}x{{else}}not iterable{{/each}}", {"n": 3}),
    # Block parameters shadow context names, helpers and even @data names.
    (
        "{{#each a as |x i|}}{{x}}{{i}}{{#each ../b as |x|}}{{x}}{{i}}{{/each}}{{/each}}",
        {"a": ["p", "q"], "b": ["r"]},
    ),
    ("{{#each a as |index|}}{{@index}}{{/each}}", {"a": ["p"]}),
    ("{{#with a as |x y|}}{{x.b}}[{{y}}]{{/with}}", {"a": {"b": "B"}}),
    ("{{#if a as |x|}}[{{x}}]{{/if}}", {"a": 1, "x": "ctx"}),
    ("{{#a as |x i|}}{{x}}{{i}};{{/a}}", {"a": ["p", "q"]}),
    ("{{#a as |x|}}[{{x}}]{{/a}}", {"a": True}),
    # A literal where a name belongs is that name; a raw block on a helper.
    ('{{"a b"}}{{true}}{{1}}{{null}}', {"a b": "AB", "true": "T", "1": "one", "null": "N"}),
    ("{{{{if a}}}}{{x}}{{{{/if}}}}|{{{{b}}}}{{x}}{{{{/b}}}}", {"a": 1, "b": [1, 2]}),
    # log renders nothing, wherever it is.
    ('{{log a level="error"}}{{#if (log a)}}y{{else}}n{{/if}}{{lookup (log a) "x"}}', {"a": 1}),
    # Deeper than the blocks kept inline: the rest become functions of their own.
    (
        "{{#each a as |x i|}}"
        + "{{#if true}}" * 10
        + "{{#with this}}{{x}}{{i}}{{@index}}{{../../b}}{{/with}}"
        + "{{/if}}" * 10
        + "{{/each}}",
        {"a": [1, 2], "b": "B"},
    ),
    # Refused by both (only that is compared).
    ("{{if a}}", {}),
    ("{{#each a b}}x{{/each}}", {}),
    ("{{foo a}}", {}),
    ("{{#x}}", {}),
]


@requires_handlebars_js
def test_corners_render_as_handlebars_js() -> None:
    theirs = render_with_handlebars_js(CORNERS)
    for (template, context), result in zip(CORNERS, theirs, strict=True):
        assert agree(ours(template, context), result), (template, context, result)


REFUSED = [
    ("{{foo a=1}}", '1:3: unknown helper "foo"'),
    ("{{lookup (foo) a}}", '1:10: unknown helper "foo"'),
    ("{{#lookup a b}}x{{/lookup}}", '1:1: "lookup" is not a block helper'),
    ("{{#log a}}x{{/log}}", '1:1: "log" is not a block helper'),
    # handlebars.js fails on these unless the first argument is falsy (here it is missing).
    ("{{lookup a}}", '1:1: "lookup" needs exactly two arguments'),
    ("{{lookup a b c}}", '1:1: "lookup" needs exactly two arguments'),
]
"""(b): what handlebars.js renders (as an empty string) and we refuse."""

RENDER_REFUSED = [
    ("{{#a as |x|}}[{{x}}]{{/a}}", {"a": {"k": 1}}, "[]"),
    (
        "{{#each b as |p q|}}{{#@root.a as |x y|}}[{{x}}|{{y}}]{{/@root.a}}{{/each}}",
        {"a": {"k": 1}, "b": ["P"]},
        "[P,0|]",
    ),
]
"""(b): what handlebars.js renders and we refuse to render."""


@requires_handlebars_js
def test_what_we_refuse_and_handlebars_js_renders_is_only_the_listed() -> None:
    theirs = render_with_handlebars_js([(template, {}) for template, _ in REFUSED])
    for (template, message), result in zip(REFUSED, theirs, strict=True):
        assert result == (True, "")
        ok, ours_message = ours(template, {})
        assert not ok
        assert ours_message.startswith(message), template


@requires_handlebars_js
def test_what_we_refuse_to_render_is_only_the_listed() -> None:
    theirs = render_with_handlebars_js([(template, data) for template, data, _ in RENDER_REFUSED])
    for (template, context, output), result in zip(RENDER_REFUSED, theirs, strict=True):
        assert result == (True, output)
        ok, message = ours(template, context)
        assert not ok
        assert "has a value only when the section's value is an array" in message


@requires_handlebars_js
def test_the_patched_oracle_concatenates_where_4_7_10_adds() -> None:
    case = [("{{{a}}}{{{b}}}", {"a": 1, "b": True})]
    assert render_with_handlebars_js(case) == [(True, "2")]
    assert render_with_handlebars_js(case, patched=True) == [(True, "1true")]
    assert ours(*case[0]) == (True, "1true")
