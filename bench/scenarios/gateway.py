"""The gateway channel: device events accepted durably through one connection, and ack latency.

Starts ``hookwire run`` with the SQLite journal (``synchronous = "full"``: every ack means
fsynced) and a gateway TCP listener, no hooks (this measures ingest), then talks to it with
engine/gateway_client.py from this process:

1. throughput: ``--events`` publishes (300,000) sent as fast as the engine takes them, in
   batches of 256 frames, at most ``--window`` unacknowledged; events/s from the first send
   to the last ack, and a check that the journal holds exactly that many new events;
2. latency: a steady ``--rate`` (20,000 events/s, 20 every millisecond) for ``--duration``
   seconds; each publish's time from being written to its ack arriving, p50/p99/max.

Exit 1 if the daemon fails, a publish is nacked or an event is missing.

    .venv/bin/python -m bench.scenarios.gateway
    .venv/bin/python -m bench.scenarios.gateway --events 100000 --rate 5000 --duration 3
"""

from __future__ import annotations

import argparse
import sys
import time

import trio

from bench.harness.daemon import (
    HOST,
    Daemon,
    EngineFailed,
    config_duration,
    cpu_seconds,
    free_port,
    machine_busy,
)
from bench.harness.latency import summarize
from bench.harness.report import Report
from bench.harness.scenario import Bench, options, scenario
from bench.harness.suite import Findings
from engine.gateway.client import GatewayClient, open_gateway

TARGET_EVENTS = 100_000.0
TARGET_ACK_P99_MS = 5.0
DEVICE = "0123456789abcdef01234567"
BATCH = 256


def _events(count: int, start: int) -> list[dict[str, object]]:
    return [
        {"device": DEVICE, "name": "bench/gw", "data": f"{start + i:09d}"} for i in range(count)
    ]


async def throughput(
    gateway: GatewayClient, events: int, window: int, limit: float
) -> tuple[int, float]:
    """Publish ``events`` as fast as acks allow, for at most ``limit`` seconds; returns the
    events sent (all acked) and events/s (first send to last ack)."""
    started = time.perf_counter()
    deadline = trio.current_time() + limit
    sent = 0
    while sent < events and trio.current_time() < deadline:
        while len(gateway.unacked) > window:
            await gateway.wait_acked(min(gateway.unacked))
        count = min(BATCH, events - sent)
        await gateway.publish_many(_events(count, sent))
        sent += count
    await gateway.wait_acked()
    if gateway.nacks:
        first = next(iter(gateway.nacks.values()))
        raise EngineFailed(f"{len(gateway.nacks)} publishes nacked, e.g. {first}")
    return sent, sent / (time.perf_counter() - started)


