"""Crash safety of the SQLite journal: `kill -9` under load, restart, nothing acknowledged lost.

The daemon runs as a subprocess with a sink on loopback as its only hook's target. Events
are published at a steady rate, each with data of its own, until the daemon is killed
with SIGKILL at a random moment; it is then started again on the same journal. Every
event answered 200 must reach the sink at least once, under the ``webhook-id`` its event
id gives, and every repeat of a delivery must carry the id of the first one.

The crash moments come from a seeded ``random.Random``; the seed is printed, and set with
``HOOKWIRE_CRASH_SEED`` to replay a failing run.
"""

from __future__ import annotations

import os
import random
import re
import signal
import sqlite3
import subprocess
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import trio

from engine.core.model import delivery_id, hook_tag
from tests.conftest import ADMIN, BASE_CONFIG
from tests.helpers import HOOKWIRE, ROOT
from tests.http.sink import Reply, Sink

HOOK = "crash"

CRASHES = 5
"""Crash moments per run: each costs a daemon start and a backlog (about 1 s in all)."""

RATE = 300.0
"""Events per second, all publishers together: about twice what the sink takes."""

PUBLISHERS = 4
"""Concurrent publishing connections, so some publishes are in flight at the kill."""

CRASH_WINDOW = (0.0, 0.6)
"""Seconds from the first acknowledged publish to the kill, drawn uniformly."""

MAX_PER_PUBLISHER = 500
"""Bounds each publisher's loop whatever the timing (RATE x the window is far less)."""

SINK_DELAY = 0.005
"""Seconds the sink holds each answer. With one connection to it (``max_in_flight = 1``)
deliveries fall behind the acknowledgements, so at the kill some acknowledged events are
only queued in memory (a journal that lost them would fail here) and one is in flight."""

DELIVERED_WITHIN = 10.0
"""Seconds a restarted daemon gets to deliver every acknowledged event."""

RETRY = '["50ms", "100ms", "200ms", "400ms", "800ms"]'
"""Short, so deliveries that failed at the crash come back at once after the restart."""


@dataclass
class Round:
    """One crash: what the publishers learnt before the daemon died."""

    number: int
    acked: dict[str, int] = field(default_factory=dict)  # data -> event id (200 answers)
    unknown: set[str] = field(default_factory=set)  # sent, no answer: stored or not
    refused: list[str] = field(default_factory=list)  # answered, but not 200
    first_ack: trio.Event = field(default_factory=trio.Event)


class Daemon:
    """`hookwire run` as a subprocess whose log is read to the end by a task of its own."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.log = bytearray()
        self.url = ""

    async def read_log(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Keep reading stderr (a full pipe would stall the daemon); started once serving."""
        stderr = self.process.stderr
        assert stderr is not None
        started = False
        while chunk := await stderr.receive_some(65536):
            self.log += chunk
            if not started and (found := re.search(rb"serving (http://\S+:\d+)", self.log)):
                self.url = found.group(1).decode()
                started = True
                task_status.started()
        if not started:
            raise AssertionError(f"the daemon exited before serving:\n{self.log.decode()}")


class Daemons:
    """Starts `hookwire run` on one config as often as asked; kills any left at the end."""

    def __init__(self, config: Path, nursery: trio.Nursery) -> None:
        self._config = config
        self._nursery = nursery
        self._processes: list[trio.Process] = []

    async def start(self) -> Daemon:
        """A new daemon on the same journal, once it logs that it is serving."""
        process = await trio.lowlevel.open_process(
            [*HOOKWIRE, "run", "--config", str(self._config)], stderr=subprocess.PIPE, cwd=ROOT
        )
        self._processes.append(process)
        daemon = Daemon(process)
        with trio.fail_after(15):
            await self._nursery.start(daemon.read_log)
        return daemon

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            for process in self._processes:
                if process.returncode is None:
                    process.kill()
                await process.wait()


@asynccontextmanager
async def open_daemons(config: Path, nursery: trio.Nursery) -> AsyncIterator[Daemons]:
    daemons = Daemons(config, nursery)
    try:
        yield daemons
    finally:
        await daemons.aclose()


def write_config(tmp_path: Path, sink_url: str) -> Path:
    old = '[journal]\nbackend = "memory"\n'
    assert old in BASE_CONFIG
    journal = (
        f'[journal]\nbackend = "sqlite"\npath = "{tmp_path / "journal.db"}"\nsynchronous = "full"\n'
    )
    hooks = (
        f'\n[delivery]\nallow_networks = ["127.0.0.0/8"]\nmax_in_flight = 1\nretry = {RETRY}\n'
        'timeout = "2s"\n'
        f'\n[[hooks]]\nname = "{HOOK}"\nevent = "crash/"\nurl = "{sink_url}/hook"\n'
    )
    text = BASE_CONFIG.replace(old, journal).replace('level = "warning"', 'level = "info"')
    path = tmp_path / "engine.toml"
    path.write_text(text + hooks)
    return path


