"""Random and mutated requests against the whole API: answered or closed, never a crash."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.config.settings import Config
from engine.daemon import Engine
from tests.conftest import ADMIN

AUTH = b"Authorization: Bearer " + ADMIN.encode()
SEEDS = [
    b"POST /v1/devices/events HTTP/1.1\r\n" + AUTH + b"\r\nContent-Length: 23\r\n\r\n"
    b"name=temp&data=21.5&t=1",
    b"POST /v1/products/1001/events HTTP/1.1\r\n" + AUTH + b"\r\n"
    b"Content-Type: application/json\r\nContent-Length: 27\r\n\r\n"
    b'{"name":"temp","data":"xy"}',
    b"GET /v1/devices/events/temp HTTP/1.1\r\n" + AUTH + b"\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\n\r\n",
    b"GET /healthz?x=%ff HTTP/1.1\r\n\r\n",
]
ALLOWED = {
    b"200", b"400", b"401", b"403", b"404", b"405", b"408", b"413", b"414", b"415", b"417",
    b"431", b"501",
}  # fmt: skip
GOOD = SEEDS[0]


async def converse(engine: Engine, data: bytes) -> bytes:
    client, server_side = trio.testing.memory_stream_pair()
    received = bytearray()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(engine.server.serve_connection, server_side)
        await client.send_all(data)
        await client.send_stream.aclose()
        with trio.fail_after(5):
            while chunk := await client.receive_some(65536):
                received += chunk
    return bytes(received)


def mutate(data: bytes, edits: list[tuple[int, int]], cut: int) -> bytes:
    out = bytearray(data)
    for i, value in edits:
        out[i % len(out)] = value
    return bytes(out[: max(1, len(out) - cut)])


requests = st.one_of(
    st.binary(max_size=300),
    st.builds(
        mutate,
        st.sampled_from(SEEDS),
        st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=4),
        st.integers(0, 20),
    ),
    st.lists(st.sampled_from(SEEDS), min_size=2, max_size=4).map(b"".join),
    # Many pipelined requests with bare CRLFs between them, and a header line that never ends.
    st.lists(st.sampled_from([*SEEDS, b"\r\n", b"\r\n\r\n"]), max_size=60).map(b"".join),
    st.integers(0, 40_000).map(lambda n: b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * n),
)


@pytest.fixture
def engine(config: Config) -> Engine:
    return Engine(config)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(requests)
async def test_api_answers_or_closes_and_keeps_serving(
    engine: Engine, caplog: pytest.LogCaptureFixture, data: bytes
) -> None:
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        answer = await converse(engine, data)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    for line in answer.split(b"\r\n"):
        if line.startswith(b"HTTP/1.1 "):
            assert line[9:12] in ALLOWED, answer
    assert (await converse(engine, GOOD)).startswith(b"HTTP/1.1 200 OK")
