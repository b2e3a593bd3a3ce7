"""A token bucket without I/O: the caller passes the time, so tests need no clock."""

from __future__ import annotations


class TokenBucket:
    """Allows ``rate`` operations per second on average and bursts of ``burst``."""

    __slots__ = ("_stamp", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._stamp = now

    def __repr__(self) -> str:
        return f"<TokenBucket rate={self.rate} burst={self.burst} tokens={self._tokens:.2f}>"

    def _refill(self, now: float) -> None:
        if now > self._stamp:
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now

    def try_take(self, now: float, n: float = 1.0) -> bool:
        """Take ``n`` tokens if there are enough; never blocks."""
        self._refill(now)
        if self._tokens >= n:
            self._tokens -= n
            return True
        return False

    def wait_time(self, now: float, n: float = 1.0) -> float:
        """Seconds until ``n`` tokens will be there (0 if they are now)."""
        self._refill(now)
        missing = n - self._tokens
        return 0.0 if missing <= 0 else missing / self.rate
