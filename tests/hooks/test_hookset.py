"""The hook set: hooks compiled once and found by name, immutable snapshots, and the
routing done once, at append, travelling with each event to the dispatcher."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from engine.config.settings import ConfigError, HookConfig
from engine.config.settings import load_config as read_config
from engine.core.model import Event, EventDraft, hook_tag
from engine.hooks import Hook, compile_hooks, load_config
from engine.hooks.router import DISABLED_IN_CONFIG, GONE, HookSet
from engine.journal import MemoryJournal
from engine.journal.sqlite import SqliteJournal
from tests.conftest import WriteConfig

HOOKS = """
[[hooks]]
name = "temps"
event = "temp"
url = "http://127.0.0.1:9/t"

[[hooks]]
name = "everything"
event = "t"
url = "http://127.0.0.1:9/all"

[[hooks]]
name = "off"
event = "temp"
url = "http://127.0.0.1:9/off"
disabled = true
"""


def draft(name: str = "temp") -> EventDraft:
    return EventDraft(name, "21.5", 60, True, "2026-11-29T00:00:00.000Z", "dev1", None)


def names(hooks: tuple[Hook, ...]) -> list[str]:
    return [hook.name for hook in hooks]


def test_hooks_are_compiled_once_and_found_by_name(write_config: WriteConfig) -> None:
    hooks = HookSet(write_config(HOOKS).hooks)
    temps = hooks.get("temps")
    assert temps is not None and temps.tag == hook_tag("temps")
    assert temps.templates.url.render({}) == "http://127.0.0.1:9/t"
    assert hooks.get("nope") is None
    assert repr(hooks) == "<HookSet hooks=3 disabled=1>"


def test_a_hook_holds_its_retry_schedule_and_signer(tmp_path: Path) -> None:
    path = tmp_path / "engine.toml"
    path.write_text(
        '[delivery]\nretry = ["1s", "2s"]\n'
        + HOOKS.replace(
            'url = "http://127.0.0.1:9/t"', 'url = "http://127.0.0.1:9/t"\nretry = ["7s"]'
        ).replace(
            'url = "http://127.0.0.1:9/all"',
            'url = "http://127.0.0.1:9/all"\nsecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"',
        )
    )
    temps, everything, _ = load_config(path, {}).hooks
    assert isinstance(temps, Hook) and isinstance(everything, Hook)
    assert temps.schedule.delays == (7.0,) and temps.signer is None
    assert everything.schedule.delays == (1.0, 2.0)  # the [delivery] default
    assert everything.signer is not None
    headers = everything.signer.headers("msg_1", 1_700_000_000, b"{}")
    assert headers[2][0] == "webhook-signature" and headers[2][1].startswith("v1,")


def test_a_hook_equals_its_config(tmp_path: Path) -> None:
    path = tmp_path / "engine.toml"
    path.write_text(HOOKS)
    plain = read_config(path, {})
    compiled = load_config(path, {})
    assert all(type(hook) is HookConfig for hook in plain.hooks)
    assert all(isinstance(hook, Hook) for hook in compiled.hooks)
    assert compile_hooks(compiled) is compiled  # compiled once
    for hook, config in zip(compiled.hooks, plain.hooks, strict=True):
        assert {f: getattr(hook, f) for f in HookConfig.__dataclass_fields__} == {
            f: getattr(config, f) for f in HookConfig.__dataclass_fields__
        }


def test_routing_and_disabling_go_by_name_with_the_reason(write_config: WriteConfig) -> None:
    hooks = HookSet(write_config(HOOKS).hooks)
    assert names(hooks.route(draft())) == ["temps", "everything"]
    assert hooks.why_disabled("off") == DISABLED_IN_CONFIG
    hooks.disable("temps")
    assert hooks.why_disabled("temps") == GONE
    assert names(hooks.route(draft())) == ["everything"]
    hooks.enable("temps")
    hooks.enable("off")  # disabled in the config: stays so
    assert hooks.why_disabled("temps") is None
    assert hooks.is_disabled("off")
    assert names(hooks.route(draft())) == ["temps", "everything"]


def test_a_snapshot_never_changes(write_config: WriteConfig) -> None:
    hooks = HookSet(write_config(HOOKS).hooks)
    before = hooks.snapshot
    hooks.disable("everything")
    assert names(before.route(draft())) == ["temps", "everything"]
    assert names(hooks.snapshot.route(draft())) == ["temps"]
    assert "everything" not in before.disabled
    with pytest.raises(TypeError):
        before.disabled["temps"] = "x"  # type: ignore[index]


def test_template_errors_are_reported_as_the_config_load_did(tmp_path: Path) -> None:
    path = tmp_path / "engine.toml"
    path.write_text('[partials]\np = "{{#x}}"\n[[hooks]]\nevent = "t"\nurl = "http://a/{{#y}}"\n')
    config = read_config(path, {})  # config alone checks no template
    with pytest.raises(ConfigError) as raised:
        load_config(path, {})
    assert len(raised.value.problems) == 2
    assert raised.value.problems[0].startswith(f"{path}: partials.p: ")
    assert raised.value.problems[1].startswith(f"{path}: hooks[0].url: ")
    with pytest.raises(ConfigError) as again:
        compile_hooks(config)
    assert again.value.problems == raised.value.problems


async def test_the_memory_journal_routes_each_event_once_at_append(
    write_config: WriteConfig,
) -> None:
    hooks = HookSet(write_config(HOOKS).hooks)
    journal = MemoryJournal(hooks=hooks)
    published: list[Event] = []
    routed: list[tuple[int, list[str]]] = []
    journal.fan_out_to(published.append)
    journal.hand_routes_to(lambda event, route: routed.append((event.id, names(route))))
    await journal.append_many([draft(), draft("other"), draft("hook-response/temp/0")])
    assert [event.id for event in published] == [1, 2, 3]
    assert routed == [(1, ["temps", "everything"])]


async def test_the_sqlite_journal_hands_over_the_routes_it_stored(
    tmp_path: Path, write_config: WriteConfig
) -> None:
    hooks = HookSet(write_config(HOOKS).hooks)
    journal = SqliteJournal(tmp_path / "j.db", hooks)
    routed: list[tuple[int, list[str]]] = []
    journal.hand_routes_to(lambda event, route: routed.append((event.id, names(route))))
    async with trio.open_nursery() as nursery:
        await nursery.start(journal.run)
        first = await journal.append(draft())
        hooks.disable("temps")  # after the append: its delivery stands
        await journal.append_keyed([(draft(), "k"), (draft(), "k"), (draft("tx"), None)])
        rows = [(stored.event.id, stored.hook) for stored in await journal.recover()]
        nursery.cancel_scope.cancel()
    await journal.aclose()
    assert first.id == 1
    assert routed == [(1, ["temps", "everything"]), (2, ["everything"]), (3, ["everything"])]
    assert sorted(rows) == [(1, "everything"), (1, "temps"), (2, "everything"), (3, "everything")]
