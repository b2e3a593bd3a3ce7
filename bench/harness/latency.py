"""Latency percentiles from an HdrHistogram: bounded memory, mergeable across processes.

A ``LatencyRecorder`` keeps whole microseconds from 1 µs to 1 hour at 3 significant digits
(each value is known to within 0.1%), in a fixed ~190 KB of counts however many values it
holds. Worker processes send theirs through a pipe with ``encode`` (the HdrHistogram V2
encoding, compressed, plus the clamp count) and the parent merges them; the percentiles of
the merged histogram are those of every value recorded anywhere.

Percentiles are nearest-rank (``p`` is the ``ceil(p * count)``-th smallest value), each
reported as the highest value its histogram bucket can hold, so a reported percentile is
never below the true one and above it by 0.1% at most (plus the rounding to 1 µs).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
"""The smallest value kept: below the resolution of the clocks we measure with, it is noise."""

HIGHEST_US = 3_600_000_000
"""One hour: no request a benchmark waits for takes longer; above it is a bug, not a latency."""

SIGNIFICANT_DIGITS = 3
"""0.1% relative precision: finer than the run-to-run noise of any benchmark here."""

PER_MILLE = ((500, "p50_ms"), (900, "p90_ms"), (990, "p99_ms"), (999, "p999_ms"))
"""The percentiles of a summary, as whole thousandths so their ranks are exact integers."""

SEPARATOR = b":"


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """The percentiles of a set of latencies, in milliseconds."""

    count: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float

    @classmethod
    def empty(cls) -> LatencySummary:
        """The summary of no latencies at all: every figure 0."""
        return cls(0, 0.0, 0.0, 0.0, 0.0, 0.0)

    def as_dict(self) -> dict[str, float | int]:
        """The figures by field name, for a JSON report."""
        return asdict(self)


class LatencyRecorder:
    """Records latencies (seconds) into an HdrHistogram of microseconds; summarizes them.

    A value outside 1 µs .. 1 hour is recorded at the nearer end and counted in ``clamped``,
    so a report can say that some were (a negative latency means a clock went wrong).
    """

    __slots__ = ("_histogram", "clamped")

    def __init__(self, histogram: HdrHistogram | None = None, clamped: int = 0) -> None:
        if histogram is None:
            histogram = HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)
        self._histogram = histogram
        self.clamped = clamped

    def __repr__(self) -> str:
        return f"<LatencyRecorder count={self.count} clamped={self.clamped}>"

    @property
    def count(self) -> int:
        """How many values were recorded, clamped ones included."""
        total: int = self._histogram.get_total_count()
        return total

    def record(self, seconds: float) -> None:
        """Record one latency, in seconds."""
        micros = seconds * 1_000_000
        if micros < LOWEST_US:
            value = LOWEST_US
            self.clamped += 1
        elif micros > HIGHEST_US:
            value = HIGHEST_US
            self.clamped += 1
        elif micros == micros:
            value = round(micros)
        else:
            raise ValueError("a latency of NaN seconds: the clock stamps are broken")
        self._histogram.record_value(value)

    def record_many(self, seconds: Iterable[float]) -> None:
        """Record every latency (seconds) of ``seconds``."""
        record = self.record
        for value in seconds:
            record(value)

    def merge(self, other: LatencyRecorder) -> None:
        """Add every value ``other`` recorded (and its clamp count) to this recorder."""
        self._histogram.add(other._histogram)
        self.clamped += other.clamped

    def encode(self) -> bytes:
        """Compact bytes that ``decode`` turns back into an equal recorder (in any process)."""
        blob: bytes = self._histogram.encode()
        return b"%d%s%s" % (self.clamped, SEPARATOR, blob)

    @classmethod
    def decode(cls, data: bytes) -> LatencyRecorder:
        """The recorder that ``encode`` made ``data`` from."""
        clamped, separator, blob = data.partition(SEPARATOR)
        if not separator or not clamped.isdigit():
            raise ValueError(f"not an encoded LatencyRecorder: {data[:40]!r}")
        histogram = HdrHistogram.decode(blob)
        if (
            histogram.lowest_trackable_value != LOWEST_US
            or histogram.highest_trackable_value != HIGHEST_US
            or histogram.significant_figures != SIGNIFICANT_DIGITS
        ):
            raise ValueError("an encoded histogram with another range or precision than ours")
        return cls(histogram, int(clamped))

    def summary(self) -> LatencySummary:
        """p50, p90, p99, p99.9 and max of everything recorded, in milliseconds."""
        histogram = self._histogram
        count = self.count
        if count == 0:
            return LatencySummary.empty()
        ranks = [(-(-count * per_mille // 1000), name) for per_mille, name in PER_MILLE]
        ranks.append((count, "max_ms"))
        figures: dict[str, float] = {}
        seen = 0
        wanted = iter(ranks)
        rank, name = next(wanted)
        # One walk up the buckets finds every rank (they are in increasing order); it stops at
        # the bucket holding the last value, within the fixed number of buckets.
        for index in range(histogram.counts_len):
            seen += histogram.get_count_at_index(index)
            while seen >= rank:
                top = histogram.get_highest_equivalent_value(histogram.get_value_from_index(index))
                figures[name] = top / 1000
                next_rank = next(wanted, None)
                if next_rank is None:
                    return LatencySummary(count=count, **figures)
                rank, name = next_rank
        raise AssertionError(f"a histogram of {count} values that holds only {seen}")


def summarize(seconds: Iterable[float]) -> LatencySummary:
    """The summary of a set of latencies in seconds (a ``LatencyRecorder`` used once)."""
    recorder = LatencyRecorder()
    recorder.record_many(seconds)
    return recorder.summary()
