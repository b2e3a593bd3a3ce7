"""The isolation phase: a healthy destination's deliveries/s alone, then beside a dead one."""

from __future__ import annotations

import argparse

from bench.harness.daemon import HOST, rss_kb
from bench.harness.delivery.options import TARGET_ISOLATION_DROP_PCT
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


def measure_isolation(args: argparse.Namespace, report: Report, receiver: Receiver) -> None:
    """A healthy destination's deliveries/s alone, then next to a dead one (one daemon)."""
    healthy = receiver.ports[0]
    dead = receiver.silent_ports[0]
    hooks, names = spread_hooks([healthy], 1, args.hooks_per_event, event="live")
    hooks.append(
        {
            "name": "dead",
            "event": "dead/",
            "url": f"http://{HOST}:{dead}/dead",
            "timeout": args.dead_timeout,
        }
    )
    per_event = args.hooks_per_event
    rates: dict[str, float] = {}
    daemon = daemon_for(args, hooks)
    with daemon:
        main = publish_spec(args, daemon, names)
        for key, side_name, label in (
            ("alone", "idle/x", "healthy destination alone (side events match no hook)"),
            ("dead", "dead/x", "healthy destination next to a dead one"),
        ):
            side = publish_spec(
                args, daemon, (side_name,), rate=args.dead_rate, connections=2, pipeline=8
            )
            phase = run_phase(args, daemon, receiver, [(main, per_event), (side, 0)])
            rates[key] = report_phase(
                report, args, f"isolation: {label}", f"isolation.{key}", phase
            )
            side_result = phase.run.results[1]
            report.row(
                f"side events ({side_name}) published",
                side_result.ok,
                "",
                key=f"isolation.{key}.side_events",
            )
            if key == "dead":
                report.row(
                    "requests the dead destination got (never answered)",
                    phase.stats.silent_requests,
                    "",
                    key="isolation.dead.silent_requests",
                )
                for series, value in sorted(phase.metrics_after.items()):
                    if series.startswith("hookwire_destination_") and f":{dead}" in series:
                        report.row(f"engine: {series.partition('{')[0][9:]} (dead)", int(value))
            check_phase(report, args, f"isolation.{key}", phase)
        report.row("daemon RSS after", rss_kb(daemon.pid) / 1024, "MiB", key="isolation.rss_mib")
    report.row("daemon stop, SIGTERM to exit", daemon.stop_seconds or 0.0, "s")
    drop = 100 * (1 - rates["dead"] / rates["alone"]) if rates.get("alone") else 100.0
    report.section("isolation summary")
    report.row("healthy deliveries/s alone", rates.get("alone", 0.0))
    report.row("healthy deliveries/s with a dead neighbour", rates.get("dead", 0.0))
    report.row("drop", drop, "%", key="isolation.drop_pct")
    report.target(
        "healthy deliveries/s drop with a dead neighbour",
        drop,
        "<=",
        TARGET_ISOLATION_DROP_PCT,
        "%",
    )
