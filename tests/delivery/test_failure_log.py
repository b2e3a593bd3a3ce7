"""The failure log's rules, with the time passed in: no sleeps, no trio, no logging."""

from __future__ import annotations

import logging

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from engine.delivery.failure_log import (
    DISABLED,
    WINDOW,
    FailedAttempt,
    FailureLog,
    Line,
    utc_iso,
)

T0 = 1_796_596_800.0  # 2026-12-06T22:40:00Z, in unix time


def failure(
    hook: str = "temps",
    delivery: str = "msg_8f3e_12_ab",
    attempt: int = 2,
    error: str = "status 503 from 127.0.0.1:9",
    retry_at: float | None = T0 + 5,
    retry_in: float = 5.0,
    **kwargs: str,
) -> FailedAttempt:
    return FailedAttempt(hook, delivery, attempt, error, retry_at, retry_in, **kwargs)


# One line in full, and what it says.


def test_the_first_failure_is_logged_in_full_at_once() -> None:
    log = FailureLog()
    line = log.failed(failure(), 100.0)
    assert line == Line(
        "temps",
        logging.WARNING,
        'hook "temps" delivery msg_8f3e_12_ab attempt 2 failed: status 503 from 127.0.0.1:9; '
        "next try 2026-12-06T22:40:05Z (in 5.0 s)",
        1,
    )


def test_a_delivery_that_gave_up_says_so() -> None:
    log = FailureLog()
    dead = log.failed(failure(retry_at=None, error="timeout after 20 s from example.com"), 0.0)
    assert dead is not None
    assert dead.text.endswith("failed: timeout after 20 s from example.com; gave up: dead letter")
    gone = log.failed(failure(hook="other", retry_at=None, ending=DISABLED), 0.0)
    assert gone is not None
    assert gone.text.endswith("; gave up: dead letter; hook disabled (410)")


def test_utc_iso() -> None:
    assert utc_iso(0.0) == "1970-01-01T00:00:00Z"
    assert utc_iso(T0 + 5.9) == "2026-12-06T22:40:05Z"


# The window.


def test_failures_in_the_window_are_counted_and_the_next_line_carries_the_count() -> None:
    log = FailureLog()
    assert log.failed(failure(), 0.0) is not None
    for n in range(37):
        assert log.failed(failure(attempt=3), 0.1 + n * 0.2) is None
    assert log.held("temps") == 37
    assert repr(log) == "<FailureLog hooks=1 held=37>"
    line = log.failed(failure(attempt=4), WINDOW)
    assert line is not None
    assert line.failures == 38
    assert line.text.endswith("(in 5.0 s) (and 37 more failures of this hook in the last 10 s)")
    assert log.held("temps") == 0


def test_hooks_have_windows_of_their_own() -> None:
    log = FailureLog()
    assert log.failed(failure(hook="a"), 0.0) is not None
    assert log.failed(failure(hook="b"), 1.0) is not None
    assert log.failed(failure(hook="a"), 2.0) is None
    assert (log.held("a"), log.held("b")) == (1, 0)


def test_a_hook_that_stops_failing_gets_its_count_window_after_its_last_failure() -> None:
    log = FailureLog()
    log.failed(failure(), 0.0)
    log.failed(failure(attempt=3, retry_at=None), 4.0)
    log.failed(failure(attempt=5, error="timeout after 5 s from 127.0.0.1"), 6.0)
    assert log.next_due() == 6.0 + WINDOW
    assert log.due(15.9) == []
    [summary] = log.due(16.0)
    assert summary.hook == "temps" and summary.level == logging.WARNING
    assert summary.failures == 2
    assert summary.text == (
        'hook "temps": 2 more failures in the last 16 s, 1 gave up; the last: '
        "delivery msg_8f3e_12_ab attempt 5 failed: timeout after 5 s from 127.0.0.1"
    )
    assert log.next_due() is None
    assert log.due(100.0) == []


def test_recovery_is_logged_once_at_info_and_carries_the_count() -> None:
    log = FailureLog()
    log.failed(failure(), 0.0)
    line = log.delivered("temps", "msg_8f3e_12_ab", 3, 20.0)
    assert line == Line(
        "temps",
        logging.INFO,
        'hook "temps" delivers again: delivery msg_8f3e_12_ab delivered at attempt 3',
        0,
    )
    assert log.delivered("temps", "msg_other", 1, 40.0) is None  # healthy: nothing more
    assert log.delivered("never-failed", "msg_x", 1, 40.0) is None
    log.due(40.0)
    assert repr(log) == "<FailureLog hooks=0 held=0>"  # well again: forgotten


def test_a_recovery_too_soon_is_held_back_and_logged_with_the_count() -> None:
    log = FailureLog()
    log.failed(failure(), 0.0)
    log.failed(failure(attempt=3), 1.0)
    assert log.delivered("temps", "msg_8f3e_12_ab", 4, 2.0) is None
    assert log.next_due() == WINDOW
    [line] = log.due(WINDOW)
    assert line.level == logging.WARNING  # it reports a failure
    assert line.failures == 1
    assert line.text == (
        'hook "temps" delivers again: delivery msg_8f3e_12_ab delivered at attempt 4 '
        "(and 1 more failure of this hook in the last 10 s)"
    )


