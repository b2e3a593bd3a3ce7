"""The circuit breaker: each rule at exact times, and a state machine against a model."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from engine.delivery.breaker import (
    FIRST_COOLDOWN,
    MAX_COOLDOWN,
    MAX_WINDOW_ATTEMPTS,
    PROBE_RECHECK,
    BreakerState,
    CircuitBreaker,
)

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


def record_all(breaker: CircuitBreaker, outcomes: str, now: float) -> list[bool]:
    """Record "s" (success) and "f" (failure) outcomes at one time; what record returned."""
    return [breaker.record(o == "s", now) for o in outcomes]


def opened(breaker: CircuitBreaker, now: float) -> CircuitBreaker:
    record_all(breaker, "fffff", now)
    assert breaker.state is OPEN
    return breaker


# Consecutive failures.


def test_a_new_breaker_is_closed_and_allows() -> None:
    breaker = CircuitBreaker()
    assert breaker.state is CLOSED
    assert breaker.allow(0.0)
    assert breaker.opened_at is None
    assert breaker.retry_at(0.0) is None
    assert breaker.openings == 0
    assert breaker.cooldown == FIRST_COOLDOWN
    assert repr(breaker) == "<CircuitBreaker closed cooldown=5 openings=0 window=0/0 failed>"


def test_four_failures_in_a_row_keep_it_closed_the_fifth_opens() -> None:
    breaker = CircuitBreaker()
    assert record_all(breaker, "ffff", 10.0) == [False] * 4
    assert breaker.state is CLOSED and breaker.allow(10.0)
    assert breaker.record(False, 11.0) is True
    assert breaker.state is OPEN
    assert breaker.opened_at == 11.0
    assert breaker.openings == 1
    assert not breaker.allow(11.0)


def test_consecutive_failures_count_across_any_time() -> None:
    breaker = CircuitBreaker()
    for n in range(4):
        breaker.record(False, n * 1000.0)
    assert breaker.record(False, 4000.0) is True


def test_a_success_resets_the_run_of_failures() -> None:
    breaker = CircuitBreaker()
    # Spread out so the ratio rule (30 s window) never sees 10 attempts.
    for n, outcome in enumerate("ffffsffff"):
        assert breaker.record(outcome == "s", n * 40.0) is False
    assert breaker.state is CLOSED
    assert breaker.record(False, 400.0) is True


# The failure ratio over the window.


def test_half_of_ten_attempts_failing_opens() -> None:
    breaker = CircuitBreaker()
    assert record_all(breaker, "sfsfsfsfs", 0.0) == [False] * 9  # 4 of 9
    assert breaker.record(False, 0.0) is True  # 5 of 10
    assert breaker.state is OPEN


def test_nine_attempts_are_too_few_to_judge() -> None:
    breaker = CircuitBreaker()
    record_all(breaker, "ffffsffff", 0.0)  # 8 of 9 failed
    assert breaker.state is CLOSED
    assert breaker.record(False, 0.0) is True  # 9 of 10


def test_a_success_never_opens() -> None:
    breaker = CircuitBreaker()
    record_all(breaker, "ffffsffff", 0.0)
    assert breaker.record(True, 0.0) is False  # 8 of 10 failed, but this one worked
    assert breaker.state is CLOSED
    assert breaker.record(False, 0.0) is True  # 9 of 11


def test_just_under_half_keeps_it_closed() -> None:
    breaker = CircuitBreaker()
    record_all(breaker, "ssfsfsfsfsfsfsfsfsfsf", 0.0)  # 10 of 21 failed
    assert breaker.state is CLOSED
    assert breaker.record(True, 0.0) is False
    assert breaker.record(False, 0.0) is False  # 11 of 23
    assert breaker.record(False, 0.0) is True  # 12 of 24


def test_the_window_is_thirty_seconds() -> None:
    breaker = CircuitBreaker()
    record_all(breaker, "sfsfs", 0.0)
    record_all(breaker, "fsfs", 29.0)
    # At 29.999 the attempts of t=0 are still in the window: 5 of 10 failed.
    assert breaker.record(False, 29.999) is True

    breaker = CircuitBreaker()
    record_all(breaker, "sfsfs", 0.0)
    record_all(breaker, "fsfs", 29.0)
    # At exactly 30 s they have left it: 3 of 5.
    assert breaker.record(False, 30.0) is False
    assert breaker.state is CLOSED


def test_the_window_slides() -> None:
    breaker = CircuitBreaker()
    for n in range(40):  # one success a second, then failures among fresh successes
        breaker.record(True, float(n))
    record_all(breaker, "fsfsfsf", 40.0)  # 4 failures in a window of 29 + 7 = 36 attempts
    assert breaker.state is CLOSED
    # Seconds 11..39 and the failures at 40: by t=60 only 10 successes are left.
    record_all(breaker, "s", 60.0)
    assert breaker.record(False, 60.0) is False  # 5 of 19 (seconds 31..39, 40, 60)
    assert breaker.record(False, 69.5) is True  # seconds 40..: 6 of 10


def test_the_window_keeps_the_latest_attempts_only() -> None:
    breaker = CircuitBreaker()
    record_all(breaker, "s" * 2000, 0.0)
    # 80% failing: against all 2000 successes this would take thousands of attempts; the
    # window holds the latest 1000, so it opens at the 500th failure.
    outcomes = "ffffs" * 200
    results = record_all(breaker, outcomes, 0.0)
    assert MAX_WINDOW_ATTEMPTS == 1000
    assert results.index(True) == 124 * 5 + 3
    assert breaker.openings == 1


# Cooldown and the probe.


def test_nothing_goes_during_the_cooldown_then_exactly_one_probe() -> None:
    breaker = opened(CircuitBreaker(), 100.0)
    assert breaker.retry_at(100.0) == 105.0
    assert breaker.retry_at(104.0) == 105.0
    assert not breaker.allow(100.0)
    assert not breaker.allow(104.999)
    assert breaker.state is OPEN
    assert breaker.allow(105.0)  # the probe
    assert breaker.state is HALF_OPEN
    assert not breaker.allow(105.0)
    assert not breaker.allow(200.0)
    assert breaker.retry_at(200.0) == 200.0 + PROBE_RECHECK


def test_a_late_first_allow_still_probes() -> None:
    breaker = opened(CircuitBreaker(), 100.0)
    assert breaker.retry_at(500.0) == 500.0
    assert breaker.allow(500.0)
    assert not breaker.allow(500.0)


def test_a_successful_probe_closes() -> None:
    breaker = opened(CircuitBreaker(), 100.0)
    assert breaker.allow(105.0)
    assert breaker.record(True, 106.0) is False
    assert breaker.state is CLOSED
    assert breaker.opened_at is None
    assert breaker.retry_at(106.0) is None
    assert breaker.allow(106.0) and breaker.allow(106.0)


def test_a_failed_probe_reopens_with_a_doubled_cooldown() -> None:
    breaker = opened(CircuitBreaker(), 100.0)
    assert breaker.allow(105.0)
    assert breaker.record(False, 106.0) is False  # a re-opening is not a new opening
    assert breaker.state is OPEN
    assert breaker.opened_at == 106.0
    assert breaker.cooldown == 10.0
    assert breaker.openings == 1
    assert breaker.retry_at(106.0) == 116.0
    assert not breaker.allow(115.999)
    assert breaker.allow(116.0)


def test_the_cooldown_doubles_up_to_five_minutes() -> None:
    breaker = opened(CircuitBreaker(), 0.0)
    cooldowns = [breaker.cooldown]
    now = 0.0
    for _ in range(9):
        now += breaker.cooldown
        assert not breaker.allow(now - 0.001)
        assert breaker.allow(now)
        breaker.record(False, now)
        cooldowns.append(breaker.cooldown)
    assert cooldowns == [5, 10, 20, 40, 80, 160, 300, 300, 300, 300]
    assert MAX_COOLDOWN == 300


def test_closing_resets_the_cooldown_and_the_next_opening_counts() -> None:
    breaker = opened(CircuitBreaker(), 0.0)
    breaker.allow(5.0)
    breaker.record(False, 5.0)  # cooldown 10
    breaker.allow(15.0)
    breaker.record(False, 15.0)  # cooldown 20
    breaker.allow(35.0)
    breaker.record(True, 36.0)
    assert breaker.state is CLOSED and breaker.cooldown == FIRST_COOLDOWN
    assert record_all(breaker, "fffff", 50.0) == [False] * 4 + [True]
    assert breaker.openings == 2
    assert breaker.retry_at(50.0) == 55.0


def test_closing_forgets_the_failures_before_it() -> None:
    breaker = CircuitBreaker()
    record_all(breaker, "ffff", 0.0)
    breaker.record(False, 0.0)
    breaker.allow(5.0)
    breaker.record(True, 5.0)
    # The four failures before the opening do not count towards the next one.
    assert record_all(breaker, "ffff", 6.0) == [False] * 4
    assert breaker.state is CLOSED


def test_outcomes_while_open_are_ignored() -> None:
    breaker = opened(CircuitBreaker(), 0.0)
    assert record_all(breaker, "sssfff", 1.0) == [False] * 6  # sent before the opening
    assert breaker.state is OPEN
    assert breaker.opened_at == 0.0
    assert breaker.cooldown == FIRST_COOLDOWN
    assert breaker.allow(5.0)


def test_repr_shows_the_live_state() -> None:
    breaker = CircuitBreaker()
    record_all(breaker, "sff", 0.0)
    assert repr(breaker) == "<CircuitBreaker closed cooldown=5 openings=0 window=3/2 failed>"
    record_all(breaker, "fff", 0.0)
    breaker.allow(5.0)
    breaker.record(False, 5.0)
    assert repr(breaker) == "<CircuitBreaker open cooldown=10 openings=1 window=0/0 failed>"


# The state machine, against a model written from the rules.


class Model:
    """The rules, restated plainly: full history, filtered when asked."""

    def __init__(self) -> None:
        self.state = "closed"
        self.history: list[tuple[float, bool]] = []  # (time, failed) since the last change
        self.opened_at = 0.0
        self.cooldown = 5.0
        self.openings = 0

    def should_open(self, now: float) -> bool:
        failed_in_a_row = 0
        for _, failed in reversed(self.history):
            if not failed:
                break
            failed_in_a_row += 1
        # Kept: t > now - 30, written as the breaker computes it (``now - t < 30`` rounds
        # differently when t is tiny and now is exactly 30).
        recent = [failed for t, failed in self.history if t > now - 30][-1000:]
        mostly = len(recent) >= 10 and sum(recent) * 2 >= len(recent)
        return failed_in_a_row >= 5 or mostly

    def record(self, success: bool, now: float) -> bool:
        if self.state == "open":
            return False
        if self.state == "half-open":
            self.history = []
            if success:
                self.state, self.cooldown = "closed", 5.0
            else:
                self.state, self.opened_at = "open", now
                self.cooldown = min(self.cooldown * 2, 300.0)
            return False
        self.history.append((now, not success))
        if not success and self.should_open(now):
            self.state, self.opened_at, self.history = "open", now, []
            self.openings += 1
            return True
        return False

    def allow(self, now: float) -> bool:
        if self.state == "closed":
            return True
        if self.state == "open" and now >= self.opened_at + self.cooldown:
            self.state = "half-open"
            return True
        return False


class BreakerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.breaker = CircuitBreaker()
        self.model = Model()
        self.now = 0.0

    @rule(dt=st.sampled_from([0.0, 0.001, 0.5, 1.0, 3.0, 4.999, 5.0, 10.0, 29.0, 30.0, 301.0]))
    def wait(self, dt: float) -> None:
        self.now += dt

    @rule(dt=st.floats(0.0, 400.0, allow_nan=False))
    def wait_any(self, dt: float) -> None:
        self.now += dt

    @rule(success=st.booleans())
    def record(self, success: bool) -> None:
        expected = self.model.record(success, self.now)
        assert self.breaker.record(success, self.now) is expected
        if expected:
            assert self.breaker.state is OPEN and self.breaker.opened_at == self.now

    @rule(outcomes=st.lists(st.booleans(), min_size=1, max_size=12))
    def record_burst(self, outcomes: list[bool]) -> None:
        for success in outcomes:
            self.record(success)

    @precondition(lambda self: self.breaker.state is HALF_OPEN)
    @rule(success=st.booleans())
    def probe_answers(self, success: bool) -> None:
        self.record(success)

    @precondition(lambda self: self.breaker.state is OPEN)
    @rule(success=st.booleans())
    def probe_at_the_end_of_the_cooldown(self, success: bool) -> None:
        retry_at = self.breaker.retry_at(self.now)
        assert retry_at is not None
        self.now = retry_at
        self.allow()
        assert self.breaker.state is HALF_OPEN
        self.record(success)

    @rule()
    def allow(self) -> None:
        state, retry_at = self.breaker.state, self.breaker.retry_at(self.now)
        allowed = self.breaker.allow(self.now)
        assert allowed is self.model.allow(self.now)
        if state is OPEN and retry_at is not None and self.now < retry_at:
            assert not allowed
        if not allowed:
            assert retry_at is not None and retry_at > self.now
        if state is HALF_OPEN:  # the probe is in flight: nothing else goes
            assert not allowed
        if state is OPEN and allowed:  # the probe
            assert self.breaker.state is HALF_OPEN

    @invariant()
    def agrees_with_the_model(self) -> None:
        assert self.breaker.state.value == self.model.state
        assert self.breaker.openings == self.model.openings
        assert self.breaker.cooldown == self.model.cooldown
        if self.model.state == "closed":
            assert self.breaker.opened_at is None
            assert self.breaker.retry_at(self.now) is None
        else:
            assert self.breaker.opened_at == self.model.opened_at

    @invariant()
    def cooldown_is_bounded(self) -> None:
        assert FIRST_COOLDOWN <= self.breaker.cooldown <= MAX_COOLDOWN

    @invariant()
    def retry_at_is_never_in_the_past(self) -> None:
        retry_at = self.breaker.retry_at(self.now)
        assert retry_at is None or retry_at >= self.now


BreakerMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=80)
TestBreakerMachine = BreakerMachine.TestCase
