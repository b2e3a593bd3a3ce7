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

After the rounds, once, on the same redis-server and sink: **takeover after kill -9**. Two
nodes on Redis as in phase 3 split the partitions (bounded wait); one publisher sends to
node-a only, for ``--duration`` s but at least 4 s (2 s with ``--quick``), and halfway
through node-b is killed with SIGKILL (its main process: its delivery workers exit when it
is gone). From the kill, the partitions' leases are read every 0.1 s: the takeover time is
the kill to the first look at which node-a holds every partition's lease, all of node-b's
taken over (bounded by 3 leases; the first look at which no lease names node-b any more,
its leases lapsed, is shown beside it). Then the receiver is
polled until every acknowledged event's deliveries arrived (at least 2 leases + 10 s, or
``--drain-timeout``). Reported: the takeover time and its ratio to the lease (target: at
most 2 leases, docs/cluster.md), the time from the kill to the last delivery, lost
deliveries (must be 0) and duplicates: these are expected here (what node-b had in flight
is sent again by node-a, under the same webhook-id) and only counted.

Exit 1 (engine failure) if a daemon does not start, dies (node-b after its kill aside) or
does not stop, a publish is not answered 200, a delivery is lost, a delivery is duplicated
(takeover phase aside), or node-b's leases are not given up within 3 leases of its kill.

    .venv/bin/python -m bench.scenarios.cluster
    .venv/bin/python -m bench.scenarios.cluster --quick
    .venv/bin/python bench/run.py cluster
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.harness.daemon import (
    Daemon,
    EngineFailed,
    children,
    machine_busy,
    machine_cpu_seconds,
    tree_cpu_seconds,
)
from bench.harness.delivery import phase as deliveries
from bench.harness.delivery.phase import PhaseResult
from bench.harness.delivery.publishers import run_publishers
from bench.harness.redis_server import (
    AOF_EVERYSEC,
    REPLY_TIMEOUT,
    RedisCpu,
    RedisServer,
    redis_path,
)
from bench.harness.report import Report
from bench.harness.scenario import SINKS, Bench, Settings, Sink, scenario, versus
from bench.harness.suite import Findings
from engine.journal.redis import PARTITIONS

TARGET_CPU_RATIO = 1.3
"""A node on Redis: at most this many times the CPU per delivery of a node on SQLite."""

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

TAKEOVER_TARGET = 2 * LEASE
"""A killed node's partitions change hands within two leases (docs/cluster.md): its leases
lapse within one, and the survivor looks every third of a lease."""

TAKEOVER_TIMEOUT = 3 * LEASE
"""Seconds from the kill within which no lease may name the killed node any more."""

TAKEOVER_PUBLISH = (4.0, 2.0)
"""Seconds of publishing, at least, in the takeover phase (full run, ``--quick``): the
kill is halfway through."""

POLL = 0.1
"""Seconds between looks at the leases after the kill."""

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


def node_for(
    args: argparse.Namespace,
    hooks: list[dict[str, Any]],
    backend: str,
    redis: RedisServer,
    name: str,
) -> Daemon:
    """A node of the scenario (not started): on ``backend``, on Redis as ``name`` with the
    LEASE lease; the HOOK_TIMEOUT hook timeout either way."""
    return deliveries.daemon_for(
        args,
        hooks,
        backend,
        redis_url=redis.url,
        cluster={"node": name, "lease": f"{LEASE:g}s"},
        delivery={"timeout": HOOK_TIMEOUT},
    )


def holders(redis: RedisServer) -> list[str]:
    """The node named by each partition's lease (one word per partition leased)."""
    return redis.command("EVAL", HOLDERS, "0", "hw:lease:*").decode().split()


def wait_for_leases(redis: RedisServer, names: Sequence[str]) -> float | None:
    """Seconds until every node of ``names`` holds a partition's lease and no partition is
    without one (the nodes have split them: each reads its own); None if not within
    SPREAD_TIMEOUT."""
    began = time.monotonic()
    while time.monotonic() - began < SPREAD_TIMEOUT:
        held = holders(redis)
        if len(held) == PARTITIONS and set(held) == set(names):
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
        nodes = [stack.enter_context(node_for(args, hooks, backend, redis, name)) for name in names]
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


# --- takeover after kill -9 ------------------------------------------------------------------


