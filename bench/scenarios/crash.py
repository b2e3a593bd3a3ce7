"""Crashes under load: ``kill -9`` the daemon at random moments, restart it, count what was lost.

One receiver port (bench/harness/receiver.py) is the target of ``--hooks`` hooks; the daemon
(bench/harness/daemon.py) keeps its SQLite journal (``synchronous = full``) in its working
directory, retries after 100 ms, 200 ms, 500 ms, 1 s, and logs at info. For each of
``--crashes`` rounds, on the same journal:

1. the publish client (bench/harness/httpload.py) publishes at a steady ``--rate`` from
   ``--pub-conns`` connections and keeps the id of every 200 answer;
2. the daemon (its main process) is killed with SIGKILL at a random moment, ``--min-crash``
   to ``--max-crash`` seconds into the load (``random.Random(--seed)``); with ``--kill
   both`` (the default) every second round kills one of its delivery worker processes
   instead, and the daemon restarts the worker itself;
3. a killed daemon is started again and its "recovered N deliveries" line is read from its
   log; the receiver is polled until it has the webhook-id of every acknowledged event, for
   each hook (``--drain-timeout``).

Per crash: events acknowledged, publishes without an answer (in flight at the kill: they
may or may not have been stored), deliveries expected and delivered, lost (expected ids
never received: must be 0), duplicates (requests whose id had come before: allowed,
the receiver drops them by id), foreign ids (ids not of this journal, its hooks and its
events: must be 0), and the recovery line.

Exit 1 (engine failure) on a loss, a foreign id, a publish answered with anything but
200, or a daemon that does not start or does not stop on SIGTERM at the end.

    .venv/bin/python -m bench.scenarios.crash
    .venv/bin/python -m bench.scenarios.crash --crashes 20 --rate 4000 --seed 7
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import sqlite3
import sys
import threading
import time
from contextlib import closing
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

from bench.harness.daemon import Daemon, EngineFailed, children, machine_busy, raise_fd_limit

# The delivery benchmark's journal file, hooks and publisher (stamped events).
from bench.harness.delivery.phase import JOURNAL_FILE, spread_hooks
from bench.harness.delivery.publishers import stamped_publishes
from bench.harness.httpload import LoadSpec, run_loads
from bench.harness.receiver import Receiver
from bench.harness.report import Report
from bench.harness.scenario import Bench, options, scenario
from bench.harness.suite import Findings
from engine.core.model import delivery_id, hook_tag

RETRY = ["100ms", "200ms", "500ms", "1s"]
"""Short, so deliveries that failed at the crash come back soon after the restart."""

RECOVERED = re.compile(r"recovered (\d+) deliveries")
POLL = 0.05
"""Seconds between looks at the receiver while waiting for the deliveries of a round."""


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="kill -9 under load; nothing acked may be lost.")
    add = parser.add_argument
    add("--crashes", type=int, default=5, help="crash rounds, on one journal")
    add("--rate", type=float, default=2000.0, help="events/s published during a round")
    add("--hooks", type=int, default=1, help="hooks each event triggers (one receiver port)")
    add("--min-crash", type=float, default=0.5, help="earliest kill, seconds into the load")
    add("--max-crash", type=float, default=3.0, help="latest kill, seconds into the load")
    add("--seed", type=int, default=None, help="seed of the crash moments (default: random)")
    add("--pub-conns", type=int, default=8, help="publisher connections")
    add("--pub-pipeline", type=int, default=4, help="publishes in flight per connection")
    add("--max-events", type=int, default=200_000, help="publish at most this many per round")
    add("--max-in-flight", type=int, default=64, help="engine's [delivery] max_in_flight")
    add("--synchronous", default="full", choices=("full", "normal"), help="SQLite synchronous")
    add("--drain-timeout", type=float, default=30.0, help="seconds to deliver a round's events")
    add(
        "--kill",
        default="both",
        choices=("daemon", "worker", "both"),
        help="what a round kills: the daemon, a delivery worker, or each in turn",
    )
    return parser


@dataclass
class Crash:
    """One round, as the publisher, the receiver and the restarted daemon saw it."""

    at: float  # seconds into the load
    target: str = "daemon"  # what was killed: the daemon, or a delivery worker
    acked: int = 0
    unanswered: int = 0  # publishes in flight at the kill: stored or not
    expected: int = 0  # deliveries: acked x hooks
    delivered: int = 0  # of the expected, received at least once
    lost: int = 0
    duplicates: int = 0
    foreign: int = 0
    recovered: int = 0  # from the restarted daemon's log
    restart_s: float = 0.0  # start to healthy again (recovery included)
    delivered_s: float = 0.0  # healthy to the last expected delivery


def _daemon(args: argparse.Namespace, hooks: list[dict[str, Any]]) -> Daemon:
    return Daemon(
        log_level="info",
        delivery={
            "allow_networks": ["127.0.0.0/8"],
            "max_in_flight": args.max_in_flight,
            "retry": RETRY,
            "timeout": "2s",
        },
        hooks=hooks,
        journal={"backend": "sqlite", "path": JOURNAL_FILE, "synchronous": args.synchronous},
    )


def _epoch(path: Path) -> str:
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as conn:
        return str(conn.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()[0])


def _load_until_killed(
    args: argparse.Namespace, daemon: Daemon, names: tuple[str, ...], crash: Crash
) -> list[int]:
    """Publish at ``--rate`` and kill the daemon ``crash.at`` s in; returns the acked ids."""
    spec = LoadSpec(
        host=daemon.host,
        port=daemon.port,
        connections=args.pub_conns,
        pipeline=args.pub_pipeline,
        duration=crash.at + 1.0,  # the kill ends it before
        warmup=0.0,
        max_requests=args.max_events,
        rate=args.rate,
        track_ids=True,
        keep_ids=True,
        renderer=partial(stamped_publishes, daemon.host, daemon.port, daemon.token, names),
    )
    timers: list[threading.Timer] = []

    killed: list[int] = []

    def kill_worker() -> None:
        workers = children(daemon.pid)
        if workers:
            os.kill(workers[0], signal.SIGKILL)
            killed.append(workers[0])

    kill = daemon.kill if crash.target == "daemon" else kill_worker

    def schedule(start: float) -> None:
        timer = threading.Timer(max(0.0, start + crash.at - time.monotonic()), kill)
        timers.append(timer)
        timer.start()

    try:
        result = run_loads([spec], on_start=schedule).result
    finally:
        for timer in timers:
            timer.join(10)
    if crash.target == "daemon" and daemon.alive():
        raise EngineFailed(f"the load ended before the crash at {crash.at:.2f} s")
    if crash.target == "worker" and not killed:
        raise EngineFailed("the daemon had no delivery worker to kill (is [delivery] workers 0?)")
    statuses = {why: n for why, n in result.errors.items() if why.startswith("status")}
    if statuses:
        raise EngineFailed(f"publishes answered with something but 200: {statuses}")
    crash.acked = len(result.ids)
    crash.unanswered = result.sent - result.answered
    return list(result.ids)


def _wait_delivered(
    args: argparse.Namespace, receiver: Receiver, daemon: Daemon, wanted: set[bytes]
) -> set[bytes]:
    """Poll the receiver until it has every id of ``wanted``, or the drain timeout passes."""
    deadline = time.monotonic() + args.drain_timeout
    ids = receiver.ids()
    while not wanted <= ids and time.monotonic() < deadline:
        daemon.check_alive()
        time.sleep(POLL)
        ids = receiver.ids()
    return ids


def _foreign(ids: set[bytes], epoch: str, tags: list[str], last_id: int) -> int:
    """Ids that no delivery of this journal's events to these hooks can have."""
    pattern = re.compile(rf"msg_{epoch}_([0-9a-f]+)_({'|'.join(tags)})".encode())
    count = 0
    for value in ids:
        match = pattern.fullmatch(value)
        if match is None or not 0 < int(match.group(1), 16) <= last_id:
            count += 1
    return count


