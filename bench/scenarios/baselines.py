"""The suite's baselines: the engine's requests sent by httpx on trio, aiohttp on asyncio and
the engine's own HTTP client alone (the ceiling: trio streams + httptools, no other work).

Compared with hookwire's deliveries/s to 1 destination (delivery-1's, when it ran earlier in
the same suite run; measured here otherwise). Runs alone, through the suite's runner:

    .venv/bin/python -m bench.scenarios.baselines [--quick] [--sink python]
"""

from __future__ import annotations

import importlib.util
import sys

from bench.harness.delivery.baselines import measure_baselines
from bench.harness.delivery.options import TARGET_AIOHTTP_RATIO, TARGET_HTTPX_RATIO
from bench.harness.delivery.throughput import measure_throughput
from bench.harness.scenario import Bench, scenario
from bench.harness.suite import Findings
from bench.scenarios import run_alone


@scenario("baselines", "The same requests sent by httpx on trio and aiohttp on asyncio", order=20)
def baselines(bench: Bench, found: Findings) -> None:
    args = bench.delivery_args()
    kinds = ["raw"]
    for kind in ("httpx", "aiohttp"):
        if importlib.util.find_spec(kind) is None:
            found.note(f"{kind} is not installed (pip install -e '.[bench]'): not measured")
        else:
            kinds.append(kind)
    with bench.sink(1, found) as sink:
        engine = bench.one_destination
        if engine is None:
            engine = measure_throughput(
                args, found, sink, 1, "throughput", "hookwire: 1 destination"
            )
            bench.one_destination = engine
        else:
            found.note("hookwire's rate is delivery-1's, measured earlier in this run")
        rates = measure_baselines(args, found, sink, kinds)
    unit = "requests/s to 1 destination"
    found.throughput("hookwire", engine, unit)
    titles = {
        "httpx": "httpx on trio",
        "aiohttp": "aiohttp on asyncio",
        "raw": "the engine's HTTP client alone",
    }
    floors = {"httpx": TARGET_HTTPX_RATIO, "aiohttp": TARGET_AIOHTTP_RATIO}
    for kind, rate in rates.items():
        found.throughput(titles[kind], rate, unit, baseline=True)
        item = found.headline(
            "hookwire deliveries/s, 1 destination",
            engine,
            "/s",
            baseline=titles[kind],
            baseline_value=rate,
        )
        if item.ratio is not None and kind in floors:
            found.target(f"hookwire / {titles[kind]}", item.ratio, ">=", floors[kind], "x")


if __name__ == "__main__":
    sys.exit(run_alone(baselines))