class LeaseWatch:
    """From a node's kill on, in a thread: the partitions' leases every POLL s, until none
    names the killed node and the survivor holds them all, or TAKEOVER_TIMEOUT passed."""

    def __init__(self, redis: RedisServer, killed: str, survivor: str) -> None:
        self.redis = redis
        self.killed = killed
        self.survivor = survivor
        self.killed_at: float | None = None  # monotonic
        self.lapsed: float | None = None  # kill to no lease naming ``killed``
        self.taken: float | None = None  # kill to ``survivor`` holding every lease
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._watch, name="lease-watch", daemon=True)

    def start(self, killed_at: float) -> None:
        self.killed_at = killed_at
        self._thread.start()

    def join(self) -> None:
        """Wait for the watch to end (it ends by itself within TAKEOVER_TIMEOUT)."""
        if self.killed_at is not None:
            self._thread.join(TAKEOVER_TIMEOUT + 10 * POLL + 2 * REPLY_TIMEOUT)
            if self._thread.is_alive():
                raise EngineFailed("the look at the leases after the kill did not end")
        if self.error is not None:
            raise self.error

    def _watch(self) -> None:
        assert self.killed_at is not None
        try:
            while True:
                held = holders(self.redis)
                since = time.monotonic() - self.killed_at
                if self.lapsed is None and self.killed not in held:
                    self.lapsed = since
                if self.taken is None and len(held) == PARTITIONS and set(held) == {self.survivor}:
                    self.taken = since
                if (self.lapsed is not None and self.taken is not None) or (
                    since >= TAKEOVER_TIMEOUT
                ):
                    return
                time.sleep(POLL)
        except BaseException as exc:  # re-raised by join(), in the scenario's thread
            self.error = exc


@dataclass(frozen=True, slots=True)
class Takeover:
    """The takeover phase: node-b killed halfway through publishing to node-a."""

    spread: float | None  # seconds until the two nodes had split the partitions
    publishing: float  # seconds of publishing
    killed_after: float  # seconds into publishing node-b was killed
    events: int  # acknowledged by node-a
    expected: int  # deliveries: events x hooks per event
    requests: int  # deliveries received
    unique: int  # distinct webhook-ids among them
    duplicates: int  # deliveries whose webhook-id had arrived before
    lapsed: float | None  # kill to no lease naming node-b (the takeover time)
    taken: float | None  # kill to node-a holding every partition's lease
    last_delivery: float | None  # kill to the last delivery received
    drain_timeout: float
    workers_left: int  # node-b's delivery workers still running at the end (then killed)
    stop_seconds: float | None = None  # node-a: SIGTERM to exit, at the end

    @property
    def lost(self) -> int:
        return max(0, self.expected - self.unique)


def measure_takeover(
    args: argparse.Namespace, found: Report, sink: Sink, redis: RedisServer, publishing: float
) -> Takeover:
    """Two nodes split the partitions; node-a alone gets the publishes, and node-b is killed
    (SIGKILL) halfway through them. The takeover, then the deliveries, each bounded."""
    survivor, victim = NODES
    hooks, events = deliveries.spread_hooks(sink.ports[:1], GROUPS, args.hooks_per_event)
    watch = LeaseWatch(redis, victim, survivor)
    with ExitStack() as stack:
        node_a = node_for(args, hooks, "redis", redis, survivor)
        stack.enter_context(node_a)  # stopped with SIGTERM at the end, and must exit 0
        # node-b is killed: not a context manager, whose exit calls any death a failure.
        node_b = node_for(args, hooks, "redis", redis, victim)
        stack.callback(node_b.cleanup)
        stack.callback(node_b.stop)  # it has no process once killed: nothing to stop
        node_b.start()
        spread = wait_for_leases(redis, NODES)
        workers = children(node_b.pid)

        def kill_node_b() -> dict[str, float]:
            """Called by run_publishers halfway through publishing."""
            killed_at = time.monotonic()
            node_b.kill()
            watch.start(killed_at)
            return {}

        sink.reset()
        spec = deliveries.publish_spec(args, node_a, events, duration=publishing)
        run = run_publishers([spec], node_a.pid, kill_node_b)
        if watch.killed_at is None:
            node_a.check_alive()
            raise EngineFailed("takeover: node-b was not killed while node-a was published to")
        killed_at = watch.killed_at
        node_a.check_alive()
        watch.join()  # the takeover (bounded), while the deliveries go on
        result = run.results[0]
        if result.error_count:
            found.fail(f"takeover: {result.error_count} publishes were not answered 200")
        expected = result.ok * args.hooks_per_event
        drain_timeout = max(args.drain_timeout, TAKEOVER_TARGET + 10.0)
        deadline = time.monotonic() + drain_timeout
        while time.monotonic() < deadline:
            if sink.count()[1] >= expected:
                break
            node_a.check_alive()  # not node-b's: it is dead on purpose
            time.sleep(0.05)
        stats = sink.stats()
        left = _kill_left_over(workers)
    last = max(stats.times) - killed_at if stats.times else None
    return Takeover(
        spread,
        publishing,
        killed_at - run.start,
        result.ok,
        expected,
        stats.requests,
        stats.unique_ids,
        stats.duplicates,
        watch.lapsed,
        watch.taken,
        last,
        drain_timeout,
        left,
        node_a.stop_seconds,
    )


def _kill_left_over(pids: Sequence[int]) -> int:
    """SIGKILL those of ``pids`` (the killed node's delivery workers) still running; how many
    were. They exit by themselves once their main process is gone."""
    left = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue  # gone
        if stat[stat.rindex(")") + 2 :].split(maxsplit=1)[0] == "Z":
            continue  # exited, not yet reaped
        if "engine.delivery.worker" not in Path(f"/proc/{pid}/cmdline").read_bytes().decode(
            errors="replace"
        ):
            continue  # the pid is another process's now
        left += 1
        with suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return left


