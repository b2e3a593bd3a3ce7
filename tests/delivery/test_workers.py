"""Delivery worker processes: which worker owns a destination, the messages between the
processes, and real workers started by a real engine, killed, refused and stopped."""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from engine.core.model import delivery_id
from engine.daemon import Engine
from engine.delivery import wire
from engine.delivery.downlink import MemoryDownlink
from engine.delivery.outcomes import JournalOutcomes
from engine.delivery.workers import WorkerPool, origin_key, shard_of, static_origin
from engine.hooks.router import GONE, HookSet
from engine.journal import MemoryJournal
from engine.metrics import DeliveryCounts
from tests.conftest import WriteConfig
from tests.helpers import publish_direct, wait_until
from tests.http.sink import Reply, Sink

# which worker owns a destination (no I/O)


def test_the_origin_of_a_url_template_is_read_once_when_no_tag_comes_before_the_path() -> None:
    assert static_origin("https://Example.COM/x/{{id}}") == "https://example.com:443"
    assert static_origin("http://h:8080") == "http://h:8080"
    assert static_origin("http://h:8080?q={{a}}") == "http://h:8080"
    assert static_origin("http://[::1]:9/{{a}}") == "http://::1:9"
    assert static_origin("http://{{host}}/x") is None
    assert static_origin("http://h:{{port}}/x") is None
    assert static_origin("{{{url}}}") is None
    assert static_origin("ftp://h/x") is None
    assert origin_key("http://h:99999/") is None  # a bad port has no origin


hosts = st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z]{2,5}){0,2}", fullmatch=True)


@given(
    scheme=st.sampled_from(["http", "https", "HTTP"]),
    host=hosts,
    port=st.one_of(st.none(), st.integers(1, 65535)),
    rest=st.text(alphabet="abc/?=&{}", max_size=20),
    value=st.text(alphabet="xyz/?#:", max_size=10),
)
def test_a_static_origin_is_the_origin_of_every_rendering(
    scheme: str, host: str, port: int | None, rest: str, value: str
) -> None:
    authority = host if port is None else f"{host}:{port}"
    template = f"{scheme}://{authority}/{rest}{{{{v}}}}"
    rendered = template.replace("{{v}}", value)
    assert static_origin(template) == origin_key(rendered) is not None


@given(origin=st.one_of(st.none(), st.text()), workers=st.integers(1, 64))
def test_a_shard_is_a_worker_and_the_same_each_time(origin: str | None, workers: int) -> None:
    shard = shard_of(origin, workers)
    assert 0 <= shard < workers
    assert shard == shard_of(origin, workers)


# the messages between the processes (no I/O)

messages = st.lists(
    st.tuples(
        st.sampled_from([wire.DELIVER, wire.OUTCOMES, wire.READY, wire.STOP]),
        st.lists(
            st.one_of(st.integers(-(2**63), 2**64 - 1), st.text(), st.binary(), st.none()),
            max_size=5,
        ),
    ).map(lambda m: [m[0], *m[1]]),
    min_size=1,
    max_size=10,
)


@given(messages, st.lists(st.integers(1, 50), max_size=20))
def test_messages_come_out_as_they_went_in_however_the_bytes_are_split(
    sent: list[list[object]], cuts: list[int]
) -> None:
    data = b"".join(wire.pack(*message) for message in sent)
    decoder = wire.Decoder()
    received: list[list[object]] = []
    at = 0
    for size in [*cuts, len(data)]:
        decoder.feed(data[at : at + size])
        at += size
        received.extend(decoder)
    assert received == sent


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"\xc1", "not msgpack"),
        (wire.pack(1), "expected [kind, ...], got [1]"),
        (b"\x07", "expected [kind, ...], got 7"),
    ],
)
def test_bytes_that_are_no_message_are_a_clear_error(data: bytes, error: str) -> None:
    decoder = wire.Decoder()
    decoder.feed(data)
    with pytest.raises(wire.WireError) as caught:
        list(decoder)
    assert error in str(caught.value)


def test_attempts_and_drafts_of_the_wrong_shape_are_a_clear_error() -> None:
    with pytest.raises(wire.WireError, match="an attempt is 11 fields"):
        wire.unpack_attempt([1, 2])
    with pytest.raises(wire.WireError, match="an event is 8 fields"):
        wire.unpack_event([1])
    with pytest.raises(wire.WireError, match="an event draft is 8 fields"):
        wire.unpack_draft(["name"])


# real worker processes


