"""What the number of hooks costs (issue 18, hooks at runtime): routing, changes, deliveries.

1. Routing, in this process, no daemon: a ``HookSet`` (engine/hooks/router.py) of 10, 1,000
   and 10,000 hooks compiled with ``compile_hook`` from ``HookConfig`` records of a mix of
   shapes (``sensor/<i>/``, ``room/<i>/temp``, ``alarm/<i>``, ``building/<i>/floor/``; some
   with a device filter; four in each ten sharing one prefix). ``HookSet.route(event)`` is
   timed for an event that triggers one hook, one that triggers four, one whose prefix
   matches a hook whose device filter refuses it, and one that matches no prefix: µs per
   event, the median of ``--repeat`` rounds (after a warm-up round) that each time
   ``--calls`` calls of every size and case, so the machine's noise falls on all alike.
2. Changes: ``HookSet.add`` and ``HookSet.remove`` of one hook at each size (each makes a
   new snapshot, whose tables are as large as the set), median and slowest of ``--changes``
   of each, with the full (generation 2) garbage collections that ran meanwhile (each walks
   every object of the process); and ``--one-by-one`` hooks added one at a time to an empty
   set, as the API would create them, measured whole.
3. Deliveries: the delivery benchmark's 1-destination throughput phase
   (bench/harness/delivery/: 4 hooks per event on one sink port, 8 publisher connections,
   the shipped SQLite journal and workers), on a daemon with only those hooks, then on one
   with ``--unrelated`` (1,000) more hooks of the same mix, whose events never match the
   published ones (their URLs name a loopback port bound by nothing that listens),
   alternately, ``--pairs`` times: deliveries/s with / without, per pair and for the medians.

Exit 1 if a route finds other hooks than it should, or on an engine failure of a delivery
phase (a daemon that does not start or dies, a publish refused, a delivery lost or
duplicated). A missed target prints MISSED.

    .venv/bin/python -m bench.scenarios.hooks
    .venv/bin/python -m bench.scenarios.hooks --quick
    .venv/bin/python -m bench.scenarios.hooks --only changes --one-by-one 10000
"""

from __future__ import annotations

import argparse
import gc
import socket
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from bench.harness.daemon import HOST, EngineFailed, machine_busy, rss_kb
from bench.harness.delivery.phase import (
    check_phase,
    daemon_for,
    publish_spec,
    report_phase,
    run_phase,
    spread_hooks,
)
from bench.harness.reload_pause import measure_reload_pause
from bench.harness.report import Report
from bench.harness.scenario import SINKS, Bench, Settings, Sink, scenario
from bench.harness.suite import Findings
from engine.config.settings import HookConfig
from engine.core.model import Event
from engine.hooks.hook import Hook, compile_hook
from engine.hooks.router import HookSet

SIZES = (10, 1_000, 10_000)
"""Hook counts the routing and the changes are measured at."""

TARGET_CHANGE_MS = 50.0
"""A reload of 10,000 hooks must not pause deliveries longer than this: one add or remove
runs on the event loop, between two deliveries."""

TARGET_UNRELATED_RATIO = 0.9
"""Deliveries/s with 1,000 hooks that never match / with none: unrelated hooks must cost
next to nothing per event."""

NOISY_OTHERS_PCT = 25.0
"""Other processes' CPU (% of a core) during a delivery phase above which its rate is noted
as unreliable: on two cores they take that share from the daemon, whose rate it sets."""

PARTS = ("routing", "changes", "delivery", "reload")

DEVICE = "0123456789abcdef01234567"
"""The device every timed event comes from, admitted by the mix's shared-prefix filter."""
OTHER_DEVICE = "fedcba9876543210fedcba98"

SPREAD = 10
"""Hooks of one group of the mix: hook i has the shape of ``i % SPREAD``."""

CASES = {"one": 1, "several": 4, "filtered": 0, "none": 0}
"""The routing cases and how many hooks each event must trigger."""

