"""Daemons on one Redis (issue 20), as subprocesses: events numbered across nodes, every
node's subscribers see every event, a hook's request goes out once, and a restarted node
carries on where the journal is."""

from __future__ import annotations

import signal
from collections.abc import Callable
from contextlib import aclosing
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import trio
from httpx_sse import aconnect_sse

from tests.conftest import ADMIN, BASE_CONFIG
from tests.e2e.test_daemon import daemon, write
from tests.helpers import ROOT
from tests.redis_server import RedisServer

HEADERS = {"Authorization": f"Bearer {ADMIN}"}

LEASE = 7
"""Seconds: above the hooks' 1 s timeout plus 5 s, as the config requires."""


def redis_node(redis_url: str, node: str, delivery: str = "") -> str:
    """The suite's base config as node ``node`` on ``redis_url``: deliveries time out after
    1 s, so the lease may be short (``LEASE``) and the nodes share the partitions within a
    few seconds; ``delivery``: more [delivery] keys."""
    journal = (
        f'[journal]\nbackend = "redis"\nurl = "{redis_url}"\n\n'
        f'[cluster]\nnode = "{node}"\nlease = "{LEASE}s"\n'
    )
    return BASE_CONFIG.replace('[journal]\nbackend = "memory"\n', journal) + (
        f'\n[delivery]\nallow_networks = ["127.0.0.0/8"]\ntimeout = 1\n{delivery}'
    )


def node_config(redis_url: str, sink_port: int, node: str) -> str:
    """A node with one hook, "temps"."""
    return (
        redis_node(redis_url, node)
        + f"""
[[hooks]]
name = "temps"
event = "temp"
url = "http://127.0.0.1:{sink_port}/t"
json = {{ t = "{{{{{{TRACKLE_EVENT_VALUE}}}}}}" }}
"""
    )


def node_configs(
    tmp_path: Path, nodes: str, text_of: Callable[[str], str], *, folders: str = ""
) -> dict[str, Path]:
    """Each node's config (``text_of(letter)``) written in a folder of its own, by letter
    (``nodes``: "ab", "abc"); ``folders``: one more made inside each (for its journal)."""
    configs = {}
    for node in nodes:
        (tmp_path / node / folders).mkdir(parents=True)
        configs[node] = write(tmp_path / node, text_of(node))
    return configs


async def test_two_nodes_on_one_redis_act_as_one(
    tmp_path: Path, redis_db: str, nursery: trio.Nursery
) -> None:
    from tests.http.sink import Sink

    sink = Sink()
    await nursery.start(sink.serve)
    configs = node_configs(tmp_path, "ab", lambda n: node_config(redis_db, sink.port, f"node-{n}"))
    async with (
        daemon(configs["a"]) as a,
        daemon(configs["b"]) as b,
        httpx.AsyncClient(base_url=a.url, headers=HEADERS, timeout=5) as to_a,
        httpx.AsyncClient(base_url=b.url, headers=HEADERS, timeout=5) as to_b,
        aconnect_sse(to_b, "GET", "/v1/devices/events/temp") as on_b,
    ):
        ids = []
        for node, value in ((to_a, "1"), (to_b, "2"), (to_a, "3")):
            answer = await node.post("/v1/devices/events", data={"name": "temp", "data": value})
            ids.append(answer.json()["id"])
        # One numbering, whichever node took the publish (the hooks' answers, events too,
        # may take ids between them).
        assert ids == sorted(set(ids)) and ids[0] == 1
        seen = []
        async with aclosing(on_b.aiter_sse()) as events:
            with trio.fail_after(10):
                async for message in events:
                    seen.append((message.id, orjson.loads(message.data)["data"]))
                    if len(seen) == 3:
                        break
        # A's events on B's stream, with the ids A answered.
        assert seen == [(str(i), value) for i, value in zip(ids, "123", strict=True)]
        # Each event's delivery went out once, whichever node read it.
        with trio.fail_after(10):
            await sink.received(3)
        await trio.sleep(0.5)
        assert sorted(orjson.loads(r.body)["t"] for r in sink.requests) == ["1", "2", "3"]
        # A subscriber that comes to A with Last-Event-ID gets the rest, no gap.
        resume = {"Last-Event-ID": str(ids[0])}
        async with (
            aconnect_sse(to_a, "GET", "/v1/devices/events/temp", headers=resume) as again,
            aclosing(again.aiter_sse()) as events,
        ):
            resumed = [(await events.__anext__()).id, (await events.__anext__()).id]
        assert resumed == [str(i) for i in ids[1:]]


