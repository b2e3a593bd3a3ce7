"""Which failed attempts become log lines, so a dead target cannot flood the log (no I/O).

The dispatcher tells a ``FailureLog`` of every attempt's outcome and logs the ``Line`` it
gets back, if any; the caller passes the time (``now``, a monotonic clock), so the rules are
tested without sleeping. Per hook:

- a failure, when the hook's last line is ``WINDOW`` or more ago (or it has none): logged
  in full at once, with the count of the failures held back before it;
- a failure, when the hook's last line is more recent: counted, held back;
- ``WINDOW`` after the last failure held back (the hook stopped failing): one summary line
  of those held back (``due``);
- a success after failures: "delivers again", at once when allowed, else held back until
  allowed (``due``);
- the dispatcher stops: everything held back, at once (``drain``: the one exception to the
  window).

So a hook gets at most one line in any ``WINDOW`` seconds, every failure is in exactly one
line (its own, or the count of a later one), and a count is logged at most ``WINDOW`` after
the hook's last failure.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

WINDOW = 10.0
"""Seconds: at most one line per hook in any window this long. Short enough that the log
follows an outage as it goes; long enough that a hook failing 1,000 times a second writes
one line, not 10,000, in that time."""

DEAD_LETTER = "dead letter"
DISABLED = "dead letter; hook disabled (410)"


@dataclass(frozen=True, slots=True)
class FailedAttempt:
    """One failed try of a delivery, as the dispatcher knows it."""

    hook: str
    delivery: str  # its webhook-id
    attempt: int  # its number, counting those on record before a replay
    error: str  # the HTTP status or the transport's error, one line
    retry_at: float | None  # unix time of the next try; None: the delivery gave up
    retry_in: float = 0.0  # seconds until the next try
    ending: str = DEAD_LETTER  # why it ended, when it gave up

    @property
    def gave_up(self) -> bool:
        return self.retry_at is None

    def text(self) -> str:
        """``hook "temps" delivery ID attempt 2 failed: status 503 from host; next try ...``"""
        if self.retry_at is None:
            then = f"gave up: {self.ending}"
        else:
            then = f"next try {utc_iso(self.retry_at)} (in {self.retry_in:.1f} s)"
        return f"{_about(self.hook, self.delivery, self.attempt)} failed: {self.error}; {then}"


@dataclass(frozen=True, slots=True)
class Line:
    """A line to log about one hook."""

    hook: str
    level: int  # logging.WARNING or logging.INFO
    text: str
    failures: int  # the failures it reports: its own attempt's, and those held back before it


@dataclass(slots=True)
class _Hook:
    """What the log remembers of a hook that failed lately."""

    last_line: float  # when its last line was logged; the next is allowed at + WINDOW
    failing: bool = True  # its last attempt failed
    held: int = 0  # failures since its last line, not in a line yet
    held_gave_up: int = 0  # of those, the ones whose delivery gave up
    last_failure: float = 0.0  # when the last of those happened
    latest: FailedAttempt | None = None  # the last of those, for the summary
    recovered: tuple[str, int] | None = None  # (delivery, attempt): a success not logged yet


class FailureLog:
    """Per hook, the failures logged in full, those held back, and when a summary is due."""

    __slots__ = ("_hooks",)

    def __init__(self) -> None:
        self._hooks: dict[str, _Hook] = {}

    def __repr__(self) -> str:
        held = sum(state.held for state in self._hooks.values())
        return f"<FailureLog hooks={len(self._hooks)} held={held}>"

    def held(self, hook: str) -> int:
        """Failures of ``hook`` counted and not in a line yet."""
        state = self._hooks.get(hook)
        return state.held if state is not None else 0

    def failed(self, attempt: FailedAttempt, now: float) -> Line | None:
        """An attempt failed: its line, or None when it is held back."""
        state = self._hooks.get(attempt.hook)
        if state is None:
            self._hooks[attempt.hook] = _Hook(now)
            return Line(attempt.hook, logging.WARNING, attempt.text(), 1)
        state.failing = True
        state.recovered = None  # old news: it fails again
        if now >= state.last_line + WINDOW:
            text = attempt.text() + _more(state, now)
            return self._logged(state, attempt.hook, logging.WARNING, text, 1, now)
        state.held += 1
        state.held_gave_up += int(attempt.gave_up)
        state.last_failure = now
        state.latest = attempt
        return None

    def delivered(self, hook: str, delivery: str, attempt: int, now: float) -> Line | None:
        """An attempt succeeded: "delivers again" when the hook was failing (or None, held
        back when the hook's last line is too recent)."""
        state = self._hooks.get(hook)
        if state is None or not state.failing:
            return None  # the usual case: one look in an empty or small dict
        state.failing = False
        if now < state.last_line + WINDOW:
            state.recovered = (delivery, attempt)
            return None
        return self._recovery(state, hook, delivery, attempt, now)

    def due(self, now: float) -> list[Line]:
        """Lines held back whose time has come; forgets hooks that are well again."""
        lines = []
        for hook, state in list(self._hooks.items()):
            when = _due(state)
            if when is not None and now >= when:
                lines.append(self._flush(state, hook, now))
            elif when is None and not state.failing and now >= state.last_line + WINDOW:
                del self._hooks[hook]
        return lines

    def next_due(self) -> float | None:
        """When ``due`` will next have a line to give (None: nothing is held back)."""
        return min(
            (when for state in self._hooks.values() if (when := _due(state)) is not None),
            default=None,
        )

    def drain(self, now: float) -> list[Line]:
        """Everything held back, due or not (the dispatcher is stopping)."""
        lines = [
            self._flush(state, hook, now)
            for hook, state in self._hooks.items()
            if _due(state) is not None
        ]
        self._hooks.clear()
        return lines

    def forget(self, hook: str) -> None:
        """A hook removed: no recovery is awaited; what it held back is still logged when
        due, then the hook is forgotten."""
        state = self._hooks.get(hook)
        if state is not None:
            state.failing = False

    def _flush(self, state: _Hook, hook: str, now: float) -> Line:
        if state.recovered is not None:
            delivery, attempt = state.recovered
            return self._recovery(state, hook, delivery, attempt, now)
        latest = state.latest
        assert latest is not None  # held: there was one
        text = (
            f'hook "{hook}": {_failures(state.held)} in the last '
            f"{now - state.last_line:.0f} s{_gave_up(state)}; the last: delivery "
            f"{latest.delivery} attempt {latest.attempt} failed: {latest.error}"
        )
        return self._logged(state, hook, logging.WARNING, text, 0, now)

    def _recovery(self, state: _Hook, hook: str, delivery: str, attempt: int, now: float) -> Line:
        level = logging.WARNING if state.held else logging.INFO
        text = f'hook "{hook}" delivers again: delivery {delivery} delivered at attempt {attempt}'
        return self._logged(state, hook, level, text + _more(state, now), 0, now)

    @staticmethod
    def _logged(state: _Hook, hook: str, level: int, text: str, own: int, now: float) -> Line:
        """The line, with what it reports taken out of ``state``."""
        line = Line(hook, level, text, own + state.held)
        state.last_line = now
        state.held = state.held_gave_up = 0
        state.latest = state.recovered = None
        return line


def _due(state: _Hook) -> float | None:
    """When what ``state`` holds back is to be logged (None: nothing is held back)."""
    if state.recovered is not None:
        return state.last_line + WINDOW  # the hook stopped failing: as soon as allowed
    if state.held:
        return state.last_failure + WINDOW  # after WINDOW without failing; a failure
        # before then carries the count itself
    return None


def _about(hook: str, delivery: str, attempt: int) -> str:
    return f'hook "{hook}" delivery {delivery} attempt {attempt}'


def _more(state: _Hook, now: float) -> str:
    if not state.held:
        return ""
    return (
        f" (and {_failures(state.held)} of this hook in the last "
        f"{now - state.last_line:.0f} s{_gave_up(state)})"
    )


def _failures(n: int) -> str:
    return f"{n} more failure" if n == 1 else f"{n} more failures"


def _gave_up(state: _Hook) -> str:
    return f", {state.held_gave_up} gave up" if state.held_gave_up else ""


def utc_iso(unix: float) -> str:
    """``2026-12-06T22:40:05Z``: a unix time in UTC, to the second."""
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
