"""The schedule of an open-model load: requests due at a fixed arrival rate, no I/O.

Request ``i`` (0-based) is due at ``start + i / rate``, whatever happened to the ones before
it: a slow answer does not push the next request back (as it would in a closed loop, where
the client waits), so a latency measured from this scheduled time includes the time the
request spent waiting to be sent. That is what keeps a stalled server from hiding its own
stall ("coordinated omission").
"""

from __future__ import annotations


class Pacer:
    """When each request of a fixed-rate schedule is due, and how many are due by now."""

    __slots__ = ("rate", "start")

    def __init__(self, rate: float, start: float) -> None:
        if not rate > 0:  # also refuses NaN
            raise ValueError(f"a pacer needs a rate above 0 requests/s, got {rate!r}")
        self.rate = rate
        self.start = start

    def __repr__(self) -> str:
        return f"<Pacer rate={self.rate:g}/s start={self.start:.6f}>"

    def scheduled(self, index: int) -> float:
        """The time request ``index`` (0-based) is due.

        Computed from the index, never summed, so no rounding error builds up over a long run.
        """
        return self.start + index / self.rate

    def due(self, now: float, sent: int) -> int:
        """How many more requests the schedule has made due by ``now``, ``sent`` already started.

        Request ``i`` counts iff ``scheduled(i) <= now``: the estimate from the elapsed time
        is checked against ``scheduled`` itself, since float rounding can put it one off.
        """
        if now < self.start:
            return 0
        count = int((now - self.start) * self.rate) + 1
        # Each correction moves one step towards the edge of the due prefix (scheduled() is
        # non-decreasing in the index); the estimate is off by rounding only, a step or two.
        while self.scheduled(count) <= now:
            count += 1
        while count > 0 and self.scheduled(count - 1) > now:
            count -= 1
        return max(0, count - sent)
