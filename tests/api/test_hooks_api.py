"""Particle's webhook API: hooks created, listed, changed and deleted while the engine runs.

Real HTTP (httpx, and Particle's own JavaScript client), a real sink for the deliveries,
the memory journal or SQLite across a restart, in-process deliveries or a worker process.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from engine.config.settings import Config
from engine.daemon import Engine
from tests.conftest import ADMIN, PRODUCT_ID, PUBLISHER, Served, WriteConfig
from tests.helpers import publish_direct, wait_until
from tests.http.sink import Sink
from tests.particle_js import requires_node, run_particle_js_async

HOOKS_CONFIG = """
[delivery]
allow_networks = ["127.0.0.0/8"]
timeout = "2s"
retry = ["1s"]

[[hooks]]
name = "from-config"
event = "config-only"
url = "http://127.0.0.1:9/never"
"""

AUTH = {"Authorization": f"Bearer {ADMIN}"}

Start = Callable[..., Awaitable[Served]]


@pytest.fixture
async def sink(nursery: trio.Nursery) -> Sink:
    sink = Sink()
    await nursery.start(sink.serve)
    return sink


STOPPED: dict[int, trio.Event] = {}


@pytest.fixture
async def start(
    write_config: WriteConfig, nursery: trio.Nursery
) -> AsyncIterator[Callable[..., Awaitable[Served]]]:
    """Start an engine on ``HOOKS_CONFIG`` plus ``extra``; several may run one after another."""
    scopes: list[trio.CancelScope] = []

    async def start(extra: str = "", config: Config | None = None) -> Served:
        engine = Engine(config or write_config(HOOKS_CONFIG + extra))
        scope = trio.CancelScope()
        scopes.append(scope)
        stopped = STOPPED[id(engine)] = trio.Event()

        async def run(task_status: trio.TaskStatus[list[tuple[str, int]]]) -> None:
            try:
                with scope:
                    await engine.run(task_status=task_status)
            finally:
                stopped.set()

        [(host, port), *_] = await nursery.start(run)
        return Served(engine, host, port)

    yield start
    for scope in scopes:
        scope.cancel()


async def stop(served: Served) -> None:
    served.engine.shutdown()
    await STOPPED.pop(id(served.engine)).wait()


def document(sink: Sink, **fields: Any) -> dict[str, Any]:
    return {"event": "temp", "url": f"{sink.url}/hook", "requestType": "POST", **fields}


async def test_a_created_hook_delivers_lists_and_stops_after_its_delete(
    start: Start, sink: Sink
) -> None:
    served = await start()
    async with httpx.AsyncClient(base_url=served.url, headers=AUTH) as client:
        created = await client.post("/v1/webhooks", json=document(sink, deviceId=""))
        assert created.status_code == 200, created.text
        body = created.json()
        assert body["ok"] is True and len(body["id"]) == 24
        assert (body["event"], body["url"]) == ("temp", f"{sink.url}/hook")
        assert body["created_at"].endswith("Z")
        await publish_direct(served.engine, "temperature", "21.5")
        await wait_until(lambda: len(sink.requests) == 1)
        listed = (await client.get("/v1/webhooks")).json()
        assert [(h["name"], h["source"]) for h in listed] == [
            ("from-config", "config"),
            (body["id"], "api"),
        ]
        shown = (await client.get(f"/v1/webhooks/{body['id']}")).json()
        assert shown["enabled"] is True and shown["counters"]["delivered"] == 1
        assert shown["counters"]["last_delivered_at"].endswith("Z")
        assert shown["counters"]["last_failed_at"] is None
        deleted = await client.delete(f"/v1/webhooks/{body['id']}")
        assert deleted.json() == {"ok": True}
        await publish_direct(served.engine, "temperature", "22")
        assert (await client.get(f"/v1/webhooks/{body['id']}")).status_code == 404
    await trio.sleep(0.2)
    assert len(sink.requests) == 1


async def test_mistakes_get_one_sentence_and_change_nothing(start: Start, sink: Sink) -> None:
    served = await start()
    async with httpx.AsyncClient(base_url=served.url, headers=AUTH) as client:

        async def refused(status: int, path: str, **kwargs: Any) -> str:
            answer = await client.request(kwargs.pop("method", "POST"), path, **kwargs)
            assert answer.status_code == status, answer.text
            error = answer.json()
            assert error["error"] == error["error_description"]
            return str(error["error"])

        assert "not JSON" in await refused(400, "/v1/webhooks", content=b"{nope")
        huge = document(sink, body="x" * 70_000)
        assert "65536" in await refused(413, "/v1/webhooks", json=huge)
        assert await refused(400, "/v1/webhooks", json=[1]) == (
            "webhook: expected a JSON object, got an array"
        )
        template = await refused(400, "/v1/webhooks", json=document(sink, body="{{#a}}"))
        assert template.startswith("webhook.body: 1:")
        ssrf = await refused(
            400, "/v1/webhooks", json=document(sink, url="http://169.254.169.254/x")
        )
        assert ssrf.startswith("webhook.url: ") and "169.254.169.254" in ssrf
        await client.post("/v1/webhooks", json=document(sink, name="mine"))
        assert "exists already" in await refused(
            409, "/v1/webhooks", json=document(sink, name="mine")
        )
        config_id = (await client.get("/v1/webhooks")).json()[0]["id"]
        assert "comes from the config file" in await refused(
            409, f"/v1/webhooks/{config_id}", method="DELETE"
        )
        assert await refused(404, "/v1/products/nope/webhooks", method="GET") == (
            'product "nope" not found'
        )
        publisher = {"Authorization": f"Bearer {PUBLISHER}"}
        assert 'does not have the "hooks" scope' in await refused(
            403, "/v1/webhooks", json=document(sink), headers=publisher
        )
        names = [hook["name"] for hook in (await client.get("/v1/webhooks")).json()]
        assert names == ["from-config", "mine"]


async def test_product_hooks_are_apart_and_integrations_can_be_edited(
    start: Start, sink: Sink
) -> None:
    served = await start()
    async with httpx.AsyncClient(base_url=served.url, headers=AUTH) as client:
        path = f"/v1/products/{PRODUCT_ID}/integrations"
        created = await client.post(
            path, json={"integration_type": "Webhook", "deviceid": "dev1", **document(sink)}
        )
        assert created.status_code == 200, created.text
        hook_id = created.json()["id"]
        assert created.json()["integration_type"] == "Webhook"
        assert [h["id"] for h in (await client.get(path)).json()] == [hook_id]
        assert [h["source"] for h in (await client.get("/v1/integrations")).json()] == ["config"]
        await publish_direct(served.engine, "temp", "1", device="dev1")  # no product: no
        await publish_direct(served.engine, "temp", "2", device="dev1", product=PRODUCT_ID)
        await wait_until(lambda: len(sink.requests) == 1)
        edited = await client.put(f"{path}/{hook_id}", json={"url": f"{sink.url}/edited"})
        assert edited.status_code == 200, edited.text
        assert edited.json()["url"] == f"{sink.url}/edited"
        await publish_direct(served.engine, "temp", "3", device="dev1", product=PRODUCT_ID)
        await wait_until(lambda: len(sink.requests) == 2)
    assert [r.target for r in sink.requests] == ["/hook", "/edited"]


async def test_delete_answers_once_nothing_of_the_hook_can_be_sent(
    start: Start, nursery: trio.Nursery
) -> None:
    silent = Sink("silent")
    await nursery.start(silent.serve)
    served = await start()
    async with httpx.AsyncClient(base_url=served.url, headers=AUTH, timeout=10) as client:
        body = (await client.post("/v1/webhooks", json=document(silent, name="slow"))).json()
        for i in range(3):
            await publish_direct(served.engine, "temp", str(i))
        await wait_until(lambda: len(silent.requests) >= 1)
        started = trio.current_time()
        deleted = await client.delete(f"/v1/webhooks/{body['id']}")
        assert deleted.status_code == 200
        waited = trio.current_time() - started
    assert waited < 3  # the attempt in flight timed out (2 s) or had ended
    counts = served.engine.metrics.delivery_counts
    await wait_until(lambda: counts.outcomes.get(("slow", "dead"), 0) == 3)
    sent = len(silent.requests)
    await trio.sleep(1.5)  # past the 1 s retry: nothing more goes out
    assert len(silent.requests) == sent


@requires_node
async def test_a_hook_created_by_particle_api_js_survives_a_restart(
    start: Start, sink: Sink, write_config: WriteConfig, tmp_path: Path
) -> None:
    config = write_config(
        HOOKS_CONFIG,
        replace={'backend = "memory"': f'backend = "sqlite"\npath = "{tmp_path / "j.db"}"'},
    )
    first = await start(config=config)
    spec = tmp_path / "hook.json"
    spec.write_text(json.dumps({"event": "temp", "url": f"{sink.url}/hook"}))
    code, created = await run_particle_js_async(first.url, ADMIN, "create", str(spec))
    assert code == 0, created
    hook_id = created["body"]["id"]
    await stop(first)
    second = await start(config=config)
    code, listed = await run_particle_js_async(second.url, ADMIN, "list")
    assert code == 0 and [h["id"] for h in listed["body"]][1:] == [hook_id]
    await publish_direct(second.engine, "temp", "after the restart")
    await wait_until(lambda: len(sink.requests) == 1)


async def test_a_worker_process_delivers_to_a_created_hook_until_its_delete(
    start: Start, sink: Sink, write_config: WriteConfig
) -> None:
    served = await start(
        config=write_config(HOOKS_CONFIG.replace('timeout = "2s"', 'timeout = "2s"\nworkers = 1'))
    )
    assert served.engine.workers is not None
    async with httpx.AsyncClient(base_url=served.url, headers=AUTH, timeout=10) as client:
        await wait_until(lambda: served.engine.workers.pids[0] is not None, within=10)
        body = (await client.post("/v1/webhooks", json=document(sink))).json()
        await publish_direct(served.engine, "temp", "1")
        await wait_until(lambda: len(sink.requests) == 1, within=10)
        assert (await client.delete(f"/v1/webhooks/{body['id']}")).status_code == 200
        await publish_direct(served.engine, "temp", "2")
    await trio.sleep(0.3)
    assert len(sink.requests) == 1


@requires_node
async def test_particle_api_js_creates_lists_and_deletes_a_webhook(
    start: Start, sink: Sink, tmp_path: Path
) -> None:
    served = await start()
    spec = tmp_path / "hook.json"
    hook = {"event": "temp", "url": f"{sink.url}/js", "device": "dev1", "noDefaults": True}
    spec.write_text(json.dumps(hook))
    code, created = await run_particle_js_async(served.url, ADMIN, "create", str(spec))
    assert code == 0, created
    hook_id = created["body"]["id"]
    code, listed = await run_particle_js_async(served.url, ADMIN, "list")
    assert code == 0 and [h["id"] for h in listed["body"]][1:] == [hook_id]
    await publish_direct(served.engine, "temp", "21", device="dev1")
    await wait_until(lambda: len(sink.requests) == 1)
    code, deleted = await run_particle_js_async(served.url, ADMIN, "delete", hook_id)
    assert code == 0, deleted
    await publish_direct(served.engine, "temp", "22", device="dev1")
    code, refused = await run_particle_js_async(served.url, "hw_wrong", "list")
    assert code == 1 and refused["statusCode"] == 401
    assert refused["errorDescription"] == "invalid access token"
    await trio.sleep(0.2)
    assert len(sink.requests) == 1


@pytest.mark.parametrize("workers", [0, 1])
async def test_creates_and_deletes_under_load_lose_nothing_and_send_nothing_late(
    start: Start, sink: Sink, write_config: WriteConfig, workers: int
) -> None:
    extra = f'timeout = "2s"\nworkers = {workers}'
    served = await start(config=write_config(HOOKS_CONFIG.replace('timeout = "2s"', extra)))
    if workers:
        pool = served.engine.workers
        assert pool is not None
        await wait_until(lambda: pool.pids[0] is not None, within=10)
    published = 0
    late: list[str] = []

    def sent_to(path: str) -> int:
        return sum(1 for r in sink.requests if r.target == path)

    async with httpx.AsyncClient(base_url=served.url, headers=AUTH, timeout=10) as client:
        steady = await client.post("/v1/webhooks", json=document(sink, name="steady"))
        assert steady.status_code == 200

        async def publish() -> None:
            nonlocal published
            while published < 300:
                await publish_direct(served.engine, "temp", str(published))
                published += 1
                await trio.sleep(0.002)

        async def churn(i: int) -> None:
            path = f"/churn{i}"
            hook = document(sink, name=f"churn{i}", url=f"{sink.url}{path}")
            created = (await client.post("/v1/webhooks", json=hook)).json()
            await trio.sleep(0.01 * (i % 5))
            assert (await client.delete(f"/v1/webhooks/{created['id']}")).status_code == 200
            answered = sent_to(path)
            await trio.sleep(0.3)
            if sent_to(path) != answered:
                late.append(path)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(publish)
            for i in range(20):
                nursery.start_soon(churn, i)
                await trio.sleep(0.02)
    await wait_until(lambda: sent_to("/hook") == 300, within=20)
    ids = {r.header(b"webhook-id") for r in sink.requests if r.target == "/hook"}
    assert len(ids) == 300  # every event reached the steady hook, once
    assert late == []


async def test_a_test_request_shows_what_was_sent_and_answered(start: Start, sink: Sink) -> None:
    served = await start()
    async with httpx.AsyncClient(base_url=served.url, headers=AUTH) as client:
        hook = document(sink, name="tried", auth={"bearer": "s3cret"})
        hook_id = (await client.post("/v1/webhooks", json=hook)).json()["id"]
        tried = await client.post(f"/v1/webhooks/{hook_id}/test", json={"data": "21.5"})
        assert tried.status_code == 200, tried.text
        body = tried.json()
        assert body["answered"] is True and body["response"]["status"] == 200
        assert body["request"]["method"] == "POST"
        assert body["request"]["url"] == f"{sink.url}/hook"
        assert ["Authorization", "***"] in body["request"]["headers"]
        assert "data=21.5" in body["request"]["body"]
        missing = await client.post("/v1/webhooks/nope/test")
        assert missing.status_code == 404
    [received] = sink.requests
    assert received.header(b"authorization") == b"Bearer s3cret"
    assert (received.header(b"webhook-id") or b"").startswith(b"msg_test_")
    assert served.engine.metrics.delivery_counts.outcomes == {}  # nothing was counted
