"""The suite's latency scenario: publish-to-delivery at fixed event rates, journal on and off.

Open model, 1 hook per event, 1 destination on the Python receiver (it reads the stamps);
the phase is bench/harness/delivery/latency.py's ``open_phase``. Runs alone, through the
suite's runner:

    .venv/bin/python -m bench.scenarios.latency [--quick]
"""

from __future__ import annotations

import sys

from bench.harness.delivery.latency import open_phase
from bench.harness.delivery.options import TARGET_P99_MS
from bench.harness.delivery.phase import daemon_for, spread_hooks
from bench.harness.receiver import Receiver
from bench.harness.scenario import Bench, scenario
from bench.harness.suite import Findings
from bench.scenarios import run_alone


@scenario(
    "latency", "Publish-to-delivery latency at fixed event rates, journal on and off", order=30
)
def latency(bench: Bench, found: Findings) -> None:
    """Fixed rates, with the shipped SQLite journal and then with the journal in memory."""
    rates = (1000.0,) if bench.settings.quick else (1000.0, 2500.0, 5000.0)
    duration = bench.settings.pick(5.0, 1.5)
    found.params.update(rates=list(rates), duration=duration, hooks_per_event=1)
    p99: dict[str, float] = {}
    with Receiver(1) as sink:
        hooks, names = spread_hooks(sink.ports[:1], 1, 1, event="lat")
        for journal, title in (("sqlite", "SQLite"), ("memory", "memory")):
            args = bench.delivery_args(duration=duration, journal=journal)
            with daemon_for(args, hooks) as daemon:
                for rate in rates:
                    key = f"latency.{journal}.{rate:.0f}"
                    summary, _ = open_phase(found, args, daemon, sink, names, rate, key)
                    label = f"{title} journal, {rate:,.0f} events/s"
                    found.latency(label, rate, summary.as_dict())
                    found.headline(f"p99 publish-to-receipt, {label}", summary.p99_ms, "ms")
                    p99[journal] = summary.p99_ms
    last = f"{rates[-1]:,.0f} events/s"
    found.target(f"p99 at {last}, SQLite", p99["sqlite"], "<=", TARGET_P99_MS, "ms")
    found.target(f"p99 at {last}, memory", p99["memory"], "<=", TARGET_P99_MS, "ms")


if __name__ == "__main__":
    sys.exit(run_alone(latency))
