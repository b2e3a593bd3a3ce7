"""The engine's own cost per webhook delivery, without sockets: where the time goes.

Runs the real router, destinations, breaker, retry bookkeeping, journal writes and bus
fan-out in this process, with a transport that answers 200 at once instead of a
connection pool. What it reports is the engine's share of a delivery's cost; add the
client's (bench/scenarios/delivery.py against a real receiver) to get the end-to-end figure.

    .venv/bin/python -m bench.scenarios.delivery_engine              # 5,000 events x 4 hooks
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import trio

from bench.harness.report import Report
from engine.config.settings import load_config
from engine.core.model import EventDraft
from engine.daemon import Engine
from engine.http.client import Origin, Response

TIME_LIMIT = 120.0
"""Seconds the run may take at most, whatever the arguments."""


class InstantTransport:
    """Answers every request 200 with an empty body, after one checkpoint."""

    address = "127.0.0.1"

    async def request(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes = b"",
        *,
        timeout: float,  # noqa: ASYNC109
        on_sent: object = None,
    ) -> Response:
        if callable(on_sent):
            on_sent()
        await trio.lowlevel.checkpoint()
        return Response(200, [], b"", False)

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


def config_text(hooks: int, max_in_flight: int) -> str:
    entries = "".join(
        f'\n[[hooks]]\nname = "h{i}"\nevent = "bench/"\nurl = "http://127.0.0.1:9/d{i}"\n'
        for i in range(hooks)
    )
    return (
        '[server]\nport = 0\n[log]\nlevel = "warning"\n[journal]\nbackend = "memory"\n'
        f'[delivery]\nallow_networks = ["127.0.0.0/8"]\nmax_in_flight = {max_in_flight}\n'
        "workers = 0\n" + entries
    )


async def measure(engine: Engine, events: int, hooks: int) -> float:
    """Seconds from the first publish until every delivery is delivered."""
    expected = events * hooks
    counts = engine.metrics.delivery_counts
    async with trio.open_nursery() as nursery:
        await nursery.start(engine.run)
        started = time.perf_counter()
        with trio.fail_after(TIME_LIMIT):
            for n in range(events):
                draft = EventDraft("bench/x", str(n), 60, False, "t", "api", None)
                await engine.journal.append(draft)
            # Deliveries finish in other tasks; a millisecond's polling costs nothing here.
            while sum(counts.outcomes.values()) < expected:  # noqa: ASYNC110
                await trio.sleep(0.001)
        elapsed = time.perf_counter() - started
        nursery.cancel_scope.cancel()
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5000, help="events to publish")
    parser.add_argument("--hooks", type=int, default=4, help="hooks each event triggers")
    parser.add_argument("--max-in-flight", type=int, default=64, help="[delivery] max_in_flight")
    args = parser.parse_args()
    report = Report("delivery_engine", vars(args))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "engine.toml"
        path.write_text(config_text(args.hooks, args.max_in_flight))
        engine = Engine(load_config(path))
    transport = InstantTransport()

    def open_transport(origin: Origin, address: str, capacity: int, verify: bool) -> object:
        return transport

    engine.dispatcher._open_transport = open_transport  # type: ignore[assignment]
    elapsed = trio.run(measure, engine, args.events, args.hooks)
    deliveries = args.events * args.hooks
    report.section("engine only (instant transport, no sockets)")
    report.row("deliveries", deliveries, key="deliveries")
    report.row("deliveries/s", deliveries / elapsed, key="per_second")
    report.row("engine time per delivery", 1e6 * elapsed / deliveries, "us", key="us_per_delivery")
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
