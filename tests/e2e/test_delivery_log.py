"""The delivery log as users see it, from a subprocess daemon whose hooks fail in each way
(connection refused, an error status with a body, a timeout) beside one that works: the
REST API and `hookwire deliveries` (reading the journal file while the daemon runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import orjson
import trio

from tests.conftest import ADMIN, BASE_CONFIG
from tests.e2e.test_daemon import daemon, write
from tests.helpers import run_cli
from tests.http.sink import Reply, Sink

HEADERS = {"Authorization": f"Bearer {ADMIN}"}


def config(tmp_path: Path, ok: Sink, down: Sink, slow: Sink, refused: int) -> Path:
    hooks = ""
    for name, url in (
        ("works", ok.url),
        ("refused", f"http://127.0.0.1:{refused}"),
        ("down", down.url),
        ("slow", slow.url),
    ):
        hooks += (
            f'\n[[hooks]]\nname = "{name}"\nevent = "temp"\nurl = "{url}/in?api_key=k3y&site=a"\n'
            'auth = { bearer = "s3cret" }\nretry = ["30s"]\n'
        )
    journal = 'backend = "sqlite"\npath = "journal.db"'
    text = BASE_CONFIG.replace('backend = "memory"', journal)
    text += '\n[delivery]\nallow_networks = ["127.0.0.0/8"]\ntimeout = 1\n' + hooks
    return write(tmp_path, text)


async def page(client: httpx.AsyncClient, hook_id: str, state: str = "") -> dict[str, Any]:
    query = f"?state={state}" if state else ""
    answer = await client.get(f"/v1/integrations/{hook_id}/deliveries{query}")
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


async def test_each_failure_is_in_the_log_with_its_request_and_answer(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    ok, down, slow = Sink(), Sink(Reply(503, b"maintenance window")), Sink(Reply(200, delay=3))
    for sink in (ok, down, slow):
        await nursery.start(sink.serve)
    closed = trio.socket.socket()
    await closed.bind(("127.0.0.1", 0))
    refused = closed.getsockname()[1]
    closed.close()
    path = config(tmp_path, ok, down, slow, refused)
    async with (
        daemon(path) as node,
        httpx.AsyncClient(base_url=node.url, headers=HEADERS, timeout=10) as client,
    ):
        answer = await client.post("/v1/devices/events", data={"name": "temp", "data": "21.5"})
        assert answer.status_code == 200
        ids = {hook["name"]: hook["id"] for hook in (await client.get("/v1/integrations")).json()}
        with trio.fail_after(10):  # the slow hook's attempt times out after 1 s
            while True:
                shown = {name: await page(client, ids[name]) for name in ids}
                states = {n: [d["state"] for d in p["deliveries"]] for n, p in shown.items()}
                if states == {
                    "works": ["delivered"],
                    "refused": ["retrying"],
                    "down": ["retrying"],
                    "slow": ["retrying"],
                }:
                    break
                await trio.sleep(0.1)
        down_entry = shown["down"]["deliveries"][0]
        assert down_entry["last_result"] == "error status 503 from 127.0.0.1"
        assert down_entry["next_try"] is not None and down_entry["attempts"] == 1
        assert "connection refused" in shown["refused"]["deliveries"][0]["last_result"]
        assert "timeout" in shown["slow"]["deliveries"][0]["last_result"]
        assert (await page(client, ids["down"], "delivered"))["deliveries"] == []

        # One delivery: its attempt, the request sent (secrets masked) and the answer.
        key = down_entry["id"]
        detail = (await client.get(f"/v1/deliveries/{key}")).json()
        [attempt] = detail["attempt_log"]
        assert (detail["state"], detail["hook"], attempt["status"]) == ("retrying", "down", 503)
        assert attempt["response"] == "maintenance window"
        request = attempt["request"]
        assert request["url"] == f"{down.url}/in?api_key=***&site=a"
        headers = dict(request["headers"])
        assert headers["Authorization"] == "***" and headers["webhook-id"] == key
        assert "s3cret" not in orjson.dumps(detail).decode()

        # The hook's last failures, and its hour.
        activity = (await client.get(f"/v1/integrations/{ids['down']}/activity")).json()
        assert [f["status"] for f in activity["last_failures"]] == [503]
        assert activity["last_successes"] == []
        [hour] = activity["hours"]
        assert (hour["delivered"], hour["failed"]) == (0, 1)

        # Bad queries name the parameter; unknown ids are 404.
        bad = await client.get(f"/v1/integrations/{ids['down']}/deliveries?state=done")
        assert bad.status_code == 400 and "state: expected" in bad.json()["error"]
        assert (await client.get("/v1/deliveries/msg_00_ff_00")).status_code == 404
        assert (await client.get("/v1/integrations/nope/deliveries")).status_code == 404
        anonymous = await client.get(f"/v1/deliveries/{key}", headers={"Authorization": ""})
        assert anonymous.status_code == 401

        # The same from a shell, on the journal file beside the running daemon.
        listed = await run_cli("deliveries", "list", "--hook", "down", "--config", str(path))
        assert listed.returncode == 0, listed.stderr
        head, row = listed.stdout.decode().splitlines()
        assert head.split()[:4] == ["TIME", "(UTC)", "HOOK", "STATE"]
        assert " down " in row and " retrying " in row and key in row
        shown_json = await run_cli("deliveries", "show", key, "--json", "--config", str(path))
        assert shown_json.returncode == 0, shown_json.stderr
        assert orjson.loads(shown_json.stdout) == detail
        text = await run_cli("deliveries", "show", key, "--config", str(path))
        assert "< maintenance window" in text.stdout.decode()
        assert "> Authorization: ***" in text.stdout.decode()
        missing = await run_cli("deliveries", "show", "msg_00_ff_00", "--config", str(path))
        assert missing.returncode == 1
        assert missing.stderr.decode().strip() == (
            "hookwire deliveries show: no delivery msg_00_ff_00 in the journal"
        )
