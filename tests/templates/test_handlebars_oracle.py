"""handlebars.js as the oracle for our Handlebars engine (issue 19): proof that the harness
(tests/handlebars_js.py and tests/js/handlebars_render.mjs) renders what handlebars.js renders,
and that the cases ported from handlebars.js's own spec (handlebars_spec/, see its README) say
what that spec says.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.handlebars_js import render_with_handlebars_js, requires_handlebars_js

SPEC_DIR = Path(__file__).resolve().parent / "handlebars_spec"


def _spec_cases() -> list[Any]:
    cases = []
    for path in sorted(SPEC_DIR.glob("*.json")):
        for case in json.loads(path.read_text(encoding="utf-8")):
            key = f"{path.stem}: {case['name']}"
            cases.append(pytest.param(key, case, id=key))
    return cases


SPEC_CASES = _spec_cases()


@pytest.fixture(scope="module")
def spec_results() -> dict[str, tuple[bool, str]]:
    """Every ported case rendered by handlebars.js, in one batch, by case id."""
    cases = [param.values[1] for param in SPEC_CASES]
    results = render_with_handlebars_js([(case["template"], case["context"]) for case in cases])
    return {param.values[0]: result for param, result in zip(SPEC_CASES, results, strict=True)}


def test_every_ported_spec_file_is_here() -> None:
    assert (SPEC_DIR / "LICENSE").is_file()
    assert len((SPEC_DIR / "COMMIT").read_text().strip()) == 40
    # 190 cases ported from 9 spec files of v4.7.9 (README); fewer means a file was cut short.
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
    cases: list[tuple[str, object]] = [
        ("{{#each a}}{{@index}}:{{this}} {{/each}}", {"a": [1, "<b>"]}),
        ("{{#if}}", None),
        ("{{x}}", {"x": "é\u2028\x85\n😀"}),
        ('{{log "to stderr, not into the results"}}after', {}),
        ("{{#with p}}{{../q}}{{/with}}", {"p": {}, "q": "`='&\""}),
        ("{{x}}", []),
    ]
    results = render_with_handlebars_js(cases)
    assert results[0] == (True, "0:1 1:&lt;b&gt; ")
    ok, error = results[1]
    assert not ok
    assert error.startswith("Parse error on line 1:")
    assert results[2] == (True, "é\u2028\x85\n😀")
    assert results[3] == (True, "after")
    assert results[4] == (True, "&#x60;&#x3D;&#x27;&amp;&quot;")
    assert results[5] == (True, "")
    assert len(results) == len(cases)


@requires_handlebars_js
def test_options_apply_to_the_whole_batch() -> None:
    results = render_with_handlebars_js([("{{x}}", {"x": "<&>"})] * 2, options={"noEscape": True})
    assert results == [(True, "<&>")] * 2


@requires_handlebars_js
def test_an_empty_batch_starts_no_node() -> None:
    assert render_with_handlebars_js([]) == []
