"""bench/harness/sweep.py: the rate search against synthetic p99(rate) curves."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.harness.sweep import RateSweep, SweepPoint

BOUND_MS = 10.0
SAFETY = 10_000  # a test's own bound on the loop, far beyond any max_steps used here

positive = st.floats(min_value=1.0, max_value=1e6, allow_nan=False, allow_infinity=False)
factors = st.floats(min_value=1.1, max_value=4.0)
resolutions = st.floats(min_value=0.01, max_value=0.5)


def threshold_curve(threshold: float) -> Callable[[float], float]:
    """A monotone p99(rate) that is within the bound exactly up to ``threshold``."""

    def p99(rate: float) -> float:
        if rate <= threshold:  # min(): the division may round a hair above 1
            return BOUND_MS * min(1.0, rate / threshold)
        return BOUND_MS * (1 + rate / threshold)

    return p99


def run(
    sweep: RateSweep,
    p99: Callable[[float], float],
    achieved: Callable[[float], bool] = lambda rate: True,
) -> None:
    """Measure what the sweep asks for until it is done."""
    for _ in range(SAFETY):
        rate = sweep.next_rate()
        if rate is None:
            assert sweep.done
            return
        assert not sweep.done
        assert sweep.next_rate() == rate  # asking again does not move the search
        sweep.record(rate, p99(rate), achieved(rate))
    pytest.fail(f"the sweep never finished: {sweep!r}")


@given(positive, positive, factors, resolutions)
def test_the_best_rate_is_within_the_resolution_of_the_threshold(
    threshold: float, start: float, factor: float, resolution: float
) -> None:
    p99 = threshold_curve(threshold)
    sweep = RateSweep(BOUND_MS, start, factor=factor, resolution=resolution, max_steps=500)
    run(sweep, p99)
    if start > threshold:
        assert sweep.best is None
        assert sweep.points == [SweepPoint(start, p99(start), False)]
        return
    assert sweep.best is not None
    assert threshold / (1 + resolution) <= sweep.best <= threshold
    assert all(point.ok == (point.rate <= threshold) for point in sweep.points)
    assert sweep.points[0].rate == start


@given(positive, positive, factors)
def test_a_rate_the_load_could_not_offer_counts_as_a_failure(
    threshold: float, start: float, factor: float
) -> None:
    # The p99 stays low, but above ``threshold`` the generator falls behind the schedule.
    sweep = RateSweep(BOUND_MS, start, factor=factor, max_steps=500)
    run(sweep, lambda rate: 1.0, achieved=lambda rate: rate <= threshold)
    if start > threshold:
        assert sweep.best is None
    else:
        assert sweep.best is not None
        assert threshold / 1.1 <= sweep.best <= threshold


@given(positive, positive, factors, st.floats(min_value=1.0, max_value=100.0))
def test_the_sweep_never_offers_more_than_max_rate(
    threshold: float, start: float, factor: float, headroom: float
) -> None:
    max_rate = start * headroom
    sweep = RateSweep(BOUND_MS, start, factor=factor, max_steps=500, max_rate=max_rate)
    run(sweep, threshold_curve(threshold))
    assert all(point.rate <= max_rate for point in sweep.points)
    if threshold >= max_rate:
        assert sweep.best == max_rate


@given(
    st.lists(st.booleans(), max_size=40),
    positive,
    factors,
    st.integers(min_value=1, max_value=30),
)
def test_any_outcomes_end_within_max_steps_with_the_highest_pass_as_best(
    outcomes: list[bool], start: float, factor: float, max_steps: int
) -> None:
    # Outcomes that need not make sense (a pass above a failure): the sweep still ends.
    verdicts = iter(outcomes)
    sweep = RateSweep(BOUND_MS, start, factor=factor, max_steps=max_steps)
    run(sweep, lambda rate: 1.0 if next(verdicts, False) else 100.0)
    assert 1 <= len(sweep.points) <= max_steps
    passed = [point.rate for point in sweep.points if point.ok]
    assert sweep.best == (max(passed) if passed else None)


def test_a_short_sweep_doubles_then_bisects() -> None:
    sweep = RateSweep(BOUND_MS, 1000.0, resolution=0.1)
    run(sweep, threshold_curve(5000.0))
    rates = [round(point.rate) for point in sweep.points]
    assert rates == [1000, 2000, 4000, 8000, 5657, 4757, 5187]
    assert sweep.best == pytest.approx(4757, abs=1)  # 5187 failed: within 10% of it
    assert "done=True" in repr(sweep)


def test_max_steps_cuts_the_search_short() -> None:
    sweep = RateSweep(BOUND_MS, 1.0, max_steps=3)
    run(sweep, threshold_curve(1e9))
    assert [point.rate for point in sweep.points] == [1.0, 2.0, 4.0]
    assert sweep.best == 4.0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"start_rate": 0.0}, "rate above 0"),
        ({"factor": 1.0}, "factor above 1"),
        ({"resolution": 0.0}, "resolution"),
        ({"max_steps": 0}, "at least 1 step"),
        ({"max_rate": 10.0}, "below start_rate"),
    ],
)
def test_settings_that_cannot_make_a_search_are_refused(
    options: dict[str, float], message: str
) -> None:
    settings: dict[str, float] = {"bound_ms": BOUND_MS, "start_rate": 100.0, **options}
    with pytest.raises(ValueError, match=message):
        RateSweep(**settings)  # type: ignore[arg-type]