_CASE_LABELS = {
    "one": "match one",
    "several": "match several (4, one by device filter)",
    "filtered": "none: prefix found, device filter refuses",
    "none": "none: no prefix matches",
}

_HEADLINES = {"one": "match one", "several": "match 4", "none": "no prefix matches"}
"""The cases the suite's summary shows, as it names them."""


# --- the mix of hooks ------------------------------------------------------------------


def hook_fields(i: int, family: str = "h") -> dict[str, Any]:
    """Name, event prefix and device filter of hook ``i`` of the mix.

    Of each ten (``base`` is the first): hooks base, +7, +8 and +9 share the prefix
    ``sensor/<base>/`` (+7 only for ``DEVICE``); +1, +2 and +6 have ``sensor/<i>/`` of
    their own (+6 only for ``OTHER_DEVICE``); +3 ``room/<i>/temp``, +4 ``alarm/<i>``, +5
    ``building/<i>/floor/``: prefix lengths from 7 to 20 characters at 10,000 hooks.
    """
    base, kind = i - i % SPREAD, i % SPREAD
    devices: tuple[str, ...] = ()
    if kind in (0, 7, 8, 9):
        event = f"sensor/{base}/"
        devices = (DEVICE,) if kind == 7 else ()
    elif kind == 3:
        event = f"room/{i}/temp"
    elif kind == 4:
        event = f"alarm/{i}"
    elif kind == 5:
        event = f"building/{i}/floor/"
    else:
        event = f"sensor/{i}/"
        devices = (OTHER_DEVICE,) if kind == 6 else ()
    return {"name": f"{family}-{i}", "event": event, "devices": devices}


def hook_config(i: int, port: int) -> HookConfig:
    fields = hook_fields(i)
    return HookConfig(
        where=f"hooks[{i}]",
        name=fields["name"],
        event=fields["event"],
        url=f"http://{HOST}:{port}/hooks/{i}",
        devices=frozenset(fields["devices"]),
    )


def case_events(size: int) -> dict[str, Event]:
    """Per routing case, an event from ``DEVICE`` into the middle group of ``size`` hooks."""
    base = size // 2 - size // 2 % SPREAD
    names = {
        "one": f"sensor/{base + 1}/temp",
        "several": f"sensor/{base}/temp",
        "filtered": f"sensor/{base + 6}/temp",
        "none": "sensor/none/temp",
    }
    return {
        case: Event(1, name, "21.5", 60, True, "2026-12-01T00:00:00.000Z", DEVICE)
        for case, name in names.items()
    }


# --- 1. routing ------------------------------------------------------------------------


def ns_per_call(fn: Callable[[Any], object], arg: Any, calls: int) -> float:
    """ns per ``fn(arg)`` over ``calls`` calls (the loop's own cost, about 30 ns, included)."""
    started = time.perf_counter_ns()
    for _ in range(calls):
        fn(arg)
    return (time.perf_counter_ns() - started) / calls


def measure_routing(args: argparse.Namespace, report: Report, compiled: list[Hook]) -> None:
    """Every (size, case) once per round, ``--repeat`` rounds after a warm-up round, so that
    the machine's noise falls on all of them alike; the median round counts."""
    sets: dict[int, HookSet] = {}
    for size in args.sizes:
        started = time.perf_counter_ns()
        sets[size] = HookSet(compiled[:size])
        report.results[f"route.{size}.build_ms"] = (time.perf_counter_ns() - started) / 1e6
    events = {size: case_events(size) for size in args.sizes}
    runs: dict[tuple[int, str], list[float]] = {}
    gc.collect()
    for attempt in range(args.repeat + 1):
        for size, hooks in sets.items():
            for case, event in events[size].items():
                ns = ns_per_call(hooks.route, event, args.calls)
                if attempt:
                    runs.setdefault((size, case), []).append(ns)
    for size, hooks in sets.items():
        lengths = len({len(hook.event) for hook in compiled[:size]})
        report.section(f"routing: {size:,} hooks ({lengths} prefix lengths)")
        report.row(
            "HookSet built from compiled hooks", report.results[f"route.{size}.build_ms"], "ms"
        )
        for case, event in events[size].items():
            routed = hooks.route(event)
            if len(routed) != CASES[case]:
                report.fail(
                    f"route {event.name!r} at {size:,} hooks: {len(routed)} hooks, "
                    f"expected {CASES[case]}"
                )
            us = statistics.median(runs[size, case]) / 1e3
            report.row(f"route, {_CASE_LABELS[case]}", f"{us:.3f} us/event ({len(routed)} routed)")
            report.results[f"route.{size}.{case}_us"] = round(us, 4)


