"""Cluster mode's price: a node on the Redis journal against a node on SQLite, and two nodes
sharing one redis-server (issue 20).

The scenario starts its own redis-server (bench/harness/redis_server.py: a temporary
directory, a free loopback port, ``--appendonly yes --appendfsync everysec`` unless
``--appendfsync`` says otherwise), and in each of ``--rounds`` rounds, one after another on
the same sink, so that every kind sees the same machine:

1. one node on SQLite (``synchronous = full``): the baseline;
2. one node on the Redis journal (``[cluster] node = "node-a"``);
3. two nodes on the same Redis (``node-a``, ``node-b``), each with its own publisher,
   publishing once both hold partitions' leases (bounded wait).

Each phase is the delivery benchmark's 1-destination phase (bench/harness/delivery/: 4 hooks
per event on one sink port, 8 publisher connections per node answered as fast as they can
be, ``--duration`` s, then the drain), over 16 event names (GROUPS) so that the deliveries
fall in many partitions. Nodes on Redis have a 7 s lease and every phase a 1 s hook timeout
(LEASE). Redis is emptied (FLUSHALL) after each phase.
Reported per phase: deliveries/s end to end (first publish to last receipt), and CPU per
delivery (µs) from just before the first publish until every delivery arrived, of each node
(its main process and delivery workers, /proc) and of redis-server (``INFO cpu``: its own
threads, and its forked children such as AOF rewrites). The summary gives the medians over
the rounds, the ratios to the SQLite node of the same run, and the target of issue 20: a
node on Redis costs at most 1.3x the CPU per delivery of a node on SQLite (the node's own
CPU; redis-server's is reported beside it and summed).

Takeover after a node's kill -9 is not measured yet; the output says so.

Exit 1 (engine failure) if a daemon does not start, dies or does not stop, a publish is not
answered 200, or a delivery is lost or duplicated.

    .venv/bin/python -m bench.scenarios.cluster
    .venv/bin/python -m bench.scenarios.cluster --quick
    .venv/bin/python bench/run.py cluster
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass

from bench.harness.daemon import (
    Daemon,
    EngineFailed,
    machine_busy,
    machine_cpu_seconds,
    tree_cpu_seconds,
)
from bench.harness.delivery import phase as deliveries
from bench.harness.delivery.phase import PhaseResult
from bench.harness.redis_server import AOF_EVERYSEC, RedisCpu, RedisServer, redis_path
from bench.harness.report import Report
from bench.harness.scenario import SINKS, Bench, Settings, Sink, scenario, versus
from bench.harness.suite import Findings
from engine.journal.redis import PARTITIONS

TARGET_CPU_RATIO = 1.3
"""A node on Redis: at most this many times the CPU per delivery of a node on SQLite."""

TAKEOVER = "takeover after kill -9: not measured (this scenario kills no node yet)"

NODES = ("node-a", "node-b")

GROUPS = 16
"""Event names the publishers cycle through, each with its own ``--hooks-per-event`` hooks
on the one sink port: 64 hooks, so the deliveries fall in many of the 64 partitions and two
nodes' leases split them about evenly (one name's 4 hooks would be 4 partitions at most)."""

HOOK_TIMEOUT = 1.0
LEASE = 7.0
"""``[cluster] lease`` (seconds) of the nodes on Redis: above the hooks' timeout plus 5 s, as
the config requires, so that a node looks at its leases every 2.3 s and two nodes started
one after the other split the partitions within seconds ("auto" with the shipped 20 s
timeout is 30 s: 10 s between looks). Every phase, SQLite's too, uses the 1 s timeout."""

SPREAD_TIMEOUT = 3 * LEASE
"""Seconds two nodes get to split the partitions before their phase publishes anyway."""

HOLDERS = """
local holders = {}
for _, key in ipairs(redis.call('KEYS', ARGV[1])) do
  holders[#holders + 1] = redis.call('GET', key)
end
return table.concat(holders, ' ')
"""
"""The nodes holding the partitions' leases (``hw:lease:<n>`` holds the node's name), one
word per partition leased."""

FSYNCS = ("everysec", "always", "no")
"""redis-server's ``--appendfsync`` choices (always: Hookwire's guarantee, docs/cluster.md)."""