async def test_a_restarted_node_goes_on_from_the_journal(
    tmp_path: Path, redis_db: str, nursery: trio.Nursery
) -> None:
    from tests.http.sink import Sink

    sink = Sink()
    await nursery.start(sink.serve)
    config = write(tmp_path, node_config(redis_db, sink.port, "node-a"))
    ids = []
    for round_, stop in ((1, signal.SIGTERM), (2, signal.SIGKILL), (3, signal.SIGTERM)):
        async with (
            daemon(config) as node,
            httpx.AsyncClient(base_url=node.url, headers=HEADERS, timeout=5) as client,
        ):
            if round_ < 3:
                sent = {"name": "temp", "data": str(round_)}
                answer = await client.post("/v1/devices/events", data=sent)
                ids.append(answer.json()["id"])
            with trio.fail_after(10):
                await sink.received(round_)
            node.process.send_signal(stop)
            await node.process.wait()
    assert ids[1] > ids[0]  # the numbering goes on from the journal
    # Stopped cleanly, the first delivery was settled: not sent again. Killed right after
    # its request arrived, the second was not: the next start sent it again, under the
    # same webhook-id.
    first, second, again = sink.requests
    assert [orjson.loads(r.body)["t"] for r in sink.requests] == ["1", "2", "2"]
    assert webhook_id(again) == webhook_id(second) != webhook_id(first)


def webhook_id(request: Any) -> bytes:
    return dict(request.headers)[b"webhook-id"]


async def test_redis_down_answers_503_and_the_node_resumes_by_itself(
    tmp_path: Path, redis_db: str, redis_server: RedisServer, nursery: trio.Nursery
) -> None:
    from tests.http.sink import Sink

    sink = Sink()
    await nursery.start(sink.serve)
    config = write(tmp_path, node_config(redis_db, sink.port, "node-a"))
    async with (
        daemon(config) as node,
        httpx.AsyncClient(base_url=node.url, headers=HEADERS, timeout=15) as client,
    ):
        with trio.fail_after(10):  # ready once its delivery worker is
            while (await client.get("/readyz")).status_code != 200:  # noqa: ASYNC110
                await trio.sleep(0.05)
        redis_server.stop()
        refused = await client.post("/v1/devices/events", data={"name": "temp", "data": "1"})
        assert refused.status_code == 503
        assert "cannot write to Redis at redis://127.0.0.1:" in refused.json()["error"]
        # Not ready while Redis is away, with the reason; alive all the same.
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["error"].startswith("not ready: ")
        assert any("cannot write to Redis at" in p for p in ready.json()["problems"])
        assert (await client.get("/healthz")).status_code == 200
        redis_server.start()
        with trio.fail_after(15):
            accepted = await client.post("/v1/devices/events", data={"name": "temp", "data": "2"})
            assert accepted.status_code == 200
            await sink.received(1)
            while (await client.get("/readyz")).status_code != 200:  # noqa: ASYNC110
                await trio.sleep(0.1)
    assert [orjson.loads(r.body)["t"] for r in sink.requests] == ["2"]


