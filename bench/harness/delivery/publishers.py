"""A delivery phase's publishers: the publish client (bench/harness/httpload.py), stamped."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import quote

from bench.harness.httpload import LoadResult, LoadSpec, Render, post_head, run_loads

FORM = "application/x-www-form-urlencoded"
USER_AGENT = "Hookwire/0.1.0"
"""What the engine sends as User-Agent; the baselines send it too."""


def stamped_publishes(host: str, port: int, token: str, names: tuple[str, ...]) -> Render:
    """``render(stamps)``: the next ``len(stamps)`` publish requests, each with its stamp.

    Each event's ``data`` is its own stamp, the publisher's ``time.monotonic()`` when it was
    due (at a ``rate``; when it was sent without one), so the receiver can tell the
    end-to-end latency of every delivery it gets, counted from the schedule; ``names`` are
    cycled through, one per event.
    """
    head = post_head(host, port, "/v1/devices/events", token, FORM)
    fields = [f"name={quote(name, safe='/')}&data=".encode() for name in names]
    count_of_names = len(fields)
    sequence = 0

    def render(stamps: Sequence[float]) -> bytes:
        nonlocal sequence
        parts = []
        for stamp in stamps:
            body = b"%s%.6f" % (fields[sequence % count_of_names], stamp)
            sequence += 1
            parts.append(b"%s%d\r\n\r\n%s" % (head, len(body), body))
        return b"".join(parts)

    return render


@dataclass
class PublishRun:
    """What the publishers did, and the daemon's CPU use while they published."""

    results: list[LoadResult]  # one per publisher spec, in order
    start: float  # monotonic: the first publish
    duration: float
    daemon_cpu: float | None  # the main process and its delivery workers
    machine_cpu: float | None
    midway: dict[str, float]  # the engine's /metrics halfway through publishing
    workers_cpu: float | None = None  # of daemon_cpu, the delivery workers'


def run_publishers(
    specs: Sequence[LoadSpec], daemon_pid: int | None, probe: Callable[[], dict[str, float]]
) -> PublishRun:
    """Run each spec in its own process, all starting together; wait (bounded) for them.

    ``probe`` (the daemon's /metrics) is called once, halfway through publishing. Without
    a ``daemon_pid`` (several nodes) neither the CPU window nor the probe is measured.
    """
    midway: dict[str, float] = {}
    run = run_loads(specs, daemon_pid, lambda: midway.update(probe()))
    duration = max(spec.duration for spec in specs)
    return PublishRun(
        run.results,
        run.start,
        duration,
        run.server_cpu,
        run.machine_cpu,
        midway,
        run.server_children_cpu,
    )