KINDS = {
    "sqlite": "1 node, SQLite journal",
    "redis": "1 node, Redis journal",
    "two": "2 nodes, one Redis",
}


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Deliveries/s and CPU per delivery: a node on Redis vs on SQLite, and two "
        "nodes on one redis-server."
    )
    add = parser.add_argument
    add("--quick", action="store_true", help="one round of about a second per phase: a smoke run")
    add("--rounds", type=int, default=None, help="rounds of the three phases (2; 1 with --quick)")
    add("--duration", type=float, default=None, help="seconds of publishing (4; 1 with --quick)")
    add("--warmup", type=float, default=None, help="seconds left out of window rates")
    add("--hooks-per-event", type=int, default=4, help="hooks each event triggers")
    add("--pub-conns", type=int, default=8, help="publisher connections per node")
    add("--drain-timeout", type=float, default=30.0, help="seconds for a phase's last delivery")
    add("--appendfsync", default="everysec", choices=FSYNCS, help="redis-server's appendfsync")
    add("--sink", choices=SINKS, default="auto", help="webhook sink: nginx when installed (auto)")
    return parser


# --- what one phase cost --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reading:
    """CPU seconds so far (each node with its workers, redis-server, the machine), Redis's
    memory and append-only file, at one instant."""

    at: float
    nodes: tuple[float, ...]
    redis: RedisCpu
    machine: float
    redis_memory: int
    aof_bytes: int


def read(nodes: Sequence[Daemon], redis: RedisServer) -> Reading:
    memory = redis.info("memory")
    persistence = redis.info("persistence")
    return Reading(
        time.monotonic(),
        tuple(sum(tree_cpu_seconds(node.pid).values()) for node in nodes),
        redis.cpu(),
        machine_cpu_seconds(),
        int(memory["used_memory"]),
        int(persistence.get("aof_current_size", 0)),
    )


@dataclass(frozen=True, slots=True)
class Cost:
    """One phase: deliveries that arrived, at what rate, and the CPU seconds they took."""

    deliveries: int
    rate: float  # end to end: first publish to last receipt
    nodes: tuple[float, ...]
    redis: RedisCpu
    machine_share: float  # of all CPUs, over the phase
    redis_memory: int  # bytes Redis holds more after the phase
    aof_bytes: int

    def micros(self, seconds: float) -> float:
        """CPU µs per delivery."""
        return 1e6 * seconds / self.deliveries if self.deliveries else 0.0

    @property
    def node_micros(self) -> float:
        return self.micros(sum(self.nodes))

    @property
    def redis_micros(self) -> float:
        return self.micros(self.redis.total)


def cost(phase: PhaseResult, before: Reading, after: Reading) -> Cost:
    span = after.at - before.at
    cpus = os.cpu_count() or 1
    return Cost(
        phase.stats.unique_ids,
        phase.deliveries_per_second(),
        tuple(b - a for a, b in zip(before.nodes, after.nodes, strict=True)),
        after.redis - before.redis,
        (after.machine - before.machine) / (span * cpus) if span > 0 else 0.0,
        after.redis_memory - before.redis_memory,
        after.aof_bytes - before.aof_bytes,
    )


def report_cost(found: Report, key: str, spent: Cost, names: Sequence[str], on_redis: bool) -> None:
    """The CPU rows of a phase: µs per delivery of each node, of redis-server, and the sum."""
    found.row(
        "CPU from first publish to last delivery: the machine",
        100 * spent.machine_share,
        "% of all CPUs",
        key=f"{key}.machine_pct",
    )
    for name, seconds in zip(names, spent.nodes, strict=True):
        found.row(
            f"  {name} (main + workers), per delivery",
            spent.micros(seconds),
            "µs",
            key=f"{key}.{name}.cpu_us",
        )
    if len(names) > 1:
        found.row("  nodes together, per delivery", spent.node_micros, "µs", key=f"{key}.nodes_us")
    what = "redis-server, per delivery" if on_redis else "redis-server (idle here), per delivery"
    found.row(f"  {what}", spent.redis_micros, "µs", key=f"{key}.redis_us")
    if spent.redis.children:
        found.row(
            "    of it, its forked children (AOF rewrite)", spent.micros(spent.redis.children)
        )
    if on_redis:
        found.row(
            "  nodes + redis-server, per delivery",
            spent.node_micros + spent.redis_micros,
            "µs",
            key=f"{key}.total_us",
        )
        per = spent.deliveries or 1
        found.row(
            "redis-server memory / AOF growth per delivery",
            f"{spent.redis_memory / per:,.0f} / {spent.aof_bytes / per:,.0f} bytes",
        )
        found.results[f"{key}.redis_memory_per_delivery"] = spent.redis_memory / per
        found.results[f"{key}.aof_bytes_per_delivery"] = spent.aof_bytes / per