def test_a_failure_after_a_held_recovery_makes_it_old_news() -> None:
    log = FailureLog()
    log.failed(failure(), 0.0)
    log.delivered("temps", "msg_a", 1, 1.0)
    log.failed(failure(attempt=2), 2.0)
    [line] = log.due(2.0 + WINDOW)
    assert line.text.startswith('hook "temps": 1 more failure in the last 12 s; the last: ')


def test_drain_logs_everything_held_back_at_once() -> None:
    log = FailureLog()
    log.failed(failure(hook="a"), 0.0)
    log.failed(failure(hook="a"), 1.0)
    log.failed(failure(hook="b"), 0.0)
    lines = log.drain(2.0)
    assert [(line.hook, line.failures) for line in lines] == [("a", 1)]
    assert repr(log) == "<FailureLog hooks=0 held=0>"


def test_a_removed_hook_still_gets_its_count_then_is_forgotten() -> None:
    log = FailureLog()
    log.failed(failure(), 0.0)
    log.failed(failure(), 1.0)
    log.forget("temps")
    log.forget("unknown")
    [line] = log.due(1.0 + WINDOW)
    assert line.failures == 1
    log.due(100.0)
    assert repr(log) == "<FailureLog hooks=0 held=0>"


# The rules, under any sequence of outcomes.

HOOKS = ("a", "b", "c")


class FailureLogMachine(RuleBasedStateMachine):
    """Random failures, successes and flushes of three hooks, against the three rules."""

    def __init__(self) -> None:
        super().__init__()
        self.log = FailureLog()
        self.now = 0.0
        self.failures = dict.fromkeys(HOOKS, 0)  # every failure told
        self.reported = dict.fromkeys(HOOKS, 0)  # the failures the lines reported
        self.last_line: dict[str, float] = {}
        self.last_failure: dict[str, float] = {}
        self.flushed_at = 0.0  # the last call to due

    def take(self, line: Line | None) -> None:
        if line is None:
            return
        last = self.last_line.get(line.hook)
        assert last is None or self.now >= last + WINDOW, (line, last, self.now)
        assert line.level == logging.WARNING or line.failures == 0  # none hidden at "warning"
        self.last_line[line.hook] = self.now
        self.reported[line.hook] += line.failures

    @rule(dt=st.sampled_from([0.0, 0.001, 0.5, 3.0, 9.999, 10.0, 10.001, 25.0]))
    def wait(self, dt: float) -> None:
        self.now += dt

    @rule(dt=st.floats(0.0, 60.0, allow_nan=False))
    def wait_any(self, dt: float) -> None:
        self.now += dt

    @rule(hook=st.sampled_from(HOOKS), gave_up=st.booleans(), n=st.integers(1, 5))
    def fail(self, hook: str, gave_up: bool, n: int) -> None:
        for _ in range(n):
            held = self.log.held(hook)
            line = self.log.failed(failure(hook, retry_at=None if gave_up else T0), self.now)
            self.failures[hook] += 1
            self.last_failure[hook] = self.now
            if hook not in self.last_line or self.now >= self.last_line[hook] + WINDOW:
                # Allowed a line: this failure is in it, in full, with all held before it.
                assert line is not None and line.failures == held + 1
            self.take(line)

    @rule(hook=st.sampled_from(HOOKS))
    def deliver(self, hook: str) -> None:
        self.take(self.log.delivered(hook, "msg_x", 1, self.now))

    @rule()
    def flush(self) -> None:
        due = self.log.next_due()
        lines = self.log.due(self.now)
        for line in lines:
            self.take(line)
        assert (due is not None and due <= self.now) or not lines
        self.flushed_at = self.now

    @precondition(lambda self: self.log.next_due() is not None)
    @rule()
    def flush_when_due(self) -> None:
        due = self.log.next_due()
        assert due is not None
        self.now = max(self.now, due)
        self.flush()

    @invariant()
    def counts_add_up(self) -> None:
        for hook in HOOKS:
            assert self.reported[hook] + self.log.held(hook) == self.failures[hook]

    @invariant()
    def nothing_held_is_overdue_after_a_flush(self) -> None:
        if self.flushed_at != self.now:
            return
        for hook in HOOKS:
            if self.log.held(hook):
                # Held back only while the hook failed within the window.
                assert self.now < self.last_failure[hook] + WINDOW

    def teardown(self) -> None:
        for line in self.log.drain(self.now + 1000.0):
            self.reported[line.hook] += line.failures
        assert self.reported == self.failures  # nothing lost at the end


TestFailureLogMachine = FailureLogMachine.TestCase
TestFailureLogMachine.settings = settings(max_examples=300, stateful_step_count=60, deadline=None)