def _round(
    args: argparse.Namespace,
    daemon: Daemon,
    receiver: Receiver,
    names: tuple[str, ...],
    tags: list[str],
    crash: Crash,
) -> None:
    duplicates_before = _duplicates(receiver)
    acked = _load_until_killed(args, daemon, names, crash)
    restarted = time.monotonic()
    if crash.target == "daemon":
        daemon.start()
        found = RECOVERED.search(daemon.log_path.read_text(errors="replace"))
        crash.recovered = int(found.group(1)) if found else 0
    else:
        daemon.check_alive()
    healthy = time.monotonic()
    crash.restart_s = healthy - restarted
    epoch = _epoch(daemon.workdir / JOURNAL_FILE)
    wanted = {delivery_id(epoch, i, tag).encode() for i in acked for tag in tags}
    ids = _wait_delivered(args, receiver, daemon, wanted)
    crash.delivered_s = time.monotonic() - healthy
    crash.expected = len(wanted)
    crash.delivered = len(wanted & ids)
    crash.lost = crash.expected - crash.delivered
    crash.duplicates = _duplicates(receiver) - duplicates_before
    crash.foreign = _foreign(ids, epoch, tags, int(str(daemon.health()["last_event_id"])))


def _duplicates(receiver: Receiver) -> int:
    requests, unique, _ = receiver.count()
    return requests - unique


