"""What an attempt's outcome means, and when to try again (no I/O).

The contract's table: 2xx is a success; 408, 425, 429, 5xx and transport failures are
retried (honouring ``Retry-After``); 3xx and the other 4xx are permanent; 410 is permanent
and disables the hook. Failures without an HTTP answer are named by a `Failure` kind, so
the policy decides on kinds, never on message strings.
"""

from __future__ import annotations

import email.utils
import enum
import random
from dataclasses import dataclass
from datetime import UTC

# 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (the config's default): a quick second try for
# blips, then about a day of patience for an outage before the delivery becomes a dead letter.
DEFAULT_DELAYS = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
DEFAULT_JITTER = 0.2  # ±20% spreads the retries of a burst that failed together
MAX_RETRY_AFTER = 86400.0  # a receiver may not park a delivery for more than a day
# More digits than this is already far beyond MAX_RETRY_AFTER; it also keeps int() cheap.
_MAX_DELTA_DIGITS = 12

RETRYABLE_STATUSES = frozenset({408, 425, 429})  # timeout, too early, too many requests
DISABLING_STATUS = 410  # Gone: the receiver says the hook should stop


class Verdict(enum.Enum):
    """What to do with a delivery after one attempt."""

    SUCCESS = "success"
    RETRY = "retry"  # try again on the schedule (or after Retry-After)
    PERMANENT = "permanent"  # no retry: dead letter and hook-error
    DISABLE = "disable"  # permanent, and the hook is disabled until re-enabled


class Failure(enum.Enum):
    """An attempt that got no HTTP answer, named by what went wrong."""

    # The transport's failures: the receiver or the network may well recover.
    TIMEOUT = "timeout"
    CONNECT = "connect"  # connection refused or reset, DNS failure, unreachable
    TLS = "tls"  # handshake or certificate failure
    PROTOCOL = "protocol"  # the receiver broke HTTP or closed mid-response
    # Local failures: the same event and hook would fail the same way again.
    TEMPLATE = "template"  # the hook's templates do not render for this event
    INVALID_JSON = "invalid-json"  # a rendered json string is not valid JSON
    HEADER_INJECTION = "header-injection"  # CR or LF from a variable in a header or URL
    REFUSED = "refused"  # the SSRF guard refused the destination's address

    @property
    def retryable(self) -> bool:
        return self in _RETRYABLE_FAILURES


_RETRYABLE_FAILURES = frozenset({Failure.TIMEOUT, Failure.CONNECT, Failure.TLS, Failure.PROTOCOL})


def classify_status(status: int) -> Verdict:
    """The verdict on an attempt that got an HTTP answer with ``status``."""
    if 200 <= status < 300:
        return Verdict.SUCCESS
    if status == DISABLING_STATUS:
        return Verdict.DISABLE
    if status in RETRYABLE_STATUSES or 500 <= status < 600:
        return Verdict.RETRY
    # 3xx (redirects are not followed), the other 4xx, and codes no HTTP class defines
    # (1xx as a final answer, 600 and up): asking again would get the same answer.
    return Verdict.PERMANENT


def classify_failure(failure: Failure) -> Verdict:
    """The verdict on an attempt that got no HTTP answer."""
    return Verdict.RETRY if failure.retryable else Verdict.PERMANENT


def parse_retry_after(value: bytes | str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value, or None if it is absent or invalid.

    Both of RFC 9110's forms: delta-seconds (digits only) and an HTTP-date, compared with
    ``now`` (Unix time). The result is clamped to ``0 .. MAX_RETRY_AFTER``.
    """
    if value is None:
        return None
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    text = text.strip(" \t")
    if not text:
        return None
    if text.isascii() and text.isdigit():
        if len(text.lstrip("0")) > _MAX_DELTA_DIGITS:
            return MAX_RETRY_AFTER
        return min(float(int(text)), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (ValueError, TypeError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000" or no zone: an HTTP-date is always GMT
        when = when.replace(tzinfo=UTC)
    try:
        seconds = when.timestamp() - now
    except (OverflowError, OSError, ValueError):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


@dataclass(frozen=True, slots=True)
class RetrySchedule:
    """Delays between attempts: ``delays[n]`` follows attempt ``n + 1``, then dead letter."""

    delays: tuple[float, ...] = DEFAULT_DELAYS
    jitter: float = DEFAULT_JITTER

    def __post_init__(self) -> None:
        if any(not delay >= 0 for delay in self.delays):  # `not >=` also refuses NaN
            raise ValueError("retry delays must be >= 0 seconds")
        if not 0 <= self.jitter < 1:
            raise ValueError("retry jitter must be a fraction in [0, 1)")

    @property
    def max_attempts(self) -> int:
        """Attempts a delivery gets in all: the first, then one per delay."""
        return len(self.delays) + 1

    def next_delay(
        self, attempt: int, rng: random.Random, retry_after: float | None = None
    ) -> float | None:
        """Seconds until the next attempt, after ``attempt`` attempts (>= 1) have failed.

        None when the schedule is exhausted: the delivery is a dead letter. The scheduled
        delay is jittered uniformly by ±``jitter``; ``retry_after`` (from `parse_retry_after`)
        is honoured as a minimum.
        """
        if attempt < 1:
            raise ValueError(f"attempt counts the attempts made, so it is >= 1, got {attempt}")
        if attempt > len(self.delays):
            return None
        base = self.delays[attempt - 1]
        delay = base * rng.uniform(1.0 - self.jitter, 1.0 + self.jitter)
        if retry_after is not None:
            delay = max(delay, retry_after)
        return delay
