"""Readiness and the metrics page's token, on the daemon's app over real sockets: /readyz
answers 503 with every reason while the journal cannot write (or a delivery worker is down),
/healthz stays liveness; ``[metrics] require_token`` puts /metrics behind the metrics scope."""

from __future__ import annotations

import hashlib

import httpx
import pytest
import trio

from engine.config.settings import Config
from engine.daemon import Engine
from tests.conftest import ADMIN, PUBLISHER, WriteConfig

SCRAPER = "hw_scrape_0123456789abcdefghijklmnopqr"
METRICS_TOKEN = f"""
[metrics]
require_token = true

[[auth.tokens]]
name = "prometheus"
sha256 = "{hashlib.sha256(SCRAPER.encode()).hexdigest()}"
scopes = ["metrics"]
"""


async def serve(config: Config, nursery: trio.Nursery) -> tuple[Engine, httpx.AsyncClient]:
    engine = Engine(config)
    [(host, port), *_] = await nursery.start(engine.run)
    return engine, httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=5)


async def test_ready_until_the_journal_cannot_write_then_ready_again(
    config: Config, nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, client = await serve(config, nursery)
    async with client:
        ready = await client.get("/readyz")
        assert (ready.status_code, ready.json()) == (200, {"ok": True, "ready": True})
        failing = ["the journal cannot write: disk I/O error", "delivery worker 0 is starting"]
        monkeypatch.setattr(engine.journal, "problems", lambda: failing[:1])
        monkeypatch.setattr(engine, "workers", None)
        not_ready = await client.get("/readyz")
        assert not_ready.status_code == 503
        assert not_ready.json()["error"] == "not ready: the journal cannot write: disk I/O error"
        assert not_ready.json()["problems"] == failing[:1]
        assert (await client.get("/healthz")).status_code == 200  # alive all the same
        monkeypatch.setattr(engine.journal, "problems", list)
        assert (await client.get("/readyz")).status_code == 200


async def test_metrics_need_a_token_of_the_metrics_scope_when_asked(
    write_config: WriteConfig, nursery: trio.Nursery
) -> None:
    _, client = await serve(write_config(METRICS_TOKEN), nursery)
    async with client:
        assert (await client.get("/metrics")).status_code == 401
        publisher = await client.get("/metrics", headers={"Authorization": f"Bearer {PUBLISHER}"})
        assert publisher.status_code == 403
        assert publisher.json()["error"] == 'token "publisher" does not have the "metrics" scope'
        for token in (SCRAPER, ADMIN):
            page = await client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
            assert page.status_code == 200 and "hookwire_" in page.text


async def test_metrics_stay_open_by_default(config: Config, nursery: trio.Nursery) -> None:
    _, client = await serve(config, nursery)
    async with client:
        assert (await client.get("/metrics")).status_code == 200
