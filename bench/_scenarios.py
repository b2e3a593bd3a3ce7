"""The suite's scenarios: each measures one thing with the benchmark scripts' own phases.

Every scenario starts its own daemons (bench/_harness.py), sinks and load-generator
processes. Daemons use the shipped journal (SQLite, ``synchronous = full``) unless the
scenario compares journals. ``Settings.quick`` shrinks every phase to a second or so: the
smoke run of the test suite uses it, and its numbers are only indicative.

Sinks: latency phases need the event's time stamp, which travels in the request body, and
the isolation phase needs a destination that never answers: both use the Python receiver
(bench/_receiver.py). Throughput phases use nginx when it is installed (bench/_nginx_sink.py),
which costs far less CPU per request on the same two cores, unless ``Settings.sink`` says
otherwise.
"""

from __future__ import annotations

import argparse
import importlib.util
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import crash as crash_bench
import delivery
import gateway as gateway_bench
import journal as journal_bench
import sse_fanout
import templates as templates_bench
from _harness import raise_fd_limit
from _latency import LatencySummary, summarize
from _nginx_sink import NginxSink, nginx_path
from _receiver import Receiver, ReceiverStats
from _report import Report
from _suite import Findings, Scenario
from _sweep import RateSweep

SINKS = ("auto", "python", "nginx")

SWEEP_BOUND_MS = delivery.TARGET_P99_MS
"""The sweep's p99 bound: the delivery latency the design asks for."""

LATE_SHARE = 0.01
"""Share of sends more than 2 ms behind schedule from which the report says so."""

KEEP_UP = 0.95
"""Share of the offered SSE deliveries/s a fan-out point must reach to keep up."""

FD_LIMIT = 16384
"""Open files the suite asks for: 2,000 SSE streams, 1,000 sink ports and their peers."""


class Sink(Protocol):
    """What the delivery phases need of a webhook sink (``Receiver`` or ``NginxSink``)."""

    ports: list[int]
    silent_ports: list[int]

    def reset(self) -> None: ...
    def count(self) -> tuple[int, int, int]: ...
    def stats(self) -> ReceiverStats: ...
    def ids(self) -> set[bytes]: ...


@dataclass(frozen=True, slots=True)
class Settings:
    quick: bool = False
    sink: str = "auto"  # one of SINKS
    seed: int | None = None  # the crash moments (random when None)

    def pick(self, full: float, quick: float) -> float:
        return quick if self.quick else full

    def count(self, full: int, quick: int) -> int:
        return quick if self.quick else full


def nginx_installed() -> bool:
    return nginx_path() is not None


def _args(parser: argparse.ArgumentParser, **values: Any) -> argparse.Namespace:
    """A script's own defaults, with ``values`` instead (names checked: a typo is a bug)."""
    args = parser.parse_args([])
    for name, value in values.items():
        if not hasattr(args, name):
            raise AttributeError(f"{parser.prog} has no option {name!r}")
        setattr(args, name, value)
    return args


def _merge(found: Report, part: Report, prefix: str, title: str) -> None:
    """Copy a sub-measurement's report into ``found`` under ``prefix``."""
    found.section(title)
    found.rows.extend(part.rows)
    found.results.update({f"{prefix}.{key}": value for key, value in part.results.items()})
    for target in part.targets:
        found.target(
            f"{prefix}: {target.label}", target.value, target.op, target.threshold, target.unit
        )
    found.notes.extend(f"{prefix}: {note}" for note in part.notes)
    if part.failure:
        found.fail(f"{prefix}: {part.failure}")


def _versus(
    found: Findings, headline: str, ours: tuple[str, str], reference: tuple[str, str]
) -> None:
    """Two deliveries/s of ``found.results`` (label, key): two bars and a headline ratio."""
    (label, key), (reference_label, reference_key) = ours, reference
    value = float(found.results.get(key, 0.0))
    reference_value = float(found.results.get(reference_key, 0.0))
    found.throughput(reference_label, reference_value, "deliveries/s")
    found.throughput(label, value, "deliveries/s")
    found.headline(
        headline,
        value,
        "deliveries/s",
        baseline=reference_label,
        baseline_value=reference_value,
    )


