"""The daemon as users run it: a subprocess from a config file, the CLI, and signals."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import aclosing, asynccontextmanager
from pathlib import Path

import httpx
import orjson
import trio
from httpx_sse import aconnect_sse

from engine.gateway.client import open_gateway
from tests.conftest import ADMIN, BASE_CONFIG
from tests.helpers import HOOKWIRE, ROOT, RawClient, run_cli


class Daemon:
    def __init__(self, process: trio.Process, port: int, stderr: bytearray) -> None:
        self.process = process
        self.port = port
        self.stderr = stderr

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


SERVING = rb"serving http://127\.0\.0\.1:(\d+)"


@asynccontextmanager
async def daemon(
    config: Path,
    *,
    serving: bytes = SERVING,
    env: Mapping[str, str] | None = None,
    command: Sequence[str] = HOOKWIRE,
    cwd: Path = ROOT,
) -> AsyncIterator[Daemon]:
    """Start `hookwire run` (``command``: another installed one), wait for its ``serving``
    line (the port its first group), and kill it if still alive at the end; ``env``: more
    environment variables."""
    process = await trio.lowlevel.open_process(
        [*command, "run", "--config", str(config)],
        stderr=subprocess.PIPE,
        cwd=cwd,
        env={**os.environ, **env} if env else None,
    )
    assert process.stderr is not None
    stderr = bytearray()
    try:
        with trio.fail_after(15):
            while not (found := re.search(serving, stderr)):
                chunk = await process.stderr.receive_some(4096)
                assert chunk, f"daemon exited early: {stderr.decode()}"
                stderr += chunk
        yield Daemon(process, int(found.group(1)), stderr)
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "engine.toml"
    # The tests read the "serving" line, logged at info.
    path.write_text(text.replace('level = "warning"', 'level = "info"'))
    return path


async def test_publish_stream_and_sigterm(tmp_path: Path) -> None:
    async with daemon(write(tmp_path, BASE_CONFIG)) as d:
        headers = {"Authorization": f"Bearer {ADMIN}"}
        async with httpx.AsyncClient(base_url=d.url, headers=headers, timeout=5) as client:
            async with aconnect_sse(client, "GET", "/v1/devices/events/temp") as source:
                response = await client.post(
                    "/v1/devices/events", data={"name": "temp", "data": "21.5"}
                )
                assert response.json() == {"ok": True, "id": 1}
                async with aclosing(source.aiter_sse()) as events:
                    first = await events.__anext__()
                    assert (first.event, first.id) == ("temp", "1")
                    idle = await RawClient.connect(d.port)
                    started = trio.current_time()
                    d.process.send_signal(signal.SIGTERM)
                    # The open stream ends: the daemon closed it.
                    async for _ in events:
                        pass
            with trio.fail_after(5):
                code = await d.process.wait()
            assert code == 0
            assert trio.current_time() - started < 5
            assert await idle.read_to_eof() == b""
            await idle.aclose()


async def test_sigint_also_stops_cleanly(tmp_path: Path) -> None:
    async with daemon(write(tmp_path, BASE_CONFIG)) as d:
        d.process.send_signal(signal.SIGINT)
        with trio.fail_after(5):
            assert await d.process.wait() == 0
        assert d.process.stderr is not None
        rest = bytearray(d.stderr)
        while chunk := await d.process.stderr.receive_some(4096):
            rest += chunk
        assert b"received SIGINT" in rest
        assert b"Traceback" not in rest


async def test_port_in_use_is_one_clear_line(tmp_path: Path) -> None:
    async with daemon(write(tmp_path, BASE_CONFIG)) as d:
        taken = BASE_CONFIG.replace("port = 0", f"port = {d.port}")
        result = await run_cli("run", "--config", str(write(tmp_path, taken)))
    assert result.returncode == 1
    assert b"cannot serve" in result.stderr
    assert b"Traceback" not in result.stderr


async def test_check_reports_the_path_of_the_bad_key(tmp_path: Path) -> None:
    good = await run_cli("check", "--config", str(ROOT / "config" / "engine.toml"))
    assert good.returncode == 0, good.stderr
    bad = write(
        tmp_path,
        BASE_CONFIG + '\n[[hooks]]\nevent = "t"\nurl = "http://x"\n'
        'requestType = "POTS"\n\n[sse]\nkeepalve = 3\n',
    )
    result = await run_cli("check", "--config", str(bad))
    assert result.returncode == 1
    errors = result.stderr.decode()
    assert (
        f'{bad}: hooks[0].requestType: expected one of GET, POST, PUT, PATCH, DELETE, got "POTS"'
        in errors
    )
    assert "sse.keepalve" in errors
    assert "Traceback" not in errors


async def test_token_new_and_hash() -> None:
    made = await run_cli("token", "new", "--name", "ci", "--scopes", "publish,subscribe")
    assert made.returncode == 0
    out = made.stdout.decode()
    token = re.search(r"token:\s+(\S+)", out).group(1)  # type: ignore[union-attr]
    digest = hashlib.sha256(token.encode()).hexdigest()
    assert f'sha256 = "{digest}"' in out
    assert 'scopes = ["publish", "subscribe"]' in out
    hashed = await run_cli("token", "hash", token)
    assert hashed.stdout.decode().strip() == digest
    piped = await run_cli("token", "hash", stdin=token.encode() + b"\n")
    assert piped.stdout.decode().strip() == digest
    bad = await run_cli("token", "new", "--scopes", "publish,root")
    assert bad.returncode == 2
    assert b'unknown scope "root"' in bad.stderr


async def test_a_journal_in_a_missing_folder_is_refused_clearly(tmp_path: Path) -> None:
    config = write(tmp_path, BASE_CONFIG.replace('backend = "memory"', 'backend = "sqlite"'))
    result = await run_cli("run", "--config", str(config))
    assert result.returncode == 1
    assert b"var does not exist; create it or change journal.path" in result.stderr
    assert b"Traceback" not in result.stderr
    assert not (tmp_path / "var").exists()


async def test_the_shipped_demo_hook_delivers_and_answers_back(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    from tests.http.sink import Reply, Sink

    sink = Sink(Reply(200, b'{"received": 1}'))
    await nursery.start(sink.serve)
    shipped = (ROOT / "config" / "engine.toml").read_text()
    config = (
        shipped.replace("port = 8080", "port = 0")
        .replace("7070", "0")
        .replace("127.0.0.1:9000", f"127.0.0.1:{sink.port}")
    )
    token = "hw_dev_0123456789abcdefghijklmnopqrstuv"  # the shipped demo token
    (tmp_path / "var").mkdir()  # shipped as config/var/ for the journal
    async with daemon(write(tmp_path, config)) as d:
        headers = {"Authorization": f"Bearer {token}"}
        async with (
            httpx.AsyncClient(base_url=d.url, headers=headers, timeout=5) as client,
            aconnect_sse(client, "GET", "/v1/events/hook-response/demo") as source,
        ):
            published = await client.post(
                "/v1/devices/events",
                data={"name": "demo/temp", "data": '{"temp":21.5,"unit":"C"}'},
            )
            assert published.status_code == 200
            async with aclosing(source.aiter_sse()) as events:
                answer = await events.__anext__()
        # A device publishing through the gateway channel gets the answer down it.
        async with open_gateway(token, unix=tmp_path / "var" / "gateway.sock") as gateway:
            await gateway.publish("0123456789abcdef01234567", "demo/temp", '{"temp":19}')
            await gateway.wait_acked()
            with trio.fail_after(5):
                down = await gateway.downlinks.receive()
            await gateway.ack_downlinks([down.id])
        d.process.send_signal(signal.SIGTERM)
    assert (down.device, down.name) == ("0123456789abcdef01234567", "hook-response/demo/temp/0")
    assert down.data == "received 1"
    assert (answer.event, orjson.loads(answer.data)["data"]) == (
        "hook-response/demo/temp/0",
        "received 1",
    )
    request, from_device = sink.requests
    assert from_device.target == "/readings/0123456789abcdef01234567"
    assert request.target == "/readings/api"
    body = orjson.loads(request.body)
    assert (body["temp"], body["unit"], body["event"]) == (21.5, "C", "demo/temp")


async def test_a_handlebars_hook_delivers_and_answers_back(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    from tests.http.sink import Reply, Sink

    sink = Sink(Reply(200, b'{"saved": [3, 4], "note": "<ok>"}'))
    await nursery.start(sink.serve)
    hook = f"""
