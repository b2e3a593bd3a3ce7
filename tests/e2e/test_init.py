"""`hookwire init`, then `hookwire run` from what it wrote: a new user's first minutes."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import httpx
import trio

from engine.cli.init import CONFIG_NAME
from tests.e2e.test_daemon import daemon
from tests.helpers import run_cli


async def test_the_started_config_serves_and_keeps_its_events(tmp_path: Path) -> None:
    made = await run_cli("init", str(tmp_path))
    assert made.returncode == 0, made.stderr
    token = re.search(r"admin token:\s+(\S+)", made.stdout.decode()).group(1)  # type: ignore[union-attr]
    config = tmp_path / CONFIG_NAME
    checked = await run_cli("check", "--config", str(config))
    assert (checked.returncode, checked.stdout.decode()) == (
        0,
        f"{config}: ok (1 token, 0 hooks)\n",
    )
    # Port 8080 may be taken on a test machine: the only change made to the written file.
    config.write_text(config.read_text().replace("port = 8080", "port = 0"))
    headers = {"Authorization": f"Bearer {token}"}
    for expected_id in (1, 2):  # the journal is on disk: ids continue after a restart
        async with daemon(config) as d:
            async with httpx.AsyncClient(base_url=d.url, headers=headers, timeout=5) as client:
                assert (await client.get("/healthz")).status_code == 200
                published = await client.post(
                    "/v1/devices/events", data={"name": "temp", "data": "21.5"}
                )
                assert published.json() == {"ok": True, "id": expected_id}
                assert (await client.get("/console/")).status_code == 200
            d.process.send_signal(signal.SIGTERM)
            with trio.fail_after(10):
                assert await d.process.wait() == 0
        assert b"gateway channel listening" not in d.stderr  # the gateway is off
    assert (tmp_path / "var" / "hookwire.db").is_file()
