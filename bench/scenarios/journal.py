"""The SQLite journal's price: deliveries/s next to the memory journal, ack latency, growth.

Each measurement starts its own ``hookwire run`` (bench/harness/daemon.py) and uses the delivery
benchmark's receiver (bench/harness/receiver.py), publishers (bench/harness/httpload.py) and phases
(bench/harness/delivery/):

1. throughput: the delivery benchmark's "1 destination" phase (4 hooks per event on one port,
   8 publisher connections as fast as they are answered, ``--duration`` s, then the
   drain), with the memory journal and with the SQLite journal (``synchronous = full``)
   alternately, ``--pairs`` times, on the same receiver: both see the same machine.
   Deliveries/s end to end, and SQLite / memory for each pair and for the medians;
2. ack latency: publish-to-ack (request written to 200 read, at the publisher) at a fixed
   ``--latency-rate`` (5,000 events/s, open loop, 1 hook each), SQLite with
   ``synchronous = full``, then the memory journal as the reference;
3. growth: exactly ``--growth-events`` events, ``--growth-hooks`` hooks each; once every
   delivery is settled in the journal, the file sizes (database + WAL while running, the
   database alone after a clean stop) per event, and per million events.

Exit 1 (engine failure) if a daemon does not start, dies or does not stop, a publish is
not answered 200, a delivery is lost or duplicated, or the journal does not settle.

    .venv/bin/python -m bench.scenarios.journal
    .venv/bin/python -m bench.scenarios.journal --only growth --growth-events 1000000
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from bench.harness.daemon import Daemon, EngineFailed, machine_busy, raise_fd_limit
from bench.harness.delivery.latency import report_commits

# The delivery benchmark's phase: publishers, receiver counts, checks and rows.
from bench.harness.delivery.phase import (
    JOURNAL_FILE,
    PhaseResult,
    check_phase,
    daemon_for,
    publish_spec,
    report_phase,
    run_phase,
    spread_hooks,
)
from bench.harness.httpload import run_loads
from bench.harness.latency import summarize
from bench.harness.receiver import Receiver
from bench.harness.report import Report
from bench.harness.scenario import Bench, options, scenario, versus
from bench.harness.suite import Findings

TARGET_RATIO = 0.8
"""SQLite deliveries/s at least this share of the memory journal's, in the same run."""

TARGET_DELIVERIES = 20_000.0
TARGET_ACK_P99_MS = 5.0

SCENARIOS = ("throughput", "latency", "growth")

PAGE_SIZE = 4096
"""SQLite's default page size, which the journal keeps."""

SETTLE_POLL = 0.2
"""Seconds between looks at the journal while waiting for it to settle."""


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="SQLite journal vs memory: deliveries/s, publish-to-ack latency, growth."
    )
    add = parser.add_argument
    add("--only", default=",".join(SCENARIOS), help=f"scenarios to run, of {', '.join(SCENARIOS)}")
    add("--pairs", type=int, default=2, help="memory + SQLite throughput phases, alternating")
    add("--duration", type=float, default=4.0, help="seconds of publishing per throughput phase")
    add("--warmup", type=float, default=0.5, help="seconds left out of window rates/latencies")
    add("--hooks-per-event", type=int, default=4, help="hooks each throughput event triggers")
    add("--max-in-flight", type=int, default=64, help="engine's [delivery] max_in_flight")
    add("--pub-conns", type=int, default=8, help="publisher connections")
    add("--pub-pipeline", type=int, default=1, help="publishes in flight per connection")
    add("--max-events", type=int, default=500_000, help="publish at most this many per phase")
    add("--synchronous", default="full", choices=("full", "normal"), help="SQLite synchronous")
    add("--latency-rate", type=float, default=5000.0, help="events/s of the latency phase")
    add("--latency-duration", type=float, default=5.0, help="seconds of the latency phase")
    add("--latency-conns", type=int, default=8, help="publisher connections, latency phase")
    add("--latency-pipeline", type=int, default=4, help="publishes in flight per connection")
    add(
        "--latency-hooks", type=int, default=1, help="hooks each latency event triggers (0: ingest)"
    )
    add("--no-latency-reference", action="store_true", help="skip the memory latency run")
    add("--growth-events", type=int, default=200_000, help="events published for growth")
    add("--growth-hooks", type=int, default=1, help="hooks each growth event triggers")
    add("--growth-timeout", type=float, default=600.0, help="seconds the growth run may take")
    add("--drain-timeout", type=float, default=30.0, help="seconds for a phase's last delivery")
    return parser


