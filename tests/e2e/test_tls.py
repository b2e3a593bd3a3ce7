"""TLS as users run it: `hookwire run` with a certificate pair, and the pairs it refuses."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from engine.gateway.client import open_gateway
from tests.conftest import ADMIN, BASE_CONFIG
from tests.e2e.test_daemon import daemon, write
from tests.gateway.test_hub import DEVICE, GATEWAY, GATEWAY_TOKEN
from tests.helpers import run_cli
from tests.tls_pair import TlsFiles, write_tls_files

SERVING = rb"serving https://127\.0\.0\.1:(\d+)"
GATEWAY_LINE = rb"gateway channel listening on tls://127\.0\.0\.1:(\d+)"


def tls_config(tmp_path: Path, tls: TlsFiles, extra: str = "") -> Path:
    text = BASE_CONFIG.replace("port = 0\n", f"port = 0\n{tls.toml()}", 1) + extra
    return write(tmp_path, text)


@asynccontextmanager
async def tls_daemon(config: Path) -> AsyncIterator[tuple[int, bytearray]]:
    """`hookwire run` until its "serving https://" line; its port and what it logged."""
    async with daemon(config, serving=SERVING) as started:
        yield started.port, started.stderr


async def test_the_daemon_serves_https_and_the_gateway_over_tls(tmp_path: Path) -> None:
    tls = write_tls_files(tmp_path / "tls")
    gateway = f'{GATEWAY_TOKEN}\n[gateway]\ntcp = "127.0.0.1:0"\ntls = true\n'
    async with tls_daemon(tls_config(tmp_path, tls, gateway)) as (port, stderr):
        assert b"serving http://" not in stderr
        found = re.search(GATEWAY_LINE, stderr)
        assert found is not None, stderr.decode()
        tcp = ("127.0.0.1", int(found.group(1)))
        async with open_gateway(GATEWAY, tcp=tcp, cafile=tls.ca) as channel:
            await channel.wait_acked(await channel.publish(DEVICE, "temp", "21.5"))
        async with httpx.AsyncClient(
            base_url=f"https://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {ADMIN}"},
            verify=tls.client_context(),
            timeout=5,
        ) as client:
            response = await client.post("/v1/devices/events", data={"name": "temp", "data": "2"})
            assert response.json() == {"ok": True, "id": 2}


async def test_a_key_that_does_not_exist_is_one_line_from_check_and_run(tmp_path: Path) -> None:
    tls = write_tls_files(tmp_path / "tls")
    config = tls_config(tmp_path, tls)
    tls.key.unlink()
    for command in ("check", "run"):
        result = await run_cli(command, "--config", str(config))
        assert result.returncode == 1
        assert result.stderr.decode().splitlines() == [
            f"{config}: server.tls_key: {tls.key} does not exist"
        ]


@pytest.mark.parametrize(
    ("key", "says"),
    [
        ("other", "is not the private key of the certificate in {cert}"),
        ("junk", "holds no PEM private key"),
    ],
)
async def test_a_key_that_cannot_serve_is_one_line_from_run(
    tmp_path: Path, key: str, says: str
) -> None:
    tls = write_tls_files(tmp_path / "tls")
    if key == "other":
        tls.key.write_bytes(write_tls_files(tmp_path / "other").key.read_bytes())
    else:
        tls.key.write_text("not a key\n")
    result = await run_cli("run", "--config", str(tls_config(tmp_path, tls)))
    assert result.returncode == 1
    assert result.stderr.decode().splitlines() == [
        f"{tmp_path / 'engine.toml'}: server.tls_key: {tls.key} {says.format(cert=tls.cert)}"
    ]


async def test_a_mismatched_key_is_one_line_from_check(tmp_path: Path) -> None:
    tls = write_tls_files(tmp_path / "tls")
    tls.key.write_bytes(write_tls_files(tmp_path / "other").key.read_bytes())
    result = await run_cli("check", "--config", str(tls_config(tmp_path, tls)))
    assert result.returncode == 1