@dataclass
class Setup:
    engine: Engine
    sinks: list[Sink]

    @property
    def journal(self) -> MemoryJournal:
        journal = self.engine.journal
        assert isinstance(journal, MemoryJournal)
        return journal

    def ids(self) -> list[str]:
        return [
            (r.header(b"webhook-id") or b"").decode() for sink in self.sinks for r in sink.requests
        ]


def hooks_to(sinks: list[Sink], workers: int, extra: str = "") -> str:
    text = f'\n[delivery]\nallow_networks = ["127.0.0.0/8"]\nworkers = {workers}\n'
    for i, sink in enumerate(sinks):
        text += f'\n[[hooks]]\nname = "h{i}"\nevent = "temp"\nurl = "{sink.url}/h{i}"\n{extra}\n'
    return text


@pytest.fixture
async def start(write_config: WriteConfig, nursery: trio.Nursery) -> AsyncIterator[object]:
    async def start(sinks: list[Sink], workers: int, extra: str = "") -> Setup:
        for sink in sinks:
            await nursery.start(sink.serve)
        engine = Engine(write_config(hooks_to(sinks, workers, extra)))
        await nursery.start(engine.run)
        return Setup(engine, sinks)

    yield start
    nursery.cancel_scope.cancel()


async def test_workers_deliver_every_event_under_its_id(start) -> None:
    setup: Setup = await start([Sink(), Sink(), Sink()], workers=2)
    pool = setup.engine.workers
    assert pool is not None and setup.engine.dispatcher is None
    events = [await publish_direct(setup.engine, "temp", str(i)) for i in range(20)]
    await wait_until(lambda: len(setup.ids()) == 60, within=20)
    epoch = setup.journal.epoch
    hooks = setup.engine.hooks.hooks
    assert sorted(setup.ids()) == sorted(
        delivery_id(epoch, event.id, hook.tag) for event in events for hook in hooks
    )
    for i, sink in enumerate(setup.sinks):
        assert [r.target for r in sink.requests] == [f"/h{i}"] * 20
    # Outcomes come back: counted, and the hook-response events stored.
    counts = setup.engine.metrics.delivery_counts
    await wait_until(lambda: sum(counts.outcomes.values()) == 60)
    assert {hook: n for (hook, _), n in counts.outcomes.items()} == {"h0": 20, "h1": 20, "h2": 20}
    assert counts.attempts == {"2xx": 60}
    await wait_until(lambda: len(pool.destinations) == 3, within=5)
    metrics = setup.engine.metrics.render().decode()
    for sink in setup.sinks:
        assert f'hookwire_destination_in_flight{{destination="{sink.url}"}} 0.0' in metrics
    assert len(set(pool.pids)) == 2 and os.getpid() not in pool.pids


async def test_destination_gauges_show_what_a_worker_has_queued_and_in_flight(start) -> None:
    setup: Setup = await start([Sink("silent")], workers=1, extra="max_in_flight = 2")
    for i in range(5):
        await publish_direct(setup.engine, "temp", str(i))
    url = setup.sinks[0].url
    expected = [
        f'hookwire_destination_in_flight{{destination="{url}"}} 2.0',
        f'hookwire_destination_queue_depth{{destination="{url}"}} 3.0',
    ]

    def shown() -> bool:
        metrics = setup.engine.metrics.render().decode()
        return all(line in metrics for line in expected)

    await wait_until(shown, within=10)


async def test_a_killed_worker_loses_nothing_and_repeats_carry_the_same_id(
    start, caplog: pytest.LogCaptureFixture
) -> None:
    sink = Sink(Reply(200, delay=0.02))
    setup: Setup = await start([sink], workers=1, extra="max_in_flight = 2")
    pool = setup.engine.workers
    assert pool is not None
    events = [await publish_direct(setup.engine, "temp", str(i)) for i in range(40)]
    await wait_until(lambda: len(sink.requests) >= 5, within=20)
    [pid] = pool.pids
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    expected = {
        delivery_id(setup.journal.epoch, e.id, setup.engine.hooks.hooks[0].tag) for e in events
    }
    await wait_until(lambda: set(setup.ids()) == expected, within=30)
    assert pool.restarts == 1 and pool.pids != [pid]
    counts = setup.engine.metrics.delivery_counts
    await wait_until(lambda: counts.outcomes["h0", "delivered"] == 40, within=10)
    died = [r.getMessage() for r in caplog.records if "delivery worker 0" in r.getMessage()]
    assert any(f"(pid {pid}) closed its socket (exit status -9)" in line for line in died), died


