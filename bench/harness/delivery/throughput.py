"""The throughput phase: deliveries/s end to end to one or many destinations."""

from __future__ import annotations

import argparse

from bench.harness.daemon import rss_kb
from bench.harness.delivery.phase import (
    check_phase,
    daemon_for,
    publish_spec,
    report_phase,
    run_phase,
    spread_hooks,
)
from bench.harness.receiver import Receiver
from bench.harness.report import Report


def measure_throughput(
    args: argparse.Namespace,
    report: Report,
    receiver: Receiver,
    destinations: int,
    key: str,
    label: str,
) -> float:
    """Deliveries/s end to end to ``destinations`` destinations (own daemon)."""
    ports = receiver.ports[:destinations]
    hooks, names = spread_hooks(ports, destinations, args.hooks_per_event)
    daemon = daemon_for(args, hooks)
    with daemon:
        phase = run_phase(
            args, daemon, receiver, [(publish_spec(args, daemon, names), len(hooks) // len(names))]
        )
        rate = report_phase(report, args, label, key, phase)
        if destinations > 1:
            counts = [phase.stats.per_port.get(port, 0) for port in ports]
            report.row("deliveries per destination", f"min {min(counts):,} max {max(counts):,}")
        report.row("daemon RSS after", rss_kb(daemon.pid) / 1024, "MiB", key=f"{key}.rss_mib")
        check_phase(report, args, key, phase)
    report.row("daemon stop, SIGTERM to exit", daemon.stop_seconds or 0.0, "s")
    return rate