async def test_a_hook_created_on_one_node_works_on_the_other_within_a_second(
    tmp_path: Path, redis_db: str, nursery: trio.Nursery
) -> None:
    from tests.http.sink import Sink

    sink = Sink()
    await nursery.start(sink.serve)
    configs = node_configs(tmp_path, "ab", lambda n: node_config(redis_db, sink.port, f"node-{n}"))
    async with (
        daemon(configs["a"]) as a,
        daemon(configs["b"]) as b,
        httpx.AsyncClient(base_url=a.url, headers=HEADERS, timeout=5) as to_a,
        httpx.AsyncClient(base_url=b.url, headers=HEADERS, timeout=5) as to_b,
    ):
        document = {"event": "alarm", "url": f"http://127.0.0.1:{sink.port}/alarm"}
        created = await to_a.post("/v1/webhooks", json=document)
        assert created.status_code == 200, created.text
        hook_id = created.json()["id"]
        started = trio.current_time()
        with trio.fail_after(5):
            while hook_id not in await listed(to_b):  # noqa: ASYNC110  (another process)
                await trio.sleep(0.05)
        assert trio.current_time() - started < 1.5  # within a second, give or take a poll
        published = await to_b.post("/v1/devices/events", data={"name": "alarm", "data": "x"})
        assert published.status_code == 200
        with trio.fail_after(10):
            await sink.received(1)
        assert sink.requests[0].target == "/alarm"
        deleted = await to_a.delete(f"/v1/webhooks/{hook_id}")
        assert deleted.status_code == 200
        with trio.fail_after(5):
            while hook_id in await listed(to_b):  # noqa: ASYNC110  (another process)
                await trio.sleep(0.05)


async def listed(client: httpx.AsyncClient) -> list[str]:
    """The ids of the webhooks a node lists."""
    return [hook["id"] for hook in (await client.get("/v1/webhooks")).json()]


def cluster_config(redis_url: str, sink_port: int, node: str, hooks: int) -> str:
    """A node of the kill test: ``hooks`` hooks on one event (so its deliveries spread over
    partitions), deliveries in the main process."""
    text = redis_node(redis_url, node, "workers = 0\n")
    for n in range(hooks):
        text += (
            f'\n[[hooks]]\nname = "h{n}"\nevent = "load"\n'
            f'url = "http://127.0.0.1:{sink_port}/h{n}"\nretry = ["100ms"]\n'
        )
    return text


async def lease_holders(redis_url: str) -> dict[int, str]:
    import coredis

    async with coredis.Redis.from_url(redis_url) as client:
        keys = [key async for key in client.scan_iter(match="hw:lease:*")]
        holders = {}
        for key in keys:
            holder = await client.get(key)
            if holder is not None:
                holders[int(key.decode().rsplit(":", 1)[1])] = holder.decode()
        return holders


async def test_a_killed_node_loses_nothing_and_its_partitions_are_taken_within_two_leases(
    tmp_path: Path, redis_db: str, nursery: trio.Nursery
) -> None:
    from tests.http.sink import Reply, Sink

    # Answers take 0.3 s: when C is killed it has attempts in flight, which the node
    # taking its partitions sends again.
    sink = Sink(Reply(200, delay=0.3))
    await nursery.start(sink.serve)
    hooks, events = 8, 40
    configs = node_configs(
        tmp_path, "abc", lambda n: cluster_config(redis_db, sink.port, f"node-{n}", hooks)
    )
    async with (
        daemon(configs["a"]) as a,
        daemon(configs["b"]) as b,
        daemon(configs["c"]) as c,
        httpx.AsyncClient(base_url=a.url, headers=HEADERS, timeout=10) as to_a,
        httpx.AsyncClient(base_url=b.url, headers=HEADERS, timeout=10) as to_b,
    ):
        with trio.fail_after(4 * LEASE):  # the three share the 64 partitions
            while True:
                holders = await lease_holders(redis_db)
                if len(holders) == 64 and set(holders.values()) == {"node-a", "node-b", "node-c"}:
                    break
                await trio.sleep(0.2)
        for i in range(events):
            if i == events // 2:
                c.process.kill()  # SIGKILL, with deliveries of its partitions in flight
                killed_at = trio.current_time()
            node = to_a if i % 2 else to_b
            answer = await node.post("/v1/devices/events", data={"name": "load", "data": str(i)})
            assert answer.status_code == 200
            await trio.sleep(0.02)
        with trio.fail_after(2 * LEASE + 5):
            while "node-c" in (await lease_holders(redis_db)).values():  # noqa: ASYNC110
                await trio.sleep(0.2)
        taken_after = trio.current_time() - killed_at
        with trio.fail_after(2 * LEASE + 5):
            await sink.received(events * hooks)
            while len({webhook_id(r) for r in sink.requests}) < events * hooks:
                await sink.received(len(sink.requests) + 1)
    assert taken_after <= 2 * LEASE, taken_after
    ids = [webhook_id(r) for r in sink.requests]
    assert len(set(ids)) == events * hooks  # every delivery of every acknowledged event
    # Duplicates only of a delivery C had in flight, under its own webhook-id: the same
    # id, the same body.
    bodies: dict[bytes, bytes] = {}
    for request in sink.requests:
        assert bodies.setdefault(webhook_id(request), request.body) == request.body


