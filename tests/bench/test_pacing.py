"""bench/harness/pacing.py: the open-model schedule, checked against its own definition."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.harness.pacing import Pacer

# Rates from one request a thousand seconds to ten million a second, starts like the
# monotonic clock's (seconds since boot, up to ~4 months), offsets up to ~3 hours.
rates = st.floats(min_value=1e-3, max_value=1e7, allow_nan=False, allow_infinity=False)
starts = st.floats(min_value=0.0, max_value=1e7, allow_nan=False, allow_infinity=False)
offsets = st.floats(min_value=-10.0, max_value=1e4, allow_nan=False, allow_infinity=False)


@given(rates, starts, offsets)
def test_a_request_is_due_exactly_when_its_scheduled_time_has_come(
    rate: float, start: float, offset: float
) -> None:
    pacer = Pacer(rate, start)
    now = start + offset
    count = pacer.due(now, 0)
    assert count >= 0
    if count > 0:
        assert pacer.scheduled(count - 1) <= now
    assert pacer.scheduled(count) > now


@given(rates, starts, offsets, st.integers(min_value=0, max_value=10**9))
def test_due_subtracts_what_was_sent_and_is_never_negative(
    rate: float, start: float, offset: float, sent: int
) -> None:
    pacer = Pacer(rate, start)
    now = start + offset
    assert pacer.due(now, sent) == max(0, pacer.due(now, 0) - sent)


@given(rates, starts, st.lists(offsets, min_size=2, max_size=20))
def test_sending_what_is_due_never_runs_ahead_of_the_schedule(
    rate: float, start: float, offsets: list[float]
) -> None:
    pacer = Pacer(rate, start)
    sent = 0
    for now in sorted(start + offset for offset in offsets):
        sent += pacer.due(now, sent)
        # Everything sent was due by now, and nothing due is left over.
        assert sent == 0 or pacer.scheduled(sent - 1) <= now
        assert pacer.scheduled(sent) > now


@given(
    st.floats(min_value=0.1, max_value=1e5, allow_nan=False, allow_infinity=False),
    starts,
    st.floats(min_value=1.0, max_value=3600.0, allow_nan=False, allow_infinity=False),
)
def test_over_a_long_run_the_count_is_the_rate_times_the_time(
    rate: float, start: float, elapsed: float
) -> None:
    pacer = Pacer(rate, start)
    count = pacer.due(start + elapsed, 0)
    # Request 0 is due at the start, so the count is floor(rate * elapsed) + 1, give or take
    # the rounding of ``start + elapsed`` (a few units in the last place, times the rate).
    assert abs(count - rate * elapsed) <= 1 + 4 * rate * math.ulp(start + elapsed)


def test_the_schedule_starts_at_the_start() -> None:
    pacer = Pacer(4.0, 100.0)
    assert pacer.due(99.999, 0) == 0
    assert pacer.due(100.0, 0) == 1
    assert pacer.due(100.25, 0) == 2
    assert pacer.due(100.26, 2) == 0
    assert pacer.due(101.0, 1) == 4
    assert pacer.scheduled(0) == 100.0
    assert pacer.scheduled(6) == 101.5


def test_scheduled_times_do_not_drift_over_millions_of_requests() -> None:
    pacer = Pacer(3.0, 1000.0)
    assert math.isclose(pacer.scheduled(3_000_000), 1_001_000.0, rel_tol=0, abs_tol=1e-9)


@pytest.mark.parametrize("rate", [0.0, -1.0, math.nan])
def test_a_rate_that_is_not_positive_is_refused(rate: float) -> None:
    with pytest.raises(ValueError, match="rate above 0"):
        Pacer(rate, 0.0)


def test_repr_shows_the_rate() -> None:
    assert repr(Pacer(250.0, 1.5)) == "<Pacer rate=250/s start=1.500000>"
