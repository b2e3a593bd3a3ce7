"""Webhook deliveries: throughput, latency and isolation of the engine, and naive-client baselines.

One receiver process (bench/_receiver.py: raw sockets, keep-alive, a bare 200) listens on
``--destinations`` loopback ports, plus one port that accepts and never answers. Each
scenario starts its own ``hookwire run`` with hooks pointing at those ports, publishes
events over REST from separate processes and counts, at the receiver, every request and
every distinct ``webhook-id``:

1. throughput to 1 destination, then to ``--destinations`` (100): each event triggers
   ``--hooks-per-event`` hooks (4), so deliveries/s can exceed what the publishing side
   can push (about 17,000 publishes/s);
2. latency at a fixed ``--latency-rate`` (5,000 events/s, one hook each), measured at the
   receiver from the publisher's clock stamp in the event data, with the engine's
   ``hookwire_delivery_latency_seconds`` histogram as a second view;
3. isolation: a healthy destination's deliveries/s with and without a dead neighbour;
4. baselines: httpx on trio and aiohttp on asyncio, 64 concurrent requests each, sending
   the same requests to the same receiver.

Exit 1 (engine failure) if a daemon does not start, dies or does not stop, a publish is
not answered 200, or a delivery is lost or duplicated. A missed target prints MISSED.

    .venv/bin/python bench/delivery.py
    .venv/bin/python bench/delivery.py --only one,latency --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from multiprocessing.connection import Connection
from typing import Any
from urllib.parse import quote, urlencode

from _harness import HOST, Daemon, EngineFailed, machine_busy, raise_fd_limit, rss_kb

# The publishers are the publish benchmark's load generator, fed stamped requests.
from _httpload import LoadResult, LoadSpec, Render, join, post_head, receive, run_loads
from _latency import summarize
from _receiver import Receiver, ReceiverStats
from _report import Report

TARGET_DELIVERIES = 20_000.0
"""Deliveries/s the design asks of one daemon on two cores."""

TARGET_HTTPX_RATIO = 10.0
TARGET_AIOHTTP_RATIO = 2.0
TARGET_P99_MS = 10.0
TARGET_ISOLATION_DROP_PCT = 10.0

SCENARIOS = ("one", "many", "latency", "isolation", "baselines")

JOURNAL_FILE = "journal.db"
"""The SQLite journal, relative to the daemon's working directory (where its config is)."""

FORM = "application/x-www-form-urlencoded"
USER_AGENT = "Hookwire/0.1.0"
"""What the engine sends as User-Agent; the baselines send it too."""

READY_TIMEOUT = 30.0
"""Seconds a baseline client process gets to start."""

DRAIN_RATE_MIN = 1000
"""Backlog (deliveries) from which the rate after publishing stopped is worth showing."""
CLIENT_BOUND = 0.9
"""CPU share of a client process above which it, not the engine, may have set the pace."""


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Webhook deliveries/s, latency and isolation, with httpx/aiohttp baselines."
    )
    parser.add_argument(
        "--only",
        default=",".join(SCENARIOS),
        help=f"comma-separated scenarios to run, of {', '.join(SCENARIOS)}",
    )
    parser.add_argument("--duration", type=float, default=4.0, help="seconds of publishing")
    parser.add_argument(
        "--warmup",
        type=float,
        default=0.5,
        help="seconds at the start of each phase left out of window rates and latencies",
    )
    parser.add_argument("--hooks-per-event", type=int, default=4, help="hooks each event triggers")
    parser.add_argument(
        "--destinations", type=int, default=100, help="destinations (ports) of the 'many' scenario"
    )
    parser.add_argument(
        "--max-in-flight",
        type=int,
        default=64,
        help="engine's [delivery] max_in_flight: connections per destination (64, as the "
        "baselines get)",
    )
    parser.add_argument("--pub-conns", type=int, default=8, help="publisher connections")
    parser.add_argument(
        "--journal",
        default="memory",
        choices=("memory", "sqlite"),
        help="the daemons' journal (sqlite: synchronous = full, the shipped default)",
    )
    parser.add_argument(
        "--pub-pipeline", type=int, default=1, help="publishes in flight per publisher connection"
    )
    parser.add_argument(
        "--max-events", type=int, default=500_000, help="publish at most this many per phase"
    )
    parser.add_argument("--latency-rate", type=float, default=5000.0, help="events/s")
    parser.add_argument("--latency-hooks", type=int, default=1, help="hooks per latency event")
    parser.add_argument(
        "--dead-rate",
        type=float,
        default=1000.0,
        help="isolation: events/s to the dead destination (the control phase publishes as "
        "many events that match no hook)",
    )
    parser.add_argument(
        "--dead-timeout", type=float, default=20.0, help="the dead destination's hook timeout"
    )
    parser.add_argument(
        "--baseline",
        default="httpx,aiohttp",
        help="baseline clients: comma-separated httpx, aiohttp, or none",
    )
    parser.add_argument(
        "--baseline-duration", type=float, default=3.0, help="seconds each baseline sends"
    )
    parser.add_argument(
        "--baseline-concurrency", type=int, default=64, help="baseline tasks and connections"
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=30.0,
        help="seconds to wait, after publishing, for the last delivery of a phase",
    )
    return parser