[delivery]
allow_networks = ["127.0.0.0/8"]

[templates]
language = "handlebars"

[[hooks]]
event = "env"
url = "http://127.0.0.1:{sink.port}/sites/{{{{site.name}}}}"
body = '[{{{{#each r as |x i|}}}}{{{{#if i}}}},{{{{/if}}}}{{{{x.v}}}}{{{{else}}}}none{{{{/each}}}}]'
headers = {{ "X-Alert" = "{{{{#if alert}}}}yes{{{{else}}}}no{{{{/if}}}}" }}
responseTemplate = '{{{{#each saved}}}}{{{{this}}}};{{{{/each}}}}{{{{note}}}}'
"""
    async with daemon(write(tmp_path, BASE_CONFIG + hook)) as d:
        headers = {"Authorization": f"Bearer {ADMIN}"}
        async with (
            httpx.AsyncClient(base_url=d.url, headers=headers, timeout=5) as client,
            aconnect_sse(client, "GET", "/v1/events/hook-response/env") as source,
        ):
            data = '{"site": {"name": "lab"}, "r": [{"v": 1.5}, {"v": 2}], "alert": 0}'
            published = await client.post("/v1/devices/events", data={"name": "env", "data": data})
            assert published.status_code == 200
            async with aclosing(source.aiter_sse()) as events:
                answer = await events.__anext__()
        d.process.send_signal(signal.SIGTERM)
    [request] = sink.requests
    assert request.target == "/sites/lab"
    assert request.body == b"[1.5,2]"
    assert dict(request.headers)[b"x-alert"] == b"no"
    assert orjson.loads(answer.data)["data"] == "3;4;&lt;ok&gt;"
