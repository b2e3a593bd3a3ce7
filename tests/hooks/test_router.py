"""Which hooks an event triggers: prefixes, device and product filters, hook-* events."""

from __future__ import annotations

from engine.core.model import Event
from engine.hooks.router import HookSet
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


def routed(hooks: HookSet, event: Event) -> list[str]:
    """The names of the hooks ``event`` is routed to, in config order."""
    return [hook.name for hook in hooks.route(event)]


def test_prefixes_filters_and_disabled_hooks(write_config: WriteConfig) -> None:
    hooks = HookSet(write_config(HOOKS).hooks)
    assert routed(hooks, event("temp")) == ["hooks[0]", "hooks[1]"]
    assert routed(hooks, event("temperature")) == ["hooks[0]", "hooks[1]"]
    assert routed(hooks, event("temperature", product=PRODUCT_ID)) == [
        "hooks[0]",
        "hooks[1]",
        "hooks[2]",
    ]
    assert routed(hooks, event("temp", device="dev2")) == ["hooks[0]"]
    assert routed(hooks, event("Temp")) == []
    assert routed(hooks, event("t")) == []


def test_engine_events_trigger_nothing(write_config: WriteConfig) -> None:
    hooks = HookSet(write_config(HOOKS).hooks)
    assert routed(hooks, event("hook-response/temp/0")) == []
    assert routed(hooks, event("humidity")) == ["hooks[4]"]


def test_disable_and_enable(write_config: WriteConfig) -> None:
    hooks = HookSet(write_config(HOOKS).hooks)
    hooks.disable("hooks[0]")
    assert routed(hooks, event("temp")) == ["hooks[1]"]
    assert hooks.is_disabled("hooks[0]")
    hooks.enable("hooks[0]")
    hooks.enable("hooks[3]")  # disabled in the config: stays disabled
    assert routed(hooks, event("temp")) == ["hooks[0]", "hooks[1]"]
