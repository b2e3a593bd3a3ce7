"""One delivery phase: a daemon with hooks, publishers, the sink's counts, the checks and rows.

Every delivery measurement (throughput, latency, isolation; the journal and crash
benchmarks too) is built from these: ``daemon_for`` and ``spread_hooks`` set up the daemon,
``run_phase`` publishes and waits for the deliveries, ``check_phase`` finds engine failures
and ``report_phase`` writes the rows.
"""

from __future__ import annotations

import argparse
import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Protocol

from bench.harness.daemon import HOST, Daemon
from bench.harness.delivery.publishers import PublishRun, run_publishers, stamped_publishes
from bench.harness.httpload import LoadSpec
from bench.harness.latency import summarize
from bench.harness.receiver import Receiver, ReceiverStats
from bench.harness.report import Report

JOURNAL_FILE = "journal.db"
"""The SQLite journal, relative to the daemon's working directory (where its config is)."""

DRAIN_RATE_MIN = 1000
"""Backlog (deliveries) from which the rate after publishing stopped is worth showing."""
CLIENT_BOUND = 0.9
"""CPU share of a client process above which it, not the engine, may have set the pace."""


class Engine(Protocol):
    """What a phase publishes to: a ``Daemon``, or several nodes taken as one
    (bench/scenarios/cluster.py), whose /metrics are summed."""

    @property
    def pid(self) -> int | None:
        """The process (and its children) whose CPU the publishing window measures; None
        when there is no one process to measure (several nodes)."""
        ...

    def metrics(self) -> dict[str, float]: ...
    def check_alive(self) -> None: ...


@dataclass
class PhaseResult:
    """One publishing phase, as seen by the publishers, the receiver and the engine."""

    run: PublishRun
    expected: int  # deliveries the healthy receiver ports should get
    stats: ReceiverStats
    metrics_before: dict[str, float]
    metrics_after: dict[str, float]

    @property
    def end(self) -> float:
        return self.run.start + self.run.duration

    @property
    def last_receipt(self) -> float | None:
        return max(self.stats.times) if self.stats.times else None

    def deliveries_per_second(self) -> float:
        """Deliveries received / (last receipt - first publish): the end-to-end rate."""
        last = self.last_receipt
        if last is None or last <= self.run.start:
            return 0.0
        return self.stats.requests / (last - self.run.start)

    def window_per_second(self, warmup: float) -> float:
        """Deliveries received while publishing, after the warmup, per second."""
        begin = self.run.start + warmup
        span = self.end - begin
        return self.stats.received_between(begin, self.end) / span if span > 0 else 0.0

    def metric_sum(self, prefix: str) -> dict[str, float]:
        """Deltas of every series whose name starts with ``prefix``, by series."""
        return {
            key: value - self.metrics_before.get(key, 0.0)
            for key, value in self.metrics_after.items()
            if key.startswith(prefix)
        }


def spread_hooks(
    ports: Sequence[int], groups: int, per_event: int, *, event: str = "bench"
) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
    """``groups`` event names, each triggering ``per_event`` hooks on distinct ports.

    Hook k of group g has the event prefix ``{event}/{g}/`` and targets port (g + k) mod
    the number of ports, so every port gets the same share of hooks and of deliveries.
    Returns the hooks and the event names to cycle through.
    """
    hooks: list[dict[str, Any]] = []
    for g in range(groups):
        for k in range(per_event):
            index = (g + k) % len(ports)
            hooks.append(
                {
                    "name": f"{event}-{g}-{k}",
                    "event": f"{event}/{g}/",
                    "url": f"http://{HOST}:{ports[index]}/d{index}/h{k}",
                }
            )
    return hooks, tuple(f"{event}/{g}/x" for g in range(groups))


