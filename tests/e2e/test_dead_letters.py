"""`hookwire dead-letters` and `hookwire replay` as users run them: subprocesses, on a journal
filled beforehand, and beside a running daemon."""

from __future__ import annotations

import re
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from pathlib import Path

import httpx
import orjson
import pytest
import trio
from httpx_sse import ServerSentEvent, aconnect_sse

from engine.config.settings import load_config
from tests.conftest import ADMIN, BASE_CONFIG
from tests.e2e.test_daemon import daemon, write
from tests.helpers import run_cli
from tests.http.sink import Reply, Sink
from tests.journal.test_admin import HOOKS, T0, draft, give_up, running

ISO = "2026-01-01T00:00:00Z"  # T0
SQLITE = 'backend = "sqlite"\npath = "journal.db"'

Result = subprocess.CompletedProcess[bytes]


def lines(result: Result) -> list[str]:
    return result.stdout.decode().splitlines()


def columns(line: str) -> list[str]:
    """A table row's cells (columns are two or more spaces apart)."""
    return re.split(r" {2,}", line)


def error(result: Result) -> str:
    """The last line a command wrote to stderr, checked to come with no traceback."""
    text = result.stderr.decode()
    assert "Traceback" not in text
    return text.strip().splitlines()[-1]


@pytest.fixture
async def filled(tmp_path: Path) -> tuple[str, dict[str, str]]:
    """A config whose journal holds three dead letters, given up on at T0, T0+100, T0+200."""
    config = tmp_path / "engine.toml"
    config.write_text(BASE_CONFIG.replace('backend = "memory"', SQLITE) + HOOKS)
    loaded = load_config(config)
    async with running(loaded.journal.path, loaded) as journal:
        first, second = await journal.append_many([draft(), draft("tx", "v", device="dev9")])
        await journal.run_in_writer(lambda conn: conn.execute("UPDATE events SET at = ?", (T0,)))
        ids = {
            "temps": await give_up(journal, first, "temps", at=T0),
            "everything": await give_up(journal, first, "everything", at=T0 + 100),
            "tx": await give_up(journal, second, "everything", status=404, at=T0 + 200),
        }
    return str(config), ids


async def test_dead_letters_are_listed_as_a_table_and_as_json(
    filled: tuple[str, dict[str, str]],
) -> None:
    config, ids = filled
    table = await run_cli("dead-letters", "list", "--config", config)
    assert table.returncode == 0, table.stderr
    head, *rows, blank, summary = lines(table)
    assert columns(head) == ["ID", "HOOK", "EVENT", "DEVICE", "GAVE UP (UTC)", "ATTEMPTS", "REASON"]
    assert [columns(row)[0] for row in rows] == [ids["tx"], ids["everything"], ids["temps"]]
    newest = ["everything", "tx #2", "dev9", "2026-01-01 00:03:20", "1", "error status 404"]
    assert columns(rows[0])[1:] == newest
    assert (blank, summary) == ("", "3 dead letters, newest first")
    as_json = await run_cli(
        *("dead-letters", "list", "--json", "--hook", "everything"),
        *("--until", "2026-01-01T00:03:00Z", "--config", config),
    )
    [letter] = orjson.loads(as_json.stdout)["dead_letters"]
    assert letter == {
        "id": ids["everything"],
        "event_id": 1,
        "event": "temp",
        "device": "dev1",
        "hook": "everything",
        "at": "2026-01-01T00:01:40.000Z",
        "attempts": 1,
        "reason": "error status 400",
    }
    since = await run_cli(
        "dead-letters", "list", "--since", ISO, "--limit", "1", "--config", config
    )
    assert lines(since)[-1] == "1 dead letter, newest first; --limit 1 reached, there may be more"
    empty = await run_cli("dead-letters", "list", "--hook", "nope", "--config", config)
    assert lines(empty) == ["no dead letters"]
    assert error(empty) == f'note: no hook named "nope" in {config}'


