"""Attacks on the HTTP server over real loopback sockets: bounded memory, bounded time,
and other clients served meanwhile. Each reproduces a hole found by probing the daemon."""

from __future__ import annotations

import contextlib
import socket
import time
import tracemalloc
from collections.abc import AsyncIterator, Iterator

import pytest
import trio
import trio.testing

from engine.config.settings import LimitsConfig
from engine.http.h1 import Request
from engine.http.server import Deferred, HttpServer, Response
from tests.helpers import RawClient

LIMITS = LimitsConfig(
    max_header_bytes=16384, max_body_bytes=1024, idle_timeout=3, request_timeout=10
)
PAGE = b"m" * 14_000
"""About the size of a /metrics page."""

WORK_SECONDS = 0.001
"""CPU time a /slow request takes, like rendering /metrics."""


def slow_page() -> Response:
    until = time.perf_counter() + WORK_SECONDS
    while time.perf_counter() < until:  # CPU work, not waiting: it does not yield
        pass
    return Response(200, PAGE, [("content-type", "text/plain")])


async def handler(request: Request) -> Response | Deferred:
    if request.path == "/slow":
        return slow_page()
    if request.path == "/deferred":  # answered later, as a publish is once committed

        async def resolve() -> Response:
            await trio.lowlevel.checkpoint()
            return slow_page()

        return Deferred(resolve)
    await trio.lowlevel.checkpoint()
    return Response(200, b"ok", [("content-type", "text/plain")])


@pytest.fixture
async def server() -> AsyncIterator[tuple[HttpServer, int, trio.Nursery]]:
    """A server on loopback: itself, its port, and the nursery its connections may join."""
    served = HttpServer(handler, LIMITS)
    async with trio.open_nursery() as nursery:
        [(_, bound)] = await nursery.start(served.serve, "127.0.0.1", 0)
        yield served, bound, nursery
        nursery.cancel_scope.cancel()


@pytest.fixture
def port(server: tuple[HttpServer, int, trio.Nursery]) -> int:
    return server[1]


@pytest.fixture
def traced() -> Iterator[None]:
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


def allocated_since(baseline: int) -> int:
    """Peak bytes allocated by Python since the peak was reset at ``baseline``."""
    return tracemalloc.get_traced_memory()[1] - baseline


def reset_peak() -> int:
    tracemalloc.reset_peak()
    return tracemalloc.get_traced_memory()[0]


def healthz_seconds_blocking(port: int) -> float:
    """Time for a new connection's request to be answered, timed from another thread.

    The server shares this process's event loop with the test: a client on that loop
    would stall with it, so the clock that matters runs outside it.
    """
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.sendall(b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 OK"), answer
    return time.perf_counter() - started


async def healthz_seconds(port: int) -> float:
    return await trio.to_thread.run_sync(healthz_seconds_blocking, port)


def probe_for(port: int, duration: float, seconds: list[float]) -> None:
    """Time /healthz again and again for ``duration`` seconds (bounded: at most 10,000)."""
    until = time.perf_counter() + duration
    while time.perf_counter() < until and len(seconds) < 10_000:
        seconds.append(healthz_seconds_blocking(port))


@pytest.mark.parametrize(
    "head",
    [
        pytest.param(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ", id="value"),
        pytest.param(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-", id="name"),
    ],
)
async def test_a_header_line_that_never_ends_is_refused_within_one_read(
    port: int, traced: None, head: bytes
) -> None:
    baseline = reset_peak()
    attacker = await RawClient.connect(port)
    await attacker.send(head)
    piece = b"a" * 65536
    sent = 0
    # Today's limit is 16 KB: by 4 MB of one line the answer must long have come.
    with trio.move_on_after(10):
        try:
            while sent < 4 << 20:
                await attacker.send(piece)
                sent += len(piece)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the server hung up, as it should
    answer = await attacker.read_to_eof()
    await attacker.aclose()
    assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large"), answer[:80]
    assert b"request head larger than 16384 bytes" in answer
    assert allocated_since(baseline) < 1 << 20
    assert await healthz_seconds(port) < 1.0


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(b"GET /slow HTTP/1.1\r\n\r\n", id="answered-at-once"),
        pytest.param(b"POST /deferred HTTP/1.1\r\nContent-Length: 0\r\n\r\n", id="deferred"),
    ],
)
async def test_pipelined_requests_do_not_gather_answers_or_starve_others(
    server: tuple[HttpServer, int, trio.Nursery], traced: None, request_bytes: bytes
) -> None:
    served, port, nursery = server
    baseline = reset_peak()
    # 2,600 requests in one write, each ~1 ms of work and a 14 KB answer, never read. They
    # are in the kernel before the server reads, so its first read takes them all at once.
    with trio.socket.socket() as listener:
        await listener.bind(("127.0.0.1", 0))
        listener.listen()
        attacker = trio.socket.socket()
        attacker.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        await attacker.connect(listener.getsockname())
        await trio.SocketStream(attacker).send_all(request_bytes * 2600)
        accepted, _ = await listener.accept()
    nursery.start_soon(served.serve_connection, trio.SocketStream(accepted))
    seconds: list[float] = []
    # /healthz, one after another for a second, while the attack is being answered.
    await trio.to_thread.run_sync(probe_for, port, 1.0, seconds)
    # Served between the attacker's requests, not after all 2.6 s of them.
    assert max(seconds) < 0.5, seconds
    # The answers wait in the kernel's buffers and the server's budget, not in a 37 MB buffer
    # (deferred ones: at most MAX_DEFERRED of them, resolved, before they are written).
    assert allocated_since(baseline) < 2 << 20
    attacker.close()


async def closed_after(client: RawClient, every: float) -> float:
    """Send a bare CRLF every ``every`` seconds; the time until the server closes."""
    started = trio.current_time()
    async with trio.open_nursery() as nursery:

        async def noise() -> None:
            with contextlib.suppress(trio.BrokenResourceError):
                while True:
                    await client.send(b"\r\n")
                    await trio.sleep(every)

        nursery.start_soon(noise)
        try:
            assert await client.read_to_eof(within=60) == b""
        except trio.BrokenResourceError:
            pass  # closed with a CRLF unread: the kernel resets instead of ending the stream
        finally:
            nursery.cancel_scope.cancel()
            await client.aclose()
    return trio.current_time() - started


async def test_bare_crlfs_do_not_keep_a_connection_open(
    autojump_clock: trio.testing.MockClock, port: int
) -> None:
    client = await RawClient.connect(port)
    await client.send(b"GET /healthz HTTP/1.1\r\n\r\n")
    assert (await client.read_until(b"ok")).startswith(b"HTTP/1.1 200 OK")
    # idle_timeout is 3 s: a CRLF every 2 s starts no request, so it renews nothing.
    assert await closed_after(client, every=2) == pytest.approx(3)


async def test_crlfs_alone_close_on_the_idle_timeout_from_the_connection_start(
    autojump_clock: trio.testing.MockClock, port: int
) -> None:
    client = await RawClient.connect(port)
    assert await closed_after(client, every=1) == pytest.approx(3)