# --- the publisher: bench/_httpload.py's client, one process per stream, stamped events --


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
    daemon_cpu: float | None
    machine_cpu: float | None
    midway: dict[str, float]  # the engine's /metrics halfway through publishing


def run_publishers(
    specs: Sequence[LoadSpec], daemon_pid: int, probe: Callable[[], dict[str, float]]
) -> PublishRun:
    """Run each spec in its own process, all starting together; wait (bounded) for them.

    ``probe`` (the daemon's /metrics) is called once, halfway through publishing.
    """
    midway: dict[str, float] = {}
    run = run_loads(specs, daemon_pid, lambda: midway.update(probe()))
    duration = max(spec.duration for spec in specs)
    return PublishRun(run.results, run.start, duration, run.server_cpu, run.machine_cpu, midway)


# --- the naive baselines: httpx on trio, aiohttp on asyncio -----------------------------


@dataclass(frozen=True, slots=True)
class BaselineSpec:
    """One baseline client process: ``concurrency`` tasks POSTing to ``url`` for a while."""

    kind: str  # "httpx" or "aiohttp"
    url: str
    body: bytes
    concurrency: int = 64
    duration: float = 3.0
    warmup: float = 0.5
    max_requests: int = 1_000_000


@dataclass
class BaselineResult:
    ok: int = 0  # 200 answers inside the window
    total_ok: int = 0  # 200 answers, warmup included
    errors: Counter[str] = field(default_factory=Counter)
    window: float = 0.0
    cpu: float = 0.0  # CPU seconds of the client process inside the window

    @property
    def per_second(self) -> float:
        return self.ok / self.window if self.window > 0 else 0.0


class _BaselineLoad:
    """The shared state of one baseline's tasks: a deadline, a budget, the counts."""

    def __init__(self, spec: BaselineSpec) -> None:
        self.spec = spec
        self.result = BaselineResult()
        now = time.monotonic()
        self.window_start = now + spec.warmup
        self.deadline = self.window_start + spec.duration
        self.budget = spec.max_requests
        self.sequence = 0
        self._cpu_start: float | None = None
        self._cpu_end: float | None = None

    def next_headers(self) -> dict[str, str] | None:
        """Headers of the next request, or None when the time or the budget is up."""
        now = time.monotonic()
        if self._cpu_start is None and now >= self.window_start:
            self._cpu_start = time.process_time()
        if now >= self.deadline or self.budget <= 0:
            if self._cpu_end is None:
                self._cpu_end = time.process_time()
            return None
        self.budget -= 1
        self.sequence += 1
        return {
            "User-Agent": USER_AGENT,
            "webhook-id": f"msg_{self.spec.kind}_{self.sequence:x}",
            "Content-Type": FORM,
        }

    def done(self, status: int | None, error: str | None = None) -> None:
        now = time.monotonic()
        if status == 200:
            self.result.total_ok += 1
            if self.window_start <= now < self.deadline:
                self.result.ok += 1
        else:
            self.result.errors[error or f"status {status}"] += 1

    def finish(self) -> BaselineResult:
        end = self._cpu_end if self._cpu_end is not None else time.process_time()
        self.result.cpu = end - (self._cpu_start if self._cpu_start is not None else end)
        self.result.window = self.spec.duration
        return self.result