def report_takeover(found: Report, takeover: Takeover) -> None:
    found.section(
        f"takeover: {NODES[1]} killed (SIGKILL) while {NODES[0]} is published to, "
        f"{TAKEOVER_TIMEOUT:g} s at most"
    )
    if takeover.spread is None:
        found.row("partitions split between the nodes", f"not within {SPREAD_TIMEOUT:g} s")
        found.note(
            f"takeover: the two nodes had not split the partitions' leases {SPREAD_TIMEOUT:g} s "
            "after the second started: measured anyway"
        )
    else:
        found.row("partitions split between the nodes after", takeover.spread, "s")
    found.row(
        f"publishing to {NODES[0]} only",
        f"{takeover.publishing:g} s, {NODES[1]} killed {takeover.killed_after:.2f} s in",
    )
    found.row(f"events published (200) via {NODES[0]}", takeover.events, "", key="takeover.events")
    if takeover.lapsed is None:
        found.row(f"takeover: no lease names {NODES[1]}", f"not within {TAKEOVER_TIMEOUT:g} s")
        found.fail(
            f"takeover: leases still named {NODES[1]} {TAKEOVER_TIMEOUT:g} s "
            f"({TAKEOVER_TIMEOUT / LEASE:g} leases) after its kill -9"
        )
    else:
        found.row(
            f"takeover: no lease names {NODES[1]} after the kill",
            takeover.lapsed,
            "s",
            key="takeover.seconds",
        )
        found.row(
            f"  takeover / lease ({LEASE:g} s)",
            takeover.lapsed / LEASE,
            "x",
            key="takeover.lease_ratio",
        )
    taken = takeover.taken
    found.row(
        f"{NODES[0]} holds all {PARTITIONS} partitions' leases after the kill",
        f"{taken:.2f} s" if taken is not None else f"not within {TAKEOVER_TIMEOUT:g} s",
    )
    found.results["takeover.all_held_seconds"] = taken
    found.row("deliveries expected / received", f"{takeover.expected:,} / {takeover.requests:,}")
    found.row("unique webhook-ids", takeover.unique, "", key="takeover.unique")
    found.row("lost", takeover.lost, "", key="takeover.lost")
    found.row(
        "duplicates (sent again under the same webhook-id: expected)",
        takeover.duplicates,
        "",
        key="takeover.duplicates",
    )
    last = takeover.last_delivery
    found.row(
        "last delivery after the kill",
        f"{last:.2f} s" if last is not None else "none",
    )
    found.results["takeover.last_delivery_s"] = last
    if takeover.stop_seconds is not None:
        found.row(f"{NODES[0]} stop at the end, SIGTERM to exit", takeover.stop_seconds, "s")
    if takeover.lost:
        found.fail(
            f"takeover: {takeover.lost:,} of {takeover.expected:,} deliveries did not arrive "
            f"within {takeover.drain_timeout:g} s after the takeover"
        )
    elif takeover.unique > takeover.expected:
        found.note(
            f"takeover: {takeover.unique - takeover.expected:,} more deliveries than events "
            "acknowledged x hooks (a publish stored but not answered?)"
        )
    if takeover.workers_left:
        found.note(
            f"takeover: {takeover.workers_left} of {NODES[1]}'s delivery workers still ran "
            "at the end of the phase (killed then)"
        )


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
        publishing = max(args.duration, settings.pick(*TAKEOVER_PUBLISH))
        found.params["takeover_publishing"] = publishing
        takeover = measure_takeover(args, found, sink, redis, publishing)
        redis.flushall()
    report_takeover(found, takeover)
    summarize(found, costs, takeover)


def _median(costs: Sequence[Cost], value: str) -> float:
    return statistics.median(float(getattr(spent, value)) for spent in costs)


def summarize(found: Report, costs: dict[str, list[Cost]], takeover: Takeover) -> None:
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
    seconds = takeover.taken
    if seconds is None:
        found.row("takeover after kill -9", f"not within {TAKEOVER_TIMEOUT:g} s")
        found.fail(
            f"takeover: {NODES[0]} did not hold every partition's lease {TAKEOVER_TIMEOUT:g} s "
            f"after {NODES[1]}'s kill -9"
        )
    else:
        found.row(
            f"takeover after kill -9 ({NODES[0]} holds every partition)",
            f"{seconds:.2f} s ({seconds / LEASE:.2f} leases of {LEASE:g} s)",
        )
    found.results["summary.takeover"] = seconds
    found.results["summary.takeover_leases"] = seconds / LEASE if seconds is not None else None
    found.target("Redis node / SQLite node, CPU per delivery", ratio, "<=", TARGET_CPU_RATIO, "x")
    if seconds is not None:
        found.target(
            f"takeover after kill -9 (lease {LEASE:g} s: 2 leases)",
            seconds,
            "<=",
            TAKEOVER_TARGET,
            "s",
        )


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
    takeover = found.results.get("summary.takeover")
    if isinstance(takeover, float):
        found.headline("takeover after kill -9", takeover, "s")


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
