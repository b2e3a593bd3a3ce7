"""The gateway channel end to end: real sockets, the real client, a real webhook target."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs

import msgpack
import pytest
import trio
import trio.testing

from engine.core.model import EventDraft, OutboxEntry
from engine.daemon import Engine
from engine.gateway.client import Down, GatewayClient, GatewayRefused, open_gateway
from engine.gateway.hub import HELLO_TIMEOUT, GatewayHub
from engine.journal.memory import MemoryJournal
from engine.journal.sqlite import SqliteJournal
from engine.metrics import Metrics
from tests.conftest import ADMIN, PRODUCT_ID, PUBLISHER, WriteConfig, sha
from tests.gateway._msgpack import Map, Raw, frame, nested
from tests.helpers import wait_until
from tests.http.sink import Reply, Sink

GATEWAY = "hw_test_gateway_token_0123456789"
GATEWAY_TOKEN = f"""[[auth.tokens]]
name = "gateway"
sha256 = "{sha(GATEWAY)}"
scopes = ["gateway"]
"""
DEVICE = "0123456789abcdef01234567"
OTHER = "76543210fedcba9876543210"


@dataclass
class Setup:
    engine: Engine
    sink: Sink
    tcp: tuple[str, int]
    unix: Path

    def connect(self, **options: object) -> AsyncIterator[GatewayClient]:
        return open_gateway(GATEWAY, tcp=self.tcp, **options)  # type: ignore[arg-type]

    @property
    def journal(self) -> SqliteJournal:
        assert isinstance(self.engine.journal, SqliteJournal)
        return self.engine.journal


Start = Callable[..., Awaitable[Setup]]


@pytest.fixture
async def start(
    write_config: WriteConfig, tmp_path: Path, nursery: trio.Nursery
) -> AsyncIterator[Start]:
    async def start(gateway: str = "", reply: Reply | None = None) -> Setup:
        sink = Sink(reply or Reply(200, b'{"ok":true}'))
        await nursery.start(sink.serve)
        unix = tmp_path / "gw.sock"
        config = write_config(
            f"""
{GATEWAY_TOKEN}
[gateway]
tcp = "127.0.0.1:0"
unix = "{unix}"
{gateway}

[delivery]
allow_networks = ["127.0.0.0/8"]