# --- 2. changes ------------------------------------------------------------------------


class FullCollections:
    """The generation-2 garbage collections while it is entered, and their durations (ms)."""

    def __init__(self) -> None:
        self.durations: list[float] = []
        self._began = 0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._began = time.perf_counter_ns()
        else:
            self.durations.append((time.perf_counter_ns() - self._began) / 1e6)

    def __enter__(self) -> FullCollections:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)


def measure_changes(
    args: argparse.Namespace, report: Report, compiled: list[Hook], spare: list[Hook]
) -> None:
    for size in args.sizes:
        hooks = HookSet(compiled[:size])
        adds: list[float] = []
        removes: list[float] = []
        gc.collect()
        with FullCollections() as collections:
            for hook in spare[: args.changes]:
                started = time.perf_counter_ns()
                hooks.add(hook)
                added = time.perf_counter_ns()
                hooks.remove(hook.name)
                removes.append((time.perf_counter_ns() - added) / 1e3)
                adds.append((added - started) / 1e3)
        key = f"change.{size}"
        report.section(f"changes at {size:,} hooks: {args.changes} adds and removes of one hook")
        for verb, times in (("add", adds), ("remove", removes)):
            median = statistics.median(times)
            report.row(
                f"HookSet.{verb}: median / slowest",
                f"{median:,.1f} / {max(times):,.1f} us per change",
            )
            report.results[f"{key}.{verb}_us"] = round(median, 1)
            report.results[f"{key}.{verb}_max_us"] = round(max(times), 1)
        longest = max(collections.durations, default=0.0)
        report.row(
            "full (gen 2) collections meanwhile, longest",
            f"{len(collections.durations)}, {longest:,.1f} ms",
        )
        report.results[f"{key}.full_collections"] = len(collections.durations)
        report.results[f"{key}.longest_full_collection_ms"] = round(longest, 2)
    _one_by_one(args, report, [*compiled, *spare])


def _one_by_one(args: argparse.Namespace, report: Report, compiled: list[Hook]) -> None:
    """``--one-by-one`` hooks added to an empty set one at a time, as the API creates them."""
    count = min(args.one_by_one, len(compiled))
    if count <= 0:
        return
    hooks = HookSet(())
    gc.collect()
    with FullCollections() as collections:
        started = time.perf_counter_ns()
        for hook in compiled[:count]:
            hooks.add(hook)
        seconds = (time.perf_counter_ns() - started) / 1e9
    key = f"one_by_one.{count}"
    collected = sum(collections.durations) / 1e3
    report.section(f"{count:,} hooks added one by one to an empty set")
    report.row("all of them", seconds, "s", key=f"{key}.seconds")
    report.row("per add, on average", 1e6 * seconds / count, "us", key=f"{key}.add_us")
    report.row(
        "of it, full (gen 2) collections",
        f"{len(collections.durations)}, {collected:,.2f} s in all",
    )
    report.results[f"{key}.full_collections"] = len(collections.durations)
    report.results[f"{key}.full_collection_seconds"] = round(collected, 3)


