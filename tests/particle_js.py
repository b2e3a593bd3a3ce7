"""Particle's own JavaScript client (particle-api-js, pinned in tests/js/package.json), run
one call at a time by tests/js/particle_webhooks.mjs: the proof that our API is the one that
client speaks, not our reading of it.

``run_particle_js`` blocks, for servers in another thread or process; inside a trio test
against ``served`` use ``run_particle_js_async``, which leaves the event loop (and so the
engine under test) running while node waits for its answer.

Without node, npm or the installed modules the tests marked ``requires_node`` skip, naming
the Debian packages; under CI (``CI`` set, as .ci/run has it) they run and fail instead,
since .ci/run installs all three.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import Any

import trio

from tests.node_packages import JS, missing, requires

SCRIPT = JS / "particle_webhooks.mjs"

TIMEOUT = 30.0
"""Seconds for one client run: node starts in about 0.1 s, and the client sets no timeout of
its own, so a server that never answers would otherwise hang the test."""

MISSING = missing("particle-api-js")

requires_node = requires("particle-api-js")
"""Skip where particle-api-js cannot run, except under CI, where it must."""


def particle_js_command(base_url: str, *args: str) -> list[str]:
    """The command line of one client run; the token goes in the environment."""
    if MISSING is not None:
        raise RuntimeError(MISSING)
    node = shutil.which("node")
    assert node is not None
    return [node, str(SCRIPT), "--base-url", base_url, *args]


def particle_js_env(token: str) -> dict[str, str]:
    """The environment of one client run: ours plus the token ("" sends no Authorization)."""
    return {**os.environ, "PARTICLE_TOKEN": token, "NODE_NO_WARNINGS": "1"}


def parse_result(returncode: int, stdout: bytes, stderr: bytes) -> tuple[int, dict[str, Any]]:
    """The script's exit code and the JSON line it printed (0: resolved, 1: rejected)."""
    if returncode not in (0, 1):
        raise AssertionError(
            f"particle_webhooks.mjs exited {returncode}: {stderr.decode(errors='replace')}"
        )
    lines = stdout.decode().strip().splitlines()
    if not lines:
        raise AssertionError(f"particle_webhooks.mjs printed nothing: {stderr.decode()!r}")
    result: dict[str, Any] = json.loads(lines[-1])
    return returncode, result


def run_particle_js(base_url: str, token: str, *args: str) -> tuple[int, dict[str, Any]]:
    """Run one client step (``list``, ``create SPEC``, ``get ID``, ``delete ID``, with
    ``--product P`` before the step...) and return its exit code and parsed result."""
    done = subprocess.run(
        particle_js_command(base_url, *args),
        env=particle_js_env(token),
        capture_output=True,
        timeout=TIMEOUT,
        check=False,
    )
    return parse_result(done.returncode, done.stdout, done.stderr)


async def run_particle_js_async(
    base_url: str, token: str, *args: str
) -> tuple[int, dict[str, Any]]:
    """``run_particle_js`` for trio tests: the loop goes on serving while node runs."""
    with trio.fail_after(TIMEOUT):
        done = await trio.run_process(
            particle_js_command(base_url, *args),
            env=particle_js_env(token),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    return parse_result(done.returncode, done.stdout, done.stderr)