[[hooks]]
name = "temps"
event = "temp"
url = "{sink.url}/hook"
""",
            replace={'backend = "memory"': f'backend = "sqlite"\npath = "{tmp_path / "j.db"}"'},
        )
        engine = Engine(config)
        await nursery.start(engine.run)
        assert engine.gateway is not None
        [tcp] = engine.gateway.tcp_addresses
        return Setup(engine, sink, tcp, unix)

    yield start
    nursery.cancel_scope.cancel()


async def next_down(gateway: GatewayClient) -> Down:
    with trio.fail_after(5):
        return await gateway.downlinks.receive()


async def test_a_device_event_calls_its_hook_and_the_answer_comes_back_down(start: Start) -> None:
    setup = await start()
    async with setup.connect(name="gw-1") as gateway:
        assert gateway.welcome["version"] == 1
        seq = await gateway.publish(DEVICE, "temp", "21.5", product=PRODUCT_ID)
        await gateway.wait_acked(seq)
        await wait_until(lambda: len(setup.sink.requests) == 1)
        [request] = setup.sink.requests
        assert parse_qs(request.body.decode())["coreid"] == [DEVICE]
        down = await next_down(gateway)
        assert (down.device, down.name, down.data) == (
            DEVICE,
            "hook-response/temp/0",
            '{"ok":true}',
        )
        assert setup.journal.outbox_depth == 1
        await gateway.ack_downlinks([down.id])
        await wait_until(lambda: setup.journal.outbox_depth == 0)
    assert not gateway.nacks


async def test_the_unix_socket_speaks_the_same_protocol(start: Start) -> None:
    setup = await start()
    async with open_gateway(GATEWAY, unix=setup.unix) as gateway:
        await gateway.wait_acked(await gateway.publish(DEVICE, "temp", "1"))
        assert (await next_down(gateway)).name == "hook-response/temp/0"


async def test_unacknowledged_downlinks_are_sent_again_after_a_reconnect(start: Start) -> None:
    setup = await start()
    async with setup.connect() as gateway:
        await gateway.publish_many(
            [{"device": DEVICE, "name": "temp", "data": str(i)} for i in range(3)]
        )
        first = [await next_down(gateway) for _ in range(3)]
        await gateway.ack_downlinks([first[0].id])  # the gateway dies before the rest
    await wait_until(lambda: setup.journal.outbox_depth == 2)
    async with setup.connect() as gateway:
        again = [await next_down(gateway) for _ in range(2)]
        assert [d.id for d in again] == [d.id for d in first[1:]]
        await gateway.ack_downlinks([d.id for d in again])
        await wait_until(lambda: setup.journal.outbox_depth == 0)


async def test_a_retransmitted_publish_is_stored_and_delivered_once(start: Start) -> None:
    setup = await start()
    async with setup.connect(name="gw-1", first_seq=100) as gateway:
        await gateway.publish(DEVICE, "temp", "a")
        await gateway.wait_acked()
        await gateway.publish(DEVICE, "temp", "b", key="radio-7")
        await gateway.wait_acked()
        sent = dict(gateway.unacked)
    # A new connection of the same gateway resends seq 100 (its ack was "lost"), and the
    # device retransmits its publish under the same key.
    async with setup.connect(name="gw-1", first_seq=100) as gateway:
        await gateway.publish(DEVICE, "temp", "a")
        await gateway.publish(DEVICE, "temp", "b (again)", key="radio-7")
        await gateway.publish(DEVICE, "temp", "c")
        await gateway.wait_acked()
    assert sent == {}
    await wait_until(lambda: len(setup.sink.requests) == 3)
    sent_data = [parse_qs(r.body.decode())["data"] for r in setup.sink.requests]
    assert sent_data == [["a"], ["b"], ["c"]]
    metrics = setup.engine.metrics.render().decode()
    assert "hookwire_gateway_dedupe_hits_total 2.0" in metrics
    assert "hookwire_gateway_publishes_acked_total 5.0" in metrics


async def test_a_lost_connection_leaves_unacked_publishes_to_resend(start: Start) -> None:
    setup = await start()
    async with setup.connect(first_seq=1) as gateway:
        frames = {
            seq: msgpack.packb({"op": "pub", "seq": seq, "device": DEVICE, "name": "temp"})
            for seq in (1, 2)
        }
    async with setup.connect(first_seq=1, resend=frames) as gateway:
        await gateway.wait_acked()
        await gateway.resend(frames)  # once more: already stored
        await gateway.wait_acked()
    await wait_until(lambda: len(setup.sink.requests) == 2)


async def test_invalid_and_forbidden_publishes_are_nacked_and_the_rest_stored(
    write_config: WriteConfig, start: Start
) -> None:
    setup = await start()
    async with setup.connect() as gateway:
        bad = await gateway.publish(DEVICE, "temp", "x" * 2000)
        reserved = await gateway.publish(DEVICE, "hook-response/x", "")
        unknown = await gateway.publish(DEVICE, "temp", "", product=999)
        good = await gateway.publish(DEVICE, "temp", "ok")
        await gateway.wait_acked()
        assert gateway.nacks == {
            bad: ("invalid-event", "data is 2000 bytes; the limit is 1024 bytes"),
            reserved: (
                "invalid-event",
                'name may not start with "hook-": it is reserved for the engine',
            ),
            unknown: ("forbidden", "product 999 not found"),
        }
        assert good not in gateway.nacks
    assert setup.journal.last_id() >= 1


async def test_a_full_disk_nacks_publishes_and_the_gateway_can_send_them_again(
    start: Start,
) -> None:
    setup = await start()
    journal = setup.journal
    pages = await journal.run_in_writer(lambda c: c.execute("PRAGMA page_count").fetchone()[0])
    await journal.run_in_writer(lambda c: c.execute(f"PRAGMA max_page_count={pages}"))
    async with setup.connect() as gateway:
        seqs = await gateway.publish_many(
            [{"device": DEVICE, "name": "nothing", "data": "x" * 1000} for _ in range(50)]
        )
        await gateway.wait_acked()
        refused = [seq for seq in seqs if seq in gateway.nacks]
        assert refused, "the disk never filled"
        code, message = gateway.nacks[refused[0]]
        assert code == "not-stored" and "database or disk is full" in message
    await journal.run_in_writer(lambda c: c.execute("PRAGMA max_page_count=1000000"))
    async with setup.connect() as gateway:
        await gateway.publish(DEVICE, "nothing", "x")
        await gateway.wait_acked()
        assert not gateway.nacks


async def raw_conversation(
    setup: Setup, data: bytes, hello: bool = True
) -> list[dict[str, object]]:
    """Send bytes on a fresh connection (after a good hello) and read frames until EOF."""
    stream = await trio.open_tcp_stream(*setup.tcp)
    async with stream:
        if hello:
            await stream.send_all(
                msgpack.packb({"op": "hello", "token": GATEWAY, "version": 1, "name": "raw"})
            )
        await stream.send_all(data)
        unpacker = msgpack.Unpacker(raw=False)
        frames: list[dict[str, object]] = []
        with trio.fail_after(5):
            while chunk := await stream.receive_some(65536):
                unpacker.feed(chunk)
                frames += list(unpacker)
        return frames


def assert_no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    """A gateway's mistake is its own: the engine logs no error and no traceback for it."""
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not logged, [r.getMessage() for r in logged]