def change_targets(report: Report, size: int) -> None:
    for verb in ("add", "remove"):
        median = report.results.get(f"change.{size}.{verb}_us")
        if not isinstance(median, int | float):
            continue
        report.target(
            f"HookSet.{verb} at {size:,} hooks, median per change (a reload of 10,000 hooks "
            f"must not pause deliveries longer than {TARGET_CHANGE_MS:g} ms)",
            median / 1e3,
            "<=",
            TARGET_CHANGE_MS,
            "ms",
        )
        slowest = report.results.get(f"change.{size}.{verb}_max_us")
        if isinstance(slowest, int | float) and slowest / 1e3 > TARGET_CHANGE_MS:
            report.note(
                f"the slowest HookSet.{verb} at {size:,} hooks took {slowest / 1e3:,.1f} ms: "
                "a full garbage collection ran during it (see the collections row)"
            )


# --- 3. deliveries with unrelated hooks -------------------------------------------------


@contextmanager
def unused_port() -> Iterator[int]:
    """A loopback port held bound (never listening) for as long as the block runs."""
    with socket.socket() as held:
        held.bind((HOST, 0))
        yield held.getsockname()[1]


def unrelated_hooks(count: int, port: int) -> list[dict[str, Any]]:
    """``count`` hooks of the mix for a daemon's config: none matches ``bench/...``."""
    hooks = []
    for i in range(count):
        fields = hook_fields(i, family="unrelated")
        hook: dict[str, Any] = {
            "name": fields["name"],
            "event": fields["event"],
            "url": f"http://{HOST}:{port}/unrelated/{i}",
        }
        if fields["devices"]:
            hook["devices"] = list(fields["devices"])
        hooks.append(hook)
    return hooks


def _delivery_phase(
    args: argparse.Namespace,
    report: Report,
    sink: Sink,
    extra: list[dict[str, Any]],
    arm: str,
    pair: int,
) -> float:
    hooks, names = spread_hooks(sink.ports[:1], 1, args.hooks_per_event)
    key = f"{arm}.{pair}"
    label = f"delivery-1 #{pair}: {args.hooks_per_event} hooks per event, {len(extra):,} unrelated"
    daemon = daemon_for(args, hooks + extra)
    with daemon:
        phase = run_phase(
            args, daemon, sink, [(publish_spec(args, daemon, names), args.hooks_per_event)]
        )
        rate = report_phase(report, args, label, key, phase)
        report.row("daemon RSS after", rss_kb(daemon.pid) / 1024, "MiB", key=f"{key}.rss_mib")
        check_phase(report, args, key, phase)
    return rate


def measure_delivery(
    args: argparse.Namespace, report: Report, sink: Sink, pairs: int, unrelated: int
) -> None:
    """delivery-1 without and with ``unrelated`` hooks, alternately, ``pairs`` times."""
    rates: dict[str, list[float]] = {"none": [], "with": []}
    with unused_port() as port:
        extra = unrelated_hooks(unrelated, port)
        for pair in range(1, pairs + 1):
            for arm, hooks in (("none", []), ("with", extra)):
                rates[arm].append(_delivery_phase(args, report, sink, hooks, arm, pair))
    report.section(
        f"delivery-1 with {unrelated:,} unrelated hooks / without "
        f"({pairs} pair{'s' if pairs > 1 else ''})"
    )
    ratios = []
    for pair, (without, with_) in enumerate(zip(rates["none"], rates["with"], strict=True), 1):
        ratio = with_ / without if without else 0.0
        ratios.append(ratio)
        report.row(
            f"pair {pair}: without / with, deliveries/s",
            f"{without:,.0f} / {with_:,.0f}  ({ratio:.3f}x)",
        )
    without, with_ = statistics.median(rates["none"]), statistics.median(rates["with"])
    ratio = with_ / without if without else 0.0
    report.row("median deliveries/s, without", without, "", key="delivery.none_median")
    report.row(f"median deliveries/s, with {unrelated:,}", with_, "", key="delivery.with_median")
    report.row("with / without (medians)", f"{ratio:.3f}x")
    report.row("median of the pairs' ratios", f"{statistics.median(ratios):.3f}x")
    report.results["delivery.ratio"] = round(ratio, 4)
    report.results["delivery.pair_ratios"] = [round(r, 4) for r in ratios]
    report.results["delivery.unrelated_hooks"] = unrelated
    for arm in rates:
        for pair in range(1, pairs + 1):
            others = report.results.get(f"{arm}.{pair}.others_cpu_pct")
            if isinstance(others, int | float) and others > NOISY_OTHERS_PCT:
                report.note(
                    f"{arm}.{pair}: other processes used {others:.0f}% of a core while it "
                    "published: the ratios it takes part in are unreliable"
                )
    report.target(
        f"deliveries/s with {unrelated:,} unrelated hooks / without (medians)",
        ratio,
        ">=",
        TARGET_UNRELATED_RATIO,
        "x",
    )


