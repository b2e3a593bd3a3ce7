"""How long deliveries pause while the daemon reloads a config file with many hooks.

A daemon with one hook to the sink and ``extra`` hooks that never match takes deliveries
as fast as the publishers go; two seconds after the first delivery, the config file gains
one more hook and the daemon is told to reload (``POST /v1/reload``, as SIGHUP does). The
longest gap between two deliveries the sink received while the reload ran is set beside
the longest gap of the same length of time just before it.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import threading
import time
from typing import Any

from bench.harness.daemon import Daemon
from bench.harness.delivery.phase import (
    check_phase,
    daemon_for,
    publish_spec,
    run_phase,
    spread_hooks,
)
from bench.harness.report import Report
from bench.harness.scenario import Sink

TARGET_PAUSE_MS = 50.0
"""Issue 18: a reload with 10,000 hooks pauses deliveries no longer than this."""

SETTLE = 0.05
"""Seconds after the reload's answer still counted as part of it."""

START_TIMEOUT = 60.0
"""Seconds the daemon gets to make its first delivery (its workers compile every hook)."""

STEADY = 2.0
"""Seconds of deliveries between the first one and the reload."""


def measure_reload_pause(
    args: argparse.Namespace, report: Report, sink: Sink, extra: list[dict[str, Any]]
) -> None:
    """One delivery phase with a reload halfway; rows, results and the target."""
    hooks, names = spread_hooks(sink.ports[:1], 1, 1)
    daemon = daemon_for(args, hooks + extra)
    reload: dict[str, Any] = {}
    with daemon:
        later = threading.Thread(target=_reload_later, args=(daemon, STEADY, reload))
        later.start()
        try:
            phase = run_phase(args, daemon, sink, [(publish_spec(args, daemon, names), 1)])
        finally:
            later.join(timeout=120)
        check_phase(report, args, "reload", phase)
    report.section(f"reload of a config file with {len(extra) + 1:,} hooks, under delivery load")
    if reload.get("status") != 200:
        report.fail(f"POST /v1/reload answered {reload.get('status')}: {reload.get('body')!r:.300}")
        return
    start, end = reload["start"], reload["end"] + SETTLE
    times = sorted(phase.stats.times)
    during, at = _gap_at(times, start, end)
    before = _longest_gap(times, start - (end - start), start)
    report.row("reload answered after", reload["end"] - reload["start"], "s", key="reload.seconds")
    report.row("longest gap between deliveries during it", during * 1e3, "ms", key="reload.gap_ms")
    report.row("  it began after the reload started by", at - start, "s", key="reload.gap_at_s")
    report.row(
        "longest gap just before it (as long a time)", before * 1e3, "ms", key="reload.before_ms"
    )
    report.row("deliveries received during it", sum(start <= t < end for t in times), "")
    report.target(
        f"longest pause of deliveries during a reload with {len(extra) + 1:,} hooks",
        during * 1e3,
        "<=",
        TARGET_PAUSE_MS,
        "ms",
    )


def _reload_later(daemon: Daemon, delay: float, result: dict[str, Any]) -> None:
    """Change the config file (one more hook) and reload it, ``delay`` seconds after the
    first delivery (the delivery workers compile every hook at their start)."""
    deadline = time.monotonic() + START_TIMEOUT
    while not _delivered(daemon) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(delay)
    with daemon.config_path.open("a") as file:
        file.write('\n[[hooks]]\nname = "added-by-reload"\nevent = "never/"\n')
        file.write('url = "http://127.0.0.1:9/never"\n')
    connection = http.client.HTTPConnection(daemon.host, daemon.port, timeout=120)
    result["start"] = time.monotonic()
    try:
        connection.request(
            "POST", "/v1/reload", headers={"Authorization": f"Bearer {daemon.token}"}
        )
        response = connection.getresponse()
        result["body"] = response.read()
        result["status"] = response.status
    finally:
        result["end"] = time.monotonic()
        connection.close()


def _delivered(daemon: Daemon) -> bool:
    return any(
        value > 0
        for series, value in daemon.metrics().items()
        if series.startswith("hookwire_deliveries_total{")
    )


def _longest_gap(times: list[float], begin: float, end: float) -> float:
    """The longest time without a delivery within [begin, end) (sorted receipt times)."""
    return _gap_at(times, begin, end)[0]


def _gap_at(times: list[float], begin: float, end: float) -> tuple[float, float]:
    """The longest time without a delivery within [begin, end), and when it began."""
    inside = [t for t in times if begin <= t < end]
    marks = [begin, *inside, end]
    return max((b - a, a) for a, b in itertools.pairwise(marks))
