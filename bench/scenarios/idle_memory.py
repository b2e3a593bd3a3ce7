"""Memory per idle SSE subscriber: the daemon's RSS with none, then with N idle streams.

The daemon's VmRSS (from /proc/PID/status) is read once it has served a few warm-up
subscribers and a publish (so lazily built code paths are not charged to subscribers),
then again with N subscribers (default 2,000) connected from a separate process and
settled; the report is (delta / N) in KiB. RSS after they disconnect is shown too: it
should fall back towards the baseline (CPython keeps some freed arenas, so not all of it).

Exit 1 (engine failure) if the daemon dies or a subscriber cannot connect.

    .venv/bin/python -m bench.scenarios.idle_memory
    .venv/bin/python -m bench.scenarios.idle_memory --subscribers 5000 --settle 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from bench.harness.daemon import Daemon, EngineFailed, machine_busy, raise_fd_limit, status_kb
from bench.harness.report import Report
from bench.harness.sse_client import SubscriberPool, SubscriberSpec

TARGET_KB = 20.0
"""KiB of daemon memory per idle subscriber the design allows."""

SUBSCRIBERS_METRIC = "hookwire_sse_subscribers"
WARMUP_SUBSCRIBERS = 20


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Daemon memory per idle SSE subscriber.")
    parser.add_argument("--subscribers", type=int, default=2000, help="idle streams to open")
    parser.add_argument("--sub-procs", type=int, default=1, help="subscriber client processes")
    parser.add_argument("--path", default="/v1/devices/events", help="SSE route to subscribe to")
    parser.add_argument(
        "--settle", type=float, default=3.0, help="seconds to wait before each reading"
    )
    parser.add_argument(
        "--connect-timeout", type=float, default=60.0, help="seconds to open every subscriber"
    )
    return parser


def _memory(pid: int, settle: float) -> dict[str, int]:
    """VmRSS and RssAnon in KiB: the median of five readings over the last part of ``settle``."""
    time.sleep(max(0.0, settle - 1.0))
    samples: dict[str, list[int]] = {"VmRSS": [], "RssAnon": []}
    for _ in range(5):
        for name, values in samples.items():
            values.append(status_kb(pid, name))
        time.sleep(0.2)
    return {name: int(statistics.median(values)) for name, values in samples.items()}


def _open(daemon: Daemon, args: argparse.Namespace, count: int, report: Report) -> SubscriberPool:
    spec = SubscriberSpec(
        daemon.host,
        daemon.port,
        args.path,
        daemon.token,
        count,
        connect_timeout=args.connect_timeout,
        lifetime=args.connect_timeout + 4 * args.settle + 300,
    )
    pool = SubscriberPool(spec, args.sub_procs)
    opened = pool.wait_connected()
    if opened.connected < count:
        failed = ", ".join(f"{why}: {n}" for why, n in opened.failed.items())
        report.fail(
            f"{count - opened.connected} of {count} subscribers could not connect ({failed})"
        )
    gauge = daemon.wait_for_metric(SUBSCRIBERS_METRIC, float(opened.connected), timeout=30)
    if gauge != opened.connected:
        report.fail(f"{SUBSCRIBERS_METRIC} is {gauge}, the client has {opened.connected} open")
    return pool


def _close(daemon: Daemon, pool: SubscriberPool, report: Report) -> None:
    stats = pool.stop()
    pool.close()
    if stats.lost_count:
        report.fail(f"{stats.lost_count} idle subscribers were disconnected: {dict(stats.lost)}")
    gauge = daemon.wait_for_metric(SUBSCRIBERS_METRIC, 0.0, timeout=30)
    if gauge != 0:
        report.fail(f"{SUBSCRIBERS_METRIC} is {gauge} after every subscriber left")


def _warm_up(daemon: Daemon, args: argparse.Namespace, report: Report) -> None:
    """Exercise subscribe, publish and metrics once, so their first-use costs are paid."""
    pool = _open(daemon, args, min(WARMUP_SUBSCRIBERS, args.subscribers), report)
    try:
        daemon.publish("bench/warmup", "1")
        daemon.metrics()
        daemon.health()
    finally:
        _close(daemon, pool, report)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    raise_fd_limit(2 * args.subscribers + 1024)
    report = Report(
        "idle_memory",
        {"subscribers": args.subscribers, "sub_procs": args.sub_procs, "settle": args.settle},
    )
    report.check_machine(machine_busy())
    try:
        _run(args, report)
    except EngineFailed as exc:
        report.fail(str(exc))
    return report.finish()


def _run(args: argparse.Namespace, report: Report) -> None:
    n = args.subscribers
    with Daemon() as daemon:
        _warm_up(daemon, args, report)
        before = _memory(daemon.pid, args.settle)
        pool = _open(daemon, args, n, report)
        try:
            during = _memory(daemon.pid, args.settle)
            daemon.check_alive()
            health = daemon.health()
        finally:
            _close(daemon, pool, report)
        after = _memory(daemon.pid, args.settle)

    per_sub = (during["VmRSS"] - before["VmRSS"]) / n
    anon_per_sub = (during["RssAnon"] - before["RssAnon"]) / n
    report.section("daemon memory (KiB)")
    report.row("VmRSS, no subscribers", before["VmRSS"], "KiB", key="rss_before_kb")
    report.row(f"VmRSS, {n:,} idle subscribers", during["VmRSS"], "KiB", key="rss_during_kb")
    report.row("VmRSS, after they left", after["VmRSS"], "KiB", key="rss_after_kb")
    report.row("RssAnon, no subscribers", before["RssAnon"], "KiB", key="anon_before_kb")
    report.row(f"RssAnon, {n:,} idle", during["RssAnon"], "KiB", key="anon_during_kb")
    report.section("per idle subscriber")
    report.row("VmRSS delta / N", per_sub, "KiB", key="rss_per_subscriber_kb")
    report.row("RssAnon delta / N", anon_per_sub, "KiB", key="anon_per_subscriber_kb")
    report.row("subscribers per /healthz", health.get("subscribers"))
    report.row("daemon stop, SIGTERM to exit", daemon.stop_seconds or 0.0, "s", key="daemon.stop_s")
    report.target("daemon memory per idle subscriber", per_sub, "<=", TARGET_KB, "KiB")


if __name__ == "__main__":
    sys.exit(main())