async def latency(gateway: GatewayClient, rate: int, duration: float) -> list[float]:
    """Publish at a steady rate; returns each publish's ack latency in seconds.

    Open model: a latency runs from the publish's scheduled time, not from when it was
    written, so a late tick (the client's or the engine's fault) is counted, not hidden.
    """
    per_tick = max(1, rate // 1000)
    tick = per_tick / rate
    scheduled: dict[int, float] = {}
    acked: list[tuple[int, float]] = []  # an ack may come before publish_many returns
    gateway.on_ack = lambda seq: acked.append((seq, trio.current_time()))
    next_tick = trio.current_time()
    end = next_tick + duration
    sent = 0
    while next_tick < end:
        await trio.sleep_until(next_tick)
        seqs = await gateway.publish_many(_events(per_tick, sent))
        for seq in seqs:
            scheduled[seq] = next_tick
        sent += per_tick
        next_tick += tick
    await gateway.wait_acked()
    gateway.on_ack = None
    return [at - scheduled[seq] for seq, at in acked]


async def run(args: argparse.Namespace, daemon: Daemon, port: int, report: Report) -> None:
    before = _last_event_id(daemon)
    async with open_gateway(daemon.token, tcp=(HOST, port), name="bench") as gateway:
        cpu_before = cpu_seconds(daemon.pid)
        started = time.perf_counter()
        sent, rate = await throughput(gateway, args.events, args.window, args.limit)
        cpu_share = (cpu_seconds(daemon.pid) - cpu_before) / (time.perf_counter() - started)
        stored = _last_event_id(daemon) - before
        if stored != sent:
            raise EngineFailed(f"{sent} publishes acked, {stored} events stored")
        if sent < args.events:
            report.note(f"only {sent:,} of {args.events:,} events sent within {args.limit:g} s")
        report.section("throughput: as fast as acks allow")
        report.row("events acked and stored", stored, key="throughput.events")
        report.row("events/s (first send to last ack)", rate, key="throughput.per_second")
        report.row("daemon CPU", cpu_share * 100, "% of a core", key="throughput.daemon_cpu_pct")
        report.target("durable events/s, one connection", rate, ">=", TARGET_EVENTS, "")
        latencies = await latency(gateway, args.rate, args.duration)
    summary = summarize(latencies)
    report.section(f"latency: {args.rate} events/s for {args.duration:g} s")
    report.row("events", summary.count, key="latency.events")
    report.row("ack latency p50", summary.p50_ms, "ms", key="latency.p50_ms")
    report.row("ack latency p90", summary.p90_ms, "ms")
    report.row("ack latency p99", summary.p99_ms, "ms", key="latency.p99_ms")
    report.row("ack latency p99.9", summary.p999_ms, "ms")
    report.row("ack latency max", summary.max_ms, "ms", key="latency.max_ms")
    report.results["latency.summary"] = summary.as_dict()
    report.target(f"ack p99 at {args.rate} events/s", summary.p99_ms, "<=", TARGET_ACK_P99_MS, "ms")


def _last_event_id(daemon: Daemon) -> int:
    return int(str(daemon.health()["last_event_id"]))


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--window", type=int, default=4096, help="most unacked publishes")
    parser.add_argument("--limit", type=float, default=60.0, help="seconds, at most")
    parser.add_argument("--rate", type=int, default=20_000)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument(
        "--commit-interval",
        type=config_duration,
        default="2ms",
        help="the daemon's [journal] commit_interval: a number of seconds or a string such as "
        '"2ms" (the shipped default: 2ms; 0: commit at once)',
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    report = Report("gateway", vars(args))
    report.check_machine(machine_busy())
    measure(args, report)
    return report.finish()


def measure(args: argparse.Namespace, report: Report) -> None:
    """Both phases against a daemon of their own; an engine failure marks ``report``."""
    port = free_port()
    daemon = Daemon(
        journal={
            "backend": "sqlite",
            "path": "hookwire.db",
            "synchronous": "full",
            "commit_interval": args.commit_interval,
        },
        gateway={"tcp": f"{HOST}:{port}"},
    )
    try:
        with daemon:
            trio.run(run, args, daemon, port, report)
    except EngineFailed as exc:
        report.fail(str(exc))


# --- the suite's scenario ------------------------------------------------------------


@scenario("gateway", "Device gateway ingest, durable, one connection", order=80)
def gateway(bench: Bench, found: Findings) -> None:
    args = options(
        make_parser(),
        events=bench.settings.count(300_000, 20_000),
        rate=bench.settings.count(20_000, 5_000),
        duration=bench.settings.pick(5.0, 1.0),
    )
    found.params.update(events=args.events, rate=args.rate, duration=args.duration)
    measure(args, found)
    per_second = float(found.results.get("throughput.per_second", 0.0))
    found.throughput("gateway, durable, 1 connection", per_second, "events/s")
    found.headline("durable events/s, one gateway connection", per_second, "events/s")
    summary = found.results.get("latency.summary")
    if isinstance(summary, dict):
        found.latency(f"gateway acks, {args.rate:,} events/s", args.rate, summary)
        found.headline(f"ack p99 at {args.rate:,} events/s", summary["p99_ms"], "ms")


if __name__ == "__main__":
    sys.exit(main())
