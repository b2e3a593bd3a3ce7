"""Hook templates are compiled when the config loads; errors name hook, field and position."""

from __future__ import annotations

import orjson
import pytest

from engine.config.settings import ConfigError
from engine.core.model import Event
from engine.templates import TemplateRenderError
from engine.templates.context import event_context
from tests.conftest import PRODUCT_ID, WriteConfig

HOOK = """
[partials]
reading = '{{{temp}}} {{unit}}'

[[hooks]]
event = "temp"
url = "http://127.0.0.1:9000/d/{{{TRACKLE_DEVICE_ID}}}"
json = { value = "{{{temp}}}", text = "{{>reading}}" }
typed_json = true
headers = { "X-Device" = "{{{PARTICLE_DEVICE_ID}}}" }
query = { unit = "{{unit}}" }
auth = { username = "u-{{unit}}", password = "p" }
responseTemplate = "{{{status}}}"
"""


def test_templates_are_compiled_at_load_and_render(write_config: WriteConfig) -> None:
    [hook] = write_config(HOOK).hooks
    templates = hook.templates
    assert templates is not None
    event = Event(5, "temp", '{"temp":21.5,"unit":"C"}', 60, False, "t", "dev1", None)
    context = event_context(event)
    assert templates.url.render(context) == "http://127.0.0.1:9000/d/dev1"
    assert templates.json is not None
    assert orjson.loads(templates.json.render(context)) == {"value": 21.5, "text": "21.5 C"}
    assert templates.headers is not None
    [(name, value)] = templates.headers
    assert (name.render(context), value.render(context)) == ("X-Device", "dev1")
    assert templates.response_topic.render(context) == "hook-response/temp"
    assert templates.error_response_topic.render(context) == "hook-error/temp"
    with pytest.raises(TemplateRenderError, match="TRACKLE_DEVICE_ID"):
        templates.url.render({"TRACKLE_DEVICE_ID": "x\r\nHost: evil"})


def test_product_hooks_prefix_the_device_to_their_response_topic(
    write_config: WriteConfig,
) -> None:
    [hook] = write_config(
        f'[[hooks]]\nevent = "t"\nurl = "http://127.0.0.1/"\nproduct = {PRODUCT_ID}\n'
    ).hooks
    assert hook.templates is not None
    context = {"TRACKLE_DEVICE_ID": "dev1", "TRACKLE_EVENT_NAME": "t"}
    assert hook.templates.response_topic.render(context) == "dev1/hook-response/t"


def test_every_template_problem_is_reported_with_its_place(
    write_config: WriteConfig,
) -> None:
    broken = """
[partials]
bad = "{{#open}}"

[[hooks]]
event = "temp"
url = "http://127.0.0.1/{{#a}}"
json = '{"tags": [{{#tags}}"{{.}}"]}'
headers = { "X-A" = "{{>nope}}", "X-B" = "a\\nb" }

[[hooks]]
event = "hum"
url = "http://127.0.0.1/"
json = { a = { b = ["{{/c}}"] } }
responseTemplate = "{{=x=}}"
"""
    with pytest.raises(ConfigError) as caught:
        write_config(broken)
    problems = [p.split(": ", 1)[1] for p in caught.value.problems]
    assert problems == [
        'partials.bad: 1:1: section "open" is never closed',
        'hooks[0].url: 1:18: section "a" is never closed',
        'hooks[0].json: 1:11: section "tags" is never closed',
        'hooks[0].headers.X-A: 1:1: partial "nope" is not defined',
        "hooks[0].headers.X-B: a line break is not allowed here",
        'hooks[1].json.a.b[0]: 1:1: closing tag "c" has no open section',
        'hooks[1].responseTemplate: 1:1: bad delimiter tag "x": expected two delimiters '
        'without "=" or spaces, like {{=<% %>=}}',
    ]
