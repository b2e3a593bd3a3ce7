"""bench/harness/nginx_sink.py against a real nginx on loopback (skipped when nginx is absent)."""

from __future__ import annotations

import math
import socket
import time
from pathlib import Path

import httpx
import pytest

import bench.harness.nginx_sink as _nginx_sink
from bench.harness.nginx_sink import NginxSink, nginx_path

pytestmark = pytest.mark.skipif(
    nginx_path() is None, reason="nginx is not installed (apt-get install nginx-light)"
)

BODY = {"name": "bench/temp", "data": "12.5", "padding": "x" * 20_000}
"""A form body bigger than nginx's buffers: it must be read and discarded, not cut short."""


def post(client: httpx.Client, port: int, webhook_id: str | None) -> None:
    headers = {"webhook-id": webhook_id} if webhook_id is not None else {}
    response = client.post(f"http://127.0.0.1:{port}/d0/h0", data=BODY, headers=headers)
    assert response.status_code == 200
    assert response.content == b""


def one_connection() -> httpx.Client:
    return httpx.Client(limits=httpx.Limits(max_connections=1), timeout=5.0)


def test_counts_keep_alive_posts_per_port_and_id() -> None:
    with NginxSink(2) as sink, one_connection() as first, one_connection() as second:
        a, b = sink.ports
        before = time.monotonic()
        for webhook_id in ("msg_1", "msg_2", "msg_1"):  # the last one is a duplicate
            post(first, a, webhook_id)
        post(second, b, "msg_3")
        post(second, b, None)
        after = time.monotonic()

        assert sink.count() == (5, 3, 0)
        stats = sink.stats()
        assert stats.requests == 5
        assert stats.unique_ids == 3
        assert stats.missing_id == 1
        assert stats.duplicates == 1
        assert stats.per_port == {a: 3, b: 2}
        assert stats.connections == 2  # bodies read and discarded: keep-alive held
        assert stats.bad_requests == 0
        assert all(before - 0.005 <= t <= after + 0.005 for t in stats.times)
        assert len(stats.stamps) == 5
        assert all(math.isnan(s) for s in stats.stamps)
        assert stats.cpu >= 0.0
        assert sink.ids() == {b"msg_1", b"msg_2", b"msg_3"}

        sink.reset()
        assert sink.count() == (0, 0, 0)
        assert sink.ids() == set()
        post(first, a, "msg_1")  # seen before the reset: unique again
        assert sink.count() == (1, 1, 0)
        assert sink.stats().per_port == {a: 1}
        prefix = sink._dir
        assert prefix is not None
        pid = sink.pid
    assert not prefix.exists()
    assert not Path(f"/proc/{pid}").exists()


def test_a_port_in_use_is_named() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(RuntimeError, match=f"port {port}: it is in use"):
            NginxSink(1, port_numbers=[port]).start()
        # nginx itself retries a busy port for 2.5 s: the sink does not wait for that.
        assert time.monotonic() - started < 2.0


def test_silent_ports_accept_and_never_answer() -> None:
    with (
        NginxSink(1, silent_ports=1) as sink,
        socket.create_connection(("127.0.0.1", sink.silent_ports[0]), timeout=0.2) as dead,
    ):
        dead.sendall(b"POST /d0/h0 HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\na=1")
        deadline = time.monotonic() + 2.0
        while sink.count()[2] < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sink.count() == (0, 0, 1)
        with pytest.raises(TimeoutError):
            dead.recv(1)
        assert sink.stats().silent_requests == 1


def test_a_port_taken_between_pick_and_bind_is_picked_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = _nginx_sink._free_ports
    picks: list[list[int]] = []
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        def race(count: int) -> list[int]:
            picks.append([port] if not picks else real(count))
            return picks[-1]

        monkeypatch.setattr(_nginx_sink, "_free_ports", race)
        with NginxSink(1) as sink:
            assert len(picks) == 2
            assert sink.ports == picks[1] != [port]
