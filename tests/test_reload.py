"""Reloading the config file while the engine runs (POST /v1/reload, SIGHUP, workers), and
the daemon as a process: SIGHUP, and particle-api-js across a restart.

What may change live (hooks, tokens, partials) changes at once; a broken file changes
nothing and says why; what needs a restart is named.
"""

from __future__ import annotations

import dataclasses
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
import trio

from engine.config.changes import needs_restart
from engine.config.settings import Config, ConfigError, HookConfig
from engine.daemon import Engine
from engine.hooks.changes import HookChanges, reload_hooks
from engine.hooks.hook import Hook, compile_hook
from engine.hooks.router import HookSet
from tests.conftest import ADMIN, BASE_CONFIG, WriteConfig, in_process, sha
from tests.helpers import HOOKWIRE, publish_direct, wait_until
from tests.http.sink import Sink
from tests.particle_js import requires_node, run_particle_js

AUTH = {"Authorization": f"Bearer {ADMIN}"}
NEW_TOKEN = "hw_test_new_token_after_reload_0123456789"


def config_of(name: str, url: str = "http://127.0.0.1:9/x", where: str = "") -> HookConfig:
    return HookConfig(where or f"hooks[{name}]", name, "temp", url)


def hook(name: str, url: str = "http://127.0.0.1:9/x") -> Hook:
    return compile_hook(config_of(name, url), {})


def reloaded(
    current: list[Hook], *configs: HookConfig, recompile: bool = False
) -> tuple[tuple[Hook, ...], HookChanges]:
    new = Config(Path("engine.toml"), hooks=configs)
    return reload_hooks(current, new, recompile=recompile, retry=(5.0,))


def test_a_reload_compiles_only_the_hooks_that_changed() -> None:
    a, b, c = hook("a"), hook("b"), hook("c")
    hooks, changes = reloaded(
        [a, b, c], config_of("b", where="hooks[0]"), config_of("a", "http://127.0.0.1:9/y"),
        config_of("d"),
    )  # fmt: skip
    assert [h.name for h in changes.added] == ["d"]
    assert [h.name for h in changes.changed] == ["a"]
    assert changes.removed == ("c",)
    assert [h.name for h in hooks] == ["b", "a", "d"]
    assert hooks[0].templates is b.templates and hooks[0].where == "hooks[0]"  # kept, moved
    _, everything = reloaded([a, b], config_of("a"), config_of("b"), recompile=True)
    assert [h.name for h in everything.changed] == ["a", "b"] and not everything.added
    with pytest.raises(ConfigError, match=r"engine.toml: hooks\[x\].body: 1:"):
        reloaded([a], dataclasses.replace(config_of("x"), body="{{#open}}"))


def test_apply_keeps_api_hooks_after_the_config_and_a_410_on_unchanged_hooks() -> None:
    hooks = HookSet([hook("a"), hook("b"), hook("c")])
    hooks.add(hook("api"))
    hooks.disable("b")
    _, changes = reloaded(list(hooks.hooks[:3]), config_of("c"), config_of("b"), config_of("new"))
    hooks.apply(changes, ["c", "b", "new"])
    assert [h.name for h in hooks.hooks] == ["c", "b", "new", "api"]
    assert hooks.is_disabled("b")  # unchanged: its 410 stays
    assert hooks.get("a") is None


def test_needs_restart_names_the_settings(write_config: WriteConfig) -> None:
    old = write_config()
    new = write_config(
        "[server]\nport = 8181\n", replace={'[server]\nhost = "127.0.0.1"\nport = 0\n': ""}
    )
    assert needs_restart(old, new) == ["server.port"]
    assert needs_restart(old, write_config("[partials]\np = 'x'\n")) == []
    assert needs_restart(old, write_config('[templates]\nlanguage = "handlebars"\n')) == []


@pytest.fixture
async def sink(nursery: trio.Nursery) -> Sink:
    sink = Sink()
    await nursery.start(sink.serve)
    return sink


def hooks_toml(sink: Sink, *paths: str, workers: int = 0) -> str:
    text = f'\n[delivery]\nallow_networks = ["127.0.0.0/8"]\nworkers = {workers}\n'
    for path in paths:
        text += f'\n[[hooks]]\nname = "{path}"\nevent = "temp"\nurl = "{sink.url}/{path}"\n'
    return text