# --- 1. throughput, memory and SQLite alternately ------------------------------------------


def _throughput_phase(
    args: argparse.Namespace, report: Report, receiver: Receiver, backend: str, pair: int
) -> float:
    hooks, names = spread_hooks(receiver.ports[:1], 1, args.hooks_per_event)
    key = f"throughput.{backend}.{pair}"
    with daemon_for(args, hooks, backend, args.synchronous) as daemon:
        spec = publish_spec(args, daemon, names)
        phase = run_phase(args, daemon, receiver, [(spec, args.hooks_per_event)])
        rate = report_phase(report, args, f"throughput #{pair}: {backend} journal", key, phase)
        report_commits(report, key, phase)
        check_phase(report, args, key, phase)
    return rate


def measure_throughput(args: argparse.Namespace, report: Report, receiver: Receiver) -> None:
    rates: dict[str, list[float]] = {"memory": [], "sqlite": []}
    for pair in range(1, args.pairs + 1):
        for backend in ("memory", "sqlite"):
            rates[backend].append(_throughput_phase(args, report, receiver, backend, pair))
    report.section(f"throughput summary ({args.pairs} pairs, synchronous={args.synchronous})")
    for pair, (memory, sqlite) in enumerate(zip(rates["memory"], rates["sqlite"], strict=True), 1):
        ratio = sqlite / memory if memory else 0.0
        report.row(f"pair {pair}: memory / sqlite deliveries/s", f"{memory:,.0f} / {sqlite:,.0f}")
        report.row(f"pair {pair}: sqlite / memory", f"{100 * ratio:.1f} %")
    memory, sqlite = statistics.median(rates["memory"]), statistics.median(rates["sqlite"])
    ratio = sqlite / memory if memory else 0.0
    report.row("median deliveries/s, memory", memory, "", key="throughput.memory_median")
    report.row("median deliveries/s, sqlite", sqlite, "", key="throughput.sqlite_median")
    report.row("sqlite / memory (medians)", 100 * ratio, "%", key="throughput.ratio_pct")
    report.target("sqlite / memory deliveries/s", 100 * ratio, ">=", 100 * TARGET_RATIO, "%")
    report.target("sqlite deliveries/s", sqlite, ">=", TARGET_DELIVERIES, "deliveries/s")


# --- 2. publish-to-ack latency at a fixed rate ----------------------------------------------


def _ack_latency(
    args: argparse.Namespace, report: Report, receiver: Receiver, backend: str
) -> float:
    """Publish-to-ack p99 (ms) at ``--latency-rate``, ``--latency-hooks`` each, own daemon."""
    hooks, names = spread_hooks(receiver.ports[:1], 1, args.latency_hooks, event="lat")
    key = f"latency.{backend}"
    with daemon_for(args, hooks, backend, args.synchronous) as daemon:
        spec = publish_spec(
            args,
            daemon,
            names,
            rate=args.latency_rate,
            connections=args.latency_conns,
            pipeline=args.latency_pipeline,
            duration=args.latency_duration,
        )
        phase = run_phase(args, daemon, receiver, [(spec, args.latency_hooks)])
        check_phase(report, args, key, phase)
    p99 = _report_latency(report, args, key, backend, phase)
    report_commits(report, key, phase)
    return p99


