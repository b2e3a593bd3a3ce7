"""Publishing over REST, with httpx as the client: the contract's answers, one by one."""

from __future__ import annotations

import httpx
import pytest

from engine.core.model import REST_DEVICE_ID
from tests.conftest import (
    ADMIN,
    OTHER_PRODUCT_ID,
    PRODUCT_ID,
    PRODUCT_ONLY,
    PUBLISHER,
    SUBSCRIBER,
    Served,
)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def publish(served: Served, path: str = "/v1/devices/events", **kwargs) -> httpx.Response:
    kwargs.setdefault("headers", bearer(PUBLISHER))
    async with httpx.AsyncClient(base_url=served.url) as client:
        return await client.post(path, **kwargs)


def stored(served: Served) -> list:
    return served.engine.journal.recent()  # type: ignore[attr-defined]


async def test_form_publish_is_stored_and_acknowledged(served: Served) -> None:
    response = await publish(served, data={"name": "temp", "data": "21.5", "ttl": "30"})
    assert response.status_code == 200
    assert response.json() == {"ok": True, "id": 1}
    [event] = stored(served)
    assert (event.id, event.name, event.data, event.ttl) == (1, "temp", "21.5", 30)
    assert event.device_id == REST_DEVICE_ID
    assert event.product_id is None
    assert event.published_at.endswith("Z") and len(event.published_at) == 24


async def test_json_publish(served: Served) -> None:
    body = {"name": "temp", "data": '{"t":21.5}', "private": True, "ttl": 5}
    response = await publish(served, json=body)
    assert response.status_code == 200
    [event] = stored(served)
    assert (event.data, event.private, event.ttl) == ('{"t":21.5}', True, 5)


async def test_token_in_the_query(served: Served) -> None:
    response = await publish(
        served, "/v1/devices/events?access_token=" + PUBLISHER, headers={}, data={"name": "a"}
    )
    assert response.status_code == 200


@pytest.mark.parametrize("key", [str(PRODUCT_ID), "thermostat"])
async def test_product_publish_by_id_or_slug(served: Served, key: str) -> None:
    response = await publish(served, f"/v1/products/{key}/events", data={"name": "temp"})
    assert response.status_code == 200
    assert stored(served)[0].product_id == PRODUCT_ID


