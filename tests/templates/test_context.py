"""The variables of an event, as Particle webhook templates use them."""

from __future__ import annotations

import pytest

from engine.core.model import Event
from engine.templates import render
from engine.templates.context import BUILTIN_NAMES, event_context

DEVICE = "0123456789abcdef01234567"


def event(data: str, name: str = "temp", product: int | None = None) -> Event:
    return Event(42, name, data, 60, False, "2026-11-28T10:00:00.000Z", DEVICE, product)


@pytest.mark.parametrize(
    ("names", "value"),
    [
        (("TRACKLE_EVENT_NAME", "PARTICLE_EVENT_NAME", "SPARK_EVENT_NAME"), "temp"),
        (("TRACKLE_EVENT_VALUE", "PARTICLE_EVENT_VALUE", "SPARK_EVENT_VALUE"), "21.5"),
        (("TRACKLE_DEVICE_ID", "PARTICLE_DEVICE_ID", "SPARK_CORE_ID"), DEVICE),
        (
            ("TRACKLE_PUBLISHED_AT", "PARTICLE_PUBLISHED_AT", "SPARK_PUBLISHED_AT"),
            "2026-11-28T10:00:00.000Z",
        ),
        (("TRACKLE_EVENT_ID", "PARTICLE_EVENT_ID"), "42"),
        (("PRODUCT_ID",), "1001"),
        (("PRODUCT_VERSION",), ""),
    ],
)
def test_builtin_names_and_aliases(names: tuple[str, ...], value: str) -> None:
    context = event_context(event("21.5", product=1001))
    for name in names:
        assert render("{{{" + name + "}}}", context) == value
    assert set(names) <= BUILTIN_NAMES


def test_json_data_keys_dotted_paths_and_list_indices() -> None:
    data = '{"temp":21.5,"unit":"C","a":{"b":{"c":"deep"}},"c":[{"d":1},{"d":2}],"on":true}'
    context = event_context(event(data))
    assert render("{{temp}}{{unit}} {{a.b.c}} {{{c.0.d}}}/{{c.1.d}} {{on}}", context) == (
        "21.5C deep 1/2 true"
    )
    assert render("{{#c}}[{{d}}]{{/c}}", context) == "[1][2]"
    assert render("{{#a}}{{b.c}}{{/a}}", context) == "deep"
    assert render("{{c.5.d}}|{{a.x.y}}", context) == "|"


def test_builtin_names_win_over_data_keys() -> None:
    context = event_context(event('{"TRACKLE_EVENT_NAME":"forged","x":1}'))
    assert render("{{TRACKLE_EVENT_NAME}} {{x}}", context) == "temp 1"


@pytest.mark.parametrize("data", ["21.5", "[1,2]", '"text"', "{not json", "", "null", "{"])
def test_data_that_is_not_a_json_object_adds_no_variables(data: str) -> None:
    context = event_context(event(data))
    assert set(context) == BUILTIN_NAMES
    assert render("{{{TRACKLE_EVENT_VALUE}}}", context) == data


def test_particle_style_webhook_body() -> None:
    context = event_context(event('{"temp":21.5,"tags":["a","b"]}'))
    body = (
        '{"device":"{{{PARTICLE_DEVICE_ID}}}","temp":{{{temp}}},'
        '"tags":[{{#tags}}"{{.}}",{{/tags}}"end"]}'
    )
    assert render(body, context) == (f'{{"device":"{DEVICE}","temp":21.5,"tags":["a","b","end"]}}')