async def retries_waiting(redis_url: str) -> int:
    import coredis

    async with coredis.Redis.from_url(redis_url) as client:
        return await client.zcard("hw:retry")


async def test_a_retry_waiting_on_a_killed_node_is_sent_by_the_node_taking_its_partition(
    tmp_path: Path, redis_db: str, nursery: trio.Nursery
) -> None:
    from tests.http.sink import Reply, Sink

    sink = Sink()
    sink.script(Reply(503))  # the first attempt fails: the delivery waits 2 s to retry
    await nursery.start(sink.serve)
    configs = node_configs(
        tmp_path, "ab", lambda n: node_config(redis_db, sink.port, f"node-{n}") + 'retry = ["2s"]\n'
    )
    async with daemon(configs["a"]) as a:
        async with httpx.AsyncClient(base_url=a.url, headers=HEADERS, timeout=5) as client:
            answer = await client.post("/v1/devices/events", data={"name": "temp", "data": "1"})
            assert answer.status_code == 200
        with trio.fail_after(10):
            await sink.received(1)
            # the retry's due time, in Redis (another process's state: polled)
            while await retries_waiting(redis_db) == 0:  # noqa: ASYNC110
                await trio.sleep(0.05)
        a.process.kill()  # SIGKILL: the retry's timer on A is gone with it
        killed_at = trio.current_time()
    async with daemon(configs["b"]):
        with trio.fail_after(2 * LEASE + 5):
            await sink.received(2)
        sent_after = trio.current_time() - killed_at
        with trio.fail_after(5):  # settled: nothing waits any more
            while await retries_waiting(redis_db):  # noqa: ASYNC110
                await trio.sleep(0.05)
    assert sent_after <= 2 * LEASE, sent_after
    first, second = sink.requests
    assert webhook_id(second) == webhook_id(first) and second.body == first.body


DEMO_TOKEN = "hw_dev_0123456789abcdefghijklmnopqrstuv"  # config/examples/cluster.toml's
DEMO = {"Authorization": f"Bearer {DEMO_TOKEN}"}

GATEWAY = "hw_gw_0123456789abcdefghijklmnopqrstu"
DEVICE = "0123456789abcdef01234567"


