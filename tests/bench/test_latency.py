"""bench/harness/latency.py: HdrHistogram percentiles against exact ones; the trip via bytes."""

from __future__ import annotations

import math
import pickle
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.harness.latency import HIGHEST_US, LatencyRecorder, LatencySummary, summarize

# Latencies inside the recorder's range: 1 µs to 1 hour, most of them small, like real ones.
latencies = st.one_of(
    st.floats(min_value=1e-6, max_value=0.1),
    st.floats(min_value=1e-6, max_value=3600.0),
)
samples = st.lists(latencies, min_size=1, max_size=300)

FRACTIONS = {
    "p50_ms": Fraction(1, 2),
    "p90_ms": Fraction(9, 10),
    "p99_ms": Fraction(99, 100),
    "p999_ms": Fraction(999, 1000),
}


def nearest_rank(values: list[float], fraction: Fraction) -> float:
    """The exact nearest-rank percentile: the ceil(fraction * n)-th smallest value."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(fraction * len(ordered))) - 1]


def assert_close(reported_ms: float, exact_s: float) -> None:
    """HDR's 3 significant digits: within 0.1% of the exact value, plus the 1 µs rounding."""
    exact_ms = exact_s * 1000
    assert abs(reported_ms - exact_ms) <= exact_ms * 0.001 + 0.001, (reported_ms, exact_ms)


@given(samples)
def test_percentiles_match_exact_nearest_rank_ones_within_the_precision(
    values: list[float],
) -> None:
    summary = summarize(values)
    assert summary.count == len(values)
    for name, fraction in FRACTIONS.items():
        assert_close(getattr(summary, name), nearest_rank(values, fraction))
    assert_close(summary.max_ms, max(values))
    assert summary.p50_ms <= summary.p90_ms <= summary.p99_ms <= summary.p999_ms
    assert summary.p999_ms <= summary.max_ms


@given(samples)
def test_a_recorder_survives_encode_and_decode(values: list[float]) -> None:
    recorder = LatencyRecorder()
    recorder.record_many([*values, -1.0, 1e9])
    decoded = LatencyRecorder.decode(recorder.encode())
    assert decoded.count == recorder.count == len(values) + 2
    assert decoded.clamped == recorder.clamped == 2
    assert decoded.summary() == recorder.summary()


@given(samples, samples)
def test_merging_two_recorders_is_recording_both_sets(
    first: list[float], second: list[float]
) -> None:
    one, other = LatencyRecorder(), LatencyRecorder()
    one.record_many(first)
    other.record(0.0)
    other.record_many(second)
    # As a worker would: the other side's histogram arrives as bytes.
    one.merge(LatencyRecorder.decode(other.encode()))
    both = LatencyRecorder()
    both.record_many([*first, 0.0, *second])
    assert one.count == both.count == len(first) + len(second) + 1
    assert one.clamped == both.clamped == 1
    assert one.summary() == both.summary()


def test_values_outside_the_range_are_clamped_and_counted() -> None:
    recorder = LatencyRecorder()
    recorder.record_many([0.0, -0.5, 5e-7, 2e-6, 7200.0, math.inf])
    assert recorder.count == 6
    assert recorder.clamped == 5
    summary = recorder.summary()
    assert summary.p50_ms == 0.001  # three of the six were raised to 1 µs
    # The top ones sit at one hour, reported as the top of its bucket (within 0.1%).
    assert HIGHEST_US / 1000 <= summary.max_ms <= HIGHEST_US / 1000 * 1.001
    assert repr(recorder) == "<LatencyRecorder count=6 clamped=5>"


def test_a_nan_latency_is_an_error_not_a_value() -> None:
    with pytest.raises(ValueError, match="NaN"):
        LatencyRecorder().record(math.nan)


def test_an_empty_recorder_summarizes_to_zeros() -> None:
    recorder = LatencyRecorder()
    assert recorder.summary() == LatencySummary.empty() == summarize([])
    assert LatencyRecorder.decode(recorder.encode()).count == 0


def test_decode_refuses_bytes_that_are_not_a_recorder() -> None:
    with pytest.raises(ValueError, match="not an encoded LatencyRecorder"):
        LatencyRecorder.decode(b"HISTFAAAABx4nJNpmSzMgADMUJoRRFybvITB/gNEAABQ2gSH")


def test_the_summary_is_milliseconds_by_name() -> None:
    # Below 2,048 µs every microsecond has its own bucket, so these are exact.
    summary = summarize([0.001] * 98 + [0.0015, 0.002])
    assert summary.as_dict() == {
        "count": 100,
        "p50_ms": 1.0,
        "p90_ms": 1.0,
        "p99_ms": 1.5,
        "p999_ms": 2.0,
        "max_ms": 2.0,
    }
    assert pickle.loads(pickle.dumps(summary)) == summary
