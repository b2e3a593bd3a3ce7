"""The API over TLS: httpx and an SSE client speak https to an engine with a certificate."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest
import trio
from httpx_sse import aconnect_sse

from engine.daemon import Engine
from tests.conftest import ADMIN, PUBLISHER, SUBSCRIBER, WriteConfig
from tests.helpers import wait_until
from tests.http.sink import Sink
from tests.tls_pair import TlsFiles, write_tls_files

HOOK = """
[delivery]
allow_networks = ["127.0.0.0/8"]

[[hooks]]
name = "temps"
event = "temp"
url = "{url}/hook"
"""


@dataclass
class Secured:
    engine: Engine
    url: str
    tls: TlsFiles
    sink: Sink

    def client(self, token: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}"},
            verify=self.tls.client_context(),
            timeout=5,
        )


@pytest.fixture
async def secured(
    write_config: WriteConfig, tmp_path: Path, nursery: trio.Nursery
) -> AsyncIterator[Secured]:
    tls = write_tls_files(tmp_path / "tls")
    sink = Sink()
    await nursery.start(sink.serve)
    config = write_config(
        HOOK.format(url=sink.url), replace={"port = 0\n": f"port = 0\n{tls.toml()}"}
    )
    engine = Engine(config)
    [(host, port), *_] = await nursery.start(engine.run)
    yield Secured(engine, f"https://{host}:{port}", tls, sink)
    nursery.cancel_scope.cancel()


async def test_a_publish_over_https_is_stored_and_delivered(secured: Secured) -> None:
    async with secured.client(PUBLISHER) as client:
        response = await client.post("/v1/devices/events", data={"name": "temp", "data": "21.5"})
    assert response.json() == {"ok": True, "id": 1}
    await wait_until(lambda: len(secured.sink.requests) == 1)


async def test_the_webhook_routes_answer_over_https(secured: Secured) -> None:
    document = {"event": "humidity", "url": f"{secured.sink.url}/h", "requestType": "POST"}
    async with secured.client(ADMIN) as client:
        created = await client.post("/v1/webhooks", json=document)
        assert created.status_code == 200, created.text
        listed = (await client.get("/v1/webhooks")).json()
    assert created.json()["id"] in [hook["id"] for hook in listed]


async def test_an_sse_client_gets_events_over_https(secured: Secured) -> None:
    async with (
        secured.client(SUBSCRIBER) as subscriber,
        secured.client(PUBLISHER) as publisher,
        aconnect_sse(subscriber, "GET", "/v1/events/temp") as source,
    ):
        assert source.response.headers["content-type"] == "text/event-stream; charset=utf-8"
        for data in ("21.5", "22.0"):
            response = await publisher.post(
                "/v1/devices/events", data={"name": "temp", "data": data}
            )
            assert response.status_code == 200
        got = []
        with trio.fail_after(5):
            async with aclosing(source.aiter_sse()) as events:
                async for sse in events:
                    got.append((sse.event, orjson.loads(sse.data)["data"]))
                    if len(got) == 2:
                        break
    assert got == [("temp", "21.5"), ("temp", "22.0")]


async def test_plain_http_is_refused_and_https_goes_on(secured: Secured) -> None:
    plain = secured.url.replace("https://", "http://")
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(f"{plain}/healthz")
    assert response.status_code == 400
    async with secured.client(ADMIN) as client:
        assert (await client.get("/healthz")).status_code == 200
        metrics = (await client.get("/metrics")).text
    assert secured.engine.server.tls_failures == 1
    assert 'hookwire_tls_handshake_failures_total{listener="api"} 1.0' in metrics
