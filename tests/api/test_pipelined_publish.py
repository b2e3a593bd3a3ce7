"""Pipelined publishes on one connection, over loopback: ids and answers in request order,
one commit for the publishes of one read, 503 for exactly those the journal refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import orjson
import trio

from engine.api.app import Api
from engine.config.settings import Config
from engine.core.bus import Bus
from engine.core.model import Event, EventDraft
from engine.hooks.router import HookSet
from engine.http.server import HttpServer
from engine.journal import Journal, JournalUnavailable, MemoryJournal, PendingAppend
from engine.journal.sqlite import SqliteJournal
from engine.metrics import Metrics
from tests.conftest import PUBLISHER, Served
from tests.helpers import RawClient

FULL = "the journal cannot write: database or disk is full"


def publish(data: str, *, token: str = PUBLISHER, headers: str = "") -> bytes:
    body = f"name=temp&data={data}"
    return (
        "POST /v1/devices/events HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {token}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\n{headers}\r\n{body}"
    ).encode()


def healthz(headers: str = "") -> bytes:
    return f"GET /healthz HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode()


async def answers(client: RawClient, n: int) -> list[tuple[int, bytes, dict[str, object]]]:
    """The next ``n`` answers (all JSON): status, head and body."""
    got = []
    for _ in range(n):
        head = await client.read_until(b"\r\n\r\n")
        body = await client.read_until(b"}")
        got.append((int(head[9:12]), head, orjson.loads(body)))
    return got


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


@asynccontextmanager
async def api_on(config: Config, journal: Journal) -> AsyncIterator[tuple[int, Metrics]]:
    """The API over ``journal`` (running), served on a loopback port: (port, metrics)."""
    metrics = Metrics()
    api = Api(config, journal, Bus(), metrics)
    async with trio.open_nursery() as nursery:
        await nursery.start(journal.run)
        [(_, port), *_] = await nursery.start(
            HttpServer(api.handle, config.limits).serve, "127.0.0.1", 0
        )
        yield port, metrics
        nursery.cancel_scope.cancel()
    await journal.aclose()


async def test_pipelined_publishes_get_increasing_ids_and_answers_in_request_order(
    served: Served,
) -> None:
    client = await RawClient.connect(served.port)
    await client.send(b"".join(publish(str(i)) for i in range(20)))
    got = await answers(client, 20)
    await client.aclose()
    assert [status for status, _, _ in got] == [200] * 20
    ids = [body["id"] for _, _, body in got]
    assert ids == list(range(1, 21))
    events = served.engine.journal.recent()  # type: ignore[attr-defined]
    assert [(event.id, event.data) for event in events] == [(i + 1, str(i)) for i in range(20)]
    metrics = served.engine.metrics
    assert sample(metrics, "hookwire_events_published_total", source="rest") == 20
    assert (
        sample(
            metrics, "hookwire_http_requests_total", route="publish", method="POST", status="200"
        )
        == 20
    )
    assert sample(metrics, "hookwire_http_request_duration_seconds_count", route="publish") == 20


async def test_pipelined_publishes_from_one_read_share_one_commit(
    config: Config, tmp_path: Path
) -> None:
    journal = SqliteJournal(tmp_path / "j.db", HookSet(config.hooks), commit_interval=0.2)
    async with api_on(config, journal) as (port, _):
        client = await RawClient.connect(port)
        # The first publish after a quiet spell is committed at once; the next ones come
        # within the interval, so the writer waits for them (their commit starts 0.2 s
        # after the previous one started, whenever the server queues them).
        await client.send(publish("first"))
        [(status, _, _)] = await answers(client, 1)
        assert status == 200
        before = journal.commits
        await client.send(b"".join(publish(str(i)) for i in range(10)))
        got = await answers(client, 10)
        await client.aclose()
        assert journal.commits == before + 1  # not 10
        assert [(status, body["id"]) for status, _, body in got] == [(200, i) for i in range(2, 12)]
        assert journal.last_id() == 11
        assert [e.data for e in await journal.events_after(1, 20)] == [str(i) for i in range(10)]


class RefusingJournal(MemoryJournal):
    """A memory journal that refuses to store the publishes whose data is "refused"."""

    def append_nowait(self, draft: EventDraft) -> PendingAppend:
        if draft.data == "refused":
            return Refused()
        return super().append_nowait(draft)


class Refused:
    async def wait(self) -> Event:
        await trio.lowlevel.checkpoint()
        raise JournalUnavailable(FULL)


async def test_a_journal_failure_answers_503_to_exactly_the_publishes_it_failed(
    config: Config,
) -> None:
    datas = ["a", "refused", "refused", "b", "refused", "c"]
    async with api_on(config, RefusingJournal()) as (port, metrics):
        client = await RawClient.connect(port)
        await client.send(b"".join(publish(data) for data in datas))
        got = await answers(client, len(datas))
        await client.aclose()
    assert [status for status, _, _ in got] == [200, 503, 503, 200, 503, 200]
    assert [body["id"] for status, _, body in got if status == 200] == [1, 2, 3]
    assert {body["error"] for status, _, body in got if status == 503} == {
        f"event not stored: {FULL}"
    }
    assert sample(metrics, "hookwire_events_published_total", source="rest") == 3
    for status in ("200", "503"):
        assert (
            sample(
                metrics,
                "hookwire_http_requests_total",
                route="publish",
                method="POST",
                status=status,
            )
            == 3
        )


async def test_a_refused_commit_answers_503_to_its_publishes_and_uses_no_id(
    config: Config, tmp_path: Path
) -> None:
    journal = SqliteJournal(tmp_path / "j.db", HookSet(config.hooks), commit_interval=0.2)
    async with api_on(config, journal) as (port, metrics):
        client = await RawClient.connect(port)
        await client.send(publish("first"))
        [(status, _, _)] = await answers(client, 1)
        assert status == 200
        pages = await journal.run_in_writer(lambda c: c.execute("PRAGMA page_count").fetchone()[0])
        await journal.run_in_writer(lambda c: c.execute(f"PRAGMA max_page_count={pages}"))
        # Ten publishes of one read, one commit: it needs a page that may not be had.
        await client.send(b"".join(publish("x" * 1000) for _ in range(10)))
        refused = await answers(client, 10)
        assert [status for status, _, _ in refused] == [503] * 10
        assert {body["error"] for _, _, body in refused} == {f"event not stored: {FULL}"}
        await journal.run_in_writer(lambda c: c.execute("PRAGMA max_page_count=1000000"))
        await client.send(publish("a") + publish("b"))
        stored = await answers(client, 2)
        await client.aclose()
    assert [(status, body["id"]) for status, _, body in stored] == [(200, 2), (200, 3)]
    assert sample(metrics, "hookwire_events_published_total", source="rest") == 3


async def test_a_pipelined_mix_of_publishes_gets_and_close_is_answered_in_order(
    served: Served,
) -> None:
    client = await RawClient.connect(served.port)
    await client.send(
        publish("a")
        + healthz()
        + publish("unauthorized", token="nope")
        + publish("b")
        + healthz("Connection: close\r\n")
        + publish("after the close")
    )
    got = await answers(client, 5)
    assert await client.read_to_eof() == b""
    await client.aclose()
    assert [status for status, _, _ in got] == [200, 200, 401, 200, 200]
    assert got[0][2]["id"] == 1
    # A GET pipelined behind a publish sees it, as if it had waited for its answer.
    assert got[1][2]["last_event_id"] == 1
    assert got[3][2]["id"] == 2
    assert got[4][2]["last_event_id"] == 2
    assert [b"connection: close" in head for _, head, _ in got] == [False] * 4 + [True]
    events = served.engine.journal.recent()  # type: ignore[attr-defined]
    assert [event.data for event in events] == ["a", "b"]
