"""A per-destination circuit breaker without I/O: the caller passes the time.

CLOSED lets everything through and watches the outcomes. A failure opens the breaker when
it is the ``CONSECUTIVE_FAILURES``-th in a row, or when at least ``FAILURE_RATIO`` of the
attempts recorded in the last ``WINDOW`` seconds failed and there were at least
``MIN_WINDOW_ATTEMPTS`` of them. Only a failure can open the breaker: a success never does,
even if it completes a window that is half failures.

OPEN lets nothing through until its cooldown has passed; the first `allow` after that turns
it HALF_OPEN and is the one probe. While the probe is in flight nothing else goes. The
probe's success closes the breaker and resets the cooldown; its failure re-opens it with
the cooldown doubled, up to ``MAX_COOLDOWN``.

The caller records exactly one outcome per send that `allow` let through (a cancelled send
is a failure). Outcomes recorded while OPEN belong to sends made before the opening and are
ignored; in HALF_OPEN the next outcome is taken as the probe's.
"""

from __future__ import annotations

import enum
from collections import deque

CONSECUTIVE_FAILURES = 5  # five failures in a row is an outage, not bad luck
FAILURE_RATIO = 0.5  # a destination failing half its requests is mostly wasting them
MIN_WINDOW_ATTEMPTS = 10  # below this the ratio is noise: 1 of 2 failing proves nothing
WINDOW = 30.0  # seconds of history the ratio looks at: recent enough to be the present
# Memory bound: under heavy traffic the ratio is judged on the latest attempts only, which
# are already far more than the ratio needs to be meaningful.
MAX_WINDOW_ATTEMPTS = 1000
FIRST_COOLDOWN = 5.0  # seconds: a restarting receiver is often back this soon
MAX_COOLDOWN = 300.0  # the doubling stops here: a recovered receiver waits 5 minutes at most
COOLDOWN_FACTOR = 2.0  # each failed probe doubles the wait, sparing a receiver that is down
# While the probe is in flight its outcome arrives at an unknown time: deliveries waiting on
# the breaker look again this often (within the hook's timeout the probe has its answer).
PROBE_RECHECK = 1.0


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    """Stops sending to a failing destination, then probes it with one request at a time."""

    __slots__ = (
        "_consecutive",
        "_failures",
        "_window",
        "cooldown",
        "opened_at",
        "openings",
        "state",
    )

    def __init__(self) -> None:
        self.state = BreakerState.CLOSED
        self.opened_at: float | None = None  # when the breaker last opened or re-opened
        self.cooldown = FIRST_COOLDOWN  # the wait of the current (or next) opening
        self.openings = 0  # openings from CLOSED; a failed probe's re-opening is not counted
        self._consecutive = 0
        self._window: deque[tuple[float, bool]] = deque()  # (time, failed), oldest first
        self._failures = 0  # failed entries in _window

    def __repr__(self) -> str:
        return (
            f"<CircuitBreaker {self.state.value} cooldown={self.cooldown:g} "
            f"openings={self.openings} window={len(self._window)}/{self._failures} failed>"
        )

    def allow(self, now: float) -> bool:
        """Whether a request may be sent now; after a cooldown, True once for the probe."""
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.OPEN and now >= self._cooldown_end():
            self.state = BreakerState.HALF_OPEN
            return True
        return False

    def retry_at(self, now: float) -> float | None:
        """When a delivery refused by `allow` should ask again; None while CLOSED."""
        if self.state is BreakerState.CLOSED:
            return None
        if self.state is BreakerState.OPEN:
            return max(now, self._cooldown_end())
        return now + PROBE_RECHECK

    def record(self, success: bool, now: float) -> bool:
        """Record the outcome of a send made at `allow`'s word.

        Returns True when this call opened the breaker from CLOSED, so that the caller
        reports each opening once.
        """
        if self.state is BreakerState.OPEN:
            return False
        if self.state is BreakerState.HALF_OPEN:
            if success:
                self._close()
            else:
                self.cooldown = min(self.cooldown * COOLDOWN_FACTOR, MAX_COOLDOWN)
                self._open(now)
            return False
        self._remember(not success, now)
        if success:
            self._consecutive = 0
            return False
        self._consecutive += 1
        if self._consecutive >= CONSECUTIVE_FAILURES or self._mostly_failing():
            self.openings += 1
            self._open(now)
            return True
        return False

    def _cooldown_end(self) -> float:
        assert self.opened_at is not None
        return self.opened_at + self.cooldown

    def _remember(self, failed: bool, now: float) -> None:
        self._window.append((now, failed))
        self._failures += failed
        while self._window and (
            len(self._window) > MAX_WINDOW_ATTEMPTS or self._window[0][0] <= now - WINDOW
        ):
            _, old_failed = self._window.popleft()
            self._failures -= old_failed

    def _mostly_failing(self) -> bool:
        attempts = len(self._window)
        return attempts >= MIN_WINDOW_ATTEMPTS and self._failures >= FAILURE_RATIO * attempts

    def _open(self, now: float) -> None:
        self.state = BreakerState.OPEN
        self.opened_at = now
        self._forget()

    def _close(self) -> None:
        self.state = BreakerState.CLOSED
        self.opened_at = None
        self.cooldown = FIRST_COOLDOWN
        self._forget()

    def _forget(self) -> None:
        """History before a change of state says nothing about the destination after it."""
        self._consecutive = 0
        self._window.clear()
        self._failures = 0