@pytest.fixture
async def engine_at(tmp_path: Path, nursery: trio.Nursery) -> AsyncIterator[object]:
    async def start(text: str) -> tuple[Engine, str]:
        from engine.hooks import load_config

        path = tmp_path / "engine.toml"
        path.write_text(BASE_CONFIG + text)
        config = load_config(path)
        engine = Engine(in_process(config) if "workers = 0" in text else config)
        [(host, port), *_] = await nursery.start(engine.run)
        return engine, f"http://{host}:{port}"

    yield start
    nursery.cancel_scope.cancel()


async def reload(url: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=30) as client:
        return await client.post("/v1/reload")


@pytest.mark.parametrize("workers", [0, 1])
async def test_reload_applies_hooks_and_tokens_and_names_what_needs_a_restart(
    engine_at, sink: Sink, tmp_path: Path, workers: int
) -> None:
    engine, url = await engine_at(hooks_toml(sink, "kept", "edited", "gone", workers=workers))
    if workers:
        await wait_until(lambda: engine.workers.pids[0] is not None, within=10)
    path = tmp_path / "engine.toml"
    text = BASE_CONFIG.replace("port = 0", "port = 0\n").replace(
        "[[products]]",
        f'[[auth.tokens]]\nname = "new"\nsha256 = "{sha(NEW_TOKEN)}"\nscopes = ["hooks"]\n\n'
        "[[products]]",
        1,
    )
    text += hooks_toml(sink, "kept", "edited", "added", workers=workers).replace(
        f"{sink.url}/edited", f"{sink.url}/edited-v2"
    )
    text += '\n[sse]\nkeepalive = "7s"\n'
    path.write_text(text)
    answer = await reload(url)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "ok": True,
        "hooks": {"added": ["added"], "changed": ["edited"], "removed": ["gone"]},
        "tokens": 6,
        "needs_restart": ["sse.keepalive"],
    }
    await publish_direct(engine, "temp", "1")
    await wait_until(lambda: len(sink.requests) == 3, within=10)
    assert sorted(r.target for r in sink.requests) == ["/added", "/edited-v2", "/kept"]
    async with httpx.AsyncClient(base_url=url) as client:
        listed = await client.get("/v1/webhooks", headers={"Authorization": f"Bearer {NEW_TOKEN}"})
    assert [h["name"] for h in listed.json()] == ["kept", "edited", "added"]
    metrics = engine.metrics.render().decode()
    assert 'hookwire_config_reloads_total{result="applied"} 1.0' in metrics
    assert 'hookwire_hooks{source="config"} 3.0' in metrics


async def test_a_broken_file_changes_nothing_and_says_why(
    engine_at, sink: Sink, tmp_path: Path
) -> None:
    engine, url = await engine_at(hooks_toml(sink, "kept"))
    path = tmp_path / "engine.toml"
    path.write_text(path.read_text() + '\n[[hooks]]\nname = "bad"\nevent = "temp"\nurl = "nope"\n')
    answer = await reload(url)
    assert answer.status_code == 400
    assert answer.json()["error"].startswith("config not reloaded, nothing changed: ")
    assert "hooks[1].url" in answer.json()["error"]
    [problem] = answer.json()["problems"]
    assert problem.startswith(f"{path}: hooks[1].url: ")
    await publish_direct(engine, "temp", "1")
    await wait_until(lambda: len(sink.requests) == 1)
    assert 'hookwire_config_reloads_total{result="refused"} 1.0' in engine.metrics.render().decode()


