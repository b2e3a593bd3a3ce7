"""REST publishes per second: keep-alive clients POSTing /v1/devices/events to the daemon.

The same raw-socket client then runs against trivial baseline servers
(bench/harness/baseline_server.py)
in the same run, so the report shows engine/baseline. Every answer must be a 200; anything
else is counted as an error and makes the run an engine failure (exit 1). A missed
throughput target is reported (MISSED) but is not a failure.

    .venv/bin/python -m bench.scenarios.publish                    # 32 connections, 5 s, 1 process
    .venv/bin/python -m bench.scenarios.publish --procs 2 --pipeline 4
"""

from __future__ import annotations

import argparse
import os
import sys
from urllib.parse import urlencode

from bench.harness.daemon import (
    HARNESS_DIR,
    HOST,
    Daemon,
    EngineFailed,
    ServerProcess,
    free_port,
    machine_busy,
    raise_fd_limit,
    rss_kb,
)
from bench.harness.httpload import LoadRun, LoadSpec, render_post, run_load
from bench.harness.latency import summarize
from bench.harness.report import Report

TARGET_PUBLISHES = 10_000.0
"""publishes/s the design asks of one daemon on two cores."""

CLIENT_BOUND = 0.9
"""Client CPU share (per process) above which the client, not the server, set the pace."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="REST publishes per second, with a trivial-server baseline for a ratio."
    )
    parser.add_argument("--connections", type=int, default=32, help="keep-alive connections")
    parser.add_argument("--procs", type=int, default=1, help="client processes")
    parser.add_argument("--pipeline", type=int, default=1, help="requests in flight per conn")
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=0.5, help="unmeasured seconds first")
    parser.add_argument(
        "--max-requests", type=int, default=2_000_000, help="stop after this many requests"
    )
    parser.add_argument("--data-bytes", type=int, default=4, help="size of each event's data")
    parser.add_argument("--json", action="store_true", help="send JSON bodies instead of form")
    parser.add_argument(
        "--baseline",
        default="trio,asyncio",
        help="baseline servers to measure too: comma-separated trio, asyncio, or none",
    )
    return parser


def _body(data_bytes: int, as_json: bool) -> tuple[bytes, str]:
    data = ("21.5" + "x" * max(0, data_bytes - 4))[: max(1, data_bytes)]
    if as_json:
        return b'{"name":"bench/temp","data":"%s"}' % data.encode(), "application/json"
    return urlencode({"name": "bench/temp", "data": data}).encode(), (
        "application/x-www-form-urlencoded"
    )


def _spec(args: argparse.Namespace, port: int, token: str) -> LoadSpec:
    body, content_type = _body(args.data_bytes, args.json)
    return LoadSpec(
        host=HOST,
        port=port,
        request=render_post(HOST, port, "/v1/devices/events", token, body, content_type),
        connections=args.connections,
        pipeline=args.pipeline,
        duration=args.duration,
        warmup=args.warmup,
        max_requests=args.max_requests,
        track_ids=True,
    )


def _summarize(report: Report, label: str, key: str, run: LoadRun) -> dict[str, float]:
    result = run.result
    latencies = summarize(result.latencies)
    p50, p99 = latencies.p50_ms, latencies.p99_ms
    report.section(label)
    report.row("requests/s", result.per_second, "", key=f"{key}.per_second")
    report.row("200 answers in window", result.ok, "", key=f"{key}.ok")
    report.row("latency p50", p50, "ms", key=f"{key}.p50_ms")
    report.row("latency p99", p99, "ms", key=f"{key}.p99_ms")
    report.row("errors", result.error_count, "", key=f"{key}.errors")
    for reason, count in sorted(result.errors.items()):
        report.row(f"  {reason}", count)
    report.results[f"{key}.error_reasons"] = dict(result.errors)
    report.row("connections", result.connections, "", key=f"{key}.connections")
    report.row("window", result.window, "s", key=f"{key}.window_s")
    if result.window > 0 and result.client_cpu / (result.window * result.workers) > CLIENT_BOUND:
        report.note(
            f"{label}: the client processes were saturated; this rate is a floor for the "
            "server (try --procs 2 if the machine has a core to spare)"
        )
    cores = os.cpu_count() or 1
    busy = run.machine_cpu / (result.window * cores) if run.machine_cpu and result.window else 0
    if busy > CLIENT_BOUND:
        report.note(f"{label}: all {cores} CPUs were busy; server and client competed")
    if result.window > 0:
        report.row(
            "client CPU",
            100 * result.client_cpu / result.window,
            "% of a core",
            key=f"{key}.client_cpu_pct",
        )
    if run.server_cpu is not None and result.window > 0:
        report.row(
            "server CPU",
            100 * run.server_cpu / result.window,
            "% of a core",
            key=f"{key}.server_cpu_pct",
        )
    others = run.others_cpu(result.client_cpu)
    if others is not None and result.window > 0:
        report.row(
            "other processes' CPU",
            100 * others / result.window,
            "% of a core",
            key=f"{key}.others_cpu_pct",
        )
    return {"per_second": result.per_second, "p50": p50, "p99": p99}


def _measure_engine(args: argparse.Namespace, report: Report) -> dict[str, float]:
    with Daemon(max_data_bytes=max(1024, args.data_bytes)) as daemon:
        run = run_load(_spec(args, daemon.port, daemon.token), args.procs, daemon.pid)
        daemon.check_alive()
        numbers = _summarize(report, "hookwire", "engine", run)
        result = run.result
        if result.error_count:
            report.fail(f"{result.error_count} publishes were not answered 200")
        if result.min_id is not None and result.max_id is not None:
            distinct = result.max_id - result.min_id + 1
            report.row("event ids assigned", f"{result.min_id}..{result.max_id}")
            if result.answered - result.error_count > distinct:
                report.fail("the engine gave the same event id to two publishes")
        metrics = daemon.metrics()
        stored = metrics.get('hookwire_events_published_total{source="rest"}', 0.0)
        report.row("events stored (metric)", int(stored), "", key="engine.events_stored")
        report.row("daemon RSS after", rss_kb(daemon.pid) / 1024, "MiB", key="engine.rss_mib")
        acked = result.answered - sum(
            n for reason, n in result.errors.items() if reason.startswith("status")
        )
        if int(stored) != acked:
            report.note(f"the engine counted {int(stored)} events stored, the client {acked} 200s")
    report.row("daemon stop, SIGTERM to exit", daemon.stop_seconds or 0.0, "s", key="daemon.stop_s")
    return numbers


def _measure_baseline(args: argparse.Namespace, kind: str, report: Report) -> float | None:
    port = free_port()
    server = ServerProcess(
        [
            sys.executable,
            str(HARNESS_DIR / "baseline_server.py"),
            "--kind",
            kind,
            "--port",
            str(port),
        ],
        port=port,
        name=f"baseline-{kind}",
    )
    try:
        with server:
            run = run_load(_spec(args, port, "baseline"), args.procs, server.pid)
    except EngineFailed as exc:
        report.note(f"baseline {kind} did not run: {exc}")
        return None
    numbers = _summarize(report, f"baseline: {kind} server answering a fixed 200", kind, run)
    return numbers["per_second"]


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    raise_fd_limit(4096 + 2 * args.connections)
    baselines = [b.strip() for b in args.baseline.split(",") if b.strip() and b.strip() != "none"]
    report = Report(
        "publish",
        {
            "connections": args.connections,
            "procs": args.procs,
            "pipeline": args.pipeline,
            "duration": args.duration,
            "max_requests": args.max_requests,
            "body": "json" if args.json else "form",
            "data_bytes": args.data_bytes,
        },
    )
    report.check_machine(machine_busy())
    try:
        engine = _measure_engine(args, report)
    except EngineFailed as exc:
        report.fail(str(exc))
        return report.finish()
    rates = {kind: _measure_baseline(args, kind, report) for kind in baselines}
    report.section("summary")
    report.row("hookwire publishes/s", engine["per_second"])
    for kind, rate in rates.items():
        if rate:
            ratio = engine["per_second"] / rate
            report.row(f"engine / {kind} baseline", f"{ratio:.2f} (baseline {rate:,.0f}/s)")
            report.results[f"ratio.{kind}"] = ratio
    report.target("publishes/s", engine["per_second"], ">=", TARGET_PUBLISHES, "publishes/s")
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
