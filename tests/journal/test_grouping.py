"""When the SQLite journal's writer starts a commit (engine.journal._grouping): plain values."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.journal._grouping import commit_start

INTERVAL = 0.002  # the default
NEVER = -math.inf


@pytest.mark.parametrize(
    ("arrival", "previous_start", "previous_end", "start", "why"),
    [
        (10.0, NEVER, NEVER, 10.0, "the first work ever: at once"),
        (10.0, 8.9, 9.0, 10.0, "after a quiet spell: at once"),
        (10.0, 10.0 - INTERVAL, 9.9985, 10.0, "one interval after the last start: at once"),
        (
            10.0,
            9.9995,
            9.9996,
            9.9995 + INTERVAL,
            "soon after a commit: an interval after it began",
        ),
        (
            10.0,
            9.9999,
            10.0005,
            9.9999 + INTERVAL,
            "while a short commit ran: as the interval ends",
        ),
        (10.0, 9.999, 10.003, 10.003, "while a commit longer than the interval ran: as it ends"),
    ],
)
def test_the_commit_starts_as_the_rule_says(
    arrival: float, previous_start: float, previous_end: float, start: float, why: str
) -> None:
    assert commit_start(arrival, previous_start, previous_end, INTERVAL) == pytest.approx(start), (
        why
    )


@pytest.mark.parametrize("previous_end", [NEVER, 9.0, 9.9999, 10.0, 10.0001])
def test_no_interval_commits_as_soon_as_the_writer_is_free(previous_end: float) -> None:
    assert commit_start(10.0, previous_end - 0.001, previous_end, 0.0) == max(10.0, previous_end)


times = st.floats(min_value=0.0, max_value=1000.0, allow_nan=False)
durations = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


@given(times, durations, durations, durations)
def test_one_commit_at_a_time_at_least_an_interval_apart_and_no_wait_beyond_it(
    previous_start: float, took: float, after: float, interval: float
) -> None:
    # The first piece of the next commit came after the previous one started (what was
    # queued before it went into it).
    previous_end = previous_start + took
    arrival = previous_start + after
    start = commit_start(arrival, previous_start, previous_end, interval)
    assert start >= arrival and start >= previous_end  # never early, never two at once
    assert start >= previous_start + interval
    assert start <= max(previous_end, arrival + interval)
