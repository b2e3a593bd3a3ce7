"""config/deploy/nginx.conf in front of a daemon, in the real nginx: events arrive through it
one by one as they are published, and a reconnect with Last-Event-ID resumes with no gap."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import aclosing, contextmanager
from pathlib import Path

import httpx
import orjson
import pytest
import trio
from httpx_sse import aconnect_sse

from tests.conftest import ADMIN, BASE_CONFIG
from tests.e2e.test_daemon import daemon, write
from tests.helpers import ROOT

SITE = ROOT / "config" / "deploy" / "nginx.conf"

START_TIMEOUT = 10.0
"""Seconds nginx gets to bind its port."""


def nginx_binary() -> str | None:
    found = shutil.which("nginx") or "/usr/sbin/nginx"
    return found if Path(found).exists() else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def data_of(sse_data: str) -> str:
    """The published ``data`` of an SSE event's JSON payload."""
    return str(orjson.loads(sse_data)["data"])


def main_config(prefix: Path, site: str) -> str:
    """A main nginx.conf that keeps every file in ``prefix`` (no root needed) and holds the
    site file as nginx's http block would include it."""
    return f"""\
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 256; }}
http {{
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    access_log {prefix}/access.log;
{site}
}}
"""


@contextmanager
def nginx(prefix: Path, daemon_port: int) -> Iterator[int]:
    """The site file templated for the daemon's port and a free one for nginx; its port."""
    binary = nginx_binary()
    if binary is None:
        pytest.skip("nginx is not installed (.ci/run installs nginx-light)")
    port = free_port()
    site = SITE.read_text()
    assert "server 127.0.0.1:8080;" in site and "listen 80;" in site
    site = site.replace("server 127.0.0.1:8080;", f"server 127.0.0.1:{daemon_port};")
    site = site.replace("listen 80;", f"listen 127.0.0.1:{port};")
    conf = prefix / "nginx.conf"
    conf.write_text(main_config(prefix, site))
    command = [binary, "-c", str(conf), "-p", str(prefix), "-e", str(prefix / "error.log")]
    with (prefix / "output.log").open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert process.poll() is None, (prefix / "output.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.05)
        yield port
    finally:
        process.send_signal(signal.SIGQUIT)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def test_events_through_nginx_one_by_one_and_resumed(tmp_path: Path) -> None:
    async with daemon(write(tmp_path, BASE_CONFIG)) as d:
        prefix = tmp_path / "nginx"
        prefix.mkdir()
        with nginx(prefix, d.port) as port:
            headers = {"Authorization": f"Bearer {ADMIN}"}
            proxy = f"http://127.0.0.1:{port}"
            async with (
                httpx.AsyncClient(base_url=proxy, headers=headers, timeout=10) as client,
                httpx.AsyncClient(base_url=d.url, headers=headers, timeout=10) as direct,
            ):

                async def publish(n: int) -> None:
                    answer = await direct.post(
                        "/v1/devices/events", data={"name": "temp", "data": str(n)}
                    )
                    assert answer.json()["ok"], answer.text

                async with aconnect_sse(client, "GET", "/v1/devices/events/temp") as source:
                    assert source.response.headers["content-type"].startswith("text/event-stream")
                    async with aclosing(source.aiter_sse()) as events:
                        # One at a time: each arrives before the next is published.
                        for n in range(1, 4):
                            await publish(n)
                            with trio.fail_after(1):
                                event = await events.__anext__()
                            assert (event.id, data_of(event.data)) == (str(n), str(n))
                last = "3"
                # Published while no one listened; a reconnect through nginx with
                # Last-Event-ID gets them, in order, and then the live ones.
                for n in range(4, 7):
                    await publish(n)
                resume = {"Last-Event-ID": last}
                async with (
                    aconnect_sse(
                        client, "GET", "/v1/devices/events/temp", headers=resume
                    ) as source,
                    aclosing(source.aiter_sse()) as events,
                ):
                    got = []
                    with trio.fail_after(2):
                        while len(got) < 3:
                            event = await events.__anext__()
                            got.append((event.id, data_of(event.data)))
                    assert got == [("4", "4"), ("5", "5"), ("6", "6")]
                    await publish(7)
                    with trio.fail_after(1):
                        event = await events.__anext__()
                    assert (event.id, data_of(event.data)) == ("7", "7")
                # A publish through nginx too (its path matches the streams location).
                answer = await client.post("/v1/devices/events", data={"name": "other"})
                assert answer.status_code == 200, answer.text