# --- the whole benchmark ----------------------------------------------------------------


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Hook counts: routing cost per event, cost of a change, and deliveries/s "
        "with 1,000 unrelated hooks."
    )
    add = parser.add_argument
    add("--only", default=",".join(PARTS), help=f"parts to run, of {', '.join(PARTS)}")
    add("--quick", action="store_true", help="fewer repetitions and one short pair: a smoke run")
    add("--sink", choices=SINKS, default="auto", help="webhook sink: nginx when installed (auto)")
    add("--sizes", default=",".join(map(str, SIZES)), help="hook counts, comma-separated")
    add("--calls", type=int, default=None, help="routes per case and round (20,000; quick 2,000)")
    add("--repeat", type=int, default=None, help="timed rounds (default 7; quick 3)")
    add("--changes", type=int, default=None, help="adds and removes per size (20; quick 5)")
    add("--one-by-one", type=int, default=1000, help="hooks added one at a time (0: skip)")
    add("--unrelated", type=int, default=1000, help="unrelated hooks of the 'with' daemons")
    add("--pairs", type=int, default=None, help="without + with phases, alternating (2; quick 1)")
    add("--duration", type=float, default=None, help="seconds of publishing (4; quick 1)")
    add("--hooks-per-event", type=int, default=4, help="hooks each published event triggers")
    add(
        "--reload-hooks",
        type=int,
        default=None,
        help="hooks in the config file the reload part reloads (10,000; quick 1,000)",
    )
    add(
        "--reload-duration",
        type=float,
        default=None,
        help="seconds of publishing around the reload, which starts 2 s after the first "
        "delivery (20; quick 6)",
    )
    return parser


def resolve(args: argparse.Namespace, settings: Settings) -> argparse.Namespace:
    """``args`` with the defaults ``--quick`` shortens filled in, and the sizes parsed."""
    sizes = args.sizes if isinstance(args.sizes, tuple) else _sizes(args.sizes)
    return argparse.Namespace(
        **{
            **vars(args),
            "sizes": sizes,
            "calls": args.calls or settings.count(20_000, 2_000),
            "repeat": args.repeat or settings.count(7, 3),
            "changes": args.changes or settings.count(20, 5),
            "pairs": args.pairs or settings.count(2, 1),
            "reload_hooks": args.reload_hooks or settings.count(10_000, 1_000),
            "reload_duration": args.reload_duration or settings.pick(20.0, 6.0),
        }
    )


def _sizes(text: str) -> tuple[int, ...]:
    return tuple(sorted({int(part) for part in text.split(",") if part.strip()}))


def measure(bench: Bench, args: argparse.Namespace, found: Report, parts: set[str]) -> None:
    found.params.update(
        sizes=",".join(map(str, args.sizes)),
        calls=args.calls,
        repeat=args.repeat,
        changes=args.changes,
    )
    if parts & {"routing", "changes"}:
        _in_process(args, found, parts)
    if "delivery" in parts:
        delivery = bench.delivery_args(hooks_per_event=args.hooks_per_event)
        if args.duration:
            delivery.duration = args.duration
        found.params.update(
            pairs=args.pairs,
            unrelated=args.unrelated,
            duration=delivery.duration,
            journal="sqlite (synchronous = full)",
            workers=delivery.workers,
        )
        with bench.sink(1, found) as sink:
            measure_delivery(delivery, found, sink, args.pairs, args.unrelated)
    if "reload" in parts:
        phase = bench.delivery_args(hooks_per_event=1, duration=args.reload_duration)
        found.params.update(reload_hooks=args.reload_hooks)
        with bench.sink(1, found) as sink, unused_port() as port:
            measure_reload_pause(phase, found, sink, unrelated_hooks(args.reload_hooks - 1, port))


