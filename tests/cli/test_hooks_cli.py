"""`hookwire hooks ...` and `hookwire reload` against an engine serving on loopback.

The commands run in the test's own trio run (``run_async``), so the engine keeps serving;
``main`` (its ``trio.run``) is used where no engine is needed.
"""

from __future__ import annotations

import argparse
import io
import socket
import ssl
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import orjson
import pytest
import trio
import trustme

from engine.cli import hooks as hooks_cli
from engine.cli import main
from engine.config.settings import Config
from tests.conftest import ADMIN, BASE_CONFIG, PRODUCT_ID, Served, WriteConfig
from tests.helpers import publish_direct, wait_until
from tests.http.sink import Reply, Sink

HOOKS_CONFIG = """
[delivery]
workers = 0
allow_networks = ["127.0.0.0/8"]
timeout = "2s"
retry = ["1s"]

[[hooks]]
name = "from-config"
event = "config-only"
url = "http://127.0.0.1:9/never"
"""

Cli = Callable[..., Awaitable[tuple[int, str, str]]]


@pytest.fixture
def config(write_config: WriteConfig) -> Config:
    return write_config(HOOKS_CONFIG)


@pytest.fixture
async def sink(nursery: trio.Nursery) -> Sink:
    sink = Sink()
    await nursery.start(sink.serve)
    return sink


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="hookwire")
    commands = parser.add_subparsers(dest="command", required=True)
    hooks_cli.add_commands(commands, "no-such-config.toml")
    return parser.parse_args(argv)


@pytest.fixture
def hookwire(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Awaitable[tuple[int, str, str]]]:
    """``hookwire ARGV`` in this trio run: (exit status, stdout, stderr)."""
    monkeypatch.delenv(hooks_cli.TOKEN_VARIABLE, raising=False)

    async def run(*argv: str, stdin: bytes | None = None) -> tuple[int, str, str]:
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        code = await hooks_cli.run_async(parse(list(argv)))
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def cli(served: Served, hookwire: Cli) -> Cli:
    """``hookwire ARGV --url <the served engine> --token <admin>``."""

    async def run(
        *argv: str, token: str = ADMIN, stdin: bytes | None = None
    ) -> tuple[int, str, str]:
        return await hookwire(*argv, "--url", served.url, "--token", token, stdin=stdin)

    return run


def document(sink: Sink, **fields: object) -> bytes:
    return orjson.dumps({"event": "temp", "url": f"{sink.url}/hook", **fields})


def fields(out: str) -> dict[str, str]:
    """What ``hooks show`` printed, as label: value."""
    return {label: value for label, value in (line.split(None, 1) for line in out.splitlines())}


def free_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_create_from_a_file_list_show_and_delete(
    cli: Cli, served: Served, sink: Sink, tmp_path: Path
) -> None:
    file = tmp_path / "temp.json"
    file.write_bytes(document(sink, name="ignored"))
    code, out, err = await cli("hooks", "create", str(file), "--name", "temps")
    assert (code, err) == (0, "")
    hook_id = out.strip()
    assert len(hook_id) == 24 and out == f"{hook_id}\n"
    await publish_direct(served.engine, "temperature", "21.5")
    await wait_until(lambda: len(sink.requests) == 1)
    await wait_until(
        lambda: served.engine.metrics.delivery_counts.outcomes.get(("temps", "delivered")) == 1
    )

    code, out, err = await cli("hooks", "list")
    assert (code, err) == (0, "")
    header, config_row, api_row = out.splitlines()
    assert header.split() == [
        "ID", "NAME", "SOURCE", "EVENT", "URL", "ENABLED", "DELIVERED", "DEAD"
    ]  # fmt: skip
    assert config_row.split()[1:] == [
        "from-config", "config", "config-only", "http://127.0.0.1:9/never", "yes", "0", "0"
    ]  # fmt: skip
    assert api_row.split() == [hook_id, "temps", "api", "temp", f"{sink.url}/hook", "yes", "1", "0"]
    assert header.index("NAME") == config_row.index("from-config") == api_row.index("temps")

    code, out, err = await cli("hooks", "list", "--json")
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {ADMIN}"}) as client:
        api = await client.get(f"{served.url}/v1/webhooks")
    assert (code, err) == (0, "")
    assert out == api.text + "\n"  # as the API answered it

    code, out, err = await cli("hooks", "show", hook_id)
    assert (code, err) == (0, "")
    assert fields(out) == {
        "id": hook_id,
        "name": "temps",
        "source": "api",
        "event": "temp",
        "url": f"{sink.url}/hook",
        "method": "POST",
        "created": fields(out)["created"],
        "enabled": "yes",
        "delivered": "1",
        "dead": "0",
        "last_delivered_at": fields(out)["last_delivered_at"],
        "last_failed_at": "-",
        "last_failure": "-",
    }
    assert fields(out)["last_delivered_at"].endswith("Z")
    values_start = {len(line) - len(line.split(None, 1)[1]) for line in out.splitlines()}
    assert len(values_start) == 1  # aligned
    code, out, err = await cli("hooks", "show", hook_id, "--json")
    assert orjson.loads(out)["counters"]["delivered"] == 1

    assert await cli("hooks", "delete", hook_id) == (0, f"deleted {hook_id}\n", "")
    assert await cli("hooks", "show", hook_id) == (
        1,
        "",
        f"hookwire: 404: no webhook with id '{hook_id}'\n",
    )
    code, out, _ = await cli("hooks", "list")
    assert hook_id not in out