KEY_ARRAY = b"\x81\x91\x01\x01"
"""{[1]: 1}: a map key msgpack cannot make a dict key."""


@pytest.mark.parametrize(
    ("data", "hello", "code"),
    [
        (KEY_ARRAY, False, "malformed"),
        (KEY_ARRAY, True, "malformed"),
        (b"\x81\x81\x01\x01\x01", True, "malformed"),  # {{1: 1}: 1}
        (frame(op="ping", name=Raw(b"\xa2\xff\xfe")), True, "malformed"),  # not UTF-8
        (frame(op="ping", deep=nested(1030)), True, "malformed"),
        (frame(op=[1, 2]), False, "hello-required"),
        (frame(op="hello", token=GATEWAY, version=1, name=Map(((1, 2),))), True, "bad-hello"),
        (b"\xc1\xc1\xc1", True, "malformed"),
        (msgpack.packb([1, 2, 3]), True, "malformed"),
        (msgpack.packb({"op": "pub", "data": "x" * 70_000}), True, "frame-too-large"),
        (msgpack.packb({"op": "pub", "seq": 1}), False, "hello-required"),
        (msgpack.packb({"op": "hello", "token": "wrong", "version": 1}), False, "unauthorized"),
        (msgpack.packb({"op": "hello", "token": PUBLISHER, "version": 1}), False, "forbidden"),
        (
            msgpack.packb({"op": "hello", "token": GATEWAY, "version": 9}),
            False,
            "unsupported-version",
        ),
        (msgpack.packb({"op": "hello", "token": GATEWAY}), False, "bad-hello"),
    ],
)
async def test_a_stream_that_cannot_be_trusted_gets_an_error_and_is_closed(
    start: Start, caplog: pytest.LogCaptureFixture, data: bytes, hello: bool, code: str
) -> None:
    setup = await start()
    frames = await raw_conversation(setup, data, hello)
    assert frames[-1]["op"] == "error" and frames[-1]["error"] == code, frames
    assert isinstance(frames[-1]["message"], str) and frames[-1]["message"]
    assert_no_tracebacks(caplog)
    # and the engine serves the next gateway as before
    async with setup.connect() as gateway:
        await gateway.wait_acked(await gateway.publish(DEVICE, "temp", "after"))


async def test_frame_mistakes_get_an_answer_and_the_connection_stays(start: Start) -> None:
    setup = await start()
    stream = await trio.open_tcp_stream(*setup.tcp)
    async with stream:
        frames = [
            {"op": "hello", "token": GATEWAY, "version": 1},
            {"op": "launch"},
            {"op": "pub", "seq": "one"},
            {"op": "pub", "seq": 5, "device": DEVICE, "name": "temp", "ttl": "soon"},
            {"op": "ping"},
        ]
        await stream.send_all(b"".join(msgpack.packb(f) for f in frames))
        unpacker = msgpack.Unpacker(raw=False)
        got: list[dict[str, object]] = []
        with trio.fail_after(5):
            while len(got) < 5:
                unpacker.feed(await stream.receive_some(65536))
                got += list(unpacker)
    assert [f["op"] for f in got] == ["welcome", "error", "error", "nack", "pong"]
    assert got[1]["message"] == 'unknown op "launch"; expected pub, down-ack or ping'
    assert str(got[2]["message"]).startswith("pub.seq: expected an integer >= 0")
    assert got[3]["seq"] == 5 and str(got[3]["message"]).startswith("ttl must be")


def a_pub(**fields: object) -> bytes:
    return frame(**{"op": "pub", "seq": 7, "device": DEVICE, "name": "temp", **fields})


def case(name: str, data: bytes, answer: tuple[str, str], counted_as: str) -> object:
    return pytest.param(data, answer, counted_as, id=name)


