"""`hookwire bench`: hands over to the source checkout's benchmark runner."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def hand_over(argv: list[str]) -> int:
    """Hand over to bench/run.py, which ships with the source, not with the package."""
    runner = Path(__file__).resolve().parents[2] / "bench" / "run.py"
    if not runner.is_file():
        print(
            f"hookwire bench: the benchmark harness is not here ({runner} is missing): "
            "it ships with the source; run it from a clone of the repository",
            file=sys.stderr,
        )
        return 2
    try:
        return subprocess.run([sys.executable, str(runner), *argv], check=False).returncode
    except KeyboardInterrupt:
        return 130