def daemon_for(
    args: argparse.Namespace,
    hooks: list[dict[str, Any]],
    backend: str | None = None,
    synchronous: str = "full",
    *,
    redis_url: str | None = None,
    cluster: dict[str, Any] | None = None,
    delivery: dict[str, Any] | None = None,
) -> Daemon:
    """A daemon with ``hooks``, its journal ``backend`` (default ``args.journal``); with
    ``"redis"``, on the server at ``redis_url``, ``cluster`` its ``[cluster]`` table (e.g.
    ``{"node": "node-a"}``). ``delivery`` adds to (or changes) its ``[delivery]`` table."""
    backend = backend or args.journal
    journal: dict[str, Any] = {"backend": backend}
    if backend == "sqlite":
        journal |= {
            "path": JOURNAL_FILE,
            "synchronous": synchronous,
            "commit_interval": getattr(args, "commit_interval", "2ms"),
        }
    elif backend == "redis":
        if redis_url is None:
            raise ValueError("a daemon on the Redis journal needs redis_url")
        journal["url"] = redis_url
    return Daemon(
        cluster=cluster if backend == "redis" else None,
        delivery={
            "allow_networks": ["127.0.0.0/8"],
            "max_in_flight": args.max_in_flight,
            "workers": getattr(args, "workers", "auto"),
            "max_connections": getattr(args, "max_connections", "auto"),
            **(delivery or {}),
        },
        hooks=hooks,
        journal=journal,
    )


def run_phase(
    args: argparse.Namespace,
    daemon: Engine,
    receiver: Receiver,
    streams: Sequence[tuple[LoadSpec, int]],
) -> PhaseResult:
    """Publish ``streams`` (spec, healthy deliveries per event) together; wait for the rest."""
    receiver.reset()
    before = daemon.metrics()
    run = run_publishers([spec for spec, _ in streams], daemon.pid, daemon.metrics)
    daemon.check_alive()
    expected = sum(
        result.ok * per_event for result, (_, per_event) in zip(run.results, streams, strict=True)
    )
    deadline = time.monotonic() + args.drain_timeout
    while time.monotonic() < deadline:
        _, unique, _ = receiver.count()
        if unique >= expected:
            break
        daemon.check_alive()
        time.sleep(0.05)
    stats = receiver.stats()
    return PhaseResult(run, expected, stats, before, _settled_metrics(daemon, before, stats))


SETTLE_TIMEOUT = 5.0
"""Seconds the engine gets, once the receiver has every delivery, to count them settled:
delivery workers report outcomes to the main process in batches, a moment later."""


