"""A target that is down, as a new user meets it: `hookwire run` with its delivery worker
processes (the default), a hook at a closed port, and the failure in the daemon's log
within a second of the publish."""

from __future__ import annotations

import re
import signal
import socket
from pathlib import Path

import httpx
import trio

from engine.cli import serve
from engine.core import logs
from engine.delivery import worker
from tests.conftest import ADMIN, BASE_CONFIG
from tests.e2e.test_daemon import Daemon, daemon, write

LINE = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR) [\w.]+: ")
"""The start of every line the daemon logs (engine.core.logs's text format), from any of its
processes."""


def closed_port() -> int:
    """A loopback port with nobody listening."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def read_until(d: Daemon, pattern: bytes) -> re.Match[bytes]:
    """Read the daemon's stderr until a line matches ``pattern`` (multiline)."""
    assert d.process.stderr is not None
    found = re.search(pattern, d.stderr, re.MULTILINE)
    while found is None:
        chunk = await d.process.stderr.receive_some(4096)
        assert chunk, f"the daemon's stderr ended: {d.stderr.decode()}"
        d.stderr += chunk
        found = re.search(pattern, d.stderr, re.MULTILINE)
    return found


def test_workers_log_as_the_main_process_does() -> None:
    # One definition of the format, engine.core.logs, set up by both with the config's.
    assert worker.logs is serve.logs is logs


async def test_a_failing_target_is_in_the_log_within_a_second(tmp_path: Path) -> None:
    port = closed_port()
    config = BASE_CONFIG + (
        '\n[delivery]\nallow_networks = ["127.0.0.0/8"]\n'
        f'\n[[hooks]]\nname = "temps"\nevent = "temp"\nurl = "http://127.0.0.1:{port}/in"\n'
    )
    assert "workers" not in config  # the default: "auto", at least one worker process
    async with daemon(write(tmp_path, config)) as d:
        with trio.fail_after(10):
            await read_until(d, rb"delivery worker 0 ready \(pid \d+\)$")
        headers = {"Authorization": f"Bearer {ADMIN}"}
        async with httpx.AsyncClient(base_url=d.url, headers=headers, timeout=5) as client:
            published = await client.post("/v1/devices/events", data={"name": "temp"})
            assert published.status_code == 200
            with trio.fail_after(1):
                found = await read_until(
                    d, rb'^.* WARNING hookwire\.delivery: hook "temps" delivery .* failed: .*$'
                )
        d.process.send_signal(signal.SIGTERM)
        with trio.fail_after(10):
            assert await d.process.wait() == 0
        assert d.process.stderr is not None
        while chunk := await d.process.stderr.receive_some(4096):
            d.stderr += chunk
    line = found[0]
    assert re.fullmatch(
        rb"\S+Z WARNING hookwire\.delivery: "
        rb'hook "temps" delivery msg_\w+ attempt 1 failed: cannot connect to '
        rb"http://127\.0\.0\.1:%d at 127\.0\.0\.1:%d: connection refused from 127\.0\.0\.1; "
        rb"next try \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(in \d\.\d s\)" % (port, port),
        line,
    ), line
    logged = d.stderr.decode().splitlines()
    print("\n".join(logged))  # the sample the issue asks for, with -s
    # One format for every process, and the main process's level: info, not debug (a
    # worker logs "stopping; N attempts in flight" at debug when it stops).
    assert all(LINE.match(text.encode()) for text in logged), logged
    assert not any(" DEBUG " in text for text in logged)
    assert "Traceback" not in d.stderr.decode()
