"""The suite's latency scenario: publish-to-delivery at fixed event rates, journal on and off.

Open model, 1 hook per event, 1 destination on the Python receiver (it reads the stamps);
the phase is bench/harness/delivery/latency.py's ``open_phase``, which also shows the
SQLite journal's commits per published event (from /metrics). At 1,000 events/s, what the
journal costs is checked too: its commits per event, and the daemon's CPU next to the
memory journal's. Runs alone, through the suite's runner:

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

COST_RATE = 1000.0
"""Events/s at which the journal's cost is checked: a moderate load, the daemon not saturated."""

TARGET_COMMITS_PER_EVENT = 0.3
"""Commits per published event at ``COST_RATE`` (1 hook each): appends and delivery outcomes
share commits (group commit by time)."""

TARGET_CPU_RATIO = 1.3
"""The daemon's CPU with the SQLite journal at most this multiple of the memory journal's."""


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
    _journal_cost(found)


def _journal_cost(found: Findings) -> None:
    """Targets on what the SQLite journal costs at ``COST_RATE``, from the phases' results."""
    at = f"{COST_RATE:,.0f} events/s"
    commits = found.results.get(f"latency.sqlite.{COST_RATE:.0f}.commits_per_event")
    if isinstance(commits, float):
        found.headline(f"SQLite journal commits per event, {at}", commits, "")
        found.target(
            f"SQLite journal commits per event at {at}",
            commits,
            "<=",
            TARGET_COMMITS_PER_EVENT,
            "",
        )
    cpu = {
        journal: found.results.get(f"latency.{journal}.{COST_RATE:.0f}.daemon_cpu_pct")
        for journal in ("sqlite", "memory")
    }
    sqlite, memory = cpu["sqlite"], cpu["memory"]
    if isinstance(sqlite, float) and isinstance(memory, float) and memory > 0:
        found.headline(f"daemon CPU, SQLite / memory journal, {at}", sqlite / memory, "x")
        found.target(
            f"daemon CPU at {at}, SQLite / memory journal",
            sqlite / memory,
            "<=",
            TARGET_CPU_RATIO,
            "x",
        )


if __name__ == "__main__":
    sys.exit(run_alone(latency))
