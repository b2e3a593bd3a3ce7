"""Benchmark reports: a human table on stdout, JSON in bench/results/, targets MET or MISSED."""

from __future__ import annotations

import datetime as dt
import json
import operator
import os
import platform
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parents[1] / "results"

BUSY_WARNING = 0.10
"""CPU share in use by others before a run above which the report warns."""

_COMPARE: dict[str, Callable[[float, float], bool]] = {">=": operator.ge, "<=": operator.le}


@dataclass(frozen=True, slots=True)
class Target:
    """A goal the design sets, e.g. ``publishes/s >= 10000``."""

    label: str
    value: float
    op: str
    threshold: float
    unit: str

    @property
    def met(self) -> bool:
        return _COMPARE[self.op](self.value, self.threshold)

    def as_dict(self) -> dict[str, object]:
        return {
            "label": self.label,
            "value": self.value,
            "op": self.op,
            "threshold": self.threshold,
            "unit": self.unit,
            "met": self.met,
        }

    def line(self) -> str:
        verdict = "MET" if self.met else "MISSED"
        return (
            f"{verdict:6}  {self.label}: {_fmt(self.value)} {self.unit} "
            f"(target {self.op} {_fmt(self.threshold)} {self.unit})"
        )


@dataclass
class Report:
    """Everything one benchmark run found; ``finish()`` prints it and writes the JSON."""

    name: str
    params: dict[str, object]
    rows: list[tuple[str, str]] = field(default_factory=list)
    results: dict[str, object] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failure: str | None = None
    started: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    def row(self, label: str, value: object, unit: str = "", key: str | None = None) -> None:
        """One line of the table; stored in the JSON under ``key`` when given."""
        text = _fmt(value) if isinstance(value, int | float) else str(value)
        self.rows.append((label, f"{text} {unit}".rstrip()))
        if key is not None:
            self.results[key] = value

    def section(self, title: str) -> None:
        self.rows.append((f"-- {title}", ""))

    def target(self, label: str, value: float, op: str, threshold: float, unit: str) -> Target:
        target = Target(label, value, op, threshold, unit)
        self.targets.append(target)
        return target

    def check_machine(self, busy: float) -> None:
        """Record how busy the machine was before the run; warn when others use the CPUs."""
        self.row("machine busy before run", 100 * busy, "% of all CPUs")
        self.results["machine_busy_before_pct"] = round(100 * busy, 1)
        if busy > BUSY_WARNING:
            self.note(
                f"the machine was {100 * busy:.0f}% busy before this run (other processes): "
                "numbers may be low and noisy; rerun on an idle machine"
            )

    def note(self, text: str) -> None:
        self.notes.append(text)

    def fail(self, reason: str) -> None:
        """Mark the run as an engine failure (exit code 1); keeps the first reason."""
        if self.failure is None:
            self.failure = reason

    def finish(self) -> int:
        """Print the table, write the JSON file, and return the process exit code."""
        path = self._write_json()
        print(self._table())
        print(f"\nresults: {path}")
        return 1 if self.failure else 0

    def _table(self) -> str:
        width = max((len(label) for label, _ in self.rows), default=10)
        lines = [f"== {self.name} ({self.started:%Y-%m-%d %H:%M:%S} UTC)"]
        lines.append("   " + " ".join(f"{k}={v}" for k, v in self.params.items()))
        for label, value in self.rows:
            lines.append(
                f"   {label}" if label.startswith("--") else f"   {label:<{width}}  {value}"
            )
        if self.targets:
            lines.append("-- targets")
            lines.extend("   " + target.line() for target in self.targets)
        for note in self.notes:
            lines.append(f"note: {note}")
        if self.failure:
            lines.append(f"ENGINE FAILED: {self.failure}")
        return "\n".join(lines)

    def _write_json(self) -> Path:
        RESULTS_DIR.mkdir(exist_ok=True)
        path = RESULTS_DIR / f"{self.name}-{self.started:%Y%m%dT%H%M%SZ}.json"
        document = {
            "benchmark": self.name,
            "started": self.started.isoformat(),
            "machine": machine_info(),
            "params": self.params,
            "results": self.results,
            "targets": [target.as_dict() for target in self.targets],
            "notes": self.notes,
            "engine_failed": self.failure,
        }
        path.write_text(json.dumps(document, indent=2, default=str) + "\n")
        return path


def machine_info() -> dict[str, object]:
    """What the numbers depend on: CPUs, Python, and the working tree's commit."""
    return {
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "commit": _git_head(),
    }


def _git_head() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=RESULTS_DIR.parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def _fmt(value: object) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value == 0 or abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 1:
            return f"{value:,.2f}"
        return f"{value:.3g}"
    return str(value)
