"""What the SQLite journal's writer remembers of unsettled deliveries (engine.journal._ledger)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.journal._ledger import COMPACT_AFTER, Ledger, Write


def test_a_delivery_that_succeeds_at_once_needs_no_row() -> None:
    ledger = Ledger()
    ledger.routed(1, 2)
    assert ledger.outcome(1, "a", "delivered") is Write.NONE
    ledger.commit()
    assert ledger.floor(next_id=2) == 1  # "b" is still owed
    assert ledger.outcome(1, "b", "delivered") is Write.NONE
    ledger.commit()
    assert ledger.floor(next_id=2) == 2


@pytest.mark.parametrize("state", ["waiting", "dead"])
def test_a_delivery_that_waits_or_dies_gets_a_row_and_no_longer_holds_the_floor(
    state: str,
) -> None:
    ledger = Ledger()
    ledger.routed(7, 1)
    assert ledger.outcome(7, "a", state) is Write.UPSERT
    ledger.commit()
    assert ledger.floor(next_id=8) == 8
    assert ledger.has_row("a") is (state == "waiting")  # a dead letter's row is not open


def test_a_delivery_with_an_open_row_keeps_it_up_to_date() -> None:
    ledger = Ledger()
    ledger.routed(1, 1)
    assert ledger.outcome(1, "a", "waiting") is Write.UPSERT
    assert ledger.outcome(1, "a", "waiting") is Write.UPSERT  # the next try waits again
    assert ledger.outcome(1, "a", "delivered") is Write.UPDATE
    assert not ledger.has_row("a")
    ledger.opened(["r"])  # a replay taken, or a row found at start
    assert ledger.outcome(1, "r", "dead") is Write.UPSERT
    assert not ledger.has_row("r")
    ledger.commit()
    assert ledger.floor(next_id=5) == 5


def test_the_floor_is_the_oldest_event_still_owed() -> None:
    ledger = Ledger()
    for event_id in (3, 4, 5):
        ledger.routed(event_id, 1)
    ledger.commit()
    assert ledger.floor(next_id=6) == 3
    ledger.outcome(4, "d4", "delivered")
    ledger.commit()
    assert ledger.floor(next_id=6) == 3
    assert ledger.owed_events(below=6) == [3, 5]
    assert ledger.owed_events(below=4) == [3]
    ledger.outcome(3, "d3", "delivered")
    assert ledger.floor(next_id=6) == 5  # before the commit too: what this one will store
    ledger.commit()
    assert ledger.floor(next_id=6) == 5


def test_a_failed_transaction_is_undone() -> None:
    ledger = Ledger()
    ledger.routed(1, 1)
    ledger.routed(2, 2)
    ledger.opened(["old"])
    ledger.commit()
    ledger.routed(3, 1)
    ledger.outcome(1, "d1", "delivered")
    ledger.outcome(2, "d2", "waiting")
    ledger.outcome(2, "d2b", "dead")
    ledger.outcome(9, "old", "delivered")
    ledger.opened(["replayed"])
    assert ledger.floor(next_id=4) == 3
    ledger.rollback()
    assert ledger.floor(next_id=3) == 1
    assert ledger.owed_events(below=10) == [1, 2]
    assert ledger.has_row("old") and not ledger.has_row("d2") and not ledger.has_row("replayed")
    ledger.routed(3, 1)  # the id is used again by the next batch
    ledger.outcome(1, "d1", "delivered")
    ledger.commit()
    assert ledger.owed_events(below=10) == [2, 3]


def test_memory_follows_what_is_owed_not_what_passed() -> None:
    ledger = Ledger()
    ledger.routed(1, 1)  # owed for long: holds the floor
    for event_id in range(2, 3 * COMPACT_AFTER):
        ledger.routed(event_id, 1)
        ledger.outcome(event_id, f"d{event_id}", "delivered")
        ledger.commit()
    assert ledger.floor(next_id=3 * COMPACT_AFTER) == 1
    assert len(ledger._order) <= COMPACT_AFTER + 1


# A model: per event, the deliveries owed without a row; the set of open rows.

steps = st.lists(
    st.one_of(
        st.tuples(st.just("route"), st.integers(1, 3)),
        st.tuples(
            st.just("outcome"),
            st.integers(0, 30),
            st.sampled_from(["delivered", "waiting", "dead"]),
        ),
        st.tuples(st.just("commit")),
        st.tuples(st.just("rollback")),
    ),
    max_size=60,
)


@given(steps)
def test_the_ledger_agrees_with_a_plain_model(script: list[tuple[object, ...]]) -> None:
    ledger = Ledger()
    next_id = 1
    committed: tuple[dict[str, int], set[str], int] = ({}, set(), 1)
    pending: dict[str, int] = {}  # delivery id -> its event, while derived and unattempted
    rows: set[str] = set()
    deliveries: list[tuple[str, int]] = []
    for step in script:
        if step[0] == "route":
            count = step[1]
            assert isinstance(count, int)
            ledger.routed(next_id, count)
            for n in range(count):
                key = f"{next_id}.{n}"
                pending[key] = next_id
                deliveries.append((key, next_id))
            next_id += 1
        elif step[0] == "outcome" and deliveries:
            index, state = step[1], step[2]
            assert isinstance(index, int) and isinstance(state, str)
            key, event_id = deliveries[index % len(deliveries)]
            if key not in pending and key not in rows:
                continue  # settled: no more attempts come
            had_row = key in rows
            write = ledger.outcome(event_id, key, state)
            pending.pop(key, None)
            if state == "waiting":
                rows.add(key)
            else:
                rows.discard(key)
            if state == "delivered":
                assert write is (Write.UPDATE if had_row else Write.NONE)
            else:
                assert write is Write.UPSERT
        elif step[0] == "commit":
            ledger.commit()
            committed = (dict(pending), set(rows), next_id)
        elif step[0] == "rollback":
            ledger.rollback()
            pending, rows, next_id = dict(committed[0]), set(committed[1]), committed[2]
            deliveries = [(k, e) for k, e in deliveries if e < next_id]
        owed = sorted(set(pending.values()))
        assert ledger.owed_events(below=next_id) == owed
        assert ledger.floor(next_id) == (owed[0] if owed else next_id)
        assert all(ledger.has_row(key) is (key in rows) for key, _ in deliveries)
