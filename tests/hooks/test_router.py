"""Which hooks an event triggers: prefixes, device and product filters, hook-* events."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.config.settings import HookConfig
from engine.core.model import Event
from engine.hooks.hook import compile_hook
from engine.hooks.router import HookSet, HookSnapshot
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


def test_add_replace_and_remove_take_effect_from_the_next_route(write_config: WriteConfig) -> None:
    config = write_config(HOOKS)
    hooks = HookSet(config.hooks)
    before = hooks.snapshot
    extra = compile_hook(HookConfig("api", "extra", "temp", "http://127.0.0.1/x"), {})
    hooks.add(extra)
    assert routed(hooks, event("temp")) == ["hooks[0]", "hooks[1]", "extra"]
    assert [hook.name for hook in before.route(event("temp"))] == ["hooks[0]", "hooks[1]"]
    with pytest.raises(ValueError, match="a hook named 'extra' exists already"):
        hooks.add(extra)
    hooks.disable("hooks[0]")
    edited = compile_hook(dataclasses.replace(config.hooks[0], event="hum"), {})
    assert hooks.replace(edited).event == "temp"  # the old definition comes back
    assert routed(hooks, event("temp")) == ["hooks[1]", "extra"]
    assert routed(hooks, event("humidity")) == ["hooks[0]", "hooks[4]"]  # enabled, in place
    assert hooks.current(extra)
    assert hooks.remove("extra") is extra
    assert not hooks.current(extra)
    assert hooks.remove("extra") is None
    assert routed(hooks, event("temp")) == ["hooks[1]"]
    assert hooks.get("extra") is None


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["add", "remove"]),
            st.integers(0, 7),
            st.sampled_from(["t", "te", "temp", "h"]),
            st.booleans(),
        ),
        max_size=40,
    )
)
def test_changes_one_at_a_time_route_as_a_snapshot_built_whole(
    ops: list[tuple[str, int, str, bool]],
) -> None:
    hooks = HookSet([])
    for op, i, prefix, disabled in ops:
        name = f"h{i}"
        if op == "add" and hooks.get(name) is None:
            config = HookConfig(name, name, prefix, "http://127.0.0.1/x", disabled=disabled)
            hooks.add(compile_hook(config, {}))
        elif op == "remove":
            hooks.remove(name)
        whole = HookSnapshot.of(hooks.snapshot.hooks, hooks.snapshot.disabled)
        for name_ in ("temp", "hum", "t"):
            assert hooks.snapshot.route(event(name_)) == whole.route(event(name_))
