"""The suite's sweep: the highest event rate whose delivery p99 stays under the bound.

Open-model steps (bench/harness/delivery/latency.py's ``open_phase``) at rates chosen by
bench/harness/sweep.py's ``RateSweep``, 1 hook per event, one daemon. Runs alone, through the
suite's runner:

    .venv/bin/python -m bench.scenarios.sweep [--quick]
"""

from __future__ import annotations

import sys
from dataclasses import asdict

from bench.harness.delivery.latency import open_phase
from bench.harness.delivery.options import TARGET_P99_MS
from bench.harness.delivery.phase import daemon_for, spread_hooks
from bench.harness.receiver import Receiver
from bench.harness.scenario import Bench, scenario
from bench.harness.suite import Findings
from bench.harness.sweep import RateSweep
from bench.scenarios import run_alone

SWEEP_BOUND_MS = TARGET_P99_MS
"""The sweep's p99 bound: the delivery latency the design asks for."""


@scenario("sweep", "Highest event rate whose delivery p99 stays in bound", order=40)
def sweep(bench: Bench, found: Findings) -> None:
    settings = bench.settings
    search = RateSweep(
        bound_ms=SWEEP_BOUND_MS,
        start_rate=1000.0,
        factor=2.0,
        resolution=settings.pick(0.1, 0.5),
        max_steps=settings.count(10, 2),
        max_rate=64000.0,
    )
    args = bench.delivery_args(duration=settings.pick(2.0, 0.8), warmup=settings.pick(0.3, 0.1))
    found.params.update(bound_ms=SWEEP_BOUND_MS, step_seconds=args.duration)
    with Receiver(1) as sink:
        hooks, names = spread_hooks(sink.ports[:1], 1, 1, event="sweep")
        with daemon_for(args, hooks) as daemon:
            while (rate := search.next_rate()) is not None:
                key = f"sweep.{rate:.0f}"
                summary, achieved = open_phase(found, args, daemon, sink, names, rate, key)
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


if __name__ == "__main__":
    sys.exit(run_alone(sweep))