def test_sighup_reloads_a_running_daemon_and_a_broken_file_keeps_it_running(
    tmp_path: Path,
) -> None:
    path = tmp_path / "engine.toml"
    port = free_port()
    base = BASE_CONFIG.replace(
        'backend = "memory"', f'backend = "sqlite"\npath = "{tmp_path}/j.db"'
    )
    path.write_text(base.replace("port = 0", f"port = {port}") + "\n[delivery]\nworkers = 0\n")
    daemon = subprocess.Popen(
        [*HOOKWIRE, "run", "--config", str(path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        poll(lambda: _up(url), within=20)
        path.write_text(
            path.read_text()
            + '\n[[hooks]]\nname = "by-sighup"\nevent = "x"\nurl = "http://127.0.0.1:9/x"\n'
        )
        daemon.send_signal(signal.SIGHUP)
        poll(lambda: "by-sighup" in _names(url), within=10)
        path.write_text(path.read_text() + "\n[[hooks]]\nbroken\n")
        daemon.send_signal(signal.SIGHUP)
        daemon.send_signal(signal.SIGHUP)  # during the first, or merged with it by trio
        poll(lambda: _refusals(url) >= 1, within=10)
        assert daemon.poll() is None and "by-sighup" in _names(url)
    finally:
        daemon.send_signal(signal.SIGTERM)
        output, _ = daemon.communicate(timeout=20)
    text = output.decode()
    assert daemon.returncode == 0, text
    assert "config not reloaded, nothing changed:" in text


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def poll(condition: Callable[[], bool], within: float) -> None:
    """Wait for a subprocess's effect (bounded): there is no event to wait on across it."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s")
        time.sleep(0.05)


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _names(url: str) -> list[str]:
    listed = httpx.get(f"{url}/v1/webhooks", headers=AUTH, timeout=5).json()
    return [h["name"] for h in listed]


def _refusals(url: str) -> float:
    for line in httpx.get(f"{url}/metrics", timeout=5).text.splitlines():
        if line.startswith('hookwire_config_reloads_total{result="refused"}'):
            return float(line.split()[-1])
    return 0.0


@pytest.mark.parametrize("workers", [0, 1])
async def test_reloads_under_load_drop_no_delivery(
    engine_at, sink: Sink, tmp_path: Path, workers: int
) -> None:
    engine, url = await engine_at(hooks_toml(sink, "steady", "other", workers=workers))
    if workers:
        await wait_until(lambda: engine.workers.pids[0] is not None, within=10)
    path = tmp_path / "engine.toml"
    published = 0

    async def publish() -> None:
        nonlocal published
        while published < 400:
            await publish_direct(engine, "temp", str(published))
            published += 1
            await trio.sleep(0.001)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(publish)
        for i in range(6):
            paths = ["steady", f"other{i}"] if i % 2 else ["steady", "other", f"extra{i}"]
            path.write_text(BASE_CONFIG + hooks_toml(sink, *paths, workers=workers))
            assert (await reload(url)).status_code == 200
            await trio.sleep(0.02)
    await wait_until(lambda: sum(r.target == "/steady" for r in sink.requests) >= 400, within=20)
    ids = [r.header(b"webhook-id") for r in sink.requests if r.target == "/steady"]
    assert len(ids) == len(set(ids)) == 400
    # Hooks a later reload removed end their queued deliveries as dead letters; those kept
    # (and one the last reload added, handed to a worker still reloading) lose none.
    outcomes = engine.metrics.delivery_counts.outcomes
    assert outcomes.get(("steady", "dead"), 0) == outcomes.get(("other5", "dead"), 0) == 0


@requires_node
def test_particle_api_js_against_a_daemon_process_across_its_restart(tmp_path: Path) -> None:
    path = tmp_path / "engine.toml"
    port = free_port()
    sqlite = f'backend = "sqlite"\npath = "{tmp_path}/j.db"'
    path.write_text(
        BASE_CONFIG.replace('backend = "memory"', sqlite).replace("port = 0", f"port = {port}")
        + '\n[delivery]\nworkers = 1\nallow_networks = ["127.0.0.0/8"]\n'
    )
    url = f"http://127.0.0.1:{port}"
    spec = tmp_path / "hook.json"
    spec.write_text('{"event": "temp", "url": "http://127.0.0.1:9/x", "device": "dev1"}')

    def daemon() -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [*HOOKWIRE, "run", "--config", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        poll(lambda: _up(url), within=20)
        return process

    def stop(process: subprocess.Popen[bytes]) -> None:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
        assert process.returncode == 0, output.decode()

    first = daemon()
    try:
        code, created = run_particle_js(url, ADMIN, "create", str(spec))
        assert code == 0, created
    finally:
        stop(first)
    second = daemon()
    try:
        code, listed = run_particle_js(url, ADMIN, "list")
        assert code == 0 and [h["id"] for h in listed["body"]] == [created["body"]["id"]]
        assert listed["body"][0]["deviceID"] == "dev1"
        code, deleted = run_particle_js(url, ADMIN, "delete", created["body"]["id"])
        assert code == 0, deleted
        code, listed = run_particle_js(url, ADMIN, "list")
        assert listed["body"] == []
    finally:
        stop(second)


def test_a_prepared_reload_made_stale_by_a_change_meanwhile_is_prepared_again() -> None:
    hooks = HookSet([hook("a"), hook("b")])
    _, changes = reloaded(list(hooks.hooks), config_of("a"), config_of("c"))
    prepared = hooks.prepare(changes, ["a", "c"])
    hooks.add(hook("api"))  # created through the API while the reload read the file
    hooks.commit(prepared)
    assert [h.name for h in hooks.hooks] == ["a", "c", "api"]
    assert hooks.get("b") is None