async def test_a_hook_answer_reaches_the_device_through_the_other_node(
    tmp_path: Path, redis_db: str, nursery: trio.Nursery
) -> None:
    from engine.gateway.client import open_gateway
    from engine.journal.redis import partition_of
    from tests.conftest import sha
    from tests.http.sink import Reply, Sink

    sink = Sink(Reply(200, b"answered"))
    await nursery.start(sink.serve)

    def with_gateway(node: str) -> str:
        text = node_config(redis_db, sink.port, f"node-{node}")
        text += f'\n[gateway]\nunix = "{tmp_path / node / "gw.sock"}"\n'
        return text + (
            f'\n[[auth.tokens]]\nname = "gw"\nsha256 = "{sha(GATEWAY)}"\nscopes = ["gateway"]\n'
        )

    configs = node_configs(tmp_path, "ab", with_gateway)
    async with daemon(configs["a"]), daemon(configs["b"]):
        with trio.fail_after(4 * LEASE):  # the two share the partitions
            while len(set((await lease_holders(redis_db)).values())) < 2:  # noqa: ASYNC110
                await trio.sleep(0.2)
        owner = (await lease_holders(redis_db))[partition_of("temps")]
        other = "a" if owner == "node-b" else "b"
        # The device's gateway is on the node that does not deliver "temps": the answer
        # is written to the outbox there and must find its way to the device here.
        async with open_gateway(GATEWAY, unix=tmp_path / other / "gw.sock") as gateway:
            await gateway.publish(DEVICE, "temp", "19")
            await gateway.wait_acked()
            with trio.fail_after(10):
                down = await gateway.downlinks.receive()
            await gateway.ack_downlinks([down.id])
    assert (down.device, down.name, down.data) == (DEVICE, "hook-response/temp/0", "answered")


async def test_cluster_status_lists_nodes_partitions_and_what_waits(
    tmp_path: Path, redis_db: str, nursery: trio.Nursery
) -> None:
    from tests.helpers import run_cli
    from tests.http.sink import Sink

    sink = Sink()
    await nursery.start(sink.serve)
    config = write(tmp_path, node_config(redis_db, sink.port, "node-a"))
    async with daemon(config) as node:
        with trio.fail_after(4 * LEASE):
            while len(await lease_holders(redis_db)) < 64:  # noqa: ASYNC110  (another process)
                await trio.sleep(0.2)
        async with httpx.AsyncClient(base_url=node.url, headers=HEADERS, timeout=5) as client:
            await client.post("/v1/devices/events", data={"name": "temp", "data": "x"})
        shown = await run_cli("cluster", "status", "--config", str(config))
        as_json = await run_cli("cluster", "status", "--config", str(config), "--json")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.decode().splitlines()
    assert lines[0].split() == [
        "node",
        "state",
        "last",
        "seen",
        "partitions",
        "in",
        "flight",
        "unread",
    ]
    assert lines[1].split()[:2] == ["node-a", "live"] and lines[1].split()[5] == "64"
    assert lines[-1] == "all 64 partitions held by live nodes"
    status = orjson.loads(as_json.stdout)
    assert [node["name"] for node in status["nodes"]] == ["node-a"]
    assert {p["holder"] for p in status["partitions"]} == {"node-a"}
    assert status["last_event_id"] >= 1
    # Without the Redis journal, a clear refusal.
    plain = tmp_path / "plain.toml"
    plain.write_text(BASE_CONFIG)
    refused = await run_cli("cluster", "status", "--config", str(plain))
    assert refused.returncode == 1
    assert b'journal.backend is "memory": cluster mode needs "redis"' in refused.stderr


