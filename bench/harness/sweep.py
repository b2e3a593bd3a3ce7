"""A search for the highest offered rate whose p99 stays within a bound, no I/O.

The caller asks ``next_rate()``, runs a load at that rate, and ``record``s the p99 it saw,
until ``next_rate()`` returns None. The search first multiplies the rate by ``factor`` while
each one passes, then bisects (geometrically: the resolution is a ratio) between the highest
rate that passed and the lowest that failed until they are within ``resolution`` of each
other. A rate passes when the load sustained it (``achieved``) and its p99 is at most
``bound_ms``; p99 is assumed to grow with the rate, so a pass below a failure is trusted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SweepPoint:
    """One measurement of a sweep: the rate offered, the p99 seen, and whether it passed."""

    rate: float
    p99_ms: float
    ok: bool


class RateSweep:
    """Which rate to try next, given those tried so far; ``best`` is the answer."""

    def __init__(
        self,
        bound_ms: float,
        start_rate: float,
        factor: float = 2.0,
        resolution: float = 0.1,
        max_steps: int = 12,
        max_rate: float | None = None,
    ) -> None:
        if not start_rate > 0:
            raise ValueError(f"a sweep starts at a rate above 0, got {start_rate!r}")
        if not factor > 1:
            raise ValueError(f"a sweep grows the rate by a factor above 1, got {factor!r}")
        if not resolution > 0:
            raise ValueError(f"a sweep's resolution must be above 0, got {resolution!r}")
        if max_steps < 1:
            raise ValueError(f"a sweep needs at least 1 step, got {max_steps!r}")
        if max_rate is not None and not max_rate >= start_rate:
            raise ValueError(f"max_rate {max_rate!r} is below start_rate {start_rate!r}")
        self.bound_ms = bound_ms
        self.start_rate = start_rate
        self.factor = factor
        self.resolution = resolution
        self.max_steps = max_steps
        self.max_rate = max_rate
        self.points: list[SweepPoint] = []
        self.best: float | None = None  # the highest rate that passed
        self.lowest_failure: float | None = None  # the lowest rate that failed

    def __repr__(self) -> str:
        return (
            f"<RateSweep bound={self.bound_ms:g}ms steps={len(self.points)}/{self.max_steps}"
            f" best={self.best} lowest_failure={self.lowest_failure} done={self.done}>"
        )

    @property
    def done(self) -> bool:
        """True when no rate is left to try."""
        return self.next_rate() is None

    def next_rate(self) -> float | None:
        """The rate to measure next; None when the sweep is over."""
        if len(self.points) >= self.max_steps:
            return None
        best, failure = self.best, self.lowest_failure
        if best is None:
            # Nothing passed: try the start, unless it already failed (nothing lower is tried).
            return self.start_rate if failure is None else None
        if failure is None:
            if self.max_rate is not None and best >= self.max_rate:
                return None
            rate = best * self.factor
            return rate if self.max_rate is None else min(rate, self.max_rate)
        if failure <= best * (1 + self.resolution):
            return None
        return math.sqrt(best * failure)

    def record(self, rate: float, p99_ms: float, achieved: bool = True) -> None:
        """The outcome of a load at ``rate``; ``achieved`` False: it could not be offered."""
        ok = achieved and p99_ms <= self.bound_ms
        self.points.append(SweepPoint(rate, p99_ms, ok))
        if ok:
            if self.best is None or rate > self.best:
                self.best = rate
        elif self.lowest_failure is None or rate < self.lowest_failure:
            self.lowest_failure = rate
