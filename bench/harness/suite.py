"""The benchmark suite's pieces without I/O of their own: scenarios, their findings, the documents.

A ``Scenario`` is a name, a title and a function that measures something and writes what
it found into a ``Findings``: the same rows, results, targets and notes as any benchmark
``Report``, plus what the suite's summary shows (``headline``), what the chart draws
(``throughput``, ``latency``, ``sweep``), and ratios to baselines measured in the same run.
``Suite`` runs the chosen scenarios in order, isolating their failures, and
``document()``/``table()`` turn the run into the JSON file and the terminal table.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.harness.daemon import EngineFailed
from bench.harness.report import Report, _fmt, machine_info

SINK_BOUND = 0.9
"""Share of a core above which the sink, not the engine, may have set the pace."""


class UnknownScenario(ValueError):
    """A scenario name the suite does not have."""


@dataclass(frozen=True, slots=True)
class Headline:
    """One number the summary table shows for a scenario, with its baseline if any."""

    label: str
    value: float
    unit: str
    baseline: str | None = None  # what the value is compared with, e.g. "httpx on trio"
    baseline_value: float | None = None
    caveat: str | None = None  # e.g. "floor: the sink was saturated"

    @property
    def ratio(self) -> float | None:
        if self.baseline_value is None or self.baseline_value <= 0:
            return None
        return self.value / self.baseline_value

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "value": self.value,
            "unit": self.unit,
            "baseline": self.baseline,
            "baseline_value": self.baseline_value,
            "ratio": self.ratio,
            "caveat": self.caveat,
        }


class Findings(Report):
    """What one scenario found: a ``Report`` plus its headlines and chart series."""

    def __init__(self, name: str, params: dict[str, object] | None = None) -> None:
        super().__init__(name, dict(params or {}))
        self.headlines: list[Headline] = []
        self.bars: list[dict[str, Any]] = []
        self.latencies: list[dict[str, Any]] = []
        self.sweep: dict[str, Any] | None = None

    def headline(
        self,
        label: str,
        value: float,
        unit: str,
        *,
        baseline: str | None = None,
        baseline_value: float | None = None,
        caveat: str | None = None,
    ) -> Headline:
        item = Headline(label, value, unit, baseline, baseline_value, caveat)
        self.headlines.append(item)
        return item

    def throughput(self, label: str, value: float, unit: str, *, baseline: bool = False) -> None:
        """A bar of the chart: the engine's (or a baseline's) rate."""
        kind = "baseline" if baseline else "engine"
        self.bars.append({"label": label, "value": value, "unit": unit, "kind": kind})

    def latency(self, label: str, rate: float, summary: dict[str, Any]) -> None:
        """A line of the latency chart: a ``LatencySummary.as_dict()`` at an offered rate."""
        self.latencies.append({"label": label, "rate": rate, **summary})

    def sink_caveat(self, key: str) -> str | None:
        """'floor: ...' when the sink used most of a core in phase ``key`` (delivery phases)."""
        share = self.results.get(f"{key}.receiver_cpu_pct")
        if isinstance(share, int | float) and share >= 100 * SINK_BOUND:
            return f"floor: the sink used {share:.0f}% of a core and may have set the pace"
        return None


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    title: str
    run: Callable[[Findings], None]


@dataclass
class Outcome:
    """A scenario after it ran: its findings, how long it took, and whether it failed."""

    scenario: Scenario
    findings: Findings
    seconds: float
    error: str | None = None  # the harness itself broke (not the engine)

    @property
    def status(self) -> str:
        if self.error is not None:
            return "error"
        return "failed" if self.findings.failure else "ok"

    def as_dict(self) -> dict[str, Any]:
        found = self.findings
        return {
            "name": self.scenario.name,
            "title": self.scenario.title,
            "status": self.status,
            "seconds": round(self.seconds, 2),
            "failure": found.failure or self.error,
            "headlines": [h.as_dict() for h in found.headlines],
            "throughput": found.bars,
            "latency": found.latencies,
            "sweep": found.sweep,
            "params": found.params,
            "rows": found.rows,
            "results": found.results,
            "targets": [target.as_dict() for target in found.targets],
            "notes": found.notes,
        }


def select(scenarios: Sequence[Scenario], names: Iterable[str]) -> list[Scenario]:
    """The scenarios named, in the suite's order; all of them when no name is given."""
    wanted = [name.strip() for name in names if name.strip()]
    if not wanted:
        return list(scenarios)
    known = {scenario.name for scenario in scenarios}
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise UnknownScenario(
            f"unknown scenario{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}"
            f": expected one of {', '.join(s.name for s in scenarios)}"
        )
    return [scenario for scenario in scenarios if scenario.name in wanted]