class Bench:
    """The scenarios of one suite run, and what they share (delivery-1's rate)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._one_destination: float | None = None
        raise_fd_limit(FD_LIMIT)

    def scenarios(self) -> list[Scenario]:
        return [
            Scenario("delivery-1", "Webhook deliveries/s to 1 destination", self.delivery_1),
            Scenario("delivery-100", "Webhook deliveries/s to 100 destinations", self.delivery_100),
            Scenario(
                "delivery-1000", "Webhook deliveries/s to 1,000 destinations", self.delivery_1000
            ),
            Scenario(
                "baselines",
                "The same requests sent by httpx on trio and aiohttp on asyncio",
                self.baselines,
            ),
            Scenario(
                "latency",
                "Publish-to-delivery latency at fixed event rates, journal on and off",
                self.latency,
            ),
            Scenario("sweep", "Highest event rate whose delivery p99 stays in bound", self.sweep),
            Scenario("journal", "Deliveries/s with the SQLite journal vs in memory", self.journal),
            Scenario("isolation", "A healthy destination beside a dead one", self.isolation),
            Scenario("sse-fanout", "Server-Sent Events fan-out: subscribers x events", self.sse),
            Scenario("gateway", "Device gateway ingest, durable, one connection", self.gateway),
            Scenario("templates", "Template renders: ours vs chevron", self.templates),
            Scenario("crash", "kill -9 under load: nothing acknowledged lost", self.crash),
        ]

    # -- sinks ---------------------------------------------------------------------------

    @contextmanager
    def _sink(self, ports: int, found: Report) -> Iterator[Sink]:
        """A throughput sink: nginx when chosen (or installed, with ``auto``), else Python."""
        use_nginx = self.settings.sink == "nginx" or (
            self.settings.sink == "auto" and nginx_installed()
        )
        if use_nginx:
            found.params["sink"] = "nginx"
            with NginxSink(ports) as nginx:
                yield nginx
            return
        found.params["sink"] = "python"
        with Receiver(ports) as receiver:
            yield receiver

    def _delivery_args(self, **values: Any) -> argparse.Namespace:
        settings = self.settings
        defaults: dict[str, Any] = {
            "duration": settings.pick(4.0, 1.0),
            "warmup": settings.pick(0.5, 0.2),
            "journal": "sqlite",
            "baseline_duration": settings.pick(3.0, 1.0),
        }
        return _args(delivery.make_parser(), **(defaults | values))

    # -- delivery throughput -------------------------------------------------------------

    def _delivery(self, found: Findings, destinations: int) -> float:
        args = self._delivery_args(destinations=destinations)
        found.params.update(
            destinations=destinations,
            hooks_per_event=args.hooks_per_event,
            duration=args.duration,
            journal="sqlite (synchronous = full)",
            publisher_connections=args.pub_conns,
        )
        label = f"{destinations:,} destination{'s' if destinations > 1 else ''}"
        with self._sink(destinations, found) as sink:
            rate = delivery.measure_throughput(
                args,
                found,
                sink,
                destinations,
                "throughput",
                f"throughput: {label}, {args.hooks_per_event} hooks per event",
            )
        found.headline(
            f"deliveries/s, {label}",
            rate,
            "deliveries/s",
            caveat=found.sink_caveat("throughput"),
        )
        found.throughput(f"hookwire, {label}", rate, "deliveries/s")
        found.target(
            f"deliveries/s, {label}", rate, ">=", delivery.TARGET_DELIVERIES, "deliveries/s"
        )
        return rate

    def delivery_1(self, found: Findings) -> None:
        self._one_destination = self._delivery(found, 1)

    def delivery_100(self, found: Findings) -> None:
        self._delivery(found, 100)

    def delivery_1000(self, found: Findings) -> None:
        self._delivery(found, 1000)

    def baselines(self, found: Findings) -> None:
        args = self._delivery_args()
        kinds = []
        for kind in ("httpx", "aiohttp"):
            if importlib.util.find_spec(kind) is None:
                found.note(f"{kind} is not installed (pip install -e '.[bench]'): not measured")
            else:
                kinds.append(kind)
        with self._sink(1, found) as sink:
            engine = self._one_destination
            if engine is None:
                engine = delivery.measure_throughput(
                    args, found, sink, 1, "throughput", "hookwire: 1 destination"
                )
                self._one_destination = engine
            else:
                found.note("hookwire's rate is delivery-1's, measured earlier in this run")
            rates = delivery.measure_baselines(args, found, sink, kinds)
        unit = "requests/s to 1 destination"
        found.throughput("hookwire", engine, unit)
        titles = {"httpx": "httpx on trio", "aiohttp": "aiohttp on asyncio"}
        floors = {"httpx": delivery.TARGET_HTTPX_RATIO, "aiohttp": delivery.TARGET_AIOHTTP_RATIO}
        for kind, rate in rates.items():
            found.throughput(titles[kind], rate, unit, baseline=True)
            item = found.headline(
                "hookwire deliveries/s, 1 destination",
                engine,
                "/s",
                baseline=titles[kind],
                baseline_value=rate,
            )
            if item.ratio is not None:
                found.target(f"hookwire / {titles[kind]}", item.ratio, ">=", floors[kind], "x")

    # -- latency, open model -------------------------------------------------------------

    def _open_phase(
        self,
        found: Findings,
        args: argparse.Namespace,
        daemon: Any,
        sink: Receiver,
        names: tuple[str, ...],
        rate: float,
        key: str,
    ) -> tuple[LatencySummary, bool]:
        """One open-model phase at ``rate`` events/s; (publish-to-receipt, rate achieved)."""
        spec = delivery.publish_spec(args, daemon, names, rate=rate, pipeline=8)
        phase = delivery.run_phase(args, daemon, sink, [(spec, 1)])
        delivery.check_phase(found, args, key, phase)
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
        delivery.report_cpu(found, key, phase)
        ok = achieved >= 0.97 * rate and not found.failure
        return receipts, ok

    def latency(self, found: Findings) -> None:
        """Fixed rates, with the shipped SQLite journal and then with the journal in memory."""
        rates = (1000.0,) if self.settings.quick else (1000.0, 2500.0, 5000.0)
        duration = self.settings.pick(5.0, 1.5)
        found.params.update(rates=list(rates), duration=duration, hooks_per_event=1)
        p99: dict[str, float] = {}
        with Receiver(1) as sink:
            hooks, names = delivery.spread_hooks(sink.ports[:1], 1, 1, event="lat")
            for journal, title in (("sqlite", "SQLite"), ("memory", "memory")):
                args = self._delivery_args(duration=duration, journal=journal)
                with delivery.daemon_for(args, hooks) as daemon:
                    for rate in rates:
                        key = f"latency.{journal}.{rate:.0f}"
                        summary, _ = self._open_phase(found, args, daemon, sink, names, rate, key)
                        label = f"{title} journal, {rate:,.0f} events/s"
                        found.latency(label, rate, summary.as_dict())
                        found.headline(f"p99 publish-to-receipt, {label}", summary.p99_ms, "ms")
                        p99[journal] = summary.p99_ms
        last = f"{rates[-1]:,.0f} events/s"
        found.target(f"p99 at {last}, SQLite", p99["sqlite"], "<=", delivery.TARGET_P99_MS, "ms")
        found.target(f"p99 at {last}, memory", p99["memory"], "<=", delivery.TARGET_P99_MS, "ms")

    def sweep(self, found: Findings) -> None:
        settings = self.settings
        search = RateSweep(
            bound_ms=SWEEP_BOUND_MS,
            start_rate=1000.0,
            factor=2.0,
            resolution=settings.pick(0.1, 0.5),
            max_steps=settings.count(10, 2),
            max_rate=64000.0,
        )
        args = self._delivery_args(duration=settings.pick(2.0, 0.8), warmup=settings.pick(0.3, 0.1))
        found.params.update(bound_ms=SWEEP_BOUND_MS, step_seconds=args.duration)
        with Receiver(1) as sink:
            hooks, names = delivery.spread_hooks(sink.ports[:1], 1, 1, event="sweep")
            with delivery.daemon_for(args, hooks) as daemon:
                while (rate := search.next_rate()) is not None:
                    key = f"sweep.{rate:.0f}"
                    summary, achieved = self._open_phase(
                        found, args, daemon, sink, names, rate, key
                    )
                    search.record(rate, summary.p99_ms, achieved)
        found.sweep = {
            "bound_ms": SWEEP_BOUND_MS,
            "best_rate": search.best,
            "points": [asdict(point) for point in search.points],
        }
        found.results["sweep.best_rate"] = search.best
        found.headline(
            f"highest events/s with p99 <= {SWEEP_BOUND_MS:g} ms (1 hook each)",
            search.best or 0.0,
            "events/s",
            caveat=None if search.best else "even the first rate missed the bound",
        )

    # -- the journal -----------------------------------------------------------------------

    def journal(self, found: Findings) -> None:
        args = _args(
            journal_bench.make_parser(),
            pairs=self.settings.count(2, 1),
            duration=self.settings.pick(4.0, 1.0),
            warmup=self.settings.pick(0.5, 0.2),
        )
        found.params.update(pairs=args.pairs, duration=args.duration, synchronous=args.synchronous)
        with self._sink(1, found) as sink:
            journal_bench.measure_throughput(args, found, sink)
        _versus(
            found,
            "deliveries/s, SQLite journal (fsync per commit)",
            ("hookwire, SQLite journal", "throughput.sqlite_median"),
            ("journal in memory", "throughput.memory_median"),
        )

    # -- isolation -------------------------------------------------------------------------

    def isolation(self, found: Findings) -> None:
        args = self._delivery_args()
        found.params.update(duration=args.duration, dead_rate=args.dead_rate)
        with Receiver(1, silent_ports=1) as sink:
            delivery.measure_isolation(args, found, sink)
        _versus(
            found,
            "healthy deliveries/s beside a dead destination",
            ("healthy, beside a dead one", "isolation.dead.deliveries_per_s"),
            ("healthy destination alone", "isolation.alone.deliveries_per_s"),
        )

    # -- SSE fan-out -----------------------------------------------------------------------

    def sse(self, found: Findings) -> None:
        grid = (
            [(50, 200.0)]
            if self.settings.quick
            else [(100, 1000.0), (100, 5000.0), (1000, 1000.0), (2000, 1000.0)]
        )
        duration = self.settings.pick(4.0, 1.0)
        found.params.update(grid=[f"{n} x {r:g}/s" for n, r in grid], duration=duration)
        for subscribers, rate in grid:
            args = _args(
                sse_fanout.make_parser(), subscribers=subscribers, rate=rate, duration=duration
            )
            part = Report("sse", {})
            sse_fanout.measure(args, part)
            per_second = float(part.results.get("deliveries.per_second", 0.0))
            offered = subscribers * rate
            # The script's 200,000/s goal means something only where that much is offered;
            # below it, what matters is keeping up with the offered load.
            part.targets = [t for t in part.targets if t.label != "event deliveries/s"]
            part.target(
                f"deliveries/s keep up with the {offered:,.0f} offered",
                per_second,
                ">=",
                KEEP_UP * offered,
                "deliveries/s",
            )
            if offered >= sse_fanout.TARGET_DELIVERIES:
                part.target(
                    "event deliveries/s",
                    per_second,
                    ">=",
                    sse_fanout.TARGET_DELIVERIES,
                    "deliveries/s",
                )
            label = f"{subscribers:,} subscribers x {rate:,.0f} events/s"
            _merge(found, part, f"{subscribers}x{rate:.0f}", label)
            found.throughput(label, per_second, "SSE deliveries/s")
            found.headline(f"SSE deliveries/s, {label}", per_second, "deliveries/s")

    # -- the gateway -----------------------------------------------------------------------

    def gateway(self, found: Findings) -> None:
        args = _args(
            gateway_bench.make_parser(),
            events=self.settings.count(300_000, 20_000),
            rate=self.settings.count(20_000, 5_000),
            duration=self.settings.pick(5.0, 1.0),
        )
        found.params.update(events=args.events, rate=args.rate, duration=args.duration)
        gateway_bench.measure(args, found)
        per_second = float(found.results.get("throughput.per_second", 0.0))
        found.throughput("gateway, durable, 1 connection", per_second, "events/s")
        found.headline("durable events/s, one gateway connection", per_second, "events/s")
        summary = found.results.get("latency.summary")
        if isinstance(summary, dict):
            found.latency(f"gateway acks, {args.rate:,} events/s", args.rate, summary)
            found.headline(f"ack p99 at {args.rate:,} events/s", summary["p99_ms"], "ms")

    # -- templates -------------------------------------------------------------------------

    def templates(self, found: Findings) -> None:
        args = _args(
            templates_bench.make_parser(),
            duration=self.settings.pick(0.3, 0.05),
            repeat=self.settings.count(3, 1),
        )
        found.params.update(duration=args.duration, repeat=args.repeat)
        templates_bench.measure(args, found)
        results = found.results
        unit = "events rendered/s (body + URL + header)"
        ours = float(results.get("event.ours_per_s", 0))
        found.throughput("ours (compiled)", ours, unit)
        for engine in ("chevron", "mystace", "f-string"):
            rate = results.get(f"event.{engine}_per_s")
            if isinstance(rate, int | float):
                found.throughput(engine, float(rate), unit, baseline=True)
                found.headline(
                    "events rendered/s (body + URL + header)",
                    ours,
                    "/s",
                    baseline=engine,
                    baseline_value=float(rate),
                )

    # -- crashes ---------------------------------------------------------------------------

    def crash(self, found: Findings) -> None:
        seed = self.settings.seed if self.settings.seed is not None else random.randrange(2**32)
        args = _args(
            crash_bench.make_parser(),
            crashes=self.settings.count(5, 1),
            seed=seed,
            max_crash=self.settings.pick(3.0, 1.0),
        )
        found.params.update(crashes=args.crashes, rate=args.rate, seed=seed)
        crash_bench.measure(args, found)
        results = found.results
        found.headline("deliveries expected", float(results.get("total.expected", 0)), "")
        found.headline("acknowledged deliveries lost", float(results.get("total.lost", 0)), "")
        found.headline(
            "duplicates (same webhook-id again)", float(results.get("total.duplicates", 0)), ""
        )
