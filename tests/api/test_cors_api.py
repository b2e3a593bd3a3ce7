"""CORS over real sockets, on the daemon's app: what a page on another origin may read, its
preflights, and the answers to requests without Origin, unchanged byte for byte."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing

import httpx
import orjson
import pytest
import trio
from httpx_sse import aconnect_sse

from engine.api.app import Api
from engine.config.settings import Config
from engine.core.bus import Bus
from engine.core.model import Event, EventDraft
from engine.daemon import Engine
from engine.http.server import HttpServer
from engine.journal import JournalUnavailable, MemoryJournal, PendingAppend
from engine.metrics import Metrics
from tests.conftest import ADMIN, PUBLISHER, SUBSCRIBER, Served, WriteConfig
from tests.helpers import RawClient, publish_direct, wait_until

PAGE = "https://dashboard.example.com"
LOCAL = "http://127.0.0.1:18481"
OTHER = "https://evil.example"
CORS = f'\n[api]\ncors_origins = ["{PAGE}", "{LOCAL}"]\n'
EXPOSED = "allow, hookwire-oldest-event-id, www-authenticate"

Start = Callable[[str], Awaitable[Served]]


@pytest.fixture
def config(write_config: WriteConfig) -> Config:
    return write_config(CORS)


@pytest.fixture
def start(write_config: WriteConfig, nursery: trio.Nursery) -> Start:
    """Start another engine, on the tests' base config plus ``extra``."""

    async def start(extra: str) -> Served:
        engine = Engine(write_config(extra))
        [(host, port), *_] = await nursery.start(engine.run)
        return Served(engine, host, port)

    return start


@pytest.fixture
async def client(served: Served) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=served.url, timeout=5) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def access_control(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("access-control-")}


def readable_by(origin: str) -> dict[str, str]:
    """The headers of an answer a page of ``origin`` may read."""
    return {
        "access-control-allow-origin": origin,
        "access-control-expose-headers": EXPOSED,
    }


def preflight(path: str, origin: str, method: str = "POST", headers: str = "") -> bytes:
    asked = f"Access-Control-Request-Headers: {headers}\r\n" if headers else ""
    return (
        f"OPTIONS {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: {origin}\r\n"
        f"Access-Control-Request-Method: {method}\r\n{asked}\r\n"
    ).encode()


# --- a page of a listed origin ----------------------------------------------------------------


async def test_a_listed_origin_may_read_the_answers(client: httpx.AsyncClient) -> None:
    health = await client.get("/healthz", headers={"Origin": PAGE})
    assert health.status_code == 200
    assert access_control(health) == readable_by(PAGE)
    assert health.headers["vary"] == "origin"
    # A publish is answered once stored (a deferred answer): the headers come with it.
    published = await client.post(
        "/v1/devices/events",
        data={"name": "temp", "data": "21.5"},
        headers={"Origin": LOCAL, **bearer(PUBLISHER)},
    )
    assert published.json() == {"ok": True, "id": 1}
    assert access_control(published) == readable_by(LOCAL)
    # JSON, with Authorization: what a page's fetch() sends after its preflight.
    created = await client.post(
        "/v1/devices/events",
        json={"name": "temp", "data": "22"},
        headers={"Origin": PAGE, **bearer(ADMIN)},
    )
    assert (created.status_code, access_control(created)) == (200, readable_by(PAGE))


@pytest.mark.parametrize(
    ("method", "path", "headers", "status", "error"),
    [
        ("GET", "/v1/devices/events", {}, 401, "access token required"),
        ("GET", "/v1/devices/events", bearer("hw_nope"), 401, "invalid access token"),
        (
            "GET",
            "/v1/devices/events",
            bearer(PUBLISHER),
            403,
            'token "publisher" does not have the "subscribe" scope',
        ),
        ("GET", "/v1/nowhere", {}, 404, "no route for /v1/nowhere"),
        (
            "DELETE",
            "/v1/devices/events",
            {},
            405,
            "method DELETE not allowed here; use POST, GET, HEAD",
        ),
        (
            "GET",
            "/v1/devices/events",
            {**bearer(SUBSCRIBER), "Last-Event-ID": "abc"},
            400,
            "Last-Event-ID must be the id of the last event received, a whole number "
            "(0 to replay everything kept), got 'abc'",
        ),
        # Not 405: OPTIONS without Access-Control-Request-Method is no preflight.
        ("OPTIONS", "/v1/devices/events", {}, 405,
         "method OPTIONS not allowed here; use POST, GET, HEAD"),
    ],
)  # fmt: skip
async def test_a_listed_origin_may_read_the_errors(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    headers: dict[str, str],
    status: int,
    error: str,
) -> None:
    response = await client.request(method, path, headers={"Origin": PAGE, **headers})
    assert response.status_code == status
    assert response.json() == {"ok": False, "error": error, "error_description": error}
    assert access_control(response) == readable_by(PAGE)
    assert response.headers["vary"] == "origin"