@pytest.mark.parametrize(
    ("kwargs", "status", "error"),
    [
        ({"data": {"data": "1"}}, 400, "name not provided"),
        ({"json": {"name": ""}}, 400, "name not provided"),
        ({"json": {"name": 5}}, 400, "name must be a string, got a number"),
        ({"data": {"name": "x" * 65}}, 400, "name is 65 characters long; the limit is 64"),
        ({"data": {"name": "has space"}}, 400, "name must be printable ASCII without spaces"),
        ({"data": {"name": "hook-response/x"}}, 400, 'name may not start with "hook-"'),
        ({"data": {"name": "trackle/x"}}, 400, 'name may not start with "trackle"'),
        ({"data": {"name": "iotready"}}, 400, 'name may not start with "iotready"'),
        (
            {"data": {"name": "t", "data": "x" * 1025}},
            413,
            "data is 1025 bytes; the limit is 1024 bytes",
        ),
        ({"data": {"name": "t", "ttl": "soon"}}, 400, "ttl must be a whole number of seconds"),
        ({"data": {"name": "t", "private": "maybe"}}, 400, "private must be true or false"),
        ({"json": {"name": "t", "data": {"a": 1}}}, 400, "data must be a string, got an object"),
        (
            {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
            400,
            "malformed JSON body",
        ),
        ({"json": [1, 2]}, 400, "JSON body must be an object, got an array"),
        ({"content": b"garbage"}, 400, "malformed form body"),
        (
            {"content": b"x", "headers": {"Content-Type": "text/plain"}},
            415,
            "unsupported content type 'text/plain'",
        ),
        ({"content": b"x" * 70000}, 413, "request body larger than 65536 bytes"),
    ],
)
async def test_bad_publishes_get_a_clear_answer_and_store_nothing(
    served: Served, kwargs: dict, status: int, error: str
) -> None:
    headers = {**bearer(PUBLISHER), **kwargs.pop("headers", {})}
    response = await publish(served, headers=headers, **kwargs)
    assert response.status_code == status
    body = response.json()
    assert body["ok"] is False
    assert error in body["error"]
    assert stored(served) == []


@pytest.mark.parametrize(
    ("path", "headers", "status", "error"),
    [
        ("/v1/devices/events", {}, 401, "access token required"),
        ("/v1/devices/events", bearer("nope"), 401, "invalid access token"),
        ("/v1/devices/events", {"Authorization": "Basic abc"}, 401, "access token required"),
        ("/v1/devices/events", bearer(SUBSCRIBER), 403, 'does not have the "publish" scope'),
        ("/v1/devices/events", bearer(PRODUCT_ONLY), 403, "is limited to its products"),
        ("/v1/products/9999/events", bearer(ADMIN), 404, 'product "9999" not found'),
        ("/v1/products/nope/events", bearer(ADMIN), 404, 'product "nope" not found'),
        (
            f"/v1/products/{OTHER_PRODUCT_ID}/events",
            bearer(PRODUCT_ONLY),
            403,
            f"may not use product {OTHER_PRODUCT_ID}",
        ),
    ],
)
async def test_auth_and_scope(
    served: Served, path: str, headers: dict, status: int, error: str
) -> None:
    response = await publish(served, path, headers=headers, data={"name": "temp"})
    assert response.status_code == status
    assert error in response.json()["error"]
    if status == 401:
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert stored(served) == []


async def test_product_scoped_token_publishes_to_its_product(served: Served) -> None:
    response = await publish(
        served,
        f"/v1/products/{PRODUCT_ID}/events",
        headers=bearer(PRODUCT_ONLY),
        data={"name": "temp"},
    )
    assert response.status_code == 200


async def test_unknown_route_and_wrong_method(served: Served) -> None:
    async with httpx.AsyncClient(base_url=served.url) as client:
        missing = await client.get("/nope")
        wrong = await client.delete("/v1/devices/events")
        no_prefix = await client.get("/v1/events", headers=bearer(ADMIN))
    assert missing.status_code == 404
    assert missing.json() == {
        "ok": False,
        "error": "no route for /nope",
        "error_description": "no route for /nope",
    }
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "POST, GET, HEAD"
    assert no_prefix.status_code == 404
    assert "prefix is required" in no_prefix.json()["error"]


async def test_head_answers_what_get_would_without_the_content(served: Served) -> None:
    async with httpx.AsyncClient(base_url=served.url) as client:
        get = await client.get("/healthz")
        head = await client.head("/healthz")
        stream = await client.head("/v1/devices/events", headers=bearer(ADMIN))
        unauthorized = await client.head("/v1/devices/events")
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["content-length"] == get.headers["content-length"]
    assert stream.status_code == 200
    assert stream.headers["content-type"].startswith("text/event-stream")
    assert unauthorized.status_code == 401


async def test_rate_limit_answers_429(write_config, nursery) -> None:
    from engine.daemon import Engine
    from tests.conftest import Served as S

    config = write_config("\n[limits]\npublish_rate = 1\npublish_burst = 2\n")
    engine = Engine(config)
    [(host, port), *_] = await nursery.start(engine.run)
    served = S(engine, host, port)
    answers = [(await publish(served, data={"name": "t"})).status_code for _ in range(3)]
    assert answers == [200, 200, 429]
    assert len(stored(served)) == 2
    nursery.cancel_scope.cancel()


async def test_health_and_metrics(served: Served) -> None:
    await publish(served, data={"name": "temp"})
    async with httpx.AsyncClient(base_url=served.url) as client:
        health = await client.get("/healthz")
        metrics = await client.get("/metrics")
    assert health.json()["ok"] is True
    assert health.json()["last_event_id"] == 1
    text = metrics.text
    assert 'hookwire_events_published_total{source="rest"} 1.0' in text
    assert 'hookwire_http_requests_total{method="POST",route="publish",status="200"} 1.0' in text
    assert "hookwire_http_request_duration_seconds_bucket" in text
    assert "hookwire_sse_subscribers 0.0" in text