@dataclass
class Suite:
    """One run of several scenarios, one after another."""

    params: dict[str, object]
    started: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    outcomes: list[Outcome] = field(default_factory=list)
    machine_busy: float | None = None

    def run(
        self,
        scenarios: Sequence[Scenario],
        on_start: Callable[[int, Scenario], None] = lambda i, s: None,
        on_end: Callable[[int, Outcome], None] = lambda i, o: None,
    ) -> list[Outcome]:
        """Run each scenario; an engine failure or a harness error stops that one only.

        KeyboardInterrupt stops the suite; what ran so far is kept.
        """
        for index, scenario in enumerate(scenarios):
            on_start(index, scenario)
            findings = Findings(scenario.name)
            began = time.monotonic()
            error: str | None = None
            try:
                scenario.run(findings)
            except EngineFailed as exc:
                findings.fail(str(exc))
            except (OSError, RuntimeError, ValueError) as exc:
                error = f"the harness could not run it: {type(exc).__name__}: {exc}"
            outcome = Outcome(scenario, findings, time.monotonic() - began, error)
            self.outcomes.append(outcome)
            on_end(index, outcome)
        return self.outcomes

    @property
    def failed(self) -> bool:
        return any(outcome.status != "ok" for outcome in self.outcomes)

    def document(self) -> dict[str, Any]:
        finished = dt.datetime.now(dt.UTC)
        return {
            "suite": "hookwire-bench",
            "started": self.started.isoformat(),
            "seconds": round((finished - self.started).total_seconds(), 1),
            "machine": machine_info(),
            "machine_busy_before_pct": (
                None if self.machine_busy is None else round(100 * self.machine_busy, 1)
            ),
            "params": self.params,
            "scenarios": [outcome.as_dict() for outcome in self.outcomes],
        }

    def table(self) -> str:
        """The summary: each scenario's headlines, ratios to baselines, and verdicts."""
        lines = [f"== hookwire bench ({self.started:%Y-%m-%d %H:%M} UTC)"]
        rows: list[tuple[str, str, str, str]] = [("scenario", "measure", "value", "vs baseline")]
        for outcome in self.outcomes:
            name = outcome.scenario.name
            found = outcome.findings
            if outcome.status != "ok":
                rows.append((name, outcome.status.upper(), "", ""))
            for item in found.headlines:
                number = item.value
                if isinstance(number, float) and number.is_integer() and abs(number) < 1e15:
                    number = int(number)
                value = f"{_fmt(number)} {item.unit}".rstrip()
                if item.caveat:
                    value += " (floor)"
                versus = ""
                if item.ratio is not None:
                    versus = f"{item.ratio:.2f}x {item.baseline} ({_fmt(item.baseline_value)})"
                rows.append((name, item.label, value, versus))
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        for row in rows:
            cells = "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
            lines.append(f"  {cells}  {row[3]}".rstrip())
        for outcome in self.outcomes:
            name = outcome.scenario.name
            for target in outcome.findings.targets:
                lines.append(f"  {name}: {target.line()}")
            for item in outcome.findings.headlines:
                if item.caveat:
                    lines.append(f"  {name}: {item.label}: {item.caveat}")
            for note in outcome.findings.notes:
                lines.append(f"  {name}: note: {note}")
            failure = outcome.findings.failure or outcome.error
            if failure:
                first, _, rest = failure.partition("\n")
                lines.append(f"  {name}: {outcome.status.upper()}: {first}")
                lines.extend(f"    | {line}" for line in rest.splitlines())
        return "\n".join(lines)