# --- the phases -----------------------------------------------------------------------------


class Nodes:
    """Several nodes as one engine for a phase (bench/harness/delivery/phase.py's ``Engine``):
    their /metrics summed, alive while every one is. No one process to measure: ``pid`` is
    None, and the CPU is read per node around the phase instead."""

    pid: int | None = None

    def __init__(self, daemons: Sequence[Daemon]) -> None:
        self.daemons = list(daemons)

    def metrics(self) -> dict[str, float]:
        summed: dict[str, float] = {}
        for daemon in self.daemons:
            for series, value in daemon.metrics().items():
                summed[series] = summed.get(series, 0.0) + value
        return summed

    def check_alive(self) -> None:
        for daemon in self.daemons:
            daemon.check_alive()


def wait_for_leases(redis: RedisServer, names: Sequence[str]) -> float | None:
    """Seconds until every node of ``names`` holds a partition's lease and no partition is
    without one (the nodes have split them: each reads its own); None if not within
    SPREAD_TIMEOUT."""
    began = time.monotonic()
    while time.monotonic() - began < SPREAD_TIMEOUT:
        holders = redis.command("EVAL", HOLDERS, "0", "hw:lease:*").decode().split()
        if len(holders) == PARTITIONS and set(holders) == set(names):
            return time.monotonic() - began
        time.sleep(0.1)
    return None


def _delivered(metrics: dict[str, float]) -> float:
    return sum(v for k, v in metrics.items() if k.startswith("hookwire_deliveries_total{"))


def measure_kind(
    args: argparse.Namespace,
    found: Report,
    sink: Sink,
    redis: RedisServer,
    kind: str,
    round_: int,
) -> Cost:
    """One phase of ``kind`` (a key of KINDS): its nodes, a publisher for each, the
    deliveries, and the CPU they took from just before the first publish to the last one."""
    backend = "sqlite" if kind == "sqlite" else "redis"
    names = NODES if kind == "two" else NODES[:1]
    hooks, events = deliveries.spread_hooks(sink.ports[:1], GROUPS, args.hooks_per_event)
    key = f"{kind}.{round_}"
    with ExitStack() as stack:
        nodes = [
            stack.enter_context(
                deliveries.daemon_for(
                    args,
                    hooks,
                    backend,
                    redis_url=redis.url,
                    cluster={"node": name, "lease": f"{LEASE:g}s"},
                    delivery={"timeout": HOOK_TIMEOUT},
                )
            )
            for name in names
        ]
        spread = wait_for_leases(redis, names) if len(names) > 1 else None
        streams = [
            (deliveries.publish_spec(args, node, events), args.hooks_per_event) for node in nodes
        ]
        started = [_delivered(node.metrics()) for node in nodes]
        before = read(nodes, redis)
        engine = nodes[0] if len(nodes) == 1 else Nodes(nodes)
        phase = deliveries.run_phase(args, engine, sink, streams)
        spent = cost(phase, before, read(nodes, redis))
        sent = [_delivered(node.metrics()) - n for node, n in zip(nodes, started, strict=True)]
    if len(nodes) == 1:
        deliveries.report_phase(found, args, f"round {round_}: {KINDS[kind]}", key, phase)
    else:
        _report_nodes(found, args, key, round_, phase, sent, spread)
    deliveries.check_phase(found, args, key, phase)
    report_cost(found, key, spent, names if len(names) > 1 else ["node"], backend == "redis")
    return spent