async def test_a_401_keeps_its_challenge_and_exposes_it(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/dead-letters", headers={"Origin": PAGE})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="hookwire"'
    assert "www-authenticate" in response.headers["access-control-expose-headers"]


async def test_a_429_is_readable(start: Start) -> None:
    served = await start(CORS + "\n[limits]\npublish_rate = 1\npublish_burst = 1\n")
    async with httpx.AsyncClient(base_url=served.url, timeout=5) as client:
        answers = [
            await client.post(
                "/v1/devices/events",
                data={"name": "t"},
                headers={"Origin": PAGE, **bearer(PUBLISHER)},
            )
            for _ in range(2)
        ]
    assert [answer.status_code for answer in answers] == [200, 429]
    assert answers[1].json()["error"] == 'token "publisher" is publishing too fast'
    assert [access_control(answer) for answer in answers] == [readable_by(PAGE)] * 2


class FullJournal(MemoryJournal):
    """A memory journal that stores nothing: every publish's answer is a 503."""

    def append_nowait(self, draft: EventDraft) -> PendingAppend:
        return Refused()


class Refused:
    async def wait(self) -> Event:
        await trio.lowlevel.checkpoint()
        raise JournalUnavailable("the journal cannot write: database or disk is full")


async def test_a_503_is_readable(config: Config) -> None:
    journal = FullJournal()
    api = Api(config, journal, Bus(), Metrics())
    async with trio.open_nursery() as nursery:
        await nursery.start(journal.run)
        [(_, port), *_] = await nursery.start(
            HttpServer(api.handle, config.limits).serve, "127.0.0.1", 0
        )
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            response = await client.post(
                "/v1/devices/events",
                data={"name": "t"},
                headers={"Origin": LOCAL, **bearer(PUBLISHER)},
            )
        nursery.cancel_scope.cancel()
    await journal.aclose()
    assert response.status_code == 503
    assert response.json()["error"].startswith("event not stored: ")
    assert access_control(response) == readable_by(LOCAL)


# --- preflights -------------------------------------------------------------------------------


async def test_a_preflight_of_a_listed_origin_is_answered_without_a_token(served: Served) -> None:
    client = await RawClient.connect(served.port)
    await client.send(preflight("/v1/devices/events", PAGE, "POST", "authorization,content-type"))
    assert await client.read_head() == (
        b"HTTP/1.1 204 No Content\r\n"
        b"access-control-allow-origin: https://dashboard.example.com\r\n"
        b"access-control-allow-methods: DELETE, GET, POST, PUT\r\n"
        b"access-control-allow-headers: authorization, content-type\r\n"
        b"access-control-max-age: 600\r\n"
        b"vary: origin\r\n\r\n"
    )
    # No content and no Content-Length (RFC 9110 8.6); the connection goes on.
    await client.send(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert (await client.read_head()).startswith(b"HTTP/1.1 200 OK\r\n")
    await client.aclose()


@pytest.mark.parametrize(
    ("path", "method", "asked", "allowed"),
    [
        ("/v1/devices/events", "GET", "last-event-id", "last-event-id"),
        (
            "/v1/dead-letters/replay",
            "POST",
            "authorization,content-type",
            "authorization, content-type",
        ),
        ("/v1/integrations/abc", "PUT", "authorization,x-requested-with", "authorization"),
        ("/v1/webhooks/abc", "DELETE", "Authorization", "authorization"),
        ("/v1/nowhere", "GET", "", None),  # the request itself then gets its 404, readable
    ],
)
async def test_preflights_echo_only_the_allowed_headers(
    client: httpx.AsyncClient, path: str, method: str, asked: str, allowed: str | None
) -> None:
    headers = {"Origin": LOCAL, "Access-Control-Request-Method": method}
    if asked:
        headers["Access-Control-Request-Headers"] = asked
    response = await client.options(path, headers=headers)
    assert (response.status_code, response.content) == (204, b"")
    expected = {
        "access-control-allow-origin": LOCAL,
        "access-control-allow-methods": "DELETE, GET, POST, PUT",
        "access-control-max-age": "600",
    }
    if allowed is not None:
        expected["access-control-allow-headers"] = allowed
    assert access_control(response) == expected


async def test_a_preflight_of_an_origin_not_listed_is_refused(served: Served) -> None:
    client = await RawClient.connect(served.port)
    await client.send(preflight("/v1/devices/events", OTHER, "POST", "authorization"))
    head = await client.read_head()
    body = orjson.loads(await client.read_until(b"}"))
    await client.aclose()
    message = (
        "origin 'https://evil.example' is not allowed to use this API from a browser: "
        "list it in [api] cors_origins"
    )
    assert head == (
        b"HTTP/1.1 403 Forbidden\r\n"
        b"content-type: application/json\r\n"
        b"vary: origin\r\n"
        b"content-length: %d\r\n\r\n" % len(orjson.dumps(body))
    )
    assert body == {"ok": False, "error": message, "error_description": message}


async def test_an_origin_not_listed_gets_the_answer_without_access_control(
    client: httpx.AsyncClient,
) -> None:
    for origin in (OTHER, "null", PAGE + ":443", PAGE.replace("https", "http")):
        health = await client.get("/healthz", headers={"Origin": origin})
        assert health.status_code == 200
        assert access_control(health) == {}
        assert health.headers["vary"] == "origin"
        unauthorized = await client.get("/v1/devices/events", headers={"Origin": origin})
        assert unauthorized.status_code == 401
        assert access_control(unauthorized) == {}


async def test_preflights_are_counted_apart(served: Served, client: httpx.AsyncClient) -> None:
    asked = {"Access-Control-Request-Method": "POST"}
    await client.options("/v1/devices/events", headers={"Origin": PAGE, **asked})
    await client.options("/v1/devices/events", headers={"Origin": OTHER, **asked})
    text = (await client.get("/metrics")).text
    for status in ("204", "403"):
        assert (
            f'hookwire_http_requests_total{{method="OPTIONS",route="preflight",status="{status}"}}'
            " 1.0" in text
        )


# --- no Origin: today's answers ---------------------------------------------------------------

WITHOUT_ORIGIN = [
    b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /v1/devices/events HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /v1/nowhere HTTP/1.1\r\nHost: x\r\n\r\n",
    b"DELETE /v1/devices/events HTTP/1.1\r\nHost: x\r\n\r\n",
    b"OPTIONS /v1/devices/events HTTP/1.1\r\nHost: x\r\n\r\n",
    # What a preflight says, less Origin: no preflight, the route's 405.
    b"OPTIONS /v1/devices/events HTTP/1.1\r\nHost: x\r\n"
    b"Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: authorization\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /v1/devices/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
    + PUBLISHER.encode()
    + b"\r\nContent-Length: 9\r\n\r\nname=temp",
]


async def exchange(port: int, request: bytes) -> bytes:
    """The whole answer to ``request``, on a connection of its own that it closes."""
    client = await RawClient.connect(port)
    await client.send(request.replace(b"\r\n", b"\r\nConnection: close\r\n", 1))
    answer = await client.read_to_eof()
    await client.aclose()
    return answer


async def test_without_origin_the_answers_are_todays_byte_for_byte(
    served: Served, start: Start
) -> None:
    today = await start("")  # no [api]
    for request in WITHOUT_ORIGIN:
        answer = await exchange(served.port, request)
        assert answer == await exchange(today.port, request)
        assert b"access-control-" not in answer.lower()
        assert b"vary" not in answer.lower()


async def test_without_configured_origins_origin_changes_nothing(start: Start) -> None:
    served = await start("")
    async with httpx.AsyncClient(base_url=served.url, timeout=5) as client:
        health = await client.get("/healthz", headers={"Origin": PAGE})
        refused = await client.options(
            "/v1/devices/events",
            headers={"Origin": PAGE, "Access-Control-Request-Method": "GET"},
        )
    assert health.status_code == 200
    assert "vary" not in health.headers
    assert access_control(health) == {}
    # Every origin is "not listed": a preflight is refused, and says where to list it.
    assert refused.status_code == 403
    assert refused.json()["error"].endswith("list it in [api] cors_origins")
    assert access_control(refused) == {}


async def test_star_lets_every_origin_read(start: Start) -> None:
    served = await start('\n[api]\ncors_origins = ["*"]\n')
    async with httpx.AsyncClient(base_url=served.url, timeout=5) as client:
        health = await client.get("/healthz", headers={"Origin": OTHER})
        asked = await client.options(
            "/v1/devices/events",
            headers={
                "Origin": "null",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        plain = await client.get("/healthz")
    assert access_control(health) == readable_by("*")
    assert asked.status_code == 204
    assert access_control(asked) == {
        "access-control-allow-origin": "*",
        "access-control-allow-methods": "DELETE, GET, POST, PUT",
        "access-control-allow-headers": "content-type",
        "access-control-max-age": "600",
    }
    assert access_control(plain) == {}
    assert "vary" not in plain.headers


# --- streams ----------------------------------------------------------------------------------


async def test_a_stream_head_is_readable_with_an_access_token(served: Served) -> None:
    # What EventSource sends: a simple GET (no preflight), with Origin, the token in the query.
    client = await RawClient.connect(served.port)
    await client.send(
        b"GET /v1/devices/events?access_token=%s HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
        b"Accept: text/event-stream\r\nCache-Control: no-cache\r\nOrigin: %s\r\n\r\n"
        % (SUBSCRIBER.encode(), LOCAL.encode())
    )
    assert await client.read_head() == (
        b"HTTP/1.1 200 OK\r\n"
        b"content-type: text/event-stream; charset=utf-8\r\n"
        b"cache-control: no-cache\r\n"
        b"x-accel-buffering: no\r\n"
        b"access-control-allow-origin: http://127.0.0.1:18481\r\n"
        b"access-control-expose-headers: allow, hookwire-oldest-event-id, www-authenticate\r\n"
        b"vary: origin\r\n"
        b"transfer-encoding: chunked\r\n"
        b"connection: close\r\n\r\n"
    )
    assert await client.read_until(b":ok\n\n") == b":ok\n\n"
    await wait_until(lambda: len(served.engine.api.broadcaster) == 1)
    await publish_direct(served.engine, "temp", "21.5")
    assert (await client.read_until(b"\n\n")).startswith(b"event: temp\nid: 1\n")
    await client.aclose()


async def test_a_page_streams_and_resumes_with_last_event_id(served: Served) -> None:
    await publish_direct(served.engine, "temp", "1")
    await publish_direct(served.engine, "temp", "2")
    # A fetch-based SSE client: Authorization and Last-Event-ID, preflighted first.
    headers = {"Origin": PAGE, **bearer(SUBSCRIBER), "Last-Event-ID": "1"}
    async with httpx.AsyncClient(base_url=served.url, timeout=5) as client:
        asked = await client.options(
            "/v1/devices/events/temp",
            headers={
                "Origin": PAGE,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization,last-event-id",
            },
        )
        assert asked.headers["access-control-allow-headers"] == "authorization, last-event-id"
        async with aconnect_sse(client, "GET", "/v1/devices/events/temp", headers=headers) as sse:
            assert access_control(sse.response) == readable_by(PAGE)
            async with aclosing(sse.aiter_sse()) as events:
                first = await events.__anext__()
    assert (first.event, first.id) == ("temp", "2")


async def test_head_of_a_stream_is_readable(client: httpx.AsyncClient) -> None:
    response = await client.head(
        "/v1/devices/events", headers={"Origin": PAGE, **bearer(SUBSCRIBER)}
    )
    assert response.status_code == 200
    assert access_control(response) == readable_by(PAGE)
