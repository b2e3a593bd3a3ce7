"""handlebars.js as the oracle for our Handlebars engine (issue 19): proof that the harness
(tests/handlebars_js.py and tests/js/handlebars_render.mjs) renders what handlebars.js renders,
and that the cases ported from handlebars.js's own spec (handlebars_spec/, see its README) say
what that spec says.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.handlebars_js import render_with_handlebars_js, requires_handlebars_js
from tests.templates.handlebars_strategies import MAX_DEPTH, cases, random_cases

SPEC_DIR = Path(__file__).resolve().parent / "handlebars_spec"


def _spec_cases() -> list[Any]:
    params = []
    for path in sorted(SPEC_DIR.glob("*.json")):
        for case in json.loads(path.read_text(encoding="utf-8")):
            key = f"{path.stem}: {case['name']}"
            params.append(pytest.param(key, case, id=key))
    return params


SPEC_CASES = _spec_cases()


@pytest.fixture(scope="module")
def spec_results() -> dict[str, tuple[bool, str]]:
    """Every ported case rendered by handlebars.js, in one batch, by case id."""
    ported = [param.values[1] for param in SPEC_CASES]
    results = render_with_handlebars_js([(case["template"], case["context"]) for case in ported])
    return {param.values[0]: result for param, result in zip(SPEC_CASES, results, strict=True)}


def test_every_ported_spec_file_is_here() -> None:
    assert (SPEC_DIR / "LICENSE").is_file()
    assert len((SPEC_DIR / "COMMIT").read_text().strip()) == 40
    # 190 cases ported from 8 spec files of v4.7.9 (README); fewer means a file was cut short.
    assert len(SPEC_CASES) >= 190
    keys = [param.values[0] for param in SPEC_CASES]
    assert len(set(keys)) == len(keys)
    for key, case in (param.values for param in SPEC_CASES):
        assert set(case) == {"name", "template", "context", "expected"}, key


@requires_handlebars_js
@pytest.mark.parametrize(("key", "case"), SPEC_CASES)
def test_handlebars_js_renders_its_spec(
    key: str, case: dict[str, Any], spec_results: dict[str, tuple[bool, str]]
) -> None:
    ok, output = spec_results[key]
    assert ok, output
    assert output == case["expected"]


@requires_handlebars_js
def test_a_batch_answers_every_case_in_order() -> None:
    batch: list[tuple[str, object]] = [
        ("{{#each a}}{{@index}}:{{this}} {{/each}}", {"a": [1, "<b>"]}),
        ("{{#if}}", None),
        ("{{x}}", {"x": "é\u2028\x85\n😀"}),
        ('{{log "to stderr, not into the results"}}after', {}),
        ("{{#with p}}{{../q}}{{/with}}", {"p": {}, "q": "`='&\""}),
        ("{{x}}", []),
    ]
    results = render_with_handlebars_js(batch)
    assert results[0] == (True, "0:1 1:&lt;b&gt; ")
    ok, error = results[1]
    assert not ok
    assert error.startswith("Parse error on line 1:")
    assert results[2] == (True, "é\u2028\x85\n😀")
    assert results[3] == (True, "after")
    assert results[4] == (True, "&#x60;&#x3D;&#x27;&amp;&quot;")
    assert results[5] == (True, "")
    assert len(results) == len(batch)


@requires_handlebars_js
def test_options_apply_to_the_whole_batch() -> None:
    results = render_with_handlebars_js([("{{x}}", {"x": "<&>"})] * 2, options={"noEscape": True})
    assert results == [(True, "<&>")] * 2


@requires_handlebars_js
def test_an_empty_batch_starts_no_node() -> None:
    assert render_with_handlebars_js([]) == []


GENERATED_SEED = 19
GENERATED_COUNT = 200

CONSTRUCTS = (
    "{{#if ",
    "{{#unless ",
    "{{#each ",
    "{{#with ",
    "{{else}}",
    "{{^}}",
    "{{else if ",
    "{{else unless ",
    " includeZero=true}}",
    " as |item i|}}",
    " as |w|}}",
    "(lookup ",
    "{{lookup ",
    "{{log ",
    "{{{",
    "{{&",
    "{{^",
    "../",
    "../../",
    "@root",
    "@index",
    "@key",
    "@first",
    "@last",
    "@../index",
    "{{!--",
    "{{! ",
    "{{{{",
    ".[0]",
    "\r\n",
    "😀",
    "<",
    "&",
    '"',
    "'",
    "=",
)
"""What the seeded batch must contain (tildes aside): every construct the grammar has."""


def test_the_generated_batch_has_every_construct() -> None:
    templates = [template for template, _ in random_cases(GENERATED_COUNT, GENERATED_SEED)]
    assert random_cases(GENERATED_COUNT, GENERATED_SEED)[0][0] == templates[0]
    bare = [template.replace("~", "") for template in templates]
    missing = [marker for marker in CONSTRUCTS if not any(marker in t for t in bare)]
    assert not missing
    assert any("{{~" in t for t in templates)
    assert any("~}}" in t for t in templates)
    assert max(_nesting(t) for t in bare) == MAX_DEPTH


def _nesting(template: str) -> int:
    """How deep the blocks of a generated template nest (raw blocks and else tags aside)."""
    template = re.sub(r"\{\{\{\{(\w+)\}\}\}\}.*?\{\{\{\{/\1\}\}\}\}", "", template, flags=re.S)
    depth = deepest = 0
    for tag in re.finditer(r"\{\{(#|\^(?!\}\})|/)", template):
        depth += -1 if tag[1] == "/" else 1
        deepest = max(deepest, depth)
    return deepest


@requires_handlebars_js
def test_handlebars_js_renders_every_generated_case() -> None:
    batch = random_cases(GENERATED_COUNT, GENERATED_SEED)
    results = render_with_handlebars_js(batch)
    answers = zip(batch, results, strict=True)
    failures = [(case, message) for case, (ok, message) in answers if not ok]
    assert not failures
    # Not a batch of misses: most templates print something from their context or text.
    assert sum(1 for _, output in results if output) > GENERATED_COUNT // 2


@requires_handlebars_js
@settings(
    max_examples=5,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(cases(), min_size=1, max_size=20))
def test_the_strategies_draw_valid_handlebars(batch: list[tuple[str, object]]) -> None:
    results = render_with_handlebars_js(batch)
    answers = zip(batch, results, strict=True)
    failures = [(case, message) for case, (ok, message) in answers if not ok]
    assert not failures