async def test_dead_letters_from_the_command_line_on_redis(tmp_path: Path, redis_db: str) -> None:
    from engine.config.settings import load_config
    from engine.hooks.router import HookSet
    from engine.journal.redis import RedisJournal
    from tests.helpers import run_cli
    from tests.journal.kit import draft, outcome

    config = write(tmp_path, node_config(redis_db, 9, "node-a"))
    hooks = HookSet(load_config(config).hooks)
    journal = RedisJournal(redis_db, hooks, node="test")
    async with trio.open_nursery() as nursery:
        await nursery.start(journal.run)
        event = await journal.append(draft("temp"))
        await journal.record_attempts([outcome(journal, event, "temps", "dead", 5)])
        nursery.cancel_scope.cancel()
    listed = await run_cli("dead-letters", "list", "--config", str(config), "--json")
    assert listed.returncode == 0, listed.stderr
    [letter] = orjson.loads(listed.stdout)["dead_letters"]
    assert (letter["hook"], letter["attempts"]) == ("temps", 5)
    replayed = await run_cli("dead-letters", "replay", letter["id"], "--config", str(config))
    assert replayed.returncode == 0, replayed.stderr
    assert b"queued 1 dead letter again" in replayed.stdout
    empty = await run_cli("dead-letters", "list", "--config", str(config))
    assert empty.stdout == b"no dead letters\n"
    show = await run_cli("dead-letters", "show", letter["id"], "--config", str(config), "--json")
    assert show.returncode == 0, show.stderr
    shown = orjson.loads(show.stdout)
    # Replayed above: back in state replay, no attempts counted, the earlier one on record.
    assert (shown["hook"], shown["state"], shown["attempts"]) == ("temps", "replay", 0)
    assert [(a["number"], a["status"]) for a in shown["attempt_log"]] == [(5, 503)]
    # A time window, again, under new ids.
    window = await run_cli("replay", "--hook", "temps", "--since", "1h", "--config", str(config))
    assert window.returncode == 0, window.stderr
    assert b'queued 1 event for hook "temps" as replay 1' in window.stdout
    journal = RedisJournal(redis_db, hooks, node="test")
    async with trio.open_nursery() as nursery:
        await nursery.start(journal.run)
        taken = await journal.take_replays()
        nursery.cancel_scope.cancel()
    # The dead letter replayed above, and the window's new delivery of the same event.
    assert sorted(d.id for d in taken) == sorted([letter["id"], letter["id"] + "_r1"])
    assert {d.hook for d in taken} == {"temps"}


async def test_two_nodes_from_the_example_config_deliver_stream_and_answer_as_one(
    tmp_path: Path, redis_db: str, nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    from engine.gateway.client import open_gateway
    from tests.http.sink import Reply, Sink

    sink = Sink(Reply(200, b'{"received": 1}'))
    await nursery.start(sink.serve)
    example = (ROOT / "config" / "examples" / "cluster.toml").read_text()
    text = example.replace("port = 8081", "port = 0").replace(
        "127.0.0.1:9000", f"127.0.0.1:{sink.port}"
    )
    monkeypatch.setenv("REDIS_URL", redis_db)
    configs = node_configs(tmp_path, "ab", lambda _: text, folders="var")
    monkeypatch.setenv("HOOKWIRE_NODE", "node-a")
    async with daemon(configs["a"]) as a:
        monkeypatch.setenv("HOOKWIRE_NODE", "node-b")
        async with (
            daemon(configs["b"]) as b,
            httpx.AsyncClient(base_url=a.url, headers=DEMO, timeout=10) as to_a,
            httpx.AsyncClient(base_url=b.url, headers=DEMO, timeout=10) as to_b,
            aconnect_sse(to_b, "GET", "/v1/events/hook-response/demo") as answers_on_b,
        ):
            published = await to_a.post(
                "/v1/devices/events", data={"name": "demo/temp", "data": '{"temp":21.5}'}
            )
            assert published.status_code == 200
            async with aclosing(answers_on_b.aiter_sse()) as events:
                with trio.fail_after(15):
                    answer = await events.__anext__()
            assert orjson.loads(answer.data)["data"] == "received 1"
            # A device on B's gateway gets its hook's answer, whichever node delivered.
            async with open_gateway(DEMO_TOKEN, unix=tmp_path / "b" / "var" / "gateway.sock") as gw:
                await gw.publish(DEVICE, "demo/temp", '{"temp":19}')
                await gw.wait_acked()
                with trio.fail_after(15):
                    down = await gw.downlinks.receive()
                await gw.ack_downlinks([down.id])
    assert (down.device, down.name, down.data) == (
        DEVICE,
        "hook-response/demo/temp/0",
        "received 1",
    )
    assert len(sink.requests) == 2
    assert sink.requests[1].target == f"/readings/{DEVICE}"
