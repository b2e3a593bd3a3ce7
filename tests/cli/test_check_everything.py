"""`hookwire check` reports everything `hookwire run` would refuse, all at once: the values'
problems and, beside them, the templates' (every one of a JSON body's), a JSON body that no
values can make JSON, and what only a start would find (the journal's folder, the TLS pair)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.templates.json_template import JsonTemplate, JsonTemplateError, never_json
from tests.helpers import run_cli

MISTAKES = """
[journal]
backend = "sqlite"
path = "missing/j.db"

[delivery]
timeout = -1

[[hooks]]
name = "no-host"
event = "t"
url = "http:///x"

[[hooks]]
name = "space"
event = "t"
url = "http://exa mple.com/x"

[[hooks]]
name = "never-json"
event = "t"
url = "http://ok.example/x"
json = '{"a": {{x}} {{y}}}'

[[hooks]]
name = "two-errors"
event = "t"
url = "http://ok.example/x"
json = { a = "{{#x}}", b = "{{/y}}" }
"""


async def test_every_mistake_is_reported_in_one_run(tmp_path: Path) -> None:
    config = tmp_path / "engine.toml"
    config.write_text(MISTAKES)
    result = await run_cli("check", "--config", str(config))
    assert result.returncode == 1
    lines = result.stderr.decode().splitlines()
    assert "Traceback" not in result.stderr.decode()
    expected = [
        "delivery.timeout: expected a duration greater than 0, got -1",
        'hooks[0].url: expected a URL with a host after the scheme (http://host/path), got "http:///x"',
        "hooks[1].url: expected a URL without spaces (write them %20 in a path or query), got "
        '"http://exa mple.com/x"',
        "hooks[2].json: 1:1: can never render valid JSON",
        'hooks[3].json.a: 1:1: section "x" is never closed',
        'hooks[3].json.b: 1:1: closing tag "y" has no open section',
        f"journal.path: {tmp_path / 'missing' / 'j.db'}: the folder {tmp_path / 'missing'} does"
        " not exist; create it or change journal.path",
    ]
    for wanted in expected:
        assert any(wanted in line for line in lines), (wanted, lines)
    assert len(lines) == len(expected)
    # What check refuses, run refuses too (the first problem it meets, at least).
    ran = await run_cli("run", "--config", str(config))
    assert ran.returncode == 1 and "Traceback" not in ran.stderr.decode()


@pytest.mark.parametrize(
    "text",
    [
        '{"a": {{x}} {{y}}}',
        '{"a": }',
        "{{#s}}[1,{{/s}}",
        '"{{x}}',
    ],
)
def test_a_json_body_no_values_can_make_json_is_refused(text: str) -> None:
    assert never_json(text, "mustache") is not None
    with pytest.raises(JsonTemplateError, match="can never render valid JSON"):
        JsonTemplate(text)


@pytest.mark.parametrize(
    "text",
    [
        '{"a": {{{x}}}}',
        '{"a": "{{x}}"}',
        "{{{x}}}",
        '{"a": [{{#items}}{{{.}}},{{/items}}0]}',
        '{"a": 1{{#more}}, "b": 2{{/more}}}',
        '{{#if x}}{"a": 1}{{else}}[]{{/if}}',
    ],
)
def test_a_json_body_some_values_can_make_json_is_kept(text: str) -> None:
    language = "handlebars" if "{{else}}" in text else "mustache"
    assert never_json(text, language) is None
