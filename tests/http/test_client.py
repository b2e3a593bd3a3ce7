"""The connection pool against a real server on loopback: reuse, limits, failures by phase, TLS."""

from __future__ import annotations

import random
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
import trustme

from engine.http.client import (
    MAX_BODY_BYTES,
    ConnectError,
    ConnectionBudget,
    ConnectionPool,
    ConnectTimeout,
    HttpClientError,
    LocalProtocolError,
    Origin,
    PoolClosed,
    ReadError,
    ReadTimeout,
    RemoteProtocolError,
    Response,
    TLSError,
    WriteError,
)
from tests.helpers import wait_until
from tests.http.sink import Behaviour, Flood, Raw, Received, Reply, Sink, flood_byte

MakePool = Callable[..., ConnectionPool]


@pytest.fixture
async def sink(nursery: trio.Nursery) -> Sink:
    sink = Sink()
    await nursery.start(sink.serve)
    return sink


@pytest.fixture
async def make_pool() -> AsyncIterator[MakePool]:
    """Pools to 127.0.0.1 under the name "localhost"; all closed after the test."""
    pools: list[ConnectionPool] = []

    def make(port: int, scheme: str = "http", **options: Any) -> ConnectionPool:
        pool = ConnectionPool(Origin(scheme, "localhost", port), address="127.0.0.1", **options)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        await pool.aclose()


def state(pool: ConnectionPool) -> str:
    return repr(pool).split(" ", 2)[2].rstrip(">")


async def get(pool: ConnectionPool, target: str = "/", seconds: float = 10) -> Response:
    return await pool.request("GET", target, [], timeout=seconds)


def hold(sink: Sink, target: str) -> trio.Event:
    """Have the sink hold its answer to ``target`` until the event is set; every answer's
    body is its request's target."""
    gate = trio.Event()

    async def decide(request: Received) -> Behaviour:
        if request.target == target:
            await gate.wait()
        return Reply(body=request.target.encode())

    sink.behaviour = decide
    return gate


async def serve_loopback(
    nursery: trio.Nursery, handler: Callable[[trio.SocketStream], Awaitable[object]]
) -> int:
    """The port of a listener on 127.0.0.1 that hands every connection to ``handler``."""
    [listener] = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
    port: int = listener.socket.getsockname()[1]
    return port


