"""The HTTP server loop: keep-alive, pipelining, time limits, bad bytes, shutdown."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.config.settings import LimitsConfig
from engine.http.h1 import BodyFraming, Request
from engine.http.server import (
    MAX_DEFERRED,
    WRITE_BUDGET,
    Deferred,
    HttpServer,
    Response,
    StreamResponse,
)
from tests.helpers import RawClient

LIMITS = LimitsConfig(
    max_header_bytes=1024, max_body_bytes=1024, idle_timeout=60, request_timeout=10
)


async def echo(request: Request) -> Response:
    await trio.lowlevel.checkpoint()
    return Response(
        200,
        f"{request.method} {request.target} {len(request.body)}".encode(),
        [("content-type", "text/plain")],
    )


def responses(data: bytes) -> list[bytes]:
    """Split concatenated responses (all with content-length) into their bodies."""
    bodies = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        length = int(head.split(b"content-length: ")[1].split(b"\r\n")[0])
        bodies.append(rest[:length])
        data = rest[length:]
    return bodies


async def converse(
    data: bytes, server: HttpServer | None = None, *, half_close: bool = True
) -> bytes:
    """Send ``data`` to one connection of ``server`` over a memory stream; all it answers."""
    server = server or HttpServer(echo, LIMITS)
    client, server_side = trio.testing.memory_stream_pair()
    received = bytearray()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.serve_connection, server_side)
        await client.send_all(data)
        if half_close:
            await client.send_stream.aclose()
        while chunk := await client.receive_some(65536):
            received += chunk
    return bytes(received)


async def test_pipelined_requests_are_answered_in_order_in_one_write() -> None:
    data = b"".join(
        b"POST /%d HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (i, i, b"x" * i) for i in range(5)
    )
    answer = await converse(data)
    assert responses(answer) == [b"POST /%d %d" % (i, i) for i in range(5)]


async def test_connection_close_is_honoured() -> None:
    answer = await converse(
        b"GET /a HTTP/1.1\r\n\r\n"
        b"GET /b HTTP/1.1\r\nConnection: close\r\n\r\n"
        b"GET /c HTTP/1.1\r\n\r\n",
        half_close=False,
    )
    assert responses(answer) == [b"GET /a 0", b"GET /b 0"]
    assert answer.count(b"connection: close") == 1


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"\x00\xffrandom bytes\r\n\r\n", 400),
        (b"GET /" + b"a" * 1_000_000 + b" HTTP/1.1\r\n\r\n", 414),
        (b"POST / HTTP/1.1\r\nContent-Length: 5000\r\n\r\n", 413),
        (b"GET / HTTP/1.1\r\nCookie: " + b"c" * 2000 + b"\r\n\r\n", 431),
    ],
)
async def test_bad_bytes_get_an_error_then_close(data: bytes, status: int) -> None:
    answer = await converse(data, half_close=False)
    assert answer.startswith(b"HTTP/1.1 %d " % status)
    assert b"connection: close" in answer
    assert b'{"ok":false,"error":"' in answer


async def test_good_requests_before_a_bad_one_are_answered() -> None:
    answer = await converse(b"GET /ok HTTP/1.1\r\n\r\nBAD\x00\r\n\r\n", half_close=False)
    assert answer.startswith(b"HTTP/1.1 200 OK")
    assert b"HTTP/1.1 400 Bad Request" in answer


async def test_idle_connection_is_closed(autojump_clock: trio.testing.MockClock) -> None:
    start = trio.current_time()
    answer = await converse(b"GET / HTTP/1.1\r\n\r\n", half_close=False)
    assert responses(answer) == [b"GET / 0"]
    assert trio.current_time() - start == pytest.approx(60)


async def test_slow_loris_gets_408(autojump_clock: trio.testing.MockClock) -> None:
    server = HttpServer(echo, LIMITS)
    client, server_side = trio.testing.memory_stream_pair()
    received = bytearray()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.serve_connection, server_side)
        start = trio.current_time()
        # One header byte every 2 seconds: never complete, always just alive.
        try:
            for byte in b"GET / HTTP/1.1\r\nX-Slow: " + b"z" * 100:
                await client.send_all(bytes([byte]))
                await trio.sleep(2)
        except trio.BrokenResourceError:
            pass  # the server hung up on us, as it should
        # request_timeout is 10 s; the next byte after it finds the connection closed.
        assert 10 <= trio.current_time() - start <= 12
        while chunk := await client.receive_some(65536):
            received += chunk
    assert received.startswith(b"HTTP/1.1 408 Request Timeout")
    assert b"request not received in time" in received


async def test_handler_failure_closes_only_that_connection() -> None:
    async def broken(request: Request) -> Response:
        await trio.lowlevel.checkpoint()
        raise RuntimeError("bug")

    answer = await converse(b"GET / HTTP/1.1\r\n\r\n", HttpServer(broken, LIMITS))
    assert answer == b""


class Ticker(StreamResponse):
    def __init__(self) -> None:
        super().__init__(200, [("content-type", "text/plain")])
        self.cancelled = False
        self.ran = False

    async def run(self, stream: trio.abc.SendStream, framing: BodyFraming) -> None:
        self.ran = True
        try:
            await stream.send_all(framing.frame(b"tick\n"))
            await trio.sleep_forever()
        except trio.Cancelled:
            self.cancelled = True
            raise


class Countdown(StreamResponse):
    """Sends a few pieces, then ends its body itself."""

    def __init__(self) -> None:
        super().__init__(200, [("content-type", "text/plain")])

    async def run(self, stream: trio.abc.SendStream, framing: BodyFraming) -> None:
        for piece in (b"3\n", b"2\n", b"1\n"):
            await stream.send_all(framing.frame(piece))
        await stream.send_all(framing.end)


async def countdown(request: Request) -> StreamResponse:
    await trio.lowlevel.checkpoint()
    return Countdown()


async def test_stream_is_chunked_for_http11() -> None:
    answer = await converse(
        b"GET / HTTP/1.1\r\n\r\n", HttpServer(countdown, LIMITS), half_close=False
    )
    assert answer == (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n"
        b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        b"2\r\n3\n\r\n2\r\n2\n\r\n2\r\n1\n\r\n0\r\n\r\n"
    )


async def test_stream_ends_at_close_for_http10() -> None:
    answer = await converse(
        b"GET / HTTP/1.0\r\n\r\n", HttpServer(countdown, LIMITS), half_close=False
    )
    assert answer == (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\n3\n2\n1\n"
    )


async def test_stream_ends_when_the_peer_leaves_and_on_shutdown() -> None:
    ticker = Ticker()

    async def handler(request: Request) -> StreamResponse:
        await trio.lowlevel.checkpoint()
        return ticker

    server = HttpServer(handler, LIMITS)
    async with trio.open_nursery() as nursery:
        [(host, port)] = await nursery.start(server.serve, "127.0.0.1", 0)
        client = await RawClient.connect(port)
        await client.send(b"GET / HTTP/1.1\r\n\r\n")
        await client.read_head()
        assert await client.read_until(b"tick\n") == b"tick\n"
        idle = await RawClient.connect(port)
        server.shutdown()
        assert await client.read_to_eof() == b""
        assert await idle.read_to_eof() == b""
        await client.aclose()
        await idle.aclose()
    assert ticker.cancelled
    with pytest.raises(OSError):
        await trio.open_tcp_stream(host, port)


async def test_real_socket_bad_client_does_not_disturb_others() -> None:
    server = HttpServer(echo, LIMITS)
    async with trio.open_nursery() as nursery:
        [(_, port)] = await nursery.start(server.serve, "127.0.0.1", 0)
        good = await RawClient.connect(port)
        bad = await RawClient.connect(port)
        await bad.send(bytes(range(256)) * 4)
        assert (await bad.read_to_eof()).startswith(b"HTTP/1.1 400")
        await good.send(b"GET /still-here HTTP/1.1\r\n\r\n")
        assert (await good.read_until(b"GET /still-here 0")).startswith(b"HTTP/1.1 200")
        await good.aclose()
        await bad.aclose()
        nursery.cancel_scope.cancel()


REQUEST = b"POST /v1/devices/events HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nname"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.binary(max_size=400),
        st.builds(
            lambda cuts, flips: _mutate(REQUEST * 3, cuts, flips),
            st.lists(st.integers(0, len(REQUEST) * 3 - 1), max_size=3),
            st.lists(
                st.tuples(st.integers(0, len(REQUEST) * 3 - 1), st.integers(0, 255)), max_size=4
            ),
        ),
        # A header line (name or value) of any length that never ends.
        st.builds(
            lambda start, n: start + b"a" * n,
            st.sampled_from([b"GET / HTTP/1.1\r\nX: ", b"GET / HTTP/1.1\r\nX"]),
            st.integers(0, 5000),
        ),
        # Many pipelined requests, with bare CRLFs between them.
        st.lists(st.sampled_from([REQUEST, b"GET /p HTTP/1.1\r\n\r\n", b"\r\n"]), max_size=300).map(
            b"".join
        ),
    )
)
async def test_any_bytes_get_answers_or_a_close(data: bytes) -> None:
    statuses = []
    for server in (HttpServer(echo, LIMITS), HttpServer(Deferring(), LIMITS)):
        answer = await converse(data, server, half_close=True)
        lines = [line for line in answer.split(b"\r\n") if line.startswith(b"HTTP/1.1 ")]
        for line in lines:
            assert line[9:12] in (b"200", b"400", b"408", b"413", b"414", b"417", b"431", b"501")
        statuses.append(lines)
        # The same server keeps serving a well-formed request afterwards.
        after = await converse(b"GET /after HTTP/1.1\r\n\r\n", server)
        assert responses(after) == [b"GET /after 0"]
    # Answering POSTs later (Deferred) changes no status and no order.
    assert statuses[0] == statuses[1]


def _mutate(data: bytes, cuts: list[int], flips: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for i, value in flips:
        out[i] = value
    for i in sorted(set(cuts), reverse=True):
        del out[i]
    return bytes(out)


async def test_many_pipelined_requests_are_all_answered_in_order_in_several_writes() -> None:
    data = b"".join(b"GET /%d HTTP/1.1\r\n\r\n" % i for i in range(3000))
    assert responses(await converse(data)) == [b"GET /%d 0" % i for i in range(3000)]


async def test_expect_100_continue_gets_100_then_the_answer() -> None:
    server = HttpServer(echo, LIMITS)
    async with trio.open_nursery() as nursery:
        [(_, port)] = await nursery.start(server.serve, "127.0.0.1", 0)
        client = await RawClient.connect(port)
        await client.send(b"POST /up HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
        # The client waits for it before sending the body.
        assert await client.read_until(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
        await client.send(b"body")
        assert (await client.read_until(b"POST /up 4")).startswith(b"HTTP/1.1 200 OK")
        # Too large a body is refused at once, with no 100 first.
        await client.send(
            b"POST /up HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n"
        )
        assert (await client.read_to_eof()).startswith(b"HTTP/1.1 413")
        await client.aclose()
        nursery.cancel_scope.cancel()


async def test_head_gets_the_head_get_would_get_and_no_body() -> None:
    answer = await converse(b"HEAD /x HTTP/1.1\r\n\r\nGET /y HTTP/1.1\r\n\r\n")
    head, _, rest = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"content-length: 9" in head  # len(b"HEAD /x 0")
    # The next response follows the head at once: HEAD's answer has no content.
    assert rest.startswith(b"HTTP/1.1 200 OK") and rest.endswith(b"GET /y 0")


async def test_head_of_a_stream_sends_its_head_and_keeps_the_connection() -> None:
    ticker = Ticker()

    async def handler(request: Request) -> Response | StreamResponse:
        await trio.lowlevel.checkpoint()
        return ticker if request.path == "/stream" else await echo(request)

    answer = await converse(
        b"HEAD /stream HTTP/1.1\r\n\r\nGET /after HTTP/1.1\r\n\r\n", HttpServer(handler, LIMITS)
    )
    head, _, rest = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"transfer-encoding: chunked" in head
    assert rest.startswith(b"HTTP/1.1 200 OK") and rest.endswith(b"GET /after 0")
    assert not ticker.ran


async def test_other_transfer_codings_are_answered_501() -> None:
    answer = await converse(
        b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 501 Not Implemented")
    assert b"transfer coding gzip is not supported" in answer


class Deferring:
    """A handler that answers a POST later (``Deferred``, as the API answers a publish), a
    POST to /big at once with a large body, GET /stream with a stream, and anything else at
    once; its log says when it handled and resolved what."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.unresolved = 0
        self.most_unresolved = 0

    async def __call__(self, request: Request) -> Response | StreamResponse | Deferred:
        self.log.append(f"handle {request.target}")
        if request.path == "/stream":
            return await countdown(request)
        if request.path == "/big":
            return Response(200, b"b" * 20_000, [("content-type", "text/plain")])
        if request.method != "POST":
            return await echo(request)
        self.unresolved += 1
        self.most_unresolved = max(self.most_unresolved, self.unresolved)

        async def resolve() -> Response:
            await trio.lowlevel.checkpoint()
            self.unresolved -= 1
            self.log.append(f"resolve {request.target}")
            return Response(
                200, f"stored {request.target}".encode(), [("content-type", "text/plain")]
            )

        return Deferred(resolve)