async def _httpx_load(spec: BaselineSpec) -> BaselineResult:
    """``spec.concurrency`` trio tasks sharing one ``httpx.AsyncClient``."""
    import httpx
    import trio

    load = _BaselineLoad(spec)
    limits = httpx.Limits(
        max_connections=spec.concurrency, max_keepalive_connections=spec.concurrency
    )
    async with httpx.AsyncClient(limits=limits, timeout=10.0) as client:

        async def task() -> None:
            while (headers := load.next_headers()) is not None:
                try:
                    response = await client.post(spec.url, content=spec.body, headers=headers)
                except httpx.HTTPError as exc:
                    load.done(None, type(exc).__name__)
                    continue
                load.done(response.status_code)

        with trio.move_on_after(spec.warmup + spec.duration + 15):
            async with trio.open_nursery() as nursery:
                for _ in range(spec.concurrency):
                    nursery.start_soon(task)
    return load.finish()


async def _aiohttp_load(spec: BaselineSpec) -> BaselineResult:
    """``spec.concurrency`` asyncio tasks sharing one ``aiohttp.ClientSession``."""
    import aiohttp

    load = _BaselineLoad(spec)
    connector = aiohttp.TCPConnector(limit=spec.concurrency)
    timeout = aiohttp.ClientTimeout(total=10.0)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def task() -> None:
            while (headers := load.next_headers()) is not None:
                try:
                    async with session.post(spec.url, data=spec.body, headers=headers) as response:
                        await response.read()
                        load.done(response.status)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    load.done(None, type(exc).__name__)

        tasks = [asyncio.create_task(task()) for _ in range(spec.concurrency)]
        await asyncio.wait(tasks, timeout=spec.warmup + spec.duration + 15)
        for pending in tasks:
            pending.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return load.finish()


def _baseline_worker(spec: BaselineSpec, control: Connection) -> None:
    """A baseline client process: run the load, report the result."""
    if spec.kind == "httpx":
        import trio

        result = trio.run(_httpx_load, spec)
    else:
        result = asyncio.run(_aiohttp_load(spec))
    control.send(("done", result))