def _in_process(args: argparse.Namespace, found: Report, parts: set[str]) -> None:
    largest = max(args.sizes)
    extra = max(args.changes, args.one_by_one - largest, 0)
    with unused_port() as port:
        configs = [hook_config(i, port) for i in range(largest + extra)]
    started = time.perf_counter_ns()
    compiled = [compile_hook(config, {}) for config in configs]
    seconds = (time.perf_counter_ns() - started) / 1e9
    found.section(f"compile_hook of {len(configs):,} HookConfig records")
    found.row("per hook", 1e6 * seconds / len(configs), "us", key="compile_us_per_hook")
    if "routing" in parts:
        measure_routing(args, found, compiled[:largest])
    if "changes" in parts:
        measure_changes(args, found, compiled[:largest], compiled[largest:])
        change_targets(found, largest)


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    given = parser.parse_args(argv)
    parts = {part.strip() for part in given.only.split(",") if part.strip()}
    if parts - set(PARTS):
        parser.error(f"--only: unknown part(s) {', '.join(sorted(parts - set(PARTS)))}")
    settings = Settings(quick=given.quick, sink=given.sink)
    args = resolve(given, settings)
    report = Findings("hooks", {"only": ",".join(p for p in PARTS if p in parts)})
    report.check_machine(machine_busy())
    try:
        measure(Bench(settings), args, report, parts)
    except EngineFailed as exc:
        report.fail(str(exc))
    return report.finish()


# --- the suite's scenario ----------------------------------------------------------------


@scenario(
    "hooks", "Hook counts: routing per event, changes, delivery-1 beside 1,000 hooks", order=95
)
def hooks(bench: Bench, found: Findings) -> None:
    args = resolve(make_parser().parse_args([]), bench.settings)
    measure(bench, args, found, set(PARTS))
    results = found.results
    smallest, largest = min(args.sizes), max(args.sizes)
    for case in ("one", "several", "none"):
        value = results.get(f"route.{largest}.{case}_us")
        reference = results.get(f"route.{smallest}.{case}_us")
        if isinstance(value, int | float) and isinstance(reference, int | float):
            found.headline(
                f"HookSet.route, {_HEADLINES[case]}, {largest:,} hooks",
                float(value),
                "us/event",
                baseline=f"{smallest:,} hooks",
                baseline_value=float(reference),
            )
    for size in args.sizes:
        one = results.get(f"route.{size}.one_us")
        if isinstance(one, int | float) and one > 0:
            found.throughput(f"routed (match one), {size:,} hooks", 1e6 / one, "events routed/s")
    for verb in ("add", "remove"):
        value = results.get(f"change.{largest}.{verb}_us")
        if isinstance(value, int | float):
            found.headline(f"HookSet.{verb}, {largest:,} hooks", value / 1e3, "ms per change")
    without, with_ = (
        _number(results, "delivery.none_median"),
        _number(results, "delivery.with_median"),
    )
    label = f"deliveries/s, 1 destination, {args.unrelated:,} unrelated hooks"
    found.throughput(
        "hookwire, 1 destination, no other hooks", without, "deliveries/s", baseline=True
    )
    found.throughput(
        f"hookwire, 1 destination, {args.unrelated:,} unrelated hooks", with_, "deliveries/s"
    )
    found.headline(
        label,
        with_,
        "deliveries/s",
        baseline="no other hooks",
        baseline_value=without,
        caveat=found.sink_caveat(f"with.{args.pairs}"),
    )


def _number(results: dict[str, object], key: str) -> float:
    value = results.get(key)
    return float(value) if isinstance(value, int | float) else 0.0


if __name__ == "__main__":
    sys.exit(main())
