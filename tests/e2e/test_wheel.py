"""The wheel carries everything `hookwire run` needs: built, installed into a new venv, run
from outside the checkout.

Built from a copy of the sources (pyproject.toml, README.md, engine/) so that setuptools'
build/ and egg-info land in tmp_path, not in the checkout. The new venv gets the runtime
dependencies from whatever package index pip reaches (pip's own config and cache); when it
reaches none the test skips, saying so, except under CI where it fails.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx
import pytest
import trio

from tests.e2e.test_daemon import daemon
from tests.helpers import ROOT

IN_CI = bool(os.environ.get("CI"))
BUILD_TIMEOUT = 60  # an isolated build env and setuptools: ~5 s on a loaded 2-core machine
INSTALL_TIMEOUT = 120  # a venv and the runtime dependencies: ~20 s from a local cache
# What pip prints when it cannot get a package at all (no index reachable, nothing cached).
UNREACHABLE = re.compile(
    r"No matching distribution found|Could not find a version|NewConnectionError|"
    r"Failed to establish a new connection|Temporary failure in name resolution"
)

pytestmark = pytest.mark.slow


async def _run(args: list[str], cwd: Path, within: float) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(within):
        return await trio.run_process(
            args, cwd=cwd, capture_stdout=True, capture_stderr=True, check=False
        )


async def _build_wheel(tmp_path: Path) -> Path:
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "engine", source / "engine", ignore=shutil.ignore_patterns("__pycache__")
    )
    if (await _run([sys.executable, "-m", "build", "--version"], tmp_path, 30)).returncode:
        pytest.fail("`build` is missing: it is in the test extra (pip install -e '.[test]')")
    dist = tmp_path / "dist"
    built = await _run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(source)],
        tmp_path,
        BUILD_TIMEOUT,
    )
    if built.returncode and UNREACHABLE.search(built.stderr.decode() + built.stdout.decode()):
        _unreachable("setuptools, for the build", built)
    assert built.returncode == 0, built.stdout.decode()[-3000:] + built.stderr.decode()
    (wheel,) = dist.glob("hookwire-*.whl")
    return wheel


def _unreachable(what: str, result: subprocess.CompletedProcess[bytes]) -> None:
    said = result.stderr.decode()[-500:]
    why = f"pip cannot get {what} (no package index or cache reachable): {said}"
    if IN_CI:
        pytest.fail(why)
    pytest.skip(why)


async def test_the_wheel_installs_inits_and_serves(tmp_path: Path) -> None:
    wheel = await _build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in (
        "engine/config/starter.toml",
        "engine/console/index.html",
        "engine/console/console.js",
        "engine/console/console.css",
        "engine/journal/schema.py",
        "engine/delivery/worker.py",
    ):
        assert shipped in names, shipped

    venv = tmp_path / "venv"
    made = await _run([sys.executable, "-m", "venv", str(venv)], tmp_path, INSTALL_TIMEOUT)
    assert made.returncode == 0, made.stderr.decode()
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check"]
    installed = await _run([*pip, "--quiet", str(wheel)], tmp_path, INSTALL_TIMEOUT)
    if installed.returncode and UNREACHABLE.search(installed.stderr.decode()):
        _unreachable("the runtime dependencies", installed)
    assert installed.returncode == 0, installed.stderr.decode()

    # From here on nothing of the checkout is reachable: cwd is tmp_path, and the venv's
    # console script imports engine from the venv's site-packages.
    hookwire = str(venv / "bin" / "hookwire")
    etc = tmp_path / "etc"
    init = await _run([hookwire, "init", str(etc)], tmp_path, 30)
    assert init.returncode == 0, init.stderr.decode()
    token = re.search(rb"admin token:\s+(\S+)", init.stdout).group(1).decode()  # type: ignore[union-attr]
    config = etc / "hookwire.toml"
    config.write_text(config.read_text().replace("port = 8080", "port = 0"))
    async with daemon(config, command=[hookwire], cwd=tmp_path) as installed_daemon:
        base = installed_daemon.url
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=5) as client:
            assert (await client.get("/healthz")).status_code == 200
            console = await client.get("/console/")
            assert console.status_code == 200
            assert "text/html" in console.headers["content-type"]
            published = await client.post("/v1/devices/events", data={"name": "t", "data": "1"})
            assert published.json() == {"ok": True, "id": 1}
        installed_daemon.process.send_signal(signal.SIGTERM)
        with trio.fail_after(10):
            assert await installed_daemon.process.wait() == 0
    assert (etc / "var" / "hookwire.db").is_file()
    # What ran was the installed copy, not the checkout's.
    where = await _run(
        [str(venv / "bin" / "python"), "-c", "import engine; print(engine.__file__)"], tmp_path, 30
    )
    assert Path(where.stdout.decode().strip()).is_relative_to(venv), where
