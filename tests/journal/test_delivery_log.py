"""The delivery log, one suite over every journal (memory, SQLite, a real Redis): a hook's
deliveries by state, newest first, a page at a time; one delivery with every attempt, its
request and its answer; a hook's last successes and failures and its counts per hour."""

from __future__ import annotations

import dataclasses

import pytest
import trio

from engine.core.model import Attempt, Delivery, Event
from engine.journal import Journal
from engine.journal.delivery_log import (
    DeliveryQuery,
    SentRequest,
    decode_cursor,
    delivery_query,
    hour_of,
)
from tests.journal.kit import draft, outcome
from tests.journal.test_contract import Opener, all_backends, config, opener, running

__all__ = ["config", "opener"]  # the fixtures, from the contract suite

SENT = SentRequest(
    "POST", "http://127.0.0.1:9/t", (("content-type", "application/json"), ("authorization", "***"))
)


def tried(
    journal: Journal, event: Event, hook: str, state: str, number: int = 1
) -> tuple[Delivery, Attempt]:
    """``outcome`` with the request it sent and an answer's first bytes."""
    delivery, attempt = outcome(journal, event, hook, state, number)
    answer = b'{"ok":true}' if state == "delivered" else b"<h1>down</h1>"
    return delivery, dataclasses.replace(attempt, request=SENT.pack(), excerpt=answer)


async def routed(journal: Journal) -> list[Event]:
    """Two events, each to both hooks ("temps" and "everything"), handed to the dispatcher
    (Redis's through its partitions)."""
    events = [await journal.append(draft("temp", data=str(i))) for i in range(2)]
    with trio.fail_after(5):
        await trio.sleep(0.2)
    return events


@all_backends
async def test_deliveries_are_listed_by_state_newest_first_a_page_at_a_time(
    opener: Opener,
) -> None:
    async with running(opener(), routed=[]) as journal:
        first, second = await routed(journal)
        everything = await journal.delivery_page(DeliveryQuery("everything"))
        assert {(e.event_id, e.state) for e in everything.deliveries} == {
            (first.id, "pending"),
            (second.id, "pending"),
        }
        await journal.settle([tried(journal, first, "temps", "delivered")], [])
        await journal.settle([tried(journal, second, "temps", "waiting")], [])
        await journal.settle([tried(journal, first, "everything", "dead", 3)], [])
        temps = await journal.delivery_page(DeliveryQuery("temps"))
        assert [(e.event_id, e.state) for e in temps.deliveries] == [
            (second.id, "retrying"),
            (first.id, "delivered"),
        ]
        retrying = temps.deliveries[0]
        assert retrying.next_try is not None and retrying.next_try > retrying.at
        assert retrying.reason == "503" and retrying.attempts == 1
        dead = await journal.delivery_page(DeliveryQuery("everything", ("dead",)))
        assert [(e.event_id, e.state, e.attempts) for e in dead.deliveries] == [
            (first.id, "dead", 3)
        ]
        # A page at a time: the cursor goes on after the last shown.
        one = await journal.delivery_page(DeliveryQuery("temps", limit=1))
        assert [e.event_id for e in one.deliveries] == [second.id] and one.cursor is not None
        rest = await journal.delivery_page(
            DeliveryQuery("temps", limit=1, before=decode_cursor(one.cursor))
        )
        assert [e.event_id for e in rest.deliveries] == [first.id] and rest.cursor is None
        # Every hook's, when the query names none.
        every = await journal.delivery_page(DeliveryQuery())
        assert len(every.deliveries) == 4


@all_backends
async def test_a_delivery_shows_every_attempt_with_its_request_and_answer(opener: Opener) -> None:
    async with running(opener(), routed=[]) as journal:
        event, _ = await routed(journal)
        await journal.settle([tried(journal, event, "temps", "waiting")], [])
        await journal.settle([tried(journal, event, "temps", "delivered", 2)], [])
        key = outcome(journal, event, "temps", "delivered")[0].id
        found = await journal.delivery_detail(key)
        assert found is not None
        shown = found.to_json()
        assert (shown["id"], shown["hook"], shown["state"]) == (key, "temps", "delivered")
        attempts = shown["attempt_log"]
        assert isinstance(attempts, list)
        assert [(a["number"], a["status"], a["state"]) for a in attempts] == [
            (1, 503, "retrying"),
            (2, 200, "delivered"),
        ]
        assert attempts[0]["error"] == "503" and attempts[1]["error"] is None
        assert attempts[0]["next_try"] is not None and attempts[1]["next_try"] is None
        assert attempts[1]["request"] == SENT.to_json()
        assert attempts[0]["response"] == "<h1>down</h1>"
        assert await journal.delivery_detail("msg_00000000_ff_0000") is None


@all_backends
async def test_a_hook_shows_its_last_successes_and_failures_and_its_hours(opener: Opener) -> None:
    async with running(opener(), routed=[]) as journal:
        first, second = await routed(journal)
        await journal.settle([tried(journal, first, "temps", "delivered")], [])
        await journal.settle([tried(journal, second, "temps", "waiting")], [])
        await journal.settle([tried(journal, second, "temps", "dead", 2)], [])
        activity = await journal.hook_activity("temps")
        assert [(a.event_id, a.status) for a in activity.successes] == [(first.id, 200)]
        assert [(a.event_id, a.number, a.state) for a in activity.failures] == [
            (second.id, 2, "dead"),
            (second.id, 1, "waiting"),
        ]
        assert [a.next_try is not None for a in activity.failures] == [False, True]
        [(hour, delivered, failed)] = activity.hours
        assert hour == hour_of(activity.successes[0].at) and (delivered, failed) == (1, 2)
        assert (await journal.hook_activity("everything")).hours == ()


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"state": "done"}, "state: expected pending, retrying, delivered, dead"),
        ({"limit": "0"}, "limit: expected an integer from 1 to 1000"),
        ({"limit": "x"}, "limit: expected an integer"),
        ({"cursor": "!!"}, "cursor: not a cursor this log gave"),
    ],
)
def test_a_bad_query_names_the_parameter(params: dict[str, str], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        delivery_query(params, "temps")


def test_a_query_reads_states_limit_and_cursor() -> None:
    query = delivery_query({"state": "dead, retrying", "limit": "5"}, "temps")
    assert (query.hook, query.states, query.limit, query.before) == (
        "temps",
        ("dead", "retrying"),
        5,
        None,
    )
