"""The particle-api-js harness (tests/particle_js.py) against a canned loopback server, not
our API: what Particle's own client sends for webhooks, and what it makes of the answers.

These facts are the contract the /v1/webhooks API is built to; if a new client release
changes one of them, this file says which.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import h11
import pytest
import trio

from tests.particle_js import requires_node, run_particle_js, run_particle_js_async

pytestmark = requires_node

TOKEN = "hw_test_particle_js_token"
CLIENT_VERSION = json.loads((Path(__file__).parents[1] / "js" / "package.json").read_text())[
    "dependencies"
]["particle-api-js"]

HOOKS = [
    {
        "id": "5f0c0a1b2c3d4e5f60718293",
        "event": "temp",
        "url": "https://example.invalid/hook",
        "requestType": "POST",
        "created_at": "2026-11-28T10:00:00.000Z",
    }
]


@dataclass
class Seen:
    """One request as the canned server read it."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes


class CannedParticle:
    """A loopback stand-in for Particle's cloud: a canned answer per (method, path), and
    the requests it was sent, in order."""

    def __init__(self, routes: dict[tuple[str, str], tuple[int, bytes]]) -> None:
        self.routes = routes
        self.seen: list[Seen] = []

    async def run(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        host, port = listeners[0].socket.getsockname()[:2]
        task_status.started(f"http://{host}:{port}")
        await trio.serve_listeners(self._answer, listeners)

    async def _answer(self, stream: trio.SocketStream) -> None:
        try:
            conn = h11.Connection(h11.SERVER)
            request, body = None, b""
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await stream.receive_some(65536))
                elif isinstance(event, h11.Request):
                    request = event
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    break
            assert request is not None
            headers = {k.decode(): v.decode() for k, v in request.headers}
            self.seen.append(Seen(request.method.decode(), request.target.decode(), headers, body))
            status, answer = self.routes.get(
                (request.method.decode(), request.target.decode()), (404, b'{"error":"no route"}')
            )
            framing = [] if status == 204 else [("content-length", str(len(answer)))]
            response = h11.Response(
                status_code=status,
                headers=[("content-type", "application/json"), ("connection", "close"), *framing],
            )
            await stream.send_all(conn.send(response) or b"")
            if status != 204:
                await stream.send_all(conn.send(h11.Data(data=answer)) or b"")
            await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
        finally:
            await stream.aclose()


async def serve(nursery: trio.Nursery, routes: dict[tuple[str, str], tuple[int, bytes]]) -> Any:
    server = CannedParticle(routes)
    return server, await nursery.start(server.run)


async def test_list_resolves_with_the_parsed_body(nursery: trio.Nursery) -> None:
    server, url = await serve(nursery, {("GET", "/v1/webhooks"): (200, json.dumps(HOOKS).encode())})
    assert await run_particle_js_async(url, TOKEN, "list") == (
        0,
        {"ok": True, "statusCode": 200, "body": HOOKS},
    )
    [seen] = server.seen
    assert (seen.method, seen.target, seen.body) == ("GET", "/v1/webhooks", b"")
    assert seen.headers["authorization"] == f"Bearer {TOKEN}"
    assert seen.headers["user-agent"].startswith(f"particle-api-js/{CLIENT_VERSION} ")


async def test_without_a_token_no_authorization_is_sent(nursery: trio.Nursery) -> None:
    server, url = await serve(nursery, {("GET", "/v1/webhooks"): (200, b"[]")})
    assert await run_particle_js_async(url, "", "list") == (
        0,
        {"ok": True, "statusCode": 200, "body": []},
    )
    assert "authorization" not in server.seen[0].headers