def _settled_metrics(
    daemon: Engine, before: dict[str, float], stats: ReceiverStats
) -> dict[str, float]:
    """The daemon's /metrics once it counts as many deliveries settled as arrived (bounded)."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while True:
        after = daemon.metrics()
        settled = sum(
            value - before.get(series, 0.0)
            for series, value in after.items()
            if series.startswith("hookwire_deliveries_total{")
        )
        if settled >= stats.unique_ids or time.monotonic() >= deadline:
            return after
        time.sleep(0.05)


def publish_spec(
    args: argparse.Namespace, daemon: Daemon, names: tuple[str, ...], **changes: Any
) -> LoadSpec:
    """One publisher process: events named ``names``, stamped, every answer counted."""
    spec = LoadSpec(
        host=daemon.host,
        port=daemon.port,
        connections=args.pub_conns,
        pipeline=args.pub_pipeline,
        duration=args.duration,
        warmup=0.0,  # the phase's warmup is left out at the receiver, not here
        max_requests=args.max_events,
        track_ids=True,
        renderer=partial(stamped_publishes, daemon.host, daemon.port, daemon.token, names),
        count_drain=True,  # each acknowledged event is a delivery the receiver must get
    )
    return replace(spec, **changes)


def check_phase(report: Report, args: argparse.Namespace, label: str, phase: PhaseResult) -> None:
    """Engine failures of a phase: publish errors, lost or duplicated deliveries."""
    for result in phase.run.results:
        if result.error_count:
            report.fail(f"{label}: {result.error_count} publishes were not answered 200")
    stats = phase.stats
    if stats.duplicates:
        report.fail(f"{label}: {stats.duplicates} deliveries arrived more than once")
    if stats.unique_ids < phase.expected:
        report.fail(
            f"{label}: {phase.expected - stats.unique_ids:,} of {phase.expected:,} deliveries "
            f"did not arrive within {args.drain_timeout:g} s after publishing stopped"
        )
    elif stats.unique_ids > phase.expected:
        report.note(
            f"{label}: {stats.unique_ids - phase.expected:,} more deliveries than events "
            "acknowledged x hooks (a publish stored but not answered?)"
        )
    if stats.missing_id:
        report.note(f"{label}: {stats.missing_id:,} deliveries had no webhook-id header")
    if stats.bad_requests:
        report.fail(f"{label}: {stats.bad_requests} connections sent bytes that are not HTTP")


def report_phase(
    report: Report, args: argparse.Namespace, label: str, key: str, phase: PhaseResult
) -> float:
    """The rows every throughput phase shows; returns the end-to-end deliveries/s."""
    stats = phase.stats
    main = phase.run.results[0]
    duration = phase.run.duration
    rate = phase.deliveries_per_second()
    report.section(label)
    report.row("events published (200)", main.ok, "", key=f"{key}.events")
    report.row("events/s", main.ok / duration if duration else 0.0, "", key=f"{key}.events_per_s")
    acks = summarize(main.latencies)
    report.row("publish answer p50 / p99", f"{acks.p50_ms:.2f} / {acks.p99_ms:.2f} ms")
    report.row("deliveries expected", phase.expected, "", key=f"{key}.expected")
    report.row("deliveries received", stats.requests, "", key=f"{key}.received")
    report.row("unique webhook-ids", stats.unique_ids, "", key=f"{key}.unique")
    report.row("duplicates", stats.duplicates, "", key=f"{key}.duplicates")
    report.row("lost", max(0, phase.expected - stats.unique_ids), "", key=f"{key}.lost")
    report.row("deliveries/s end to end", rate, "", key=f"{key}.deliveries_per_s")
    report.row(
        "deliveries/s while publishing",
        phase.window_per_second(args.warmup),
        "",
        key=f"{key}.window_deliveries_per_s",
    )
    at_end = stats.received_between(phase.run.start, phase.end)
    backlog = max(0, phase.expected - at_end)
    report.row("backlog when publishing stopped", backlog, "deliveries", key=f"{key}.backlog")
    last = phase.last_receipt
    drain = max(0.0, last - phase.end) if last is not None else 0.0
    report.row("last delivery after publishing stopped", drain, "s", key=f"{key}.drain_s")
    if backlog >= DRAIN_RATE_MIN and drain > 0:
        report.row(
            "deliveries/s after publishing stopped",
            (stats.requests - at_end) / drain,
            "(delivery alone, no ingest)",
            key=f"{key}.drain_deliveries_per_s",
        )
    queued, in_flight, busiest = _midway_destinations(phase.run.midway)
    report.row(
        "engine halfway: queued / in flight",
        f"{queued:,} / {in_flight:,} (busiest destination {busiest:,} in flight, "
        f"max_in_flight {args.max_in_flight})",
    )
    report.results[f"{key}.midway_queued"] = queued
    report.results[f"{key}.midway_in_flight"] = in_flight
    receipts = summarize(stats.latencies(phase.run.start + args.warmup))
    if receipts.count:
        report.row(
            "publish-to-receipt p50 / p99 / max",
            f"{receipts.p50_ms:,.1f} / {receipts.p99_ms:,.1f} / {receipts.max_ms:,.1f} ms",
        )
        report.results[f"{key}.latency_p99_ms"] = receipts.p99_ms
    else:
        report.row("publish-to-receipt", "n/a (this sink does not read the stamps in bodies)")
    report_cpu(report, key, phase)
    report_engine_counts(report, key, phase)
    return rate


def _midway_destinations(metrics: dict[str, float]) -> tuple[int, int, int]:
    """(deliveries queued, attempts in flight, most in flight at one destination)."""
    queued = in_flight = busiest = 0
    for series, value in metrics.items():
        if series.startswith("hookwire_destination_queue_depth{"):
            queued += int(value)
        elif series.startswith("hookwire_destination_in_flight{"):
            in_flight += int(value)
            busiest = max(busiest, int(value))
    return queued, in_flight, busiest


def report_cpu(report: Report, key: str, phase: PhaseResult) -> None:
    run = phase.run
    if run.daemon_cpu is not None and run.duration > 0:
        report.row(
            "daemon CPU while publishing",
            100 * run.daemon_cpu / run.duration,
            "% of a core",
            key=f"{key}.daemon_cpu_pct",
        )
        if run.workers_cpu:
            report.row(
                "  of it, the main process",
                100 * (run.daemon_cpu - run.workers_cpu) / run.duration,
                "% of a core",
                key=f"{key}.main_cpu_pct",
            )
            report.row(
                "  of it, the delivery workers",
                100 * run.workers_cpu / run.duration,
                "% of a core",
                key=f"{key}.workers_cpu_pct",
            )
    publisher_cpu = sum(result.client_cpu for result in run.results)
    if run.duration > 0:
        report.row(
            "publisher CPU",
            100 * publisher_cpu / run.duration,
            "% of a core",
            key=f"{key}.publisher_cpu_pct",
        )
        if publisher_cpu / run.duration > CLIENT_BOUND * len(run.results):
            report.note(f"{key}: the publisher was saturated; events/s is a floor")
    last = phase.last_receipt
    span = (last - run.start) if last is not None else 0.0
    if span > 0:
        report.row(
            "receiver CPU (reset to last receipt)",
            100 * phase.stats.cpu / span,
            "% of a core",
            key=f"{key}.receiver_cpu_pct",
        )
        if phase.stats.cpu / span > CLIENT_BOUND:
            report.note(f"{key}: the receiver was saturated; deliveries/s is a floor")
    if run.machine_cpu is not None and run.daemon_cpu is not None and run.duration > 0:
        others = run.machine_cpu - run.daemon_cpu - publisher_cpu
        # The receiver's CPU in this window is not known exactly: its share over the phase.
        if span > 0:
            others -= phase.stats.cpu * run.duration / span
        report.row(
            "other processes' CPU while publishing",
            100 * max(0.0, others) / run.duration,
            "% of a core",
            key=f"{key}.others_cpu_pct",
        )


def report_engine_counts(report: Report, key: str, phase: PhaseResult) -> None:
    outcomes: Counter[str] = Counter()
    for series, value in phase.metric_sum("hookwire_deliveries_total{").items():
        outcomes[series.rpartition('outcome="')[2].rstrip('"}')] += int(value)
    attempts = {
        series.partition('status_class="')[2].rstrip('"}'): int(value)
        for series, value in phase.metric_sum("hookwire_delivery_attempts_total{").items()
        if value
    }
    report.row(
        "engine: deliveries by outcome",
        ", ".join(f"{k} {v:,}" for k, v in sorted(outcomes.items())),
    )
    report.row("engine: attempts by status", ", ".join(f"{k} {v:,}" for k, v in attempts.items()))
    report.results[f"{key}.engine_outcomes"] = dict(outcomes)
    report.results[f"{key}.engine_attempts"] = attempts
    if attempts.keys() - {"2xx"}:
        report.note(f"{key}: the engine saw failed attempts: {attempts}")


def histogram_quantiles(phase: PhaseResult, name: str) -> tuple[str, str]:
    """p50 and p99 of a histogram's change over the phase, as 'bucket <= bound' text."""
    buckets: list[tuple[float, float]] = []
    for series, value in phase.metric_sum(f"{name}_bucket{{").items():
        bound = series.partition('le="')[2].rstrip('"}')
        buckets.append((math.inf if bound == "+Inf" else float(bound), value))
    buckets.sort()
    total = buckets[-1][1] if buckets else 0.0

    def quantile(fraction: float) -> str:
        for bound, count in buckets:
            if total and count >= fraction * total:
                return "> 1 h" if math.isinf(bound) else f"<= {bound * 1000:g} ms"
        return "n/a"

    return quantile(0.5), quantile(0.99)
