"""CORS on the daemon as users run it: `[api] cors_origins` from the file, checked by
`hookwire check`, and what a page on another origin does: preflight, stream, publish."""

from __future__ import annotations

from contextlib import aclosing
from pathlib import Path

import httpx
from httpx_sse import aconnect_sse

from tests.conftest import ADMIN, BASE_CONFIG, SUBSCRIBER
from tests.e2e.test_daemon import daemon, write
from tests.helpers import run_cli

PAGE = "http://127.0.0.1:18481"


async def test_check_names_the_bad_origin(tmp_path: Path) -> None:
    config = write(tmp_path, BASE_CONFIG + '\n[api]\ncors_origins = ["http://127.0.0.1:18481/"]\n')
    result = await run_cli("check", "--config", str(config))
    assert result.returncode == 1
    assert (
        b"api.cors_origins[0]: expected an origin, without a trailing slash or anything after "
        b'the host and port ("http://127.0.0.1:18481"), got "http://127.0.0.1:18481/"'
    ) in result.stderr


async def test_a_page_on_a_listed_origin_streams_and_publishes(tmp_path: Path) -> None:
    config = write(tmp_path, BASE_CONFIG + f'\n[api]\ncors_origins = ["{PAGE}"]\n')
    async with (
        daemon(config) as d,
        httpx.AsyncClient(base_url=d.url, timeout=5) as client,
    ):
        refused = await client.options(
            "/v1/devices/events",
            headers={"Origin": "http://127.0.0.1:9", "Access-Control-Request-Method": "POST"},
        )
        assert refused.status_code == 403
        asked = await client.options(
            "/v1/devices/events",
            headers={
                "Origin": PAGE,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        assert asked.status_code == 204
        assert asked.headers["access-control-allow-origin"] == PAGE
        assert asked.headers["access-control-allow-headers"] == "authorization, content-type"
        # new EventSource(".../v1/devices/events?access_token=..."): Origin, no preflight.
        stream = f"/v1/devices/events?access_token={SUBSCRIBER}"
        async with aconnect_sse(client, "GET", stream, headers={"Origin": PAGE}) as source:
            assert source.response.headers["access-control-allow-origin"] == PAGE
            published = await client.post(
                "/v1/devices/events",
                json={"name": "temp", "data": "21.5"},
                headers={"Origin": PAGE, "Authorization": f"Bearer {ADMIN}"},
            )
            assert published.json() == {"ok": True, "id": 1}
            assert published.headers["access-control-allow-origin"] == PAGE
            async with aclosing(source.aiter_sse()) as events:
                first = await events.__anext__()
    assert (first.event, first.id) == ("temp", "1")
