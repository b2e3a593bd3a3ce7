"""Webhook deliveries: throughput, latency and isolation of the engine, and naive-client baselines.

One receiver process (bench/harness/receiver.py: raw sockets, keep-alive, a bare 200) listens on
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

The phases live in bench/harness/delivery/, one module each. The suite's scenarios
delivery-1, delivery-100 and delivery-1000 are registered here (throughput phase); baselines,
latency, sweep and isolation have files of their own.

    .venv/bin/python -m bench.scenarios.delivery
    .venv/bin/python -m bench.scenarios.delivery --only one,latency --duration 10
"""

from __future__ import annotations

import argparse
import sys

from bench.harness.daemon import EngineFailed, machine_busy, raise_fd_limit
from bench.harness.delivery.baselines import measure_baselines
from bench.harness.delivery.isolation import measure_isolation
from bench.harness.delivery.latency import measure_latency
from bench.harness.delivery.options import (
    SCENARIOS,
    TARGET_AIOHTTP_RATIO,
    TARGET_DELIVERIES,
    TARGET_HTTPX_RATIO,
    TARGET_WORKERS_RATIO,
    make_parser,
)
from bench.harness.delivery.throughput import measure_throughput
from bench.harness.receiver import Receiver
from bench.harness.report import Report
from bench.harness.scenario import Bench, scenario
from bench.harness.suite import Findings


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
                measure_latency(args, report, receiver)
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
    raw = baselines.get("raw")
    if raw and one:
        report.row("hookwire (1 destination) / its HTTP client alone", f"{one / raw:.2f}")
        report.results["ratio.raw"] = one / raw


# --- the suite's scenarios: the throughput phase to 1, 100 and 1,000 destinations -------


def _delivery(bench: Bench, found: Findings, destinations: int, in_process: bool) -> float:
    """Deliveries/s with the shipped ``workers = "auto"``; with ``in_process``, also with
    ``workers = 0`` in the same run, as its baseline."""
    args = bench.delivery_args(destinations=destinations)
    found.params.update(
        destinations=destinations,
        hooks_per_event=args.hooks_per_event,
        duration=args.duration,
        journal="sqlite (synchronous = full)",
        publisher_connections=args.pub_conns,
        workers=args.workers,
    )
    label = f"{destinations:,} destination{'s' if destinations > 1 else ''}"
    with bench.sink(destinations, found) as sink:
        rate = measure_throughput(
            args,
            found,
            sink,
            destinations,
            "throughput",
            f"throughput: {label}, {args.hooks_per_event} hooks per event, "
            f"workers = {args.workers}",
        )
        if in_process:
            alone = argparse.Namespace(**{**vars(args), "workers": 0})
            base = measure_throughput(
                alone,
                found,
                sink,
                destinations,
                "in_process",
                f"throughput: {label}, {args.hooks_per_event} hooks per event, workers = 0",
            )
            found.throughput(f"hookwire, {label}, workers = 0", base, "deliveries/s", baseline=True)
            found.target(
                f"workers = {args.workers} / workers = 0, {label}",
                rate / base if base else 0.0,
                ">=",
                TARGET_WORKERS_RATIO,
                "x",
            )
    found.headline(
        f"deliveries/s, {label}",
        rate,
        "deliveries/s",
        caveat=found.sink_caveat("throughput"),
    )
    found.throughput(f"hookwire, {label}", rate, "deliveries/s")
    found.target(f"deliveries/s, {label}", rate, ">=", TARGET_DELIVERIES, "deliveries/s")
    return rate


@scenario("delivery-1", "Webhook deliveries/s to 1 destination", order=10)
def delivery_1(bench: Bench, found: Findings) -> None:
    bench.one_destination = _delivery(bench, found, 1, in_process=True)


@scenario("delivery-100", "Webhook deliveries/s to 100 destinations", order=11)
def delivery_100(bench: Bench, found: Findings) -> None:
    _delivery(bench, found, 100, in_process=True)


@scenario("delivery-1000", "Webhook deliveries/s to 1,000 destinations", order=12)
def delivery_1000(bench: Bench, found: Findings) -> None:
    _delivery(bench, found, 1000, in_process=False)


if __name__ == "__main__":
    sys.exit(main())
