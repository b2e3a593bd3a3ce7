"""handlebars.js as the oracle for our Handlebars engine (issue 19): proof that the harness
(tests/handlebars_js.py and tests/js/handlebars_render.mjs) renders what handlebars.js renders.
"""

from __future__ import annotations

from tests.handlebars_js import render_with_handlebars_js, requires_handlebars_js


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