def post(target: str, headers: str = "") -> bytes:
    return f"POST {target} HTTP/1.1\r\nContent-Length: 0\r\n{headers}\r\n".encode()


async def test_deferred_answers_are_awaited_in_order_once_the_read_is_handled() -> None:
    handler = Deferring()
    answer = await converse(b"".join(post(f"/{i}") for i in range(3)), HttpServer(handler, LIMITS))
    assert responses(answer) == [b"stored /0", b"stored /1", b"stored /2"]
    handled = ["handle /0", "handle /1", "handle /2"]
    assert handler.log == [*handled, "resolve /0", "resolve /1", "resolve /2"]


async def test_a_safe_request_is_handled_after_the_deferred_answers_before_it() -> None:
    handler = Deferring()
    data = post("/0") + post("/1") + b"GET /2 HTTP/1.1\r\n\r\n" + post("/3")
    answer = await converse(data, HttpServer(handler, LIMITS))
    assert responses(answer) == [b"stored /0", b"stored /1", b"GET /2 0", b"stored /3"]
    assert handler.log == [
        "handle /0",
        "handle /1",
        "resolve /0",
        "resolve /1",
        "handle /2",  # it sees what /0 and /1 did
        "handle /3",
        "resolve /3",
    ]


async def test_at_most_max_deferred_answers_wait_and_all_are_answered_in_order() -> None:
    handler = Deferring()
    data = b"".join(post(f"/{i}") for i in range(200))
    answer = await converse(data, HttpServer(handler, LIMITS))
    assert responses(answer) == [b"stored /%d" % i for i in range(200)]
    assert handler.most_unresolved == MAX_DEFERRED