BAD_FRAME = ("error", "bad-frame")
INVALID = ("nack", "invalid-event")


@pytest.mark.parametrize(
    ("data", "answer", "counted_as"),
    [
        case("op-array", frame(op=[1, 2]), BAD_FRAME, "bad"),
        case("op-map", frame(op={"a": 1}), BAD_FRAME, "bad"),
        case("op-deep", frame(op=nested()), BAD_FRAME, "bad"),
        case("op-bin", frame(op=b"ping"), BAD_FRAME, "bad"),
        case("op-uint64", frame(op=2**64 - 1), BAD_FRAME, "bad"),
        case("op-float", frame(op=1.5), BAD_FRAME, "bad"),
        case("op-nil", frame(op=None), BAD_FRAME, "bad"),
        case("op-bool", frame(op=True), BAD_FRAME, "bad"),
        case("op-ext", frame(op=msgpack.ExtType(1, b"ping")), BAD_FRAME, "bad"),
        case("op-timestamp", frame(op=msgpack.Timestamp(0)), BAD_FRAME, "bad"),
        case("down-ack-ids-arrays", frame(op="down-ack", ids=[[1]]), BAD_FRAME, "down-ack"),
        case("pub-seq-deep", frame(op="pub", seq=nested()), BAD_FRAME, "pub"),
        case("pub-ttl-deep", a_pub(ttl=nested()), INVALID, "pub"),
        case("pub-private-map", a_pub(private={"a": [1]}), INVALID, "pub"),
        case("pub-device-deep", a_pub(device=nested()), INVALID, "pub"),
        case("pub-key-bool", a_pub(key=True), INVALID, "pub"),
        case("pub-key-deep", a_pub(key=nested()), INVALID, "pub"),
    ],
)
async def test_a_whole_frame_of_the_wrong_type_is_answered_and_the_connection_stays(
    start: Start,
    caplog: pytest.LogCaptureFixture,
    data: bytes,
    answer: tuple[str, str],
    counted_as: str,
) -> None:
    setup = await start()
    stream = await trio.open_tcp_stream(*setup.tcp)
    async with stream:
        hello = msgpack.packb({"op": "hello", "token": GATEWAY, "version": 1})
        await stream.send_all(hello + data + msgpack.packb({"op": "ping"}))
        unpacker = msgpack.Unpacker(raw=False)
        got: list[dict[str, object]] = []
        with trio.fail_after(5):
            while len(got) < 3:
                chunk = await stream.receive_some(65536)
                assert chunk, f"closed after {got}"
                unpacker.feed(chunk)
                got += list(unpacker)
    assert [f["op"] for f in got] == ["welcome", answer[0], "pong"], got
    assert got[1]["error"] == answer[1] and len(str(got[1]["message"])) <= 200, got[1]
    assert_no_tracebacks(caplog)
    metrics = setup.engine.metrics.render().decode()
    assert f'hookwire_gateway_frames_in_total{{op="{counted_as}"}} 1.0' in metrics
    assert f'hookwire_gateway_frames_out_total{{op="{answer[0]}"}} 1.0' in metrics


async def test_a_connection_closed_mid_frame_changes_nothing(start: Start) -> None:
    setup = await start()
    stream = await trio.open_tcp_stream(*setup.tcp)
    hello = msgpack.packb({"op": "hello", "token": GATEWAY, "version": 1})
    pub = msgpack.packb({"op": "pub", "seq": 1, "device": DEVICE, "name": "temp"})
    await stream.send_all(hello + pub[:10])
    await stream.aclose()
    async with setup.connect() as gateway:
        await gateway.wait_acked(await gateway.publish(DEVICE, "temp", "whole"))
    await wait_until(lambda: len(setup.sink.requests) == 1)
    assert b"whole" in setup.sink.requests[0].body


async def test_a_gateway_that_never_acknowledges_gets_at_most_max_unacked(start: Start) -> None:
    setup = await start("max_unacked = 4")
    hub = setup.engine.gateway
    assert hub is not None
    async with setup.connect() as other:
        async with setup.connect() as slow:
            await slow.publish_many(
                [{"device": DEVICE, "name": "temp", "data": str(i)} for i in range(10)]
            )
            await slow.wait_acked()
            await wait_until(lambda: setup.journal.outbox_depth == 10)
            await wait_until(lambda: len(hub._connections[1].in_flight) == 4)
            # The rest wait in the outbox: not in memory, and not sent to another gateway
            # while the device's own gateway is connected.
            assert len(hub._connections[0].in_flight) == 0
        # The slow gateway is gone: everything goes to the other one.
        taken = []
        for _ in range(10):  # four at a time: acknowledging makes room for the next
            taken.append(await next_down(other))
            await other.ack_downlinks([taken[-1].id])
        assert len({d.id for d in taken}) == 10
        await wait_until(lambda: setup.journal.outbox_depth == 0)