async def test_create_from_stdin_in_a_product_with_json(cli: Cli, sink: Sink) -> None:
    code, out, err = await cli(
        "hooks", "create", "-", "--product", "thermostat", "--json", stdin=document(sink)
    )
    assert (code, err) == (0, "")
    answer = orjson.loads(out)
    assert answer["ok"] is True and answer["url"] == f"{sink.url}/hook"
    assert answer["hookUrl"] == f"/v1/products/thermostat/webhooks/{answer['id']}"
    code, out, _ = await cli("hooks", "list", "--product", str(PRODUCT_ID))
    assert answer["id"] in out
    code, out, _ = await cli("hooks", "list")
    assert answer["id"] not in out
    code, out, _ = await cli("hooks", "show", answer["id"], "--product", "thermostat")
    assert fields(out)["product"] == str(PRODUCT_ID)
    code, out, _ = await cli("hooks", "list", "--product", "2002")
    assert (code, out) == (0, "no webhooks in product 2002\n")


async def test_the_token_may_come_from_the_environment(
    hookwire: Cli, served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(hooks_cli.TOKEN_VARIABLE, ADMIN)
    code, out, err = await hookwire("hooks", "list", "--url", served.url)
    assert (code, err) == (0, "")
    assert "from-config" in out


async def test_the_daemons_refusals_are_one_sentence(cli: Cli) -> None:
    assert await cli("hooks", "list", token="wrong") == (
        1,
        "",
        "hookwire: 401: invalid access token\n",
    )
    assert await cli("hooks", "show", "nope") == (
        1,
        "",
        "hookwire: 404: no webhook with id 'nope'\n",
    )
    assert await cli("hooks", "create", "-", stdin=b"[1]") == (
        1,
        "",
        "hookwire: 400: webhook: expected a JSON object, got an array\n",
    )
    _, listing, _ = await cli("hooks", "list")
    config_id = listing.splitlines()[1].split()[0]
    code, out, err = await cli("hooks", "delete", config_id)
    assert (code, out) == (1, "")
    assert err.startswith("hookwire: 409: webhook 'from-config' comes from the config file (")
    assert err.count("\n") == 1
    assert await cli("hooks", "list", "--product", "nope") == (
        1,
        "",
        'hookwire: 404: product "nope" not found\n',
    )


async def test_a_file_that_cannot_be_read_or_named(cli: Cli, tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    assert await cli("hooks", "create", str(missing)) == (
        1,
        "",
        f"hookwire: {missing}: cannot read: No such file or directory\n",
    )
    code, out, err = await cli("hooks", "create", "-", "--name", "x", stdin=b"{nope")
    assert (code, out) == (1, "")
    assert err.startswith("hookwire: stdin: not JSON: ")


def test_no_daemon_is_one_sentence_that_says_what_to_check(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["hooks", "list", "--url", url, "--token", "x"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"hookwire: cannot reach the daemon at {url}: connection refused; check that it runs "
        "(hookwire run) and listens there (the address given by --url)\n"
    )


def test_without_a_token_it_says_both_ways_to_give_one(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(hooks_cli.TOKEN_VARIABLE, raising=False)
    assert main(["hooks", "list"]) == 2
    assert main(["reload"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    ways = "hookwire: no token: give --token TOKEN or set HOOKWIRE_TOKEN (a token with"
    assert err.splitlines() == [f"{ways} the hooks or admin scope)", f"{ways} the admin scope)"]


async def test_the_address_comes_from_the_configs_server_table(
    hookwire: Cli, served: Served, tmp_path: Path
) -> None:
    # The rest of the file may be broken: only [server] is read.
    config = tmp_path / "other.toml"
    config.write_text(f'[server]\nhost = "0.0.0.0"\nport = {served.port}\n\n[nope]\nx = 1\n')
    code, out, err = await hookwire("hooks", "list", "--config", str(config), "--token", ADMIN)
    assert (code, err) == (0, "")
    assert "from-config" in out
    config.write_text(f"[server]\nport = {free_port()}\n")
    code, out, err = await hookwire("hooks", "list", "--config", str(config), "--token", ADMIN)
    assert code == 1
    assert f"listens there (the [server] address in {config}; --url gives another)" in err


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://127.0.0.1/", "expected http://HOST[:PORT] or https://HOST[:PORT], got ftp:"),
        ("http://127.0.0.1:99999", "Port out of range"),
        ("http://127.0.0.1:8080/?x=1", "expected no user, query or fragment"),
    ],
)
async def test_a_url_that_is_not_the_daemons_is_a_usage_mistake(
    hookwire: Cli, url: str, problem: str
) -> None:
    code, out, err = await hookwire("hooks", "list", "--url", url, "--token", ADMIN)
    assert (code, out) == (2, "")
    assert err.startswith("hookwire: --url: ") and problem in err


async def test_no_answer_within_the_timeout(
    hookwire: Cli, nursery: trio.Nursery, autojump_clock: trio.abc.Clock
) -> None:
    silent = Sink("silent")
    await nursery.start(silent.serve)
    code, out, err = await hookwire(
        "hooks", "list", "--url", silent.url, "--token", ADMIN, "--timeout", "5"
    )
    assert (code, out) == (1, "")
    assert err == (
        f"hookwire: no answer from the daemon at {silent.url} within 5 s; --timeout waits longer\n"
    )


async def test_an_answer_that_is_not_the_daemons(hookwire: Cli, nursery: trio.Nursery) -> None:
    proxy = Sink(Reply(502, b"<html><body>Bad Gateway</body></html>\n"))
    await nursery.start(proxy.serve)
    assert await hookwire("hooks", "list", "--url", f"{proxy.url}/", "--token", ADMIN) == (
        1,
        "",
        "hookwire: 502: <html><body>Bad Gateway</body></html>\n",
    )
    behind = Sink(Reply(200, b"[]"))
    await nursery.start(behind.serve)
    code, out, _ = await hookwire("hooks", "list", "--url", f"{behind.url}/hw/", "--token", "t")
    assert (code, out) == (0, "no webhooks\n")
    request = behind.requests[0]
    assert (request.method, request.target) == ("GET", "/hw/v1/webhooks")
    assert request.header(b"authorization") == b"Bearer t"


async def test_https_verifies_the_certificate(
    hookwire: Cli, nursery: trio.Nursery, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    daemon = Sink(Reply(200, b"[]"), ssl_context=context)
    await nursery.start(daemon.serve)
    url = f"https://localhost:{daemon.port}"  # localhost: ::1 may be tried first, and refused
    code, out, err = await hookwire("hooks", "list", "--url", url, "--token", ADMIN)
    assert (code, out) == (1, "")
    assert err == (
        f"hookwire: cannot reach the daemon at {url}: TLS handshake with {url} failed: "
        "certificate verify failed: unable to get local issuer certificate; "
        "--insecure skips the check\n"
    )
    code, out, err = await hookwire("hooks", "list", "--url", url, "--token", ADMIN, "--insecure")
    assert (code, out, err) == (0, "no webhooks\n", "")
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))  # the system's CAs: ours
    code, out, err = await hookwire("hooks", "list", "--url", url, "--token", ADMIN)
    assert (code, out, err) == (0, "no webhooks\n", "")
    assert daemon.requests[-1].header(b"host") == f"localhost:{daemon.port}".encode()


async def test_reload_prints_what_changed(cli: Cli, served: Served, sink: Sink) -> None:
    path = served.engine.config.path
    text = BASE_CONFIG.replace('level = "warning"', 'level = "error"') + HOOKS_CONFIG
    path.write_text(f'{text}\n[[hooks]]\nname = "added"\nevent = "x"\nurl = "{sink.url}/x"\n')
    assert await cli("reload") == (
        0,
        "reloaded: hooks 1 added (added), 0 changed, 0 removed; 5 tokens\n"
        "changed, but only a restart applies them: log.level\n",
        "",
    )
    code, out, _ = await cli("hooks", "list")
    assert "added" in out
    path.write_text(text)
    code, out, err = await cli("reload", "--json")
    assert (code, err) == (0, "")
    assert orjson.loads(out) == {
        "ok": True,
        "hooks": {"added": [], "changed": [], "removed": ["added"]},
        "tokens": 5,
        "needs_restart": ["log.level"],
    }


async def test_reload_of_a_broken_file_prints_its_problems(cli: Cli, served: Served) -> None:
    path = served.engine.config.path
    path.write_text(path.read_text() + '\n[[hooks]]\nname = "bad"\nevent = "x"\nurl = "ftp://x"\n')
    code, out, err = await cli("reload")
    assert (code, out) == (1, "")
    assert err.startswith("hookwire: 400: ") and err.endswith("\n")
    assert f"{path}: hooks[1].url: expected an http:// or https:// URL" in err
    code, out, _ = await cli("hooks", "list")
    assert "bad" not in out


async def test_problems_listed_in_the_answer_are_shown_a_line_each(
    hookwire: Cli, nursery: trio.Nursery
) -> None:
    problems = ["engine.toml: hooks[1].url: expected a URL", "engine.toml: log.level: expected"]
    sentence = "config not reloaded, nothing changed: " + "; ".join(problems)
    body = {"ok": False, "error": sentence, "error_description": sentence, "problems": problems}
    daemon = Sink(Reply(400, orjson.dumps(body)))
    await nursery.start(daemon.serve)
    assert await hookwire("reload", "--url", daemon.url, "--token", ADMIN) == (
        1,
        "",
        "hookwire: 400: config not reloaded, nothing changed:\n"
        "  engine.toml: hooks[1].url: expected a URL\n"
        "  engine.toml: log.level: expected\n",
    )
    assert (daemon.requests[0].method, daemon.requests[0].target) == ("POST", "/v1/reload")


async def test_a_list_longer_than_a_webhook_answer_is_read_whole(
    cli: Cli, served: Served, sink: Sink
) -> None:
    async with httpx.AsyncClient(
        base_url=served.url, headers={"Authorization": f"Bearer {ADMIN}"}
    ) as client:
        for i in range(300):
            hook = orjson.loads(document(sink, name=f"h{i:03d}", url=f"{sink.url}/{'x' * 300}"))
            assert (await client.post("/v1/webhooks", json=hook)).status_code == 200
        size = len((await client.get("/v1/webhooks")).content)
    assert size > 100 * 1024  # more than the engine reads of a webhook's answer
    code, out, err = await cli("hooks", "list")
    assert (code, err) == (0, "")
    assert len(out.splitlines()) == 1 + 1 + 300


async def test_test_prints_the_request_and_the_answer(cli: Cli, sink: Sink, tmp_path: Path) -> None:
    file = tmp_path / "temp.json"
    file.write_bytes(document(sink, name="tried"))
    code, out, _ = await cli("hooks", "create", str(file))
    hook_id = out.strip()
    sink.script(Reply(201, body=b"thanks"))
    code, out, err = await cli("hooks", "test", hook_id, "--data", "21.5")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"> POST {sink.url}/hook"
    assert any(line.startswith("< 201 (") for line in lines)
    assert lines[-1] == "thanks"
    assert "data=21.5" in out
    sink.script("hangup")
    code, out, err = await cli("hooks", "test", hook_id)
    assert code == 1 and err.startswith("hookwire: no answer: ")
