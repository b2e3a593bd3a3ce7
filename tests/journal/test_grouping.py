"""When the SQLite journal's writer starts a commit (engine.journal._grouping): plain values."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.journal._grouping import commit_start

INTERVAL = 0.002  # the default


@pytest.mark.parametrize(
    ("arrival", "previous_end", "start", "why"),
    [
        (10.0, -math.inf, 10.0, "the first work ever: at once"),
        (10.0, 9.0, 10.0, "after a quiet spell: at once"),
        (10.0, 10.0 - INTERVAL, 10.0, "exactly one interval after the last commit: at once"),
        (10.0, 9.9995, 9.9995 + INTERVAL, "soon after a commit: an interval after it ended"),
        (10.0, 10.0, 10.0 + INTERVAL, "the moment a commit ended: an interval after it"),
        (10.0, 10.0005, 10.0 + INTERVAL, "while a commit ran: an interval after it arrived"),
        (10.0, 10.003, 10.003, "while a commit longer than the interval ran: as it ends"),
    ],
)
def test_the_commit_starts_as_the_rule_says(
    arrival: float, previous_end: float, start: float, why: str
) -> None:
    assert commit_start(arrival, previous_end, INTERVAL) == pytest.approx(start), why


@pytest.mark.parametrize("previous_end", [-math.inf, 9.0, 9.9999, 10.0, 10.0001])
def test_no_interval_commits_as_soon_as_the_writer_is_free(previous_end: float) -> None:
    assert commit_start(10.0, previous_end, 0.0) == max(10.0, previous_end)


times = st.floats(min_value=0.0, max_value=1000.0, allow_nan=False)
intervals = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


@given(times, times, intervals)
def test_work_waits_at_most_the_interval_unless_a_commit_still_runs(
    arrival: float, previous_end: float, interval: float
) -> None:
    start = commit_start(arrival, previous_end, interval)
    assert start >= arrival and start >= previous_end  # one commit at a time, never early
    assert start <= max(previous_end, arrival + interval)


@given(times, st.floats(min_value=0.0, max_value=1.0), times, intervals)
def test_commits_start_at_least_an_interval_apart(
    previous_start: float, duration: float, after: float, interval: float
) -> None:
    # The first piece of the next commit came after the previous one started (what was
    # queued before it went into it).
    previous_end = previous_start + duration
    arrival = previous_start + after + 1e-9
    assert commit_start(arrival, previous_end, interval) >= previous_start + interval