async def test_a_worker_that_cannot_start_is_one_log_line_and_the_engine_serves_on(
    write_config: WriteConfig, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    sink = Sink()
    await nursery.start(sink.serve)
    config = write_config(hooks_to([sink], workers=1))
    engine = Engine(config)
    # The file changes after the daemon read it: a worker would not have the daemon's hooks.
    config.path.write_text(config.path.read_text().replace("/h0", "/elsewhere"))
    await nursery.start(engine.run)
    pool = engine.workers
    assert pool is not None
    await wait_until(lambda: pool.restarts >= 2, within=20)  # tried three times: one line
    [line] = [
        r.getMessage()
        for r in caplog.records
        if "could not start" in r.getMessage() and r.levelno == logging.ERROR
    ]
    assert "has changed since the daemon started: its hooks differ" in line
    assert "the 0 deliveries it held go to the next one" in line
    event = await publish_direct(engine, "temp", "1")  # the main process serves on
    assert engine.journal.last_id() == event.id
    assert not any(r.exc_info for r in caplog.records)
    nursery.cancel_scope.cancel()


async def test_410_in_one_worker_disables_the_hook_in_the_main_process(start) -> None:
    setup: Setup = await start([Sink(Reply(410))], workers=1)
    await publish_direct(setup.engine, "temp", "1")
    await wait_until(lambda: setup.engine.hooks.why_disabled("h0") == GONE, within=20)
    await publish_direct(setup.engine, "temp", "2")  # routed nowhere now
    await trio.sleep(0.2)
    assert len(setup.sinks[0].requests) == 1


async def test_a_stop_lets_attempts_in_flight_finish_and_report(
    write_config: WriteConfig, tmp_path: Path
) -> None:
    sink = Sink(Reply(200, delay=0.5))
    async with trio.open_nursery() as outer:
        await outer.start(sink.serve)
        engine = Engine(
            write_config(
                hooks_to([sink], workers=1), replace={'level = "warning"': 'level = "debug"'}
            )
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(engine.run)
            for i in range(3):
                await publish_direct(engine, "temp", str(i))
            await wait_until(lambda: len(sink.requests) == 3, within=20)
            nursery.cancel_scope.cancel()  # while the three answers are on their way
        journal = engine.journal
        assert isinstance(journal, MemoryJournal)
        assert [a.state for a in journal.attempts] == ["delivered"] * 3
        outer.cancel_scope.cancel()


@pytest.fixture(autouse=True)
def _info_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, "hookwire.delivery")


FAKE_WORKER = """
import socket, sys
fd = int(sys.argv[sys.argv.index("--fd") + 1])
with socket.socket(fileno=fd) as sock:
    sock.recv(65536)  # the start message
    sock.sendall(bytes.fromhex(sys.argv[1]))
"""


@pytest.mark.parametrize(
    ("sent", "logged"),
    [
        (b"\xc1", "sent something unreadable (not msgpack"),
        (wire.pack(wire.READY) + wire.pack("shrug"), "sent something unreadable (unknown message"),
        (wire.pack(wire.OUTCOMES, [[1]], [], []), "sent something unreadable (an attempt is 11"),
        (wire.pack(wire.OUTCOMES, 5), "sent a message this daemon cannot use"),
        (wire.pack(wire.READY), "closed its socket"),
        (b"", "cannot start: [Errno 2] No such file or directory"),
    ],
)
async def test_a_worker_that_misbehaves_is_replaced_and_the_pool_serves_on(
    write_config: WriteConfig, caplog: pytest.LogCaptureFixture, sent: bytes, logged: str
) -> None:
    config = write_config(hooks_to([], workers=1))
    journal = MemoryJournal()
    pool = WorkerPool(
        config,
        HookSet(config.hooks),
        JournalOutcomes(journal, MemoryDownlink()),
        DeliveryCounts(),
        epoch=journal.epoch,
        workers=1,
        command=(sys.executable, "-c", FAKE_WORKER, sent.hex())
        if sent
        else ("/nonexistent/python",),
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(pool.run)
        await wait_until(lambda: pool.restarts >= 1, within=20)
        nursery.cancel_scope.cancel()
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(lines) == 1 and logged in lines[0], lines


async def test_released_hooks_are_dropped_in_the_workers_and_by_the_pool(start) -> None:
    # Cluster mode: the partition's new owner sends these; this node must not, nor send
    # them again when a worker restarts.
    sink = Sink(Reply(200, delay=1))
    setup: Setup = await start([sink], workers=1, extra="ordered = true")
    pool = setup.engine.workers
    assert pool is not None
    for i in range(4):
        await publish_direct(setup.engine, "temp", str(i), device="dev1")
    await wait_until(lambda: sink.in_flight == 1, within=10)
    await pool.release({"h0"})
    await wait_until(lambda: pool.unsettled == 0, within=10)
    await trio.sleep(1.5)
    assert len(sink.requests) == 1
