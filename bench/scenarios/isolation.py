"""The suite's isolation scenario: a healthy destination's deliveries/s beside a dead one.

bench/harness/delivery/isolation.py's phase, on the Python receiver (it has a port that
never answers). Runs alone, through the suite's runner:

    .venv/bin/python -m bench.scenarios.isolation [--quick]
"""

from __future__ import annotations

import sys

from bench.harness.delivery.isolation import measure_isolation
from bench.harness.receiver import Receiver
from bench.harness.scenario import Bench, scenario, versus
from bench.harness.suite import Findings
from bench.scenarios import run_alone


@scenario("isolation", "A healthy destination beside a dead one", order=60)
def isolation(bench: Bench, found: Findings) -> None:
    args = bench.delivery_args()
    found.params.update(duration=args.duration, dead_rate=args.dead_rate)
    with Receiver(1, silent_ports=1) as sink:
        measure_isolation(args, found, sink)
    versus(
        found,
        "healthy deliveries/s beside a dead destination",
        ("healthy, beside a dead one", "isolation.dead.deliveries_per_s"),
        ("healthy destination alone", "isolation.alone.deliveries_per_s"),
    )


if __name__ == "__main__":
    sys.exit(run_alone(isolation))