def _report_nodes(
    found: Report,
    args: argparse.Namespace,
    key: str,
    round_: int,
    phase: PhaseResult,
    sent: Sequence[float],
    spread: float | None,
) -> None:
    stats = phase.stats
    found.section(f"round {round_}: {KINDS['two']}, {args.pub_conns} publisher connections each")
    if spread is None:
        found.row("partitions split between the nodes", f"not within {SPREAD_TIMEOUT:g} s")
        found.note(
            f"{key}: the two nodes had not split the partitions' leases {SPREAD_TIMEOUT:g} s "
            "after the second started: measured anyway"
        )
    else:
        found.row("partitions split between the nodes after", spread, "s", key=f"{key}.spread_s")
    published = [result.ok for result in phase.run.results]
    found.row(
        "events published (200), via " + " / ".join(NODES),
        " / ".join(f"{n:,}" for n in published),
    )
    found.results[f"{key}.events"] = sum(published)
    found.row("deliveries expected / received", f"{phase.expected:,} / {stats.requests:,}")
    found.row("unique webhook-ids", stats.unique_ids, "", key=f"{key}.unique")
    found.row("duplicates", stats.duplicates, "", key=f"{key}.duplicates")
    found.row("lost", max(0, phase.expected - stats.unique_ids), "", key=f"{key}.lost")
    found.row(
        "deliveries sent by " + " / ".join(NODES),
        " / ".join(f"{n:,.0f}" for n in sent),
    )
    found.results[f"{key}.sent_by_node"] = dict(zip(NODES, sent, strict=True))
    found.row(
        "deliveries/s end to end, together",
        phase.deliveries_per_second(),
        "",
        key=f"{key}.deliveries_per_s",
    )
    found.row("deliveries/s while publishing", phase.window_per_second(args.warmup))
    last = phase.last_receipt
    drain = max(0.0, last - phase.end) if last is not None else 0.0
    found.row("last delivery after publishing stopped", drain, "s", key=f"{key}.drain_s")


# --- the rounds and the summary -------------------------------------------------------------


def measure(bench: Bench, found: Report, options: argparse.Namespace) -> None:
    """Every round's three phases, alternating, then the summary against the SQLite node."""
    settings = bench.settings
    rounds = options.rounds or settings.count(2, 1)
    overrides = {
        "hooks_per_event": options.hooks_per_event,
        "pub_conns": options.pub_conns,
        "drain_timeout": options.drain_timeout,
    }
    if options.duration is not None:
        overrides["duration"] = options.duration
    if options.warmup is not None:
        overrides["warmup"] = options.warmup
    args = bench.delivery_args(**overrides)
    persistence = ("--appendonly", "yes", "--appendfsync", options.appendfsync)
    found.params.update(
        rounds=rounds,
        duration=args.duration,
        hooks_per_event=args.hooks_per_event,
        publisher_connections_per_node=args.pub_conns,
        redis_server=" ".join(persistence),
    )
    costs: dict[str, list[Cost]] = {kind: [] for kind in KINDS}
    with RedisServer(persistence) as redis, bench.sink(1, found) as sink:
        version = redis.info("server").get("redis_version", "?")
        found.params["redis_version"] = version
        found.note(
            f"redis-server {version}, started by the scenario with {' '.join(persistence)}"
            + (" (Redis's usual AOF setting)" if persistence[1:] == AOF_EVERYSEC[1:] else "")
        )
        for round_ in range(1, rounds + 1):
            for kind, spent in costs.items():
                spent.append(measure_kind(args, found, sink, redis, kind, round_))
                redis.flushall()  # the next phase starts from an empty Redis
    summarize(found, costs)


def _median(costs: Sequence[Cost], value: str) -> float:
    return statistics.median(float(getattr(spent, value)) for spent in costs)


