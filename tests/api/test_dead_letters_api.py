"""Dead letters over REST, with httpx against a real engine: listed, filtered, replayed.

Every test runs with the memory journal and with the SQLite one.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import trio

from engine.config.settings import Config
from engine.core.model import Event
from engine.daemon import Engine
from tests.conftest import ADMIN, SUBSCRIBER, Served, WriteConfig, sha
from tests.helpers import publish_direct
from tests.http.sink import Reply, Sink

SCOPED_ADMIN = "hw_test_scoped_admin_token_0123456789"

HOOKS = """
[[auth.tokens]]
name = "scoped-admin"
sha256 = "{scoped}"
scopes = ["admin"]
devices = ["dev1"]

[delivery]
allow_networks = ["127.0.0.0/8"]
retry = []

[[hooks]]
name = "main"
event = "temp"
url = "{url}/main"

[[hooks]]
name = "other"
event = "other"
url = "{url}/other"
"""


class Watch:
    """The engine's committed events, awaited as they come (no polling)."""

    def __init__(self, engine: Engine) -> None:
        self._send, self._receive = trio.open_memory_channel[Event](math.inf)
        engine.bus.add_listener(self._send.send_nowait)

    async def next(self, prefix: str) -> Event:
        with trio.fail_after(5):
            async for event in self._receive:
                if event.name.startswith(prefix):
                    return event
        raise AssertionError("the bus closed")


@pytest.fixture
async def sink(nursery: trio.Nursery) -> Sink:
    sink = Sink(Reply(200, b"ok"))
    await nursery.start(sink.serve)
    return sink


@pytest.fixture(params=["memory", "sqlite"])
def config(
    request: pytest.FixtureRequest, write_config: WriteConfig, sink: Sink, tmp_path: Path
) -> Config:
    sqlite = f'backend = "sqlite"\npath = "{tmp_path / "journal.db"}"'
    return write_config(
        HOOKS.format(url=sink.url, scoped=sha(SCOPED_ADMIN)),
        replace={'backend = "memory"': sqlite} if request.param == "sqlite" else {},
    )


@pytest.fixture
async def client(served: Served) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=served.url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=5
    ) as client:
        yield client


async def two_dead_letters(served: Served, sink: Sink) -> dict[str, str]:
    """One dead letter per hook (the targets answer 500, and nothing is retried): hook -> id."""
    watch = Watch(served.engine)
    sink.script(Reply(500), Reply(500))
    await publish_direct(served.engine, "temp", "21.5")
    await watch.next("hook-error/temp")
    await publish_direct(served.engine, "other", "x")
    await watch.next("hook-error/other")
    return {r.target[1:]: (r.header(b"webhook-id") or b"").decode() for r in sink.requests}


async def dead_letters(client: httpx.AsyncClient, query: str = "") -> list[dict[str, object]]:
    response = await client.get(f"/v1/dead-letters{query}")
    assert response.status_code == 200, response.text
    letters: list[dict[str, object]] = response.json()["dead_letters"]
    return letters


async def test_dead_letters_are_listed_newest_first_and_filtered(
    served: Served, sink: Sink, client: httpx.AsyncClient
) -> None:
    ids = await two_dead_letters(served, sink)
    letters = await dead_letters(client)
    assert [d["id"] for d in letters] == [ids["other"], ids["main"]]
    main = letters[1]
    assert main["hook"] == "main" and main["event"] == "temp" and main["device"] == "api"
    assert (main["attempts"], main["reason"]) == (1, "error status 500 from 127.0.0.1")
    assert str(main["at"]).endswith("Z")
    assert [d["id"] for d in await dead_letters(client, "?hook=main")] == [ids["main"]]
    assert [d["id"] for d in await dead_letters(client, "?limit=1")] == [ids["other"]]
    assert await dead_letters(client, "?since=2000-01-01T00:00:00Z&until=2001-01-01") == []
    assert len(await dead_letters(client, "?since=1h&until=0s")) == 2