async def test_show_prints_the_delivery_its_event_and_every_attempt(
    filled: tuple[str, dict[str, str]],
) -> None:
    config, ids = filled
    shown = await run_cli("dead-letters", "show", ids["tx"], "--config", config)
    assert shown.returncode == 0, shown.stderr
    out = lines(shown)
    assert out[:9] == [
        f"delivery   {ids['tx']}",
        "hook       everything",
        "state      dead since 2026-01-01 00:03:20 UTC",
        "attempts   1",
        "reason     error status 404",
        "event      tx #2, device dev9",
        "published  2026-11-29T00:00:00.000Z",
        "data       v",
        "",
    ]
    assert columns(out[9]) == ["#", "TIME (UTC)", "STATUS", "DURATION", "REASON", "RESPONSE"]
    assert columns(out[10])[2:] == ["404", "0.250 s", "error status 404", '"bad\\nrequest"']
    as_json = await run_cli("dead-letters", "show", ids["tx"], "--json", "--config", config)
    record = orjson.loads(as_json.stdout)
    assert (record["state"], record["event"]["data"]) == ("dead", "v")
    assert record["attempt_log"][0]["excerpt"] == "bad\nrequest"
    missing = await run_cli("dead-letters", "show", "msg_nope", "--config", config)
    assert missing.returncode == 1
    assert error(missing) == "hookwire dead-letters show: no delivery msg_nope in the journal"


async def test_dead_letters_and_a_window_are_queued_for_replay(
    filled: tuple[str, dict[str, str]],
) -> None:
    config, ids = filled
    one = await run_cli("dead-letters", "replay", ids["temps"], "--config", config)
    assert one.returncode == 0, one.stderr
    assert lines(one)[0].startswith("queued 1 dead letter again, under their ids;")
    rest = await run_cli(
        "dead-letters",
        "replay",
        "--hook",
        "everything",
        "--limit",
        "1",
        "--json",
        "--config",
        config,
    )
    assert orjson.loads(rest.stdout) == {
        "ok": True,
        "queued": 1,
        "ids": [ids["everything"]],
        "missing": [],
        "more": 1,
    }
    gone = await run_cli("dead-letters", "replay", ids["temps"], "--config", config)
    assert gone.returncode == 1
    assert lines(gone)[0].startswith("queued 0 dead letters again")
    assert error(gone) == (
        "hookwire dead-letters replay: not a dead letter (unknown, pruned or replayed already): "
        + ids["temps"]
    )
    nothing = await run_cli(
        "replay",
        "--hook",
        "dev2 temps",
        "--since",
        ISO,
        "--until",
        "2030-01-01",
        "--config",
        config,
    )
    assert lines(nothing) == [
        'no event stored in that window goes to hook "dev2 temps"; nothing queued'
    ]
    window = await run_cli(
        "replay", "--hook", "temps", "--since", ISO, "--json", "--config", config
    )
    queued = orjson.loads(window.stdout)
    assert (queued["hook"], queued["replay"], queued["ids"]) == ("temps", 1, [ids["temps"] + "_r1"])
    again = await run_cli("replay", "--hook", "everything", "--since", "1000d", "--config", config)
    assert lines(again)[0].startswith(
        'queued 2 events for hook "everything" as replay 2 (new delivery ids ending in _r2);'
    )


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (
            ("dead-letters", "list", "--since", "yesterday"),
            2,
            "hookwire dead-letters list: error: argument --since: expected an ISO 8601 time "
            '("2026-11-29T10:00:00Z") or a duration ago ("30m", "2h", "7d"), got "yesterday"',
        ),
        (
            ("replay", "--hook", "temps", "--since", "1h", "--until", "2h"),
            2,
            "hookwire replay: --until must be later than --since",
        ),
        (
            ("replay", "--hook", "temps", "--since", "1h", "--limit", "0"),
            2,
            "hookwire replay: error: argument --limit: expected a positive integer, got '0'",
        ),
        (
            ("dead-letters", "replay"),
            2,
            "hookwire dead-letters replay: name dead letters by id, or select them with --hook,"
            " --since, --until",
        ),
        (
            ("replay", "--hook", "nope", "--since", "1h"),
            1,
            'hookwire replay: --hook: no hook named "nope" in {config}; its hooks: "temps",'
            ' "everything", "dev2 temps", "off"',
        ),
        (
            ("replay", "--hook", "off", "--since", "1h"),
            1,
            'hookwire replay: hook "off" is disabled; enable it first',
        ),
        (
            ("replay", "--hook", "everything", "--since", "1000d", "--limit", "1"),
            1,
            'hookwire replay: more than 1 events in the window go to hook "everything";'
            " narrow the window or raise the limit",
        ),
    ],
)
async def test_a_bad_request_gets_one_clear_line(
    filled: tuple[str, dict[str, str]], args: tuple[str, ...], status: int, message: str
) -> None:
    config, _ = filled
    result = await run_cli(*args, "--config", config)
    assert result.returncode == status
    assert error(result) == message.format(config=config)