def summarize(found: Report, costs: dict[str, list[Cost]]) -> None:
    sqlite, redis, two = costs["sqlite"], costs["redis"], costs["two"]
    found.section(f"summary: medians of {len(sqlite)} round(s), ratios to the SQLite node")
    base_rate = _median(sqlite, "rate")
    base_cpu = _median(sqlite, "node_micros")
    for kind, label in KINDS.items():
        rate = _median(costs[kind], "rate")
        found.row(
            f"deliveries/s, {label}",
            f"{rate:,.0f} ({rate / base_rate:.2f}x SQLite)" if base_rate else f"{rate:,.0f}",
        )
        found.results[f"summary.{kind}.deliveries_per_s"] = rate
    found.row(
        "node CPU per delivery, SQLite",
        base_cpu,
        "µs",
        key="summary.sqlite.node_us",
    )
    node = _median(redis, "node_micros")
    server = _median(redis, "redis_micros")
    found.row("node CPU per delivery, Redis", node, "µs", key="summary.redis.node_us")
    found.row("redis-server CPU per delivery", server, "µs", key="summary.redis.redis_us")
    found.row("node + redis-server per delivery", node + server, "µs", key="summary.redis.total_us")
    for round_, (ours, base) in enumerate(zip(redis, sqlite, strict=True), 1):
        if base.node_micros:
            found.row(
                f"round {round_}: Redis node / SQLite node CPU per delivery",
                f"{ours.node_micros / base.node_micros:.2f}x "
                f"({ours.node_micros:,.0f} / {base.node_micros:,.0f} µs)",
            )
    ratio = node / base_cpu if base_cpu else 0.0
    total_ratio = (node + server) / base_cpu if base_cpu else 0.0
    found.row("Redis node / SQLite node (medians)", ratio, "x", key="summary.cpu_ratio")
    found.row(
        "Redis node + redis-server / SQLite node", total_ratio, "x", key="summary.total_ratio"
    )
    each = [statistics.median(spent.micros(spent.nodes[i]) for spent in two) for i in range(2)]
    pair_server = _median(two, "redis_micros")
    found.row(
        "2 nodes: CPU per delivery, " + " / ".join(NODES) + " / redis-server",
        " / ".join(f"{value:,.0f}" for value in (*each, pair_server)) + " µs",
    )
    found.results["summary.two.node_us"] = dict(zip(NODES, each, strict=True))
    found.results["summary.two.redis_us"] = pair_server
    found.row(
        "2 nodes: nodes together", _median(two, "node_micros"), "µs", key="summary.two.nodes_us"
    )
    one = _median(redis, "rate")
    together = _median(two, "rate")
    if one:
        found.row("2 nodes together / 1 node on Redis, deliveries/s", together / one, "x")
        found.results["summary.two_over_one"] = together / one
    found.row("takeover after kill -9", "not measured")
    found.results["summary.takeover"] = "not measured"
    found.note(TAKEOVER)
    found.target("Redis node / SQLite node, CPU per delivery", ratio, "<=", TARGET_CPU_RATIO, "x")


# --- the script and the suite's scenario ----------------------------------------------------


@scenario(
    "cluster", "Redis journal vs SQLite: deliveries/s and CPU per delivery, 1 and 2 nodes", order=55
)
def cluster(bench: Bench, found: Findings) -> None:
    measure(bench, found, make_parser().parse_args([]))
    versus(
        found,
        "deliveries/s, 1 node on Redis",
        ("hookwire, Redis journal", "summary.redis.deliveries_per_s"),
        ("SQLite journal", "summary.sqlite.deliveries_per_s"),
    )
    together = float(found.results.get("summary.two.deliveries_per_s", 0.0))
    found.throughput("hookwire, 2 nodes on one Redis", together, "deliveries/s")
    found.headline(
        "deliveries/s, 2 nodes on one Redis",
        together,
        "deliveries/s",
        baseline="1 node on Redis",
        baseline_value=float(found.results.get("summary.redis.deliveries_per_s", 0.0)),
    )
    found.headline(
        "node CPU per delivery on Redis",
        float(found.results.get("summary.redis.node_us", 0.0)),
        "µs",
        baseline="a node on SQLite",
        baseline_value=float(found.results.get("summary.sqlite.node_us", 0.0)),
    )


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    options = parser.parse_args(argv)
    if redis_path() is None:
        parser.error("redis-server is not installed (Debian package redis-server)")
    report = Report("cluster", {"quick": options.quick, "appendfsync": options.appendfsync})
    report.check_machine(machine_busy())
    bench = Bench(Settings(quick=options.quick, sink=options.sink))
    try:
        measure(bench, report, options)
    except EngineFailed as exc:
        report.fail(str(exc))
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