def _report_latency(
    report: Report, args: argparse.Namespace, key: str, backend: str, phase: PhaseResult
) -> float:
    main = phase.run.results[0]
    # One publisher process records its answers in arrival order: at a fixed rate, the
    # first warmup x rate of them are the warm-up.
    acks = summarize(main.latencies[int(args.warmup * args.latency_rate) :])
    report.section(
        f"publish-to-ack at {args.latency_rate:,.0f} events/s, {args.latency_conns} connections"
        f" x {args.latency_pipeline} in flight, {args.latency_hooks} hook(s): {backend} journal"
    )
    report.row("events/s achieved", main.ok / main.window, "", key=f"{key}.events_per_s")
    report.row("samples (after warmup)", acks.count, "", key=f"{key}.samples")
    for label, value in (("p50", acks.p50_ms), ("p99", acks.p99_ms), ("p99.9", acks.p999_ms)):
        report.row(f"publish-to-ack {label}", value, "ms", key=f"{key}.ack_{label}_ms")
    report.row("publish-to-ack max", acks.max_ms, "ms", key=f"{key}.max")
    receipts = summarize(phase.stats.latencies(phase.run.start + args.warmup))
    report.row("publish-to-receipt p50 / p99", f"{receipts.p50_ms:.2f} / {receipts.p99_ms:.2f} ms")
    run = phase.run
    if run.daemon_cpu is not None and run.duration > 0:
        share = 100 * run.daemon_cpu / run.duration
        report.row("daemon CPU", share, "% of a core", key=f"{key}.daemon_cpu_pct")
    return acks.p99_ms


def _latency(args: argparse.Namespace, report: Report, receiver: Receiver) -> None:
    p99 = _ack_latency(args, report, receiver, "sqlite")
    if not args.no_latency_reference:
        _ack_latency(args, report, receiver, "memory")
    report.target(
        f"publish-to-ack p99 at {args.latency_rate:,.0f} events/s, sqlite {args.synchronous}",
        p99,
        "<=",
        TARGET_ACK_P99_MS,
        "ms",
    )


# --- 3. growth of the file ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JournalCounts:
    events: int
    deliveries: int  # rows: only deliveries that waited, died or were replayed have one
    attempts: int


def _counts(path: Path) -> JournalCounts:
    """Row counts, read beside the running daemon (a WAL reader never blocks the writer)."""
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as conn:
        events, deliveries, attempts = conn.execute(
            "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM deliveries),"
            " (SELECT count(*) FROM attempts)"
        ).fetchone()
    return JournalCounts(events, deliveries, attempts)


def _file_sizes(path: Path) -> dict[str, int]:
    """Bytes of the database, its WAL and its shared-memory index (0 when absent)."""
    sizes = {}
    for suffix in ("", "-wal", "-shm"):
        candidate = path.with_name(path.name + suffix)
        sizes[suffix or "db"] = candidate.stat().st_size if candidate.exists() else 0
    return sizes


def _table_bytes(path: Path) -> dict[str, int]:
    """Bytes of each table and index, from the dbstat virtual table (empty if not built in)."""
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            rows = conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetchall()
    except sqlite3.Error:
        return {}
    return {name: int(size) for name, size in sorted(rows, key=lambda row: -row[1])}


def _wait_settled(daemon: Daemon, path: Path, expected: JournalCounts, timeout: float) -> float:
    """Poll the journal until it holds ``expected`` (every delivery's attempt); returns
    seconds waited."""
    started = time.monotonic()
    seen = _counts(path)
    while seen != expected:
        if time.monotonic() - started > timeout:
            raise EngineFailed(f"the journal did not settle in {timeout:.0f} s: {seen}")
        daemon.check_alive()
        time.sleep(SETTLE_POLL)
        seen = _counts(path)
    return time.monotonic() - started


def _growth(args: argparse.Namespace, report: Report, receiver: Receiver) -> None:
    n, per_event = args.growth_events, args.growth_hooks
    hooks, names = spread_hooks(receiver.ports[:1], 1, per_event, event="grow")
    # Each delivery also stores a hook-sent event of the engine's own (no hook matches it),
    # and its attempt; one delivered at the first try needs no delivery row.
    expected = JournalCounts(n + n * per_event, 0, n * per_event)
    with daemon_for(args, hooks, "sqlite", args.synchronous) as daemon:
        path = daemon.workdir / JOURNAL_FILE
        before = _file_sizes(path)
        receiver.reset()
        spec = publish_spec(args, daemon, names, duration=args.growth_timeout, max_requests=n)
        started = time.monotonic()
        # No server pid: run_loads returns when the n-th answer is in, not at the deadline.
        result = run_loads([spec]).result
        if result.ok != n or result.error_count:
            raise EngineFailed(f"growth: {result.ok:,} of {n:,} publishes acked: {result.errors}")
        settle = _wait_settled(daemon, path, expected, args.drain_timeout)
        elapsed = time.monotonic() - started
        requests, unique, _ = receiver.count()
        if (requests, unique) != (n * per_event, n * per_event):
            raise EngineFailed(
                f"growth: the receiver got {requests:,} requests, {unique:,} ids, "
                f"not {n * per_event:,}"
            )
        running = _file_sizes(path)
        daemon.stop()
        stopped = _file_sizes(path)
        tables = _table_bytes(path)
    _report_growth(report, args, expected, before, running, stopped, tables, elapsed, settle)