@pytest.mark.parametrize(
    ("journal", "message"),
    [
        (
            'backend = "sqlite"\npath = "missing.db"',
            "hookwire dead-letters list: {tmp}/missing.db: no journal here"
            " (has the daemon ever run with this config?)",
        ),
        (
            'backend = "memory"',
            'hookwire dead-letters list: {tmp}/engine.toml: journal.backend is "memory": nothing'
            " is on disk to read (a running daemon answers the same: GET /v1/dead-letters)",
        ),
    ],
)
async def test_no_journal_on_disk_is_one_clear_line(
    tmp_path: Path, journal: str, message: str
) -> None:
    config = tmp_path / "engine.toml"
    config.write_text(BASE_CONFIG.replace('backend = "memory"', journal))
    result = await run_cli("dead-letters", "list", "--config", str(config))
    assert result.returncode == 1
    assert error(result) == message.format(tmp=tmp_path)
    assert not (tmp_path / "missing.db").exists()


async def test_a_dead_letter_replayed_while_the_daemon_runs_arrives_under_its_id(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    sink = Sink(Reply(200, b"thanks"))
    sink.script(Reply(400, b"bad request"))  # the target is broken once, then fixed
    await nursery.start(sink.serve)
    config = str(
        write(
            tmp_path,
            BASE_CONFIG.replace('backend = "memory"', SQLITE)
            + '\n[delivery]\nallow_networks = ["127.0.0.0/8"]\n'
            + f'\n[[hooks]]\nname = "main"\nevent = "temp"\nurl = "{sink.url}/hook"\n',
        )
    )
    admin = {"Authorization": f"Bearer {ADMIN}"}
    async with (
        daemon(Path(config)) as d,
        httpx.AsyncClient(base_url=d.url, headers=admin, timeout=5) as client,
        aconnect_sse(client, "GET", "/v1/events/hook-") as source,
        aclosing(source.aiter_sse()) as stream,
    ):
        next_event = waiter(stream)
        published = await client.post("/v1/devices/events", data={"name": "temp", "data": "1"})
        assert published.status_code == 200
        failure = await next_event("hook-error/temp/0")
        assert orjson.loads(failure.data)["data"] == "error status 400 from 127.0.0.1"
        listed = await run_cli("dead-letters", "list", "--json", "--config", config)
        [letter] = orjson.loads(listed.stdout)["dead_letters"]
        first_id = sink.requests[0].header(b"webhook-id")
        assert first_id is not None and letter["id"] == first_id.decode()

        replayed = await run_cli("dead-letters", "replay", letter["id"], "--config", config)
        assert replayed.returncode == 0, replayed.stderr
        answer = await next_event("hook-response/temp/0")
        assert orjson.loads(answer.data)["data"] == "thanks"
        assert [r.header(b"webhook-id") for r in sink.requests] == [first_id, first_id]
        left = await run_cli("dead-letters", "list", "--json", "--config", config)
        assert orjson.loads(left.stdout)["dead_letters"] == []

        window = await run_cli("replay", "--hook", "main", "--since", "1h", "--config", config)
        assert window.returncode == 0, window.stderr
        await next_event("hook-response/temp/0")
        assert sink.requests[2].header(b"webhook-id") == first_id + b"_r1"


def waiter(stream: AsyncIterator[ServerSentEvent]) -> Callable[[str], Awaitable[ServerSentEvent]]:
    """Wait for the stream's next event of a given name, skipping the others."""

    async def next_event(name: str) -> ServerSentEvent:
        with trio.fail_after(10):
            async for event in stream:
                if event.event == name:
                    return event
        raise AssertionError(f"the stream ended before {name}")

    return next_event