def _report_crash(report: Report, number: int, crash: Crash) -> None:
    what = "kill -9" if crash.target == "daemon" else "kill -9 of a delivery worker"
    report.section(f"crash {number}: {what} at {crash.at:.2f} s into the load")
    report.row("events acked (200)", crash.acked)
    report.row("publishes unanswered at the kill", crash.unanswered)
    report.row("deliveries expected / delivered", f"{crash.expected:,} / {crash.delivered:,}")
    report.row("lost", crash.lost)
    report.row("duplicates (same webhook-id again)", crash.duplicates)
    report.row("foreign webhook-ids", crash.foreign)
    if crash.target == "daemon":
        report.row("recovery log line", f"recovered {crash.recovered} deliveries")
        report.row("restart: start to healthy (recovery included)", crash.restart_s, "s")
    report.row("healthy to every delivery in", crash.delivered_s, "s")
    report.results[f"crash.{number}"] = asdict(crash)
    if crash.lost:
        report.fail(f"crash {number}: {crash.lost} acknowledged deliveries never arrived")
    if crash.foreign:
        report.fail(f"crash {number}: {crash.foreign} webhook-ids of no known delivery")


def _summary(report: Report, crashes: list[Crash]) -> None:
    report.section(f"all {len(crashes)} crashes")
    for label, key in (
        ("events acked", "acked"),
        ("deliveries expected", "expected"),
        ("lost", "lost"),
        ("duplicates", "duplicates"),
        ("foreign webhook-ids", "foreign"),
        ("deliveries recovered", "recovered"),
    ):
        report.row(label, sum(getattr(c, key) for c in crashes), "", key=f"total.{key}")
    lost = sum(c.lost for c in crashes)
    report.target("acknowledged deliveries lost", lost, "<=", 0, "")


def measure(args: argparse.Namespace, report: Report) -> None:
    """The crash rounds of ``args`` (``args.seed`` set), reported into ``report``."""
    rng = random.Random(args.seed)
    crashes: list[Crash] = []
    try:
        with Receiver(1) as receiver:
            hooks, names = spread_hooks(receiver.ports[:1], 1, args.hooks, event="crash")
            tags = [hook_tag(str(hook["name"])) for hook in hooks]
            with _daemon(args, hooks) as daemon:
                for number in range(1, args.crashes + 1):
                    target = args.kill
                    if target == "both":
                        target = "daemon" if number % 2 else "worker"
                    crash = Crash(rng.uniform(args.min_crash, args.max_crash), target)
                    crashes.append(crash)
                    _round(args, daemon, receiver, names, tags, crash)
                    _report_crash(report, number, crash)
            stop = daemon.stop_seconds or 0.0
            report.row("daemon stop after the last round, SIGTERM to exit", stop, "s")
    except EngineFailed as exc:
        report.fail(str(exc))
    if crashes:
        _summary(report, crashes)


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    if not 0 < args.min_crash <= args.max_crash:
        parser.error("need 0 < --min-crash <= --max-crash")
    if args.seed is None:
        args.seed = random.randrange(2**32)
    raise_fd_limit(8192)
    report = Report("crash", vars(args))
    report.check_machine(machine_busy())
    measure(args, report)
    return report.finish()


# --- the suite's scenario ------------------------------------------------------------


@scenario("crash", "kill -9 under load: nothing acknowledged lost", order=100)
def crash(bench: Bench, found: Findings) -> None:
    seed = bench.settings.seed if bench.settings.seed is not None else random.randrange(2**32)
    args = options(
        make_parser(),
        crashes=bench.settings.count(6, 2),
        seed=seed,
        max_crash=bench.settings.pick(3.0, 1.0),
    )
    found.params.update(crashes=args.crashes, rate=args.rate, seed=seed)
    measure(args, found)
    results = found.results
    found.headline("deliveries expected", float(results.get("total.expected", 0)), "")
    found.headline("acknowledged deliveries lost", float(results.get("total.lost", 0)), "")
    found.headline(
        "duplicates (same webhook-id again)", float(results.get("total.duplicates", 0)), ""
    )


if __name__ == "__main__":
    sys.exit(main())