def free_port() -> int:
    """A port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# Requests and responses


async def test_request_is_rendered_and_response_read(sink: Sink, make_pool: MakePool) -> None:
    sink.script(Reply(201, b'{"ok":true}', (("content-type", "application/json"),)))
    pool = make_pool(sink.port)
    response = await pool.request(
        "POST", "/hook?a=1", [("x-sig", "abc")], b'{"temp":21.5}', timeout=10
    )
    assert response.status == 201
    assert response.body == b'{"ok":true}'
    assert response.header(b"content-type") == b"application/json"
    assert response.header(b"x-missing") is None
    assert not response.truncated
    [received] = sink.requests
    assert (received.method, received.target, received.body) == (
        "POST",
        "/hook?a=1",
        b'{"temp":21.5}',
    )
    assert received.headers[0] == (b"host", f"localhost:{sink.port}".encode())
    assert received.header(b"x-sig") == b"abc"
    assert received.header(b"content-length") == b"13"


async def test_head_request(sink: Sink, make_pool: MakePool) -> None:
    sink.script(Raw(b"HTTP/1.1 200 OK\r\ncontent-length: 500\r\n\r\n"))
    pool = make_pool(sink.port)
    response = await pool.request("HEAD", "/", [], timeout=10)
    assert (response.status, response.body) == (200, b"")
    assert (await get(pool)).status == 200
    assert sink.connections_accepted == 1


async def test_bad_request_fails_before_connecting(sink: Sink, make_pool: MakePool) -> None:
    pool = make_pool(sink.port)
    with pytest.raises(LocalProtocolError, match="x-sig"):
        await pool.request("GET", "/", [("x-sig", "a\r\nb: c")], timeout=10)
    assert sink.connections_accepted == 0
    assert state(pool) == "active=0 idle=0 waiting=0"


async def test_no_file_descriptor_left_is_a_connect_error(
    sink: Sink, make_pool: MakePool, monkeypatch: pytest.MonkeyPatch
) -> None:
    def exhausted(*args: object) -> object:
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(trio.socket, "socket", exhausted)
    pool = make_pool(sink.port)
    with pytest.raises(ConnectError, match="too many open files"):
        await get(pool)
    assert state(pool) == "active=0 idle=0 waiting=0"


def test_origin() -> None:
    assert str(Origin("https", "api.example.com", 443)) == "https://api.example.com"
    assert str(Origin("http", "api.example.com", 80)) == "http://api.example.com"
    assert str(Origin("https", "api.example.com", 8443)) == "https://api.example.com:8443"
    assert str(Origin("http", "::1", 8080)) == "http://[::1]:8080"
    with pytest.raises(ValueError, match="ftp"):
        Origin("ftp", "x", 21)


# Keep-alive and limits


async def test_one_connection_serves_sequential_requests(sink: Sink, make_pool: MakePool) -> None:
    pool = make_pool(sink.port)
    for i in range(20):
        assert (await get(pool, f"/{i}")).status == 200
    assert sink.connections_accepted == 1
    assert [r.target for r in sink.requests] == [f"/{i}" for i in range(20)]
    assert repr(pool) == f"<ConnectionPool http://localhost:{sink.port} active=0 idle=1 waiting=0>"


async def test_connection_close_from_the_server_is_honoured(
    sink: Sink, make_pool: MakePool
) -> None:
    sink.behaviour = Reply(keep_alive=False)
    pool = make_pool(sink.port)
    for _ in range(3):
        assert (await get(pool)).status == 200
        assert state(pool) == "active=0 idle=0 waiting=0"
    assert sink.connections_accepted == 3


async def test_max_connections_is_respected_under_concurrency(
    sink: Sink, make_pool: MakePool, autojump_clock: trio.testing.MockClock
) -> None:
    sink.behaviour = Reply(delay=1)
    pool = make_pool(sink.port, max_connections=4)
    statuses: list[int] = []

    async def one(i: int) -> None:
        statuses.append((await get(pool, f"/{i}", seconds=1000)).status)

    async with trio.open_nursery() as nursery:
        for i in range(50):
            nursery.start_soon(one, i)
        await trio.testing.wait_all_tasks_blocked()
        assert state(pool) == "active=4 idle=0 waiting=46"
    assert statuses == [200] * 50
    assert sink.connections_accepted == 4
    assert sink.max_in_flight == 4
    assert state(pool) == "active=0 idle=4 waiting=0"


async def test_waiting_requests_are_served_in_order(sink: Sink, make_pool: MakePool) -> None:
    gate = hold(sink, "/0")
    pool = make_pool(sink.port, max_connections=1)
    bodies: list[bytes] = []

    async def one(i: int) -> None:
        bodies.append((await get(pool, f"/{i}")).body)

    async with trio.open_nursery() as nursery:
        for i in range(6):
            nursery.start_soon(one, i)
            await trio.testing.wait_all_tasks_blocked()
        assert state(pool) == "active=1 idle=0 waiting=5"
        gate.set()
    assert bodies == [f"/{i}".encode() for i in range(6)]
    assert [r.target for r in sink.requests] == [f"/{i}" for i in range(6)]
    assert sink.connections_accepted == 1


async def test_idle_connections_expire(
    sink: Sink, make_pool: MakePool, mock_clock: trio.testing.MockClock
) -> None:
    pool = make_pool(sink.port, idle_timeout=30)
    await get(pool)
    mock_clock.jump(29)
    await get(pool)
    assert sink.connections_accepted == 1
    mock_clock.jump(31)
    await get(pool)
    assert sink.connections_accepted == 2
    assert state(pool) == "active=0 idle=1 waiting=0"
    await wait_until(lambda: sink.connections_open == 1)


# Stale connections


async def test_connection_closed_by_the_server_while_idle_is_retried_once(
    sink: Sink, make_pool: MakePool
) -> None:
    sink.script("close-after")
    pool = make_pool(sink.port)
    assert (await get(pool, "/1")).status == 200
    await wait_until(lambda: sink.connections_open == 0)
    assert state(pool) == "active=0 idle=1 waiting=0"
    assert (await get(pool, "/2")).status == 200
    assert sink.connections_accepted == 2
    assert [r.target for r in sink.requests] == ["/1", "/2"]
    assert state(pool) == "active=0 idle=1 waiting=0"


async def test_the_retry_is_not_retried(sink: Sink, make_pool: MakePool) -> None:
    sink.script("close-after", "hangup")
    pool = make_pool(sink.port)
    await get(pool)
    await wait_until(lambda: sink.connections_open == 0)
    with pytest.raises(ReadError, match="before any response"):
        await get(pool)
    assert sink.connections_accepted == 2
    assert state(pool) == "active=0 idle=0 waiting=0"


async def test_a_fresh_connection_is_not_retried(sink: Sink, make_pool: MakePool) -> None:
    sink.script("hangup")
    pool = make_pool(sink.port)
    with pytest.raises(ReadError, match="server closed the connection before any response"):
        await get(pool)
    assert sink.connections_accepted == 1
    assert len(sink.requests) == 1


async def test_no_retry_once_response_bytes_arrived(sink: Sink, make_pool: MakePool) -> None:
    partial_response = b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc"
    sink.script(Reply(), Raw(partial_response, close=True))
    pool = make_pool(sink.port)
    await get(pool)
    with pytest.raises(ReadError, match="middle of the response body"):
        await get(pool)
    assert sink.connections_accepted == 1
    assert len(sink.requests) == 2
    assert state(pool) == "active=0 idle=0 waiting=0"


# Failures, by phase


async def test_connection_refused(make_pool: MakePool) -> None:
    port = free_port()
    pool = make_pool(port)
    with pytest.raises(ConnectError) as caught:
        await get(pool)
    assert str(caught.value) == (
        f"cannot connect to http://localhost:{port} at 127.0.0.1:{port}: connection refused"
    )
    assert state(pool) == "active=0 idle=0 waiting=0"


async def test_reset_mid_response(sink: Sink, make_pool: MakePool) -> None:
    sink.script("reset")
    pool = make_pool(sink.port)
    with pytest.raises(ReadError, match=r"reset by peer|closed the connection in the middle"):
        await get(pool)
    assert sink.connections_accepted == 1
    assert state(pool) == "active=0 idle=0 waiting=0"


async def test_garbage(sink: Sink, make_pool: MakePool) -> None:
    sink.script("garbage")
    pool = make_pool(sink.port)
    with pytest.raises(RemoteProtocolError, match="invalid response"):
        await get(pool)
    assert state(pool) == "active=0 idle=0 waiting=0"
    await wait_until(lambda: sink.connections_open == 0)  # we hung up


async def test_endless_body_times_out(
    sink: Sink, make_pool: MakePool, autojump_clock: trio.testing.MockClock
) -> None:
    sink.script("endless")
    pool = make_pool(sink.port)
    with pytest.raises(ReadTimeout) as caught:
        await get(pool, seconds=20)
    assert str(caught.value) == "timeout after 20 s"
    assert trio.current_time() == pytest.approx(20)
    assert state(pool) == "active=0 idle=0 waiting=0"


async def test_silent_server_times_out(
    sink: Sink, make_pool: MakePool, autojump_clock: trio.testing.MockClock
) -> None:
    sink.behaviour = "silent"
    pool = make_pool(sink.port, max_connections=1)
    with pytest.raises(ReadTimeout, match=r"^timeout after 2\.5 s$"):
        await get(pool, seconds=2.5)
    assert state(pool) == "active=0 idle=0 waiting=0"


async def test_waiting_for_a_connection_times_out(
    sink: Sink, make_pool: MakePool, autojump_clock: trio.testing.MockClock
) -> None:
    sink.behaviour = "silent"
    pool = make_pool(sink.port, max_connections=1)
    errors: list[HttpClientError] = []

    async def one(seconds: float) -> None:
        try:
            await get(pool, seconds=seconds)
        except HttpClientError as exc:
            errors.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one, 10)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(one, 5)
    assert [str(e) for e in errors] == [
        "timeout after 5 s waiting for a free connection",
        "timeout after 10 s",
    ]
    assert state(pool) == "active=0 idle=0 waiting=0"


@pytest.fixture
async def tarpit(nursery: trio.Nursery) -> int:
    """A port that accepts connections and never says a word."""

    async def hold(stream: trio.SocketStream) -> None:
        async with stream:
            await trio.sleep_forever()

    return await serve_loopback(nursery, hold)


async def test_stalled_tls_handshake_is_a_connect_timeout(
    tarpit: int, make_pool: MakePool, autojump_clock: trio.testing.MockClock
) -> None:
    pool = make_pool(tarpit, "https")
    with pytest.raises(ConnectTimeout, match=r"^timeout after 3 s while connecting$"):
        await get(pool, seconds=3)
    assert state(pool) == "active=0 idle=0 waiting=0"


# Cancellation


async def test_cancelled_request_leaves_nothing_behind(sink: Sink, make_pool: MakePool) -> None:
    sink.behaviour = "silent"
    pool = make_pool(sink.port, max_connections=2)
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            for i in range(5):
                nursery.start_soon(get, pool, f"/{i}")
            await trio.testing.wait_all_tasks_blocked()
            assert state(pool) == "active=2 idle=0 waiting=3"
            scope.cancel()
    assert state(pool) == "active=0 idle=0 waiting=0"
    await wait_until(lambda: sink.connections_open == 0)
    sink.behaviour = Reply()
    assert (await get(pool)).status == 200


async def test_cancelled_waiter_lets_the_next_one_through(sink: Sink, make_pool: MakePool) -> None:
    gate = hold(sink, "/first")
    pool = make_pool(sink.port, max_connections=1)
    done: list[str] = []

    async def one(target: str, task_status: trio.TaskStatus[trio.CancelScope]) -> None:
        with trio.CancelScope() as scope:
            task_status.started(scope)
            await get(pool, target)
            done.append(target)

    async with trio.open_nursery() as nursery:
        await nursery.start(one, "/first")
        await trio.testing.wait_all_tasks_blocked()
        doomed = await nursery.start(one, "/doomed")
        await nursery.start(one, "/last")
        await trio.testing.wait_all_tasks_blocked()
        assert state(pool) == "active=1 idle=0 waiting=2"
        doomed.cancel()
        await trio.testing.wait_all_tasks_blocked()
        assert state(pool) == "active=1 idle=0 waiting=1"
        gate.set()
    assert done == ["/first", "/last"]
    assert state(pool) == "active=0 idle=1 waiting=0"


async def test_cancelled_while_connecting(tarpit: int, make_pool: MakePool) -> None:
    pool = make_pool(tarpit, "https")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(get, pool)
        await trio.testing.wait_all_tasks_blocked()
        assert state(pool) == "active=1 idle=0 waiting=0"
        nursery.cancel_scope.cancel()
    assert state(pool) == "active=0 idle=0 waiting=0"


async def test_aclose(sink: Sink, make_pool: MakePool) -> None:
    pool = make_pool(sink.port, max_connections=1)
    await get(pool)
    sink.behaviour = "silent"
    errors: list[str] = []

    async def one() -> None:
        with pytest.raises(PoolClosed) as caught:
            await get(pool)
        errors.append(str(caught.value))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(one)
        await trio.testing.wait_all_tasks_blocked()
        assert state(pool) == "active=1 idle=0 waiting=1"
        await pool.aclose()
    assert errors == [f"connection pool for http://localhost:{sink.port} was closed"] * 2
    assert repr(pool).endswith(" closed active=0 idle=0 waiting=0>")
    with pytest.raises(PoolClosed, match="is closed"):
        await get(pool)
    await wait_until(lambda: sink.connections_open == 0)


async def random_load(
    sink: Sink,
    pools: list[ConnectionPool],
    rng: random.Random,
    requests: int,
    watch: Callable[[], None],
) -> dict[str, int]:
    """Requests to ``pools`` with random answers, timeouts and cancellations; the outcomes.

    ``watch`` is called after each request, to check the invariants of the moment."""

    def decide(request: Received) -> Behaviour:
        roll = rng.random()
        if roll < 0.1:
            return "close-after"
        if roll < 0.15:
            return Reply(keep_alive=False)
        return Reply(delay=rng.choice([0, 0, 0.5, 1, 3]))

    sink.behaviour = decide
    outcomes: dict[str, int] = {}

    async def one(pool: ConnectionPool, seconds: float, cancel_after: float | None) -> None:
        with trio.move_on_after(cancel_after if cancel_after is not None else 1e9):
            try:
                await get(pool, seconds=seconds)
                outcome = "ok"
            except HttpClientError as exc:
                outcome = type(exc).__name__
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        watch()

    async with trio.open_nursery() as nursery:
        for _ in range(requests):
            cancel_after = rng.choice([None, None, 0.2, 1.5])
            nursery.start_soon(one, rng.choice(pools), rng.choice([0.7, 2, 10]), cancel_after)
            if rng.random() < 0.3:
                await trio.sleep(rng.random())
    assert outcomes["ok"] > 50
    assert set(outcomes) <= {"ok", "ReadTimeout", "ReadError"}
    return outcomes


async def test_random_timeouts_and_cancellations_keep_the_pool_consistent(
    sink: Sink, make_pool: MakePool, autojump_clock: trio.testing.MockClock
) -> None:
    pool = make_pool(sink.port, max_connections=3)
    worst = 0

    def watch() -> None:
        nonlocal worst
        active, idle, _ = (int(part.split("=")[1]) for part in state(pool).split())
        worst = max(worst, active + idle)

    await random_load(sink, [pool], random.Random(7), 300, watch)
    assert state(pool).startswith("active=0 ")
    assert state(pool).endswith(" waiting=0")
    assert worst <= 3


# A budget shared by pools


def budget_state(budget: ConnectionBudget) -> str:
    return repr(budget).split(" ", 1)[1].rstrip(">")


async def test_a_budget_caps_the_connections_of_every_pool_together(
    sink: Sink, make_pool: MakePool, autojump_clock: trio.testing.MockClock
) -> None:
    sink.behaviour = Reply(delay=1)
    budget = ConnectionBudget(5)
    pools = [make_pool(sink.port, max_connections=4, budget=budget) for _ in range(3)]
    statuses: list[int] = []

    async def one(pool: ConnectionPool) -> None:
        statuses.append((await get(pool, seconds=1000)).status)

    async with trio.open_nursery() as nursery:
        for i in range(60):
            nursery.start_soon(one, pools[i % 3])
        await trio.testing.wait_all_tasks_blocked()
        assert budget_state(budget) == "open=5/5 idle=0 waiting=7"
    assert statuses == [200] * 60
    assert sink.max_connections_open == 5
    assert budget.open == sum(int(state(pool).split()[1][5:]) for pool in pools)  # the idle


async def test_the_longest_idle_connection_elsewhere_is_closed_to_make_room(
    sink: Sink, make_pool: MakePool, autojump_clock: trio.testing.MockClock
) -> None:
    budget = ConnectionBudget(2)
    first, second, third = (make_pool(sink.port, budget=budget) for _ in range(3))
    await get(first)
    await trio.sleep(1)
    await get(second)
    assert budget_state(budget) == "open=2/2 idle=2 waiting=0"
    await get(third)
    assert state(first) == "active=0 idle=0 waiting=0"  # idle the longest: closed
    assert state(second) == "active=0 idle=1 waiting=0"
    assert budget_state(budget) == "open=2/2 idle=2 waiting=0"
    await wait_until(lambda: sink.connections_open == 2)


async def test_a_connection_set_free_goes_to_the_pool_waiting_for_a_slot(
    sink: Sink, make_pool: MakePool
) -> None:
    gate = hold(sink, "/slow")
    budget = ConnectionBudget(1)
    busy, waiting = make_pool(sink.port, budget=budget), make_pool(sink.port, budget=budget)
    done: list[str] = []

    async def one(pool: ConnectionPool, target: str) -> None:
        await get(pool, target)
        done.append(target)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one, busy, "/slow")
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(one, waiting, "/next")
        await trio.testing.wait_all_tasks_blocked()
        assert budget_state(budget) == "open=1/1 idle=0 waiting=1"
        gate.set()
    assert done == ["/slow", "/next"]
    assert state(busy) == "active=0 idle=0 waiting=0"  # closed for the other pool, not kept
    assert state(waiting) == "active=0 idle=1 waiting=0"
    assert budget_state(budget) == "open=1/1 idle=1 waiting=0"
    assert sink.connections_accepted == 2


async def test_waiting_for_a_budget_slot_times_out_and_failures_give_slots_back(
    sink: Sink, make_pool: MakePool, autojump_clock: trio.testing.MockClock
) -> None:
    sink.behaviour = "silent"
    budget = ConnectionBudget(1)
    silent, other = make_pool(sink.port, budget=budget), make_pool(sink.port, budget=budget)
    refused = make_pool(free_port(), budget=budget)
    errors: list[str] = []

    async def one(pool: ConnectionPool, seconds: float) -> None:
        try:
            await get(pool, seconds=seconds)
        except HttpClientError as exc:
            errors.append(f"{type(exc).__name__}: {exc}")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one, silent, 10)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(one, other, 5)
    assert errors == [
        "ReadTimeout: timeout after 5 s waiting for a free connection",
        "ReadTimeout: timeout after 10 s",
    ]
    assert budget_state(budget) == "open=0/1 idle=0 waiting=0"
    with pytest.raises(ConnectError):
        await get(refused)
    assert budget_state(budget) == "open=0/1 idle=0 waiting=0"


async def test_a_cancelled_budget_waiter_lets_the_next_one_through(
    sink: Sink, make_pool: MakePool
) -> None:
    gate = hold(sink, "/first")
    budget = ConnectionBudget(1)
    pools = [make_pool(sink.port, budget=budget) for _ in range(3)]
    done: list[str] = []

    async def one(
        pool: ConnectionPool, target: str, task_status: trio.TaskStatus[trio.CancelScope]
    ) -> None:
        with trio.CancelScope() as scope:
            task_status.started(scope)
            await get(pool, target)
            done.append(target)

    async with trio.open_nursery() as nursery:
        await nursery.start(one, pools[0], "/first")
        await trio.testing.wait_all_tasks_blocked()
        doomed = await nursery.start(one, pools[1], "/doomed")
        await nursery.start(one, pools[2], "/last")
        await trio.testing.wait_all_tasks_blocked()
        assert budget_state(budget) == "open=1/1 idle=0 waiting=2"
        doomed.cancel()
        await trio.testing.wait_all_tasks_blocked()
        assert budget_state(budget) == "open=1/1 idle=0 waiting=1"
        gate.set()
    assert done == ["/first", "/last"]
    assert budget_state(budget) == "open=1/1 idle=1 waiting=0"


async def test_random_timeouts_and_cancellations_keep_the_budget_consistent(
    sink: Sink, make_pool: MakePool, autojump_clock: trio.testing.MockClock
) -> None:
    budget = ConnectionBudget(4)
    pools = [make_pool(sink.port, max_connections=3, budget=budget) for _ in range(3)]
    worst = 0

    def watch() -> None:
        nonlocal worst
        worst = max(worst, budget.open)

    await random_load(sink, pools, random.Random(11), 400, watch)
    idle = [int(state(pool).split()[1][5:]) for pool in pools]
    assert all(state(pool).startswith("active=0 ") for pool in pools)
    assert budget_state(budget) == f"open={sum(idle)}/4 idle={sum(idle)} waiting=0"
    assert worst <= 4


# Body size


async def test_big_body_is_truncated_and_the_connection_closed(
    sink: Sink, make_pool: MakePool
) -> None:
    sink.script(Reply(body=b"x" * (3 * MAX_BODY_BYTES)))
    pool = make_pool(sink.port)
    response = await get(pool)
    assert response.truncated
    assert response.body == b"x" * MAX_BODY_BYTES
    assert state(pool) == "active=0 idle=0 waiting=0"  # left mid-body: not reusable
    assert not (await get(pool)).truncated
    assert sink.connections_accepted == 2


@pytest.mark.parametrize("status", [200, 503])
async def test_endless_body_is_read_only_up_to_the_limit(
    status: int, sink: Sink, make_pool: MakePool, autojump_clock: trio.testing.MockClock
) -> None:
    # 16 KB every 10 ms: read to its timeout, as it was, this would be 4.9 MB in 3 s.
    flood = Flood(status, chunk=16 * 1024, every=0.01)
    sink.script(flood)
    pool = make_pool(sink.port)
    response = await get(pool, seconds=3)
    assert trio.current_time() < 0.1  # the 7 chunks that hold 100 KB and a byte
    assert response.status == status
    assert response.truncated
    sent = b"".join(flood_byte(n) * flood.chunk for n in range(MAX_BODY_BYTES // flood.chunk + 1))
    assert response.body == sent[:MAX_BODY_BYTES]
    assert state(pool) == "active=0 idle=0 waiting=0"
    await wait_until(lambda: sink.connections_open == 0)  # we hung up
    # Bounded: what we read, plus what the server sent before it saw us gone.
    assert sink.flooded <= MAX_BODY_BYTES + 3 * flood.chunk


@pytest.fixture
async def slammer(nursery: trio.Nursery) -> int:
    """A port that accepts connections and resets them at once."""

    async def slam(stream: trio.SocketStream) -> None:
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await stream.aclose()

    return await serve_loopback(nursery, slam)


async def test_connection_reset_while_sending(slammer: int, make_pool: MakePool) -> None:
    pool = make_pool(slammer)
    body = b"x" * 32 * 1024 * 1024  # more than socket buffers hold: sending must block
    with pytest.raises(WriteError, match="connection lost while sending the request: "):
        await pool.request("POST", "/", [], body, timeout=10)
    assert state(pool) == "active=0 idle=0 waiting=0"


# TLS


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_context(ca: trustme.CA, name: str = "localhost") -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(name).configure_cert(context)
    return context


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


async def tls_sink(nursery: trio.Nursery, context: ssl.SSLContext) -> Sink:
    sink = Sink(ssl_context=context)
    await nursery.start(sink.serve)
    return sink


async def test_tls(nursery: trio.Nursery, make_pool: MakePool, ca: trustme.CA) -> None:
    sink = await tls_sink(nursery, server_context(ca))
    pool = make_pool(sink.port, "https", ssl_context=client_context(ca))
    for _ in range(3):
        assert (await get(pool)).status == 200
    assert sink.connections_accepted == 1
    assert sink.requests[0].header(b"host") == f"localhost:{sink.port}".encode()


async def test_tls_certificate_for_another_name(
    nursery: trio.Nursery, make_pool: MakePool, ca: trustme.CA
) -> None:
    sink = await tls_sink(nursery, server_context(ca, "other.example"))
    pool = make_pool(sink.port, "https", ssl_context=client_context(ca))
    with pytest.raises(TLSError) as caught:
        await get(pool)
    assert str(caught.value) == (
        f"TLS handshake with https://localhost:{sink.port} failed: certificate verify failed: "
        "Hostname mismatch, certificate is not valid for 'localhost'."
    )
    assert state(pool) == "active=0 idle=0 waiting=0"


async def test_tls_untrusted_ca(nursery: trio.Nursery, make_pool: MakePool, ca: trustme.CA) -> None:
    sink = await tls_sink(nursery, server_context(trustme.CA()))
    pool = make_pool(sink.port, "https", ssl_context=client_context(ca))
    with pytest.raises(TLSError, match="certificate verify failed: unable to get local issuer"):
        await get(pool)


async def test_tls_self_signed(nursery: trio.Nursery, make_pool: MakePool, tmp_path: Path) -> None:
    # A CA certificate is self-signed: served as the leaf, it is the classic mistake.
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "cert.pem"))
    ca.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    sink = await tls_sink(nursery, context)
    pool = make_pool(sink.port, "https")
    with pytest.raises(TLSError, match=r"certificate verify failed: self-signed certificate$"):
        await get(pool)


async def test_tls_without_verification(nursery: trio.Nursery, make_pool: MakePool) -> None:
    sink = await tls_sink(nursery, server_context(trustme.CA(), "other.example"))
    pool = make_pool(sink.port, "https", verify_tls=False)
    assert (await get(pool)).status == 200


async def test_tls_to_a_plain_http_server(sink: Sink, make_pool: MakePool) -> None:
    pool = make_pool(sink.port, "https")
    with pytest.raises(TLSError, match="TLS handshake with"):
        await get(pool)
    assert state(pool) == "active=0 idle=0 waiting=0"