async def test_create_posts_particles_field_names_as_json(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    created = {"ok": True, "id": "hook-2", "url": "https://example.invalid/hook", "event": "temp"}
    path = "/v1/products/thermostat/webhooks"
    server, url = await serve(nursery, {("POST", path): (201, json.dumps(created).encode())})
    spec = tmp_path / "hook.json"
    spec.write_text(
        json.dumps(
            {
                "event": "temp",
                "url": "https://example.invalid/hook",
                "device": "0123456789abcdef01234567",
                "rejectUnauthorized": False,
                "noDefaults": True,
                "hook": {
                    "method": "PUT",
                    "headers": {"X-Site": "north"},
                    "json": {"value": "{{PARTICLE_EVENT_VALUE}}"},
                    "responseEvent": "temp-reply",
                    "errorResponseEvent": "temp-error",
                },
            }
        )
    )
    result = await run_particle_js_async(url, TOKEN, "--product", "thermostat", "create", str(spec))
    assert result == (0, {"ok": True, "statusCode": 201, "body": created})
    [seen] = server.seen
    assert (seen.method, seen.target) == ("POST", path)
    assert seen.headers["content-type"] == "application/json"
    # The client renames three options on the wire (device, method, the two response events)
    # and leaves out those not given (JSON.stringify drops undefined).
    assert json.loads(seen.body) == {
        "event": "temp",
        "url": "https://example.invalid/hook",
        "deviceId": "0123456789abcdef01234567",
        "rejectUnauthorized": False,
        "noDefaults": True,
        "requestType": "PUT",
        "headers": {"X-Site": "north"},
        "json": {"value": "{{PARTICLE_EVENT_VALUE}}"},
        "responseTopic": "temp-reply",
        "errorResponseTopic": "temp-error",
    }


async def test_a_bare_create_still_says_post(nursery: trio.Nursery) -> None:
    server, url = await serve(nursery, {("POST", "/v1/webhooks"): (200, b'{"ok":true,"id":"h"}')})
    spec = json.dumps({"event": "temp", "url": "https://example.invalid/hook"})
    code, _ = await run_particle_js_async(url, TOKEN, "create", spec)
    assert code == 0
    assert json.loads(server.seen[0].body) == {
        "event": "temp",
        "url": "https://example.invalid/hook",
        "requestType": "POST",
    }


async def test_delete_answered_204_resolves_with_an_empty_body(nursery: trio.Nursery) -> None:
    server, url = await serve(nursery, {("DELETE", "/v1/webhooks/hook-2"): (204, b"")})
    assert await run_particle_js_async(url, TOKEN, "delete", "hook-2") == (
        0,
        {"ok": True, "statusCode": 204, "body": {}},
    )
    assert (server.seen[0].method, server.seen[0].body) == ("DELETE", b"")


async def test_a_success_without_a_json_body_is_a_rejection(nursery: trio.Nursery) -> None:
    _, url = await serve(nursery, {("DELETE", "/v1/webhooks/hook-2"): (200, b"")})
    code, result = await run_particle_js_async(url, TOKEN, "delete", "hook-2")
    assert (code, result["ok"], result["statusCode"]) == (1, False, 200)
    assert "invalid json" in result["cause"]


async def test_an_error_body_becomes_the_rejection(nursery: trio.Nursery) -> None:
    error = {"ok": False, "error": "not_found", "error_description": "no such hook"}
    _, url = await serve(nursery, {("GET", "/v1/webhooks/nope"): (404, json.dumps(error).encode())})
    code, result = await run_particle_js_async(url, TOKEN, "get", "nope")
    assert code == 1
    assert result["statusCode"] == 404
    # Only error_description reaches the message; `error` is left to callers in the body.
    assert result["errorDescription"] == "no such hook"
    assert result["message"] == f"HTTP error 404 from {url}/v1/webhooks/nope - no such hook"
    assert result["body"] == error


async def test_an_error_without_error_description_has_a_bare_message(
    nursery: trio.Nursery,
) -> None:
    _, url = await serve(nursery, {("GET", "/v1/webhooks"): (401, b'{"error":"invalid_token"}')})
    code, result = await run_particle_js_async(url, TOKEN, "list")
    assert (code, result["statusCode"], result["errorDescription"]) == (1, 401, None)
    assert result["message"] == f"HTTP error 401 from {url}/v1/webhooks"
    assert result["body"] == {"error": "invalid_token"}


@contextmanager
def threaded_server(answer: bytes) -> Iterator[str]:
    """A stdlib server in a thread that answers every GET with ``answer``."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield f"http://{host!s}:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_the_blocking_helper_reads_the_same_result() -> None:
    with threaded_server(json.dumps(HOOKS).encode()) as url:
        assert run_particle_js(url, TOKEN, "list") == (
            0,
            {"ok": True, "statusCode": 200, "body": HOOKS},
        )


@pytest.mark.parametrize(
    ("args", "problem"),
    [(("frobnicate",), "unknown step"), (("--org", "acme", "list"), "--org is for")],
)
def test_a_wrong_command_line_is_a_usage_error(args: tuple[str, ...], problem: str) -> None:
    with pytest.raises(AssertionError, match=problem):
        run_particle_js("http://127.0.0.1:9", TOKEN, *args)
