"""Outcome classification, Retry-After and the retry schedule."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.core.retry import (
    DEFAULT_DELAYS,
    MAX_RETRY_AFTER,
    Failure,
    RetrySchedule,
    Verdict,
    classify_failure,
    classify_status,
    parse_retry_after,
)

NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z


# The contract's table, entry by entry.
@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, Verdict.SUCCESS),
        (201, Verdict.SUCCESS),
        (202, Verdict.SUCCESS),
        (204, Verdict.SUCCESS),
        (299, Verdict.SUCCESS),
        (300, Verdict.PERMANENT),
        (301, Verdict.PERMANENT),
        (302, Verdict.PERMANENT),
        (304, Verdict.PERMANENT),
        (307, Verdict.PERMANENT),
        (308, Verdict.PERMANENT),
        (408, Verdict.RETRY),
        (425, Verdict.RETRY),
        (429, Verdict.RETRY),
        (500, Verdict.RETRY),
        (502, Verdict.RETRY),
        (503, Verdict.RETRY),
        (504, Verdict.RETRY),
        (599, Verdict.RETRY),
        (400, Verdict.PERMANENT),
        (401, Verdict.PERMANENT),
        (403, Verdict.PERMANENT),
        (404, Verdict.PERMANENT),
        (405, Verdict.PERMANENT),
        (409, Verdict.PERMANENT),
        (413, Verdict.PERMANENT),
        (422, Verdict.PERMANENT),
        (499, Verdict.PERMANENT),
        (410, Verdict.DISABLE),
        # Not a final answer HTTP defines: asking again gets the same.
        (100, Verdict.PERMANENT),
        (199, Verdict.PERMANENT),
        (600, Verdict.PERMANENT),
        (999, Verdict.PERMANENT),
    ],
)
def test_status_verdicts(status: int, verdict: Verdict) -> None:
    assert classify_status(status) is verdict


@given(st.integers(100, 999))
def test_every_status_has_the_verdict_of_its_class(status: int) -> None:
    verdict = classify_status(status)
    if status // 100 == 2:
        assert verdict is Verdict.SUCCESS
    elif status == 410:
        assert verdict is Verdict.DISABLE
    elif status // 100 == 5 or status in (408, 425, 429):
        assert verdict is Verdict.RETRY
    else:
        assert verdict is Verdict.PERMANENT


@pytest.mark.parametrize(
    ("failure", "verdict"),
    [
        (Failure.TIMEOUT, Verdict.RETRY),
        (Failure.CONNECT, Verdict.RETRY),
        (Failure.TLS, Verdict.RETRY),
        (Failure.PROTOCOL, Verdict.RETRY),
        (Failure.TEMPLATE, Verdict.PERMANENT),
        (Failure.INVALID_JSON, Verdict.PERMANENT),
        (Failure.HEADER_INJECTION, Verdict.PERMANENT),
        (Failure.REFUSED, Verdict.PERMANENT),
    ],
)
def test_failure_verdicts(failure: Failure, verdict: Verdict) -> None:
    assert classify_failure(failure) is verdict
    assert failure.retryable is (verdict is Verdict.RETRY)


def test_every_failure_kind_has_a_verdict() -> None:
    assert {classify_failure(f) for f in Failure} == {Verdict.RETRY, Verdict.PERMANENT}


# Retry-After.


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("0", 0.0),
        ("5", 5.0),
        ("120", 120.0),
        (b"120", 120.0),
        (" 7 ", 7.0),
        ("007", 7.0),
        ("86400", MAX_RETRY_AFTER),
        ("86401", MAX_RETRY_AFTER),
        ("999999999999", MAX_RETRY_AFTER),
        ("9" * 5000, MAX_RETRY_AFTER),  # beyond int()'s digit limit
        ("0" * 50 + "3", 3.0),
    ],
)
def test_retry_after_delta_seconds(value: str | bytes, seconds: float) -> None:
    assert parse_retry_after(value, NOW) == seconds


def http_date(unix: float) -> str:
    return format_datetime(datetime.fromtimestamp(unix, UTC), usegmt=True)


def test_retry_after_http_date() -> None:
    assert http_date(NOW + 90) == "Tue, 14 Nov 2023 22:14:50 GMT"
    assert parse_retry_after("Tue, 14 Nov 2023 22:14:50 GMT", NOW) == 90.0
    assert parse_retry_after(b"Tue, 14 Nov 2023 22:14:50 GMT", NOW) == 90.0
    # RFC 9110's obsolete forms, which recipients must accept.
    assert parse_retry_after("Tuesday, 14-Nov-23 22:14:50 GMT", NOW) == 90.0
    assert parse_retry_after("Tue Nov 14 22:14:50 2023", NOW) == 90.0
    # A zone of -0000 is still GMT.
    assert parse_retry_after("Tue, 14 Nov 2023 22:14:50 -0000", NOW) == 90.0


def test_retry_after_date_in_the_past_is_now() -> None:
    assert parse_retry_after(http_date(NOW - 3600), NOW) == 0.0
    assert parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT", NOW) == 0.0


def test_retry_after_date_far_ahead_is_clamped() -> None:
    assert parse_retry_after(http_date(NOW + 7 * 86400), NOW) == MAX_RETRY_AFTER
    assert parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", NOW) == MAX_RETRY_AFTER


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "   ",
        b"",
        "-5",  # not delta-seconds: digits only
        "+5",
        "1.5",
        "5s",
        "1e3",
        "٣",  # a digit, but not an ASCII one
        "soon",
        "Tue, 14 Nov 2023",
        "Tue, 32 Nov 2023 22:14:50 GMT",
        "Tue, 14 Foo 2023 22:14:50 GMT",
        b"\xff\xfe",
        "\x00",
    ],
)
def test_retry_after_garbage_is_none(value: str | bytes | None) -> None:
    assert parse_retry_after(value, NOW) is None


@given(st.one_of(st.text(max_size=60), st.binary(max_size=60)))
def test_retry_after_is_none_or_within_bounds(value: str | bytes) -> None:
    seconds = parse_retry_after(value, NOW)
    assert seconds is None or 0.0 <= seconds <= MAX_RETRY_AFTER


# The schedule.


def test_default_schedule_is_the_contracts() -> None:
    assert RetrySchedule().delays == (5, 300, 1800, 7200, 18000, 36000, 36000)
    assert RetrySchedule().delays == DEFAULT_DELAYS
    assert RetrySchedule().max_attempts == 8


def test_without_jitter_the_delays_are_exact_then_exhausted() -> None:
    schedule = RetrySchedule(jitter=0.0)
    rng = random.Random(1)
    got = [schedule.next_delay(attempt, rng) for attempt in range(1, 10)]
    assert got == [5, 300, 1800, 7200, 18000, 36000, 36000, None, None]


def test_exhausted_schedule_ignores_retry_after() -> None:
    assert RetrySchedule().next_delay(8, random.Random(1), retry_after=60.0) is None


def test_custom_and_empty_schedules() -> None:
    assert RetrySchedule((1.0, 2.0), jitter=0.0).next_delay(2, random.Random(0)) == 2.0
    assert RetrySchedule((1.0, 2.0)).next_delay(3, random.Random(0)) is None
    assert RetrySchedule(()).next_delay(1, random.Random(0)) is None
    assert RetrySchedule(()).max_attempts == 1


def test_same_seed_same_delays() -> None:
    schedule = RetrySchedule()
    a = [schedule.next_delay(n, random.Random(42)) for n in range(1, 8)]
    b = [schedule.next_delay(n, random.Random(42)) for n in range(1, 8)]
    assert a == b


def test_jitter_actually_spreads() -> None:
    rng = random.Random(7)
    delays = [RetrySchedule().next_delay(1, rng) or 0.0 for _ in range(50)]
    assert len(set(delays)) > 40
    assert min(delays) < 4.5 and max(delays) > 5.5


@given(st.integers(0, 2**64), st.integers(1, 7))
def test_jitter_stays_within_twenty_percent(seed: int, attempt: int) -> None:
    delay = RetrySchedule().next_delay(attempt, random.Random(seed))
    base = DEFAULT_DELAYS[attempt - 1]
    assert delay is not None
    assert base * 0.8 <= delay <= base * 1.2


@given(
    st.integers(0, 2**64),
    st.integers(1, 7),
    st.floats(0, MAX_RETRY_AFTER, allow_nan=False),
)
def test_retry_after_is_a_minimum(seed: int, attempt: int, retry_after: float) -> None:
    schedule = RetrySchedule()
    plain = schedule.next_delay(attempt, random.Random(seed))
    honoured = schedule.next_delay(attempt, random.Random(seed), retry_after=retry_after)
    assert plain is not None and honoured is not None
    assert honoured == max(plain, retry_after)
    assert honoured >= retry_after


def test_retry_after_longer_than_the_schedule_wins() -> None:
    assert RetrySchedule(jitter=0.0).next_delay(1, random.Random(0), retry_after=120.0) == 120.0
    assert RetrySchedule(jitter=0.0).next_delay(2, random.Random(0), retry_after=120.0) == 300.0


def test_attempt_counts_from_one() -> None:
    with pytest.raises(ValueError, match="attempt"):
        RetrySchedule().next_delay(0, random.Random(0))


@pytest.mark.parametrize(
    ("delays", "jitter"),
    [((5.0, -1.0), 0.2), ((float("nan"),), 0.2), ((5.0,), -0.1), ((5.0,), 1.0)],
)
def test_bad_schedules_are_refused(delays: tuple[float, ...], jitter: float) -> None:
    with pytest.raises(ValueError, match="retry"):
        RetrySchedule(delays, jitter)
