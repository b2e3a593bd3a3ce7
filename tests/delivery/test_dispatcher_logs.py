"""Failed attempts in the log, as they happen, from a dispatcher sending to real loopback
targets (deliveries in the test's process, on trio's MockClock): a failure in full at
once, then at most one line per hook per 10 s, with the count of the rest."""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import trio
import trio.testing

from engine.daemon import Engine
from engine.delivery.failure_log import WINDOW
from tests.conftest import WriteConfig
from tests.helpers import publish_direct, wait_until
from tests.http.sink import Reply, Sink

Start = Callable[..., Awaitable[Engine]]

ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


def closed_ports(n: int) -> list[int]:
    """Loopback ports with nobody listening."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


@pytest.fixture
async def start(
    write_config: WriteConfig, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> AsyncIterator[Start]:
    caplog.set_level(logging.INFO, logger="hookwire.delivery")

    async def start(url: str, extra: str = "", sink: Sink | None = None) -> Engine:
        if sink is not None:
            await nursery.start(sink.serve)
        config = write_config(
            '\n[delivery]\nallow_networks = ["127.0.0.0/8"]\n'
            f'\n[[hooks]]\nname = "temps"\nevent = "temp"\nurl = "{url}"\n{extra}\n'
        )
        engine = Engine(config)
        await nursery.start(engine.run)
        return engine

    yield start
    nursery.cancel_scope.cancel()


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    """(level, message) of the lines about the hook, in order."""
    return [
        (r.levelno, r.getMessage())
        for r in caplog.records
        if r.name == "hookwire.delivery" and r.getMessage().startswith('hook "temps"')
    ]


async def test_a_refused_connection_is_logged_at_once_with_the_next_try(
    start: Start, caplog: pytest.LogCaptureFixture, autojump_clock: trio.testing.MockClock
) -> None:
    [port] = closed_ports(1)
    engine = await start(f"http://127.0.0.1:{port}/hook", 'retry = ["30s"]')
    published = trio.current_time()
    await publish_direct(engine, "temp", "21.5")
    await wait_until(lambda: len(lines(caplog)) == 1)
    assert trio.current_time() - published < 1
    [(level, text)] = lines(caplog)
    [attempt] = engine.journal.attempts
    assert level == logging.WARNING
    assert re.fullmatch(
        rf'hook "temps" delivery {attempt.delivery_id} attempt 1 failed: cannot connect to '
        rf"http://127\.0\.0\.1:{port} at 127\.0\.0\.1:{port}: connection refused from "
        rf"127\.0\.0\.1; next try {ISO} \(in \d\d\.\d s\)",
        text,
    ), text
    # The second attempt, 30 s ±20% later, is the last: a new window, in full too.
    await wait_until(lambda: len(lines(caplog)) == 2, within=60)
    level, text = lines(caplog)[1]
    assert level == logging.WARNING
    assert text.startswith(f'hook "temps" delivery {attempt.delivery_id} attempt 2 failed: ')
    assert text.endswith("; gave up: dead letter")
    assert [a.number for a in engine.journal.attempts] == [1, 2]


async def test_a_status_a_summary_then_delivers_again(
    start: Start, caplog: pytest.LogCaptureFixture, autojump_clock: trio.testing.MockClock
) -> None:
    sink = Sink()
    sink.script(Reply(503), Reply(503))
    engine = await start("http://127.0.0.1:{{port}}/hook", 'retry = ["1s", "30s"]', sink)
    await publish_direct(engine, "temp", f'{{"port":{sink.port}}}')
    await wait_until(lambda: len(sink.requests) == 2, within=5)
    second_failed = trio.current_time()
    await wait_until(lambda: len(lines(caplog)) == 3, within=60)
    first, summary, recovered = lines(caplog)
    webhook_id = sink.requests[0].header(b"webhook-id")
    assert webhook_id is not None
    key = webhook_id.decode()
    assert first[0] == logging.WARNING
    assert re.fullmatch(
        rf'hook "temps" delivery {key} attempt 1 failed: status 503 from '
        rf"127\.0\.0\.1:{sink.port}; next try {ISO} \(in \d\.\d s\)",
        first[1],
    ), first[1]
    # Attempt 2, about 1 s later, was held back: its count came once the hook had not
    # failed for 10 s (attempt 3 comes 30 s ±20% after it).
    assert summary[0] == logging.WARNING
    assert re.fullmatch(
        rf'hook "temps": 1 more failure in the last 1\d s; the last: delivery {key} '
        rf"attempt 2 failed: status 503 from 127\.0\.0\.1:{sink.port}",
        summary[1],
    ), summary[1]
    assert recovered == (
        logging.INFO,
        f'hook "temps" delivers again: delivery {key} delivered at attempt 3',
    )
    assert len(sink.requests) == 3
    assert second_failed + WINDOW <= trio.current_time()


async def test_a_hook_failing_many_times_at_once_writes_two_lines(
    start: Start, caplog: pytest.LogCaptureFixture, autojump_clock: trio.testing.MockClock
) -> None:
    # One destination each (a breaker each, none opens): 30 failures as fast as they come.
    ports = closed_ports(30)
    engine = await start("http://127.0.0.1:{{port}}/hook", "retry = []")
    for port in ports:
        await publish_direct(engine, "temp", f'{{"port":{port}}}')
    await wait_until(lambda: len(engine.journal.attempts) == 30)
    failed = trio.current_time()
    [(level, text)] = lines(caplog)
    assert level == logging.WARNING and "attempt 1 failed: cannot connect" in text
    await wait_until(lambda: len(lines(caplog)) == 2, within=WINDOW + 1)
    assert trio.current_time() - failed <= WINDOW + 0.1
    level, summary = lines(caplog)[1]
    assert level == logging.WARNING
    assert re.match(r'hook "temps": 29 more failures in the last 1\d s, 29 gave up; ', summary)
    await trio.sleep(10 * WINDOW)
    assert len(lines(caplog)) == 2
