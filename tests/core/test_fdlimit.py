"""The open-file limit: raised to the hard limit, and never past what the system allows."""

from __future__ import annotations

import resource
import subprocess
import sys

from engine.core.fdlimit import CEILING, connection_share, open_file_limit


def test_raising_the_limit_in_a_child_process() -> None:
    # In a child: the test process's own limit stays as it is.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = min(soft, 256) if soft != resource.RLIM_INFINITY else 256
    script = (
        "import resource\n"
        "from engine.core.fdlimit import raise_open_file_limit, open_file_limit\n"
        f"resource.setrlimit(resource.RLIMIT_NOFILE, ({low}, resource.getrlimit("
        "resource.RLIMIT_NOFILE)[1]))\n"
        "print(raise_open_file_limit(), open_file_limit())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=30
    ).stdout.split()
    expected = CEILING if hard == resource.RLIM_INFINITY else min(hard, CEILING)
    assert out == [str(expected), str(expected)]


def test_the_share_leaves_room_for_everything_else() -> None:
    assert open_file_limit() >= 1
    assert connection_share(20_000) == 15_000
    assert connection_share(1024) == 768
    assert connection_share(100) == 36
    assert connection_share(10) == 1