class HeldReads(MemoryJournal):
    """Outbox pages read as SQLite's reader thread reads them: the page is what the outbox
    held when the read began, answered (while ``hold`` is set) after other writes commit."""

    def __init__(self) -> None:
        super().__init__()
        self.hold: trio.Event | None = None

    async def pending_downlinks(self, after: int, limit: int) -> list[OutboxEntry]:
        page = await super().pending_downlinks(after, limit)
        if self.hold is not None:
            await self.hold.wait()
        return page


@dataclass
class MemoryGateway:
    """A gateway on a memory stream, for races that real sockets make a matter of luck."""

    stream: trio.abc.Stream
    downs: list[int]  # the ids of the downlinks it received, in order

    async def ack(self, *ids: int) -> None:
        await self.stream.send_all(msgpack.packb({"op": "down-ack", "ids": list(ids)}))
        await trio.testing.wait_all_tasks_blocked()


async def serve_hub(
    write_config: WriteConfig, nursery: trio.Nursery, journal: MemoryJournal, max_unacked: int
) -> GatewayHub:
    config = write_config(
        f"""
{GATEWAY_TOKEN}
[gateway]
tcp = "127.0.0.1:0"
max_unacked = {max_unacked}
"""
    )
    hub = GatewayHub(config, journal, Metrics())
    await nursery.start(hub.serve)
    await trio.testing.wait_all_tasks_blocked()  # the pump waits for work
    return hub


async def connect_in_memory(hub: GatewayHub, nursery: trio.Nursery) -> MemoryGateway:
    engine_side, gateway_side = trio.testing.memory_stream_pair()
    nursery.start_soon(hub._handle, engine_side)
    hello = {"op": "hello", "token": GATEWAY, "version": 1}
    await gateway_side.send_all(msgpack.packb(hello))
    gateway = MemoryGateway(gateway_side, [])

    async def read() -> None:
        unpacker = msgpack.Unpacker(raw=False)
        while data := await gateway_side.receive_some(65536):
            unpacker.feed(data)
            gateway.downs += [frame["id"] for frame in unpacker if frame["op"] == "down"]

    nursery.start_soon(read)
    await trio.testing.wait_all_tasks_blocked()
    return gateway


def answers(n: int) -> list[EventDraft]:
    return [
        EventDraft("hook-response/temp/0", str(i), 60, True, "2026-11-29T00:00:00.000Z", DEVICE)
        for i in range(n)
    ]


async def test_a_downlink_acknowledged_while_the_outbox_is_read_is_not_sent_again(
    write_config: WriteConfig, nursery: trio.Nursery, mock_clock: trio.testing.MockClock
) -> None:
    journal = HeldReads()
    await journal.append_many(answers(4), to_devices=[DEVICE] * 4)
    hub = await serve_hub(write_config, nursery, journal, max_unacked=2)
    gateway = await connect_in_memory(hub, nursery)
    assert gateway.downs == [1, 2]
    journal.hold = trio.Event()
    await gateway.ack(1)  # room for one more: the pump reads the outbox (2, 3, 4) ...
    await gateway.ack(2)  # ... and 2 leaves the outbox before that page is answered
    journal.hold.set()
    await trio.testing.wait_all_tasks_blocked()
    assert gateway.downs == [1, 2, 3, 4]
    [connection] = hub._connections
    assert sorted(connection.in_flight) == [3, 4]


async def test_a_downlink_the_pump_found_first_is_not_offered_again_by_the_dispatcher(
    write_config: WriteConfig, nursery: trio.Nursery, mock_clock: trio.testing.MockClock
) -> None:
    journal = MemoryJournal()
    hub = await serve_hub(write_config, nursery, journal, max_unacked=4)
    first = await connect_in_memory(hub, nursery)
    # The dispatcher's commit puts an answer in the outbox; before the dispatcher resumes
    # to offer it, a gateway connects and the pump finds it there.
    [event] = await journal.append_many(answers(1), to_devices=[DEVICE])
    second = await connect_in_memory(hub, nursery)
    hub.send_nowait(DEVICE, event)
    await trio.testing.wait_all_tasks_blocked()
    assert first.downs + second.downs == [event.id]