def run_baseline(spec: BaselineSpec) -> BaselineResult:
    """One baseline in its own process, bounded in time."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=_baseline_worker, args=(spec, child), daemon=True)
    process.start()
    child.close()
    try:
        result: BaselineResult = receive(
            process, parent, READY_TIMEOUT + spec.warmup + spec.duration + 30
        )[1]
        return result
    finally:
        join([(process, parent)])


# --- scenarios ------------------------------------------------------------------------


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
) -> Daemon:
    """A daemon with ``hooks``, its journal ``backend`` (default ``args.journal``)."""
    backend = backend or args.journal
    journal: dict[str, Any] = {"backend": backend}
    if backend == "sqlite":
        journal |= {"path": JOURNAL_FILE, "synchronous": synchronous}
    return Daemon(
        delivery={"allow_networks": ["127.0.0.0/8"], "max_in_flight": args.max_in_flight},
        hooks=hooks,
        journal=journal,
    )


def run_phase(
    args: argparse.Namespace,
    daemon: Daemon,
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
    return PhaseResult(run, expected, stats, before, daemon.metrics())


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
    _report_engine_counts(report, key, phase)
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


def _report_engine_counts(report: Report, key: str, phase: PhaseResult) -> None:
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


def _histogram_quantiles(phase: PhaseResult, name: str) -> tuple[str, str]:
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


def _latency(args: argparse.Namespace, report: Report, receiver: Receiver) -> None:
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
        engine_p50, engine_p99 = _histogram_quantiles(phase, "hookwire_delivery_latency_seconds")
        report.row("engine histogram p50 (accepted to 2xx)", engine_p50)
        report.row("engine histogram p99 (accepted to 2xx)", engine_p99)
        report.results["latency.engine_p50"] = engine_p50
        report.results["latency.engine_p99"] = engine_p99
        report_cpu(report, "latency", phase)
        _report_engine_counts(report, "latency", phase)
        check_phase(report, args, "latency", phase)
    report.target(
        f"publish-to-receipt p99 at {args.latency_rate:,.0f} events/s",
        receipts.p99_ms,
        "<=",
        TARGET_P99_MS,
        "ms",
    )


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


def _baseline_body() -> bytes:
    """What the engine sends for one event with the default fields (one timestamp in data)."""
    return urlencode(
        {
            "event": "bench/0/x",
            "data": f"{time.monotonic():.6f}",
            "coreid": "api",
            "published_at": "2026-01-01T00:00:00.000Z",
        }
    ).encode()


def measure_baselines(
    args: argparse.Namespace, report: Report, receiver: Receiver, kinds: list[str]
) -> dict[str, float]:
    rates: dict[str, float] = {}
    url = f"http://{HOST}:{receiver.ports[0]}/d0/h0"
    for kind in kinds:
        spec = BaselineSpec(
            kind,
            url,
            _baseline_body(),
            concurrency=args.baseline_concurrency,
            duration=args.baseline_duration,
            warmup=args.warmup,
        )
        receiver.reset()
        try:
            result = run_baseline(spec)
        except (RuntimeError, OSError) as exc:
            report.note(f"baseline {kind} did not run: {exc}")
            continue
        received, unique, _ = receiver.count()
        title = {
            "httpx": f"baseline: httpx.AsyncClient on trio, {spec.concurrency} tasks",
            "aiohttp": f"baseline: aiohttp.ClientSession on asyncio, {spec.concurrency} tasks",
        }[kind]
        report.section(title)
        report.row("requests/s", result.per_second, "", key=f"baseline.{kind}.per_second")
        report.row("200 answers in window", result.ok, "", key=f"baseline.{kind}.ok")
        report.row("receiver got (warmup included)", f"{received:,} ({unique:,} unique ids)")
        report.row("errors", sum(result.errors.values()), "", key=f"baseline.{kind}.errors")
        for reason, count in sorted(result.errors.items()):
            report.row(f"  {reason}", count)
        if result.window > 0:
            report.row(
                "client CPU",
                100 * result.cpu / result.window,
                "% of a core",
                key=f"baseline.{kind}.client_cpu_pct",
            )
        rates[kind] = result.per_second
    return rates


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    only = {name.strip() for name in args.only.split(",") if name.strip()}
    if only - set(SCENARIOS):
        parser.error(f"--only: unknown scenario(s) {', '.join(sorted(only - set(SCENARIOS)))}")
    kinds = [k.strip() for k in args.baseline.split(",") if k.strip() and k.strip() != "none"]
    raise_fd_limit(8192)
    report = Report(
        "delivery",
        {
            "only": ",".join(s for s in SCENARIOS if s in only),
            "duration": args.duration,
            "hooks_per_event": args.hooks_per_event,
            "destinations": args.destinations,
            "max_in_flight": args.max_in_flight,
            "pub_conns": args.pub_conns,
            "pub_pipeline": args.pub_pipeline,
            "journal": args.journal,
            "latency_rate": args.latency_rate,
            "dead_rate": args.dead_rate,
            "baseline": ",".join(kinds) or "none",
        },
    )
    report.check_machine(machine_busy())
    ours: dict[str, float] = {}
    try:
        with Receiver(max(1, args.destinations), silent_ports=1) as receiver:
            if "one" in only:
                ours["one"] = measure_throughput(
                    args,
                    report,
                    receiver,
                    1,
                    "one",
                    f"throughput: 1 destination, {args.hooks_per_event} hooks per event",
                )
            if "many" in only:
                ours["many"] = measure_throughput(
                    args,
                    report,
                    receiver,
                    args.destinations,
                    "many",
                    f"throughput: {args.destinations} destinations, {args.hooks_per_event} "
                    "hooks per event (each on its own destination)",
                )
            if "latency" in only:
                _latency(args, report, receiver)
            if "isolation" in only:
                measure_isolation(args, report, receiver)
            baselines = (
                measure_baselines(args, report, receiver, kinds) if "baselines" in only else {}
            )
    except EngineFailed as exc:
        report.fail(str(exc))
        return report.finish()
    _summary(report, args, ours, baselines)
    return report.finish()


def _summary(
    report: Report,
    args: argparse.Namespace,
    ours: dict[str, float],
    baselines: dict[str, float],
) -> None:
    report.section("summary")
    for key, label in (("one", "1 destination"), ("many", f"{args.destinations} destinations")):
        rate = ours.get(key)
        if rate is None:
            continue
        report.row(f"hookwire deliveries/s, {label}", rate)
        report.target(f"deliveries/s, {label}", rate, ">=", TARGET_DELIVERIES, "deliveries/s")
    one = ours.get("one")
    for kind, threshold in (("httpx", TARGET_HTTPX_RATIO), ("aiohttp", TARGET_AIOHTTP_RATIO)):
        rate = baselines.get(kind)
        if not rate or not one:
            continue
        ratio = one / rate
        report.row(f"hookwire (1 destination) / {kind}", f"{ratio:.2f} ({kind} {rate:,.0f}/s)")
        report.results[f"ratio.{kind}"] = ratio
        report.target(f"hookwire / {kind} requests/s", ratio, ">=", threshold, "x")


if __name__ == "__main__":
    sys.exit(main())