async def publish_steadily(url: str, round_: Round, first: int, crashed: trio.Event) -> None:
    """POST every ``PUBLISHERS / RATE`` seconds until the daemon stops answering."""
    period = PUBLISHERS / RATE
    headers = {"Authorization": f"Bearer {ADMIN}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=5) as client:
        start = trio.current_time()
        for n in range(MAX_PER_PUBLISHER):
            if crashed.is_set():
                return
            data = f"r{round_.number}-{first + n * PUBLISHERS}"
            try:
                response = await client.post(
                    "/v1/devices/events", data={"name": "crash/x", "data": data}
                )
            except httpx.TransportError:
                round_.unknown.add(data)
                return
            if response.status_code == 200:
                round_.acked[data] = response.json()["id"]
                round_.first_ack.set()
            else:
                round_.refused.append(f"{data}: {response.status_code} {response.text}")
            await trio.sleep_until(start + (n + 1) * period)


async def crash_under_load(daemon: Daemon, round_: Round, crash_after: float) -> None:
    """Publish from ``PUBLISHERS`` connections; ``kill -9`` the daemon after ``crash_after`` s."""
    crashed = trio.Event()
    with trio.fail_after(crash_after + 10):
        async with trio.open_nursery() as publishers:
            for i in range(PUBLISHERS):
                publishers.start_soon(publish_steadily, daemon.url, round_, i, crashed)
            # The crash moment counts from the first acknowledgement, so every round has one.
            await round_.first_ack.wait()
            await trio.sleep(crash_after)
            daemon.process.kill()
            crashed.set()
        await daemon.process.wait()
    assert daemon.process.returncode == -signal.SIGKILL


def deliveries_by_data(sink: Sink) -> dict[str, list[str]]:
    """The ``webhook-id`` of every request the sink got, in arrival order, by event data."""
    seen: dict[str, list[str]] = defaultdict(list)
    for request in sink.requests:
        [data] = parse_qs(request.body.decode())["data"]
        webhook_id = request.header(b"webhook-id")
        seen[data].append(webhook_id.decode() if webhook_id is not None else "")
    return seen


def check_round(round_: Round, seen: dict[str, list[str]], epoch: str, seed: int) -> None:
    where = f"(seed {seed}, crash {round_.number}; HOOKWIRE_CRASH_SEED={seed} replays it)"
    assert not round_.refused, f"publishes refused {where}: {round_.refused[:5]}"
    assert round_.acked, f"no publish was acknowledged before the crash {where}"
    tag = hook_tag(HOOK)
    for data, event_id in round_.acked.items():
        expected = delivery_id(epoch, event_id, tag)
        assert seen.get(data), f"acknowledged event {event_id} ({data}) never delivered {where}"
        assert set(seen[data]) == {expected}, (
            f"event {event_id} ({data}) delivered as {seen[data]}, expected {expected} {where}"
        )
    for data in round_.unknown:  # stored or not: if delivered, still under one id
        assert len(set(seen.get(data, ()))) <= 1, f"{data} under several ids: {seen[data]} {where}"


async def wait_for_deliveries(sink: Sink, wanted: set[str]) -> None:
    """Until the sink has every event of ``wanted``, or ``DELIVERED_WITHIN`` has passed."""
    with trio.move_on_after(DELIVERED_WITHIN):
        # The deliveries arrive over a socket from another process: poll the sink's records.
        while not wanted <= deliveries_by_data(sink).keys():  # noqa: ASYNC110
            await trio.sleep(0.01)


def describe(round_: Round, seen: dict[str, list[str]], daemon: Daemon) -> str:
    found = re.search(rb"recovered \d+ deliveries", daemon.log)
    ours = [seen.get(data, []) for data in (*round_.acked, *round_.unknown)]
    repeats = sum(max(0, len(ids) - 1) for ids in ours)
    return (
        f"{len(round_.acked)} acked, {len(round_.unknown)} unanswered, {repeats} delivered again, "
        + (found.group(0).decode() if found else "nothing to recover")
    )


def journal_epoch(path: Path) -> str:
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        return str(conn.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()[0])


async def test_kill_9_under_load_loses_no_acknowledged_event(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    seed = int(os.environ.get("HOOKWIRE_CRASH_SEED", random.randrange(2**32)))
    print(f"crash test seed: {seed} (HOOKWIRE_CRASH_SEED={seed} replays it)")
    rng = random.Random(seed)
    sink = Sink(Reply(200, delay=SINK_DELAY))
    await nursery.start(sink.serve)
    config = write_config(tmp_path, sink.url)
    async with open_daemons(config, nursery) as daemons:
        daemon = await daemons.start()
        epoch = await trio.to_thread.run_sync(journal_epoch, tmp_path / "journal.db")
        for round_ in (Round(n) for n in range(CRASHES)):
            await crash_under_load(daemon, round_, rng.uniform(*CRASH_WINDOW))
            daemon = await daemons.start()
            await wait_for_deliveries(sink, set(round_.acked))
            print(f"crash {round_.number}: {describe(round_, deliveries_by_data(sink), daemon)}")
            check_round(round_, deliveries_by_data(sink), epoch, seed)
        daemon.process.send_signal(signal.SIGTERM)
        with trio.fail_after(5):
            code = await daemon.process.wait()
    assert code == 0, f"seed {seed}: exit {code} after SIGTERM:\n{daemon.log.decode()}"
    assert b"Traceback" not in daemon.log, daemon.log.decode()
