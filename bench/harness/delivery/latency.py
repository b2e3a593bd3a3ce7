"""The latency phases: publish-to-receipt at a fixed event rate (open model), 1 destination."""

from __future__ import annotations

import argparse

from bench.harness.daemon import Daemon
from bench.harness.delivery.options import TARGET_P99_MS
from bench.harness.delivery.phase import (
    PhaseResult,
    check_phase,
    daemon_for,
    histogram_quantiles,
    publish_spec,
    report_cpu,
    report_engine_counts,
    run_phase,
    spread_hooks,
)
from bench.harness.latency import LatencySummary, summarize
from bench.harness.receiver import Receiver
from bench.harness.report import Report

LATE_SHARE = 0.01
"""Share of sends more than 2 ms behind schedule from which the report says so."""


def report_commits(report: Report, key: str, phase: PhaseResult) -> float | None:
    """The SQLite journal's commits over the phase, per published event and per stored event
    (the engine's own hook-sent and hook-response events included), commits/s and writes per
    commit (the group size), from the daemon's /metrics before and after the phase. Returns
    commits per published event; None (and no rows) with a journal that does not commit."""
    commits = sum(phase.metric_sum("hookwire_journal_commits_total").values())
    if not commits:
        return None
    writes = sum(phase.metric_sum("hookwire_journal_writes_total").values())
    stored = sum(phase.metric_sum("hookwire_journal_events_stored_total").values())
    published = sum(result.ok for result in phase.run.results)
    per_event = commits / published if published else 0.0
    report.row("journal commits/event (published)", per_event, "", key=f"{key}.commits_per_event")
    if stored:
        report.row(
            "journal commits/event (stored, the engine's own included)",
            commits / stored,
            "",
            key=f"{key}.commits_per_stored_event",
        )
    span = (phase.last_receipt or phase.end) - phase.run.start
    if span > 0:
        report.row("journal commits/s", commits / span, "", key=f"{key}.commits_per_s")
    report.row("journal writes per commit", writes / commits, "", key=f"{key}.writes_per_commit")
    return per_event


def measure_latency(args: argparse.Namespace, report: Report, receiver: Receiver) -> None:
    """Publish-to-receipt latency at a fixed event rate, 1 destination (own daemon)."""
    port = receiver.ports[0]
    hooks, names = spread_hooks([port], 1, args.latency_hooks, event="lat")
    daemon = daemon_for(args, hooks)
    with daemon:
        spec = publish_spec(args, daemon, names, rate=args.latency_rate, pipeline=4)
        phase = run_phase(args, daemon, receiver, [(spec, args.latency_hooks)])
        main = phase.run.results[0]
        duration = phase.run.duration
        receipts = summarize(phase.stats.latencies(phase.run.start + args.warmup))
        report.section(
            f"latency: {args.latency_rate:,.0f} events/s, {args.latency_hooks} hook(s) each, "
            "1 destination"
        )
        report.row(
            "events/s achieved",
            main.ok / duration if duration else 0.0,
            "",
            key="latency.events_per_s",
        )
        report.row("deliveries received", phase.stats.requests, "", key="latency.received")
        report.row("samples (after warmup)", receipts.count, "", key="latency.samples")
        report.row("publish-to-receipt p50", receipts.p50_ms, "ms", key="latency.p50_ms")
        report.row("publish-to-receipt p99", receipts.p99_ms, "ms", key="latency.p99_ms")
        report.row("publish-to-receipt max", receipts.max_ms, "ms", key="latency.max_ms")
        engine_p50, engine_p99 = histogram_quantiles(phase, "hookwire_delivery_latency_seconds")
        report.row("engine histogram p50 (accepted to 2xx)", engine_p50)
        report.row("engine histogram p99 (accepted to 2xx)", engine_p99)
        report.results["latency.engine_p50"] = engine_p50
        report.results["latency.engine_p99"] = engine_p99
        report_cpu(report, "latency", phase)
        report_commits(report, "latency", phase)
        report_engine_counts(report, "latency", phase)
        check_phase(report, args, "latency", phase)
    report.target(
        f"publish-to-receipt p99 at {args.latency_rate:,.0f} events/s",
        receipts.p99_ms,
        "<=",
        TARGET_P99_MS,
        "ms",
    )


def open_phase(
    found: Report,
    args: argparse.Namespace,
    daemon: Daemon,
    sink: Receiver,
    names: tuple[str, ...],
    rate: float,
    key: str,
) -> tuple[LatencySummary, bool]:
    """One open-model phase at ``rate`` events/s; (publish-to-receipt, rate achieved)."""
    spec = publish_spec(args, daemon, names, rate=rate, pipeline=8)
    phase = run_phase(args, daemon, sink, [(spec, 1)])
    check_phase(found, args, key, phase)
    main = phase.run.results[0]
    # Stamps are scheduled send times: a late send counts against the engine's latency,
    # as a device that published on time would see it (no coordinated omission).
    receipts = summarize(phase.stats.latencies(phase.run.start + args.warmup))
    # Answers arrive in about the order they were scheduled: skip the warm-up's share.
    acks = summarize(main.latencies[int(args.warmup * rate) :])
    achieved = main.ok / phase.run.duration if phase.run.duration else 0.0
    found.section(f"{rate:,.0f} events/s offered, open model, 1 hook each")
    found.row("events/s achieved", achieved, "", key=f"{key}.events_per_s")
    for what, summary in (("publish-to-receipt", receipts), ("publish-to-ack", acks)):
        found.row(
            f"{what} p50 / p90 / p99 / p99.9 / max",
            " / ".join(
                f"{summary.as_dict()[p]:,.2f}"
                for p in ("p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms")
            )
            + f" ms ({summary.count:,} samples)",
        )
    found.results[f"{key}.receipt"] = receipts.as_dict()
    found.results[f"{key}.ack"] = acks.as_dict()
    found.row("sends > 2 ms behind schedule", main.late_sends, "", key=f"{key}.late_sends")
    found.row("latest send behind schedule", main.send_lag_max * 1000, "ms")
    if main.sent and main.late_sends > LATE_SHARE * main.sent:
        found.note(
            f"{key}: {main.late_sends:,} of {main.sent:,} publishes left more than 2 ms "
            "after their scheduled time (every connection busy, or the generator's own "
            "CPU); the wait is in the latencies, as a device publishing on time would see it"
        )
    report_cpu(found, key, phase)
    report_commits(found, key, phase)
    ok = achieved >= 0.97 * rate and not found.failure
    return receipts, ok
