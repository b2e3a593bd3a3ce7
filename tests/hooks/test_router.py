"""Which hooks an event triggers: prefixes, device and product filters, hook-* events."""

from __future__ import annotations

from engine.core.model import Event
from engine.hooks.router import Router
from tests.conftest import PRODUCT_ID, WriteConfig

HOOKS = f"""
[[hooks]]
event = "temp"
url = "http://127.0.0.1/a"

[[hooks]]
event = "te"
url = "http://127.0.0.1/b"
devices = ["dev1"]

[[hooks]]
event = "temperature"
url = "http://127.0.0.1/c"
product = {PRODUCT_ID}

[[hooks]]
event = "temp"
url = "http://127.0.0.1/d"
disabled = true

[[hooks]]
event = "h"
url = "http://127.0.0.1/e"
"""


def event(name: str, device: str = "dev1", product: int | None = None) -> Event:
    return Event(1, name, "", 60, False, "t", device, product)


def test_prefixes_filters_and_disabled_hooks(write_config: WriteConfig) -> None:
    router = Router(write_config(HOOKS).hooks)
    assert router.match(event("temp")) == [0, 1]
    assert router.match(event("temperature")) == [0, 1]
    assert router.match(event("temperature", product=PRODUCT_ID)) == [0, 1, 2]
    assert router.match(event("temp", device="dev2")) == [0]
    assert router.match(event("Temp")) == []
    assert router.match(event("t")) == []


def test_engine_events_trigger_nothing(write_config: WriteConfig) -> None:
    router = Router(write_config(HOOKS).hooks)
    assert router.match(event("hook-response/temp/0")) == []
    assert router.match(event("humidity")) == [4]


def test_disable_and_enable(write_config: WriteConfig) -> None:
    router = Router(write_config(HOOKS).hooks)
    router.disable(0)
    assert router.match(event("temp")) == [1]
    assert router.is_disabled(0)
    router.enable(0)
    router.enable(3)  # disabled in the config: stays disabled
    assert router.match(event("temp")) == [0, 1]