def _report_growth(
    report: Report,
    args: argparse.Namespace,
    counts: JournalCounts,
    before: dict[str, int],
    running: dict[str, int],
    stopped: dict[str, int],
    tables: dict[str, int],
    elapsed: float,
    settle: float,
) -> None:
    n = args.growth_events
    extrapolated = n < 1_000_000
    report.section(
        f"growth: {n:,} events x {args.growth_hooks} hook(s), synchronous={args.synchronous}"
    )
    report.row(
        "rows: events (incl. hook-sent) / deliveries (retried only) / attempts",
        f"{counts.events:,} / {counts.deliveries:,} / {counts.attempts:,}",
    )
    report.row("publish + settle time", elapsed, "s", key="growth.seconds")
    report.row("events/s (publish to settled)", n / elapsed, "", key="growth.events_per_s")
    report.row("settled after publishing stopped", settle, "s")
    live = running["db"] + running["-wal"] - before["db"] - before["-wal"]
    closed = stopped["db"] - before["db"] - before["-wal"]
    report.row(
        "running: db + WAL (+ shm)",
        f"{running['db']:,} + {running['-wal']:,} (+ {running['-shm']:,}) bytes",
    )
    report.row("after a clean stop: db (WAL checkpointed)", stopped["db"], "bytes")
    report.row("bytes per event, running (db + WAL)", live / n, "", key="growth.bytes_per_event")
    report.row("bytes per event, after stop (db)", closed / n, "", key="growth.bytes_stopped")
    how = "extrapolated from" if extrapolated else "measured on"
    report.row(
        f"per million events, running ({how} {n:,})",
        live / n * 1e6 / 2**20,
        "MiB (db + WAL)",
        key="growth.mib_per_million",
    )
    report.row(
        f"per million events, after stop ({how} {n:,})",
        closed / n * 1e6 / 2**20,
        "MiB (db)",
        key="growth.mib_per_million_stopped",
    )
    report.results["growth.extrapolated"] = extrapolated
    for name, size in tables.items():
        if size > PAGE_SIZE:  # the empty tables and indexes hold one page each
            report.row(f"  {name}", size / n, "bytes per event")
    report.results["growth.tables"] = tables


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    only = {name.strip() for name in args.only.split(",") if name.strip()}
    if only - set(SCENARIOS):
        parser.error(f"--only: unknown scenario(s) {', '.join(sorted(only - set(SCENARIOS)))}")
    raise_fd_limit(8192)
    params = {k: v for k, v in vars(args).items() if k != "only"}
    report = Report("journal", {"only": ",".join(s for s in SCENARIOS if s in only), **params})
    report.check_machine(machine_busy())
    try:
        with Receiver(1) as receiver:
            if "throughput" in only:
                measure_throughput(args, report, receiver)
            if "latency" in only:
                _latency(args, report, receiver)
            if "growth" in only:
                _growth(args, report, receiver)
    except EngineFailed as exc:
        report.fail(str(exc))
    return report.finish()


# --- the suite's scenario ------------------------------------------------------------


@scenario("journal", "Deliveries/s with the SQLite journal vs in memory", order=50)
def journal(bench: Bench, found: Findings) -> None:
    args = options(
        make_parser(),
        pairs=bench.settings.count(2, 1),
        duration=bench.settings.pick(4.0, 1.0),
        warmup=bench.settings.pick(0.5, 0.2),
    )
    found.params.update(pairs=args.pairs, duration=args.duration, synchronous=args.synchronous)
    with bench.sink(1, found) as sink:
        measure_throughput(args, found, sink)
    versus(
        found,
        "deliveries/s, SQLite journal (fsync per commit)",
        ("hookwire, SQLite journal", "throughput.sqlite_median"),
        ("journal in memory", "throughput.memory_median"),
    )


if __name__ == "__main__":
    sys.exit(main())
