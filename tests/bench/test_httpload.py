"""bench/harness/httpload.py: the open model against a server that cannot keep up (loopback)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from bench.harness.httpload import LoadSpec, Render, run_load

ANSWER = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
SERVICE_TIME = 0.02  # seconds per answer: the server manages 50 requests/s
RATE = 200.0  # requests/s offered: four times that


def stamped_gets() -> Render:
    """A renderer (it runs in the worker process): each request's stamp is its path."""

    def render(stamps: Sequence[float]) -> bytes:
        return b"".join(b"GET /%.6f HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % s for s in stamps)

    return render


def serve_slowly(listener: socket.socket, paths: list[bytes]) -> None:
    """Accept one connection; answer each request SERVICE_TIME after reading it, in order.

    Each request's path goes into ``paths``.
    """
    try:
        conn, _ = listener.accept()
    except OSError:
        return  # the test closed the listener
    with conn:
        buf = b""
        try:
            while data := conn.recv(65536):
                buf += data
                while (end := buf.find(b"\r\n\r\n")) >= 0:
                    paths.append(buf.split(b" ", 2)[1])
                    buf = buf[end + 4 :]
                    time.sleep(SERVICE_TIME)
                    conn.sendall(ANSWER)
        except OSError:
            return  # the client went away first


@contextmanager
def slow_server(paths: list[bytes]) -> Iterator[int]:
    """A one-connection server thread on a free loopback port; yields the port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    thread = threading.Thread(target=serve_slowly, args=(listener, paths), daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()
        thread.join(5)


def test_open_model_latency_runs_from_the_schedule_so_a_slow_server_shows() -> None:
    paths: list[bytes] = []
    with slow_server(paths) as port:
        spec = LoadSpec(
            host="127.0.0.1",
            port=port,
            connections=1,
            pipeline=1,
            duration=0.8,
            warmup=0.0,
            rate=RATE,
            renderer=stamped_gets,
        )
        run = run_load(spec)
    result = run.result
    assert not result.errors
    assert result.ok >= 20  # about duration / SERVICE_TIME
    latencies = list(result.latencies)
    # Answer k comes ~SERVICE_TIME * (k + 1) after the start, but request k was due at
    # k / RATE: each latency is ~15 ms longer than the one before. Measured from when each
    # request was actually sent, every one would be ~SERVICE_TIME (coordinated omission).
    growth = SERVICE_TIME - 1 / RATE
    assert latencies == sorted(latencies)
    assert latencies[0] < 5 * SERVICE_TIME
    assert latencies[-1] > 0.5 * growth * len(latencies)
    assert latencies[-1] > 10 * SERVICE_TIME
    # The generator fell behind its schedule (no free slot on the one connection) and says so.
    assert result.send_lag_max > 0.5 * growth * (len(latencies) - 1)
    assert result.late_sends >= result.ok - 2
    assert result.sent <= result.ok + 1
    # Each request was rendered with its own scheduled time, not the time it was sent.
    stamps = [float(path[1:]) for path in paths]
    assert len(stamps) == result.sent
    for index, stamp in enumerate(stamps):
        assert abs(stamp - (run.start + index / RATE)) <= 1e-6
