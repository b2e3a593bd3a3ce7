"""The delivery benchmark's options and targets, shared by its script and the suite."""

from __future__ import annotations

import argparse

from bench.harness.daemon import config_duration

TARGET_DELIVERIES = 20_000.0
"""Deliveries/s the design asks of one daemon on two cores."""

TARGET_HTTPX_RATIO = 10.0
TARGET_WORKERS_RATIO = 2.0
"""Deliveries/s with the shipped worker processes over deliveries in the main process."""
TARGET_AIOHTTP_RATIO = 2.0
TARGET_P99_MS = 10.0
TARGET_ISOLATION_DROP_PCT = 10.0

SCENARIOS = ("one", "many", "latency", "isolation", "baselines")


SINK_CONNECTIONS = 8192
"""The engine's max_connections in the benchmarks: half of the nginx sink's worker_connections
(bench/harness/nginx_sink.py), which its 1,001 listeners share."""


def _auto_or_count(text: str) -> str | int:
    if text == "auto":
        return text
    if not text.isdecimal():
        raise argparse.ArgumentTypeError(f'expected "auto" or a count, got {text!r}')
    return int(text)


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
    parser.add_argument(
        "--max-connections",
        type=_auto_or_count,
        default=SINK_CONNECTIONS,
        help='engine\'s [delivery] max_connections: open connections in all, "auto" or a '
        f"count ({SINK_CONNECTIONS:,}: what the sink holds with room to spare; auto on this "
        "machine's file limit can be more than nginx's worker_connections)",
    )
    parser.add_argument(
        "--commit-interval",
        type=config_duration,
        default="2ms",
        help="the daemons' [journal] commit_interval with SQLite: seconds or a string such as "
        '"2ms" (the shipped default)',
    )
    parser.add_argument("--pub-conns", type=int, default=8, help="publisher connections")
    parser.add_argument(
        "--workers",
        type=_auto_or_count,
        default="auto",
        help='the daemons\' [delivery] workers: "auto" (the shipped default) or a count, 0 = '
        "deliveries in the main process",
    )
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
        default="raw,httpx,aiohttp",
        help="baseline clients: comma-separated raw (the engine's own HTTP client alone), "
        "httpx, aiohttp, or none",
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