async def test_a_replayed_dead_letter_is_sent_again_under_its_id(
    served: Served, sink: Sink, client: httpx.AsyncClient
) -> None:
    ids = await two_dead_letters(served, sink)
    watch = Watch(served.engine)
    response = await client.post("/v1/dead-letters/replay", json={"ids": [ids["main"], "msg_x"]})
    assert response.json() == {
        "ok": True,
        "queued": 1,
        "ids": [ids["main"]],
        "missing": ["msg_x"],
        "more": 0,
    }
    answer = await watch.next("hook-response/temp")
    assert answer.data == "ok"
    again = sink.requests[-1]
    assert (again.target, again.header(b"webhook-id")) == ("/main", ids["main"].encode())
    assert [d["id"] for d in await dead_letters(client)] == [ids["other"]]


async def test_a_replay_by_hook_and_time(
    served: Served, sink: Sink, client: httpx.AsyncClient
) -> None:
    ids = await two_dead_letters(served, sink)
    watch = Watch(served.engine)
    response = await client.post(
        "/v1/dead-letters/replay", json={"hook": "other", "since": "1h", "until": "0s"}
    )
    assert response.json()["ids"] == [ids["other"]]
    await watch.next("hook-response/other")
    assert [d["id"] for d in await dead_letters(client)] == [ids["main"]]


@pytest.mark.parametrize(
    ("method", "path", "token", "status", "error"),
    [
        ("GET", "/v1/dead-letters", None, 401, "access token required"),
        ("POST", "/v1/dead-letters/replay", "nope", 401, "invalid access token"),
        ("GET", "/v1/dead-letters", SUBSCRIBER, 403, 'does not have the "admin" scope'),
        ("POST", "/v1/dead-letters/replay", SUBSCRIBER, 403, 'does not have the "admin" scope'),
        ("GET", "/v1/dead-letters", SCOPED_ADMIN, 403, "need an admin token without limits"),
    ],
)
async def test_the_routes_need_an_unlimited_admin_token(
    served: Served, method: str, path: str, token: str | None, status: int, error: str
) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=served.url) as client:
        response = await client.request(method, path, headers=headers, json={"ids": ["x"]})
    assert response.status_code == status
    assert response.json()["ok"] is False
    assert error in response.json()["error"]


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("?since=yesterday", 'since: expected an ISO 8601 time ("2026-11-29T10:00:00Z") or a'),
        ("?until=-1h", "until: expected an ISO 8601 time"),
        ("?since=1h&until=2h", "until must be later than since"),
        ("?limit=0", "limit: expected an integer from 1 to 10000, got 0"),
        ("?limit=ten", "limit: expected an integer from 1 to 10000, got 'ten'"),
    ],
)
async def test_a_bad_listing_is_answered_400(
    client: httpx.AsyncClient, query: str, error: str
) -> None:
    response = await client.get(f"/v1/dead-letters{query}")
    assert response.status_code == 400
    assert error in response.json()["error"]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"", 'expected a JSON object: select dead letters by {"ids": [...]}'),
        (b"{", "malformed JSON body"),
        (b"[]", "expected a JSON object"),
        (b"{}", 'select dead letters by {"ids": [...]}, or by "hook", "since" and "until"'),
        (b'{"ids": "msg_1"}', "ids: expected an array of delivery ids (strings)"),
        (b'{"hook": 5}', "hook: expected a non-empty string, got 5"),
        (b'{"hook": "main", "at": 1}', 'unknown field "at"; known: ids, hook, since'),
        (b'{"since": "soon"}', "since: expected an ISO 8601 time"),
        (b'{"hook": "main", "limit": true}', "limit: expected an integer from 1 to 10000"),
    ],
)
async def test_a_bad_replay_is_answered_400(
    client: httpx.AsyncClient, body: bytes, error: str
) -> None:
    response = await client.post("/v1/dead-letters/replay", content=body)
    assert response.status_code == 400
    assert error in response.json()["error"]


async def test_wrong_methods_are_answered_405(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/dead-letters/replay")
    assert (response.status_code, response.headers["allow"]) == (405, "POST")
    response = await client.post("/v1/dead-letters", json={})
    assert (response.status_code, response.headers["allow"]) == (405, "GET, HEAD")