async def test_answers_waiting_behind_a_deferred_one_are_bounded_by_the_write_budget() -> None:
    handler = Deferring()
    bigs = -(-WRITE_BUDGET // 20_000)  # how many 20 KB answers reach the budget
    data = post("/0") + post("/big") * (bigs + 1)
    answer = await converse(data, HttpServer(handler, LIMITS))
    assert responses(answer) == [b"stored /0"] + [b"b" * 20_000] * (bigs + 1)
    # Settled as the budget filled, not after the last request.
    assert handler.log.index("resolve /0") == 1 + bigs


async def test_connection_close_after_deferred_answers_is_honoured() -> None:
    handler = Deferring()
    data = post("/0") + post("/1", "Connection: close\r\n") + post("/2")
    answer = await converse(data, HttpServer(handler, LIMITS), half_close=False)
    assert responses(answer) == [b"stored /0", b"stored /1"]
    assert answer.count(b"connection: close") == 1
    assert "handle /2" not in handler.log


async def test_deferred_answers_come_before_an_error_and_before_a_stream() -> None:
    handler = Deferring()
    answer = await converse(post("/0") + b"BAD\x00\r\n\r\n", HttpServer(handler, LIMITS))
    first, _, rest = answer.partition(b"stored /0")
    assert first.startswith(b"HTTP/1.1 200 OK")
    assert rest.startswith(b"HTTP/1.1 400 Bad Request")
    answer = await converse(
        post("/1") + b"GET /stream HTTP/1.1\r\n\r\n", HttpServer(handler, LIMITS), half_close=False
    )
    first, _, rest = answer.partition(b"stored /1")
    assert first.startswith(b"HTTP/1.1 200 OK")
    assert rest.startswith(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding")
    assert rest.endswith(b"0\r\n\r\n")