async def test_downlinks_expire_after_their_ttl_and_are_counted(start: Start) -> None:
    setup = await start('downlink_ttl = "50ms"')
    async with setup.connect() as gateway:
        await gateway.wait_acked(await gateway.publish(DEVICE, "temp", "1"))
        await next_down(gateway)
        await wait_until(lambda: setup.journal.outbox_depth == 0, within=5)
    assert "hookwire_gateway_downlinks_expired_total 1.0" in setup.engine.metrics.render().decode()


async def test_a_connection_that_never_says_hello_is_closed_quietly(
    start: Start, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    setup = await start()
    stream = await trio.open_tcp_stream(*setup.tcp)
    async with stream:
        with trio.fail_after(HELLO_TIMEOUT + 5):
            assert await stream.receive_some(1024) == b""  # closed by the engine
    assert "gateway connection failed" not in caplog.text
    async with setup.connect() as gateway:
        await gateway.wait_acked(await gateway.publish(DEVICE, "temp", "after"))


async def test_the_hello_must_come_from_a_gateway_token(start: Start) -> None:
    setup = await start()
    with pytest.raises(
        GatewayRefused, match='forbidden: token "admin" does not have the "gateway"'
    ):
        async with open_gateway(ADMIN, tcp=setup.tcp):
            pass


async def test_a_downlink_goes_to_the_gateway_that_last_published_for_its_device(
    start: Start,
) -> None:
    setup = await start()
    async with setup.connect(name="a") as first, setup.connect(name="b") as second:
        await second.wait_acked(await second.publish(OTHER, "temp", "from b"))
        await first.wait_acked(await first.publish(DEVICE, "temp", "from a"))
        down_b, down_a = await next_down(second), await next_down(first)
        assert (down_a.device, down_b.device) == (DEVICE, OTHER)
        await first.ack_downlinks([down_a.id])
        await second.ack_downlinks([down_b.id])


async def test_a_gateway_faster_than_the_journal_is_slowed_not_buffered(start: Start) -> None:
    setup = await start("max_unacked = 4")
    hub = setup.engine.gateway
    assert hub is not None
    entered, gate = threading.Event(), threading.Event()

    def hold_the_writer(conn: object) -> None:
        entered.set()
        gate.wait(10)

    async with setup.connect() as gateway, trio.open_nursery() as nursery:
        nursery.start_soon(setup.journal.run_in_writer, hold_the_writer)
        await wait_until(entered.is_set)
        await gateway.publish_many(
            [{"device": DEVICE, "name": "nothing", "data": str(i)} for i in range(200)]
        )
        [connection] = hub._connections
        await wait_until(lambda: len(connection._pubs) + connection._committing == 4)
        for _ in range(20):
            await trio.lowlevel.checkpoint()
        assert len(connection._pubs) + connection._committing == 4  # the rest wait in the socket
        assert len(gateway.unacked) == 200
        gate.set()
        await gateway.wait_acked()
    assert not gateway.nacks


async def test_a_gateway_that_never_reads_is_not_buffered_for(start: Start) -> None:
    setup = await start("max_unacked = 8")
    hub = setup.engine.gateway
    assert hub is not None
    stream = await trio.open_tcp_stream(*setup.tcp)
    hello = msgpack.packb({"op": "hello", "token": GATEWAY, "version": 1, "name": "deaf"})
    pubs = b"".join(
        msgpack.packb({"op": "pub", "seq": i, "device": DEVICE, "name": "temp", "data": str(i)})
        for i in range(500)
    )
    async with stream:
        await stream.send_all(hello + pubs)  # and it never reads a byte of what comes back
        await wait_until(lambda: len(setup.sink.requests) == 500, within=20)
        await wait_until(lambda: setup.journal.outbox_depth == 500)
        [deaf] = hub._connections
        assert len(deaf.in_flight) == 8  # the other answers wait on disk, not in memory
        assert len(deaf._out) <= 8
        async with setup.connect() as other:  # the engine serves others as before
            await other.wait_acked(await other.publish(OTHER, "temp", "fine"))
            assert (await next_down(other)).device == OTHER


async def test_the_unix_socket_is_removed_when_the_engine_stops(start: Start) -> None:
    setup = await start()
    assert setup.unix.is_socket()
    setup.engine.shutdown()
    await wait_until(lambda: not setup.unix.exists())
