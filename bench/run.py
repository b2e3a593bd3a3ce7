"""The benchmark suite (``make bench``, ``hookwire bench``): scenarios, a table, JSON and a chart.

Runs the chosen scenarios (all by default) one after another, each with its own daemons,
sinks and load generators (bench/scenarios/), shows a progress line meanwhile, then
prints the summary table and writes ``bench/results/bench-<UTC timestamp>.json`` and, when
matplotlib is installed, ``.png`` beside it.

    .venv/bin/python bench/run.py                      # every scenario, ~3 minutes
    .venv/bin/python bench/run.py delivery-1 latency   # some of them
    .venv/bin/python bench/run.py --quick              # about a second per phase: smoke
    .venv/bin/python bench/run.py --list

Exit code: 0 when every scenario ran and the engine never failed; 1 when a scenario
failed (a daemon did not start or died, a publish was refused, a delivery was lost or
duplicated, or the harness itself broke: the table says which and why); 2 on bad input.
A missed target is not a failure: the table prints MISSED.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

import orjson

if __package__ in (None, ""):
    # Run as a script (``python bench/run.py``, as ``make bench`` and ``hookwire bench`` do):
    # the package ``bench`` is imported from the repository root, not from bench/ itself.
    ROOT = str(Path(__file__).resolve().parents[1])
    sys.path[:] = [ROOT, *(p for p in sys.path if p not in (ROOT, str(Path(__file__).parent)))]

from bench.harness.chart import write_chart
from bench.harness.daemon import PORT_VARIABLE, machine_busy, port_in_use
from bench.harness.report import BUSY_WARNING, RESULTS_DIR
from bench.harness.scenario import SINKS, Bench, Settings, bind, nginx_installed
from bench.harness.suite import Outcome, Scenario, Suite, UnknownScenario, select
from bench.scenarios import discover

TICK = 1.0
"""Seconds between updates of the progress line."""


def _parser(scenarios: list[Scenario]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hookwire bench",
        description="Load benchmarks of the engine, with baselines, in one run.",
        epilog="scenarios: " + ", ".join(s.name for s in scenarios),
    )
    parser.add_argument("scenarios", nargs="*", metavar="SCENARIO", help="default: all")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument(
        "--quick", action="store_true", help="about a second per phase: a smoke run"
    )
    parser.add_argument(
        "--sink",
        choices=SINKS,
        default="auto",
        help="webhook sink of throughput phases: nginx when installed (auto), or always "
        "the Python receiver, or nginx (error when it is not installed)",
    )
    parser.add_argument(
        "--port", type=int, default=None, help="the daemons' HTTP port (default: a free one)"
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of the crash moments")
    parser.add_argument(
        "--results", type=Path, default=RESULTS_DIR, help="folder for the JSON and the chart"
    )
    parser.add_argument("--no-chart", action="store_true", help="do not draw the PNG chart")
    return parser


class Progress:
    """The progress line: which scenario, for how long; redrawn in place on a terminal."""

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total = total
        self.stream = stream
        self.live = stream.isatty()
        self.began = time.monotonic()
        self._current: tuple[int, str, float] | None = None
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, daemon=True, name="progress")

    def __enter__(self) -> Progress:
        if self.live:
            self._ticker.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._ticker.is_alive():
            self._ticker.join(2 * TICK)

    def start(self, index: int, scenario: Scenario) -> None:
        self._current = (index, scenario.name, time.monotonic())
        self._draw(final=not self.live)

    def end(self, index: int, outcome: Outcome) -> None:
        self._current = None
        first = outcome.findings.headlines[0] if outcome.findings.headlines else None
        found = f": {first.label} {first.value:,.0f} {first.unit}".rstrip() if first else ""
        line = (
            f"[{index + 1}/{self.total}] {outcome.scenario.name} {outcome.status} "
            f"in {outcome.seconds:.1f} s{found}"
        )
        self._write(line, final=True)

    def _tick(self) -> None:
        while not self._stop.wait(TICK):
            if self._current is not None:
                self._draw(final=False)

    def _draw(self, final: bool) -> None:
        current = self._current
        if current is None:
            return
        index, name, since = current
        now = time.monotonic()
        self._write(
            f"[{index + 1}/{self.total}] {name} running {_clock(now - since)} "
            f"(suite {_clock(now - self.began)})",
            final=final,
        )

    def _write(self, line: str, final: bool) -> None:
        if self.live:
            self.stream.write("\r\x1b[2K" + line + ("\n" if final else ""))
        elif final:
            self.stream.write(line + "\n")
        self.stream.flush()


def _clock(seconds: float) -> str:
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}:{rest:02d}"


def write_results(document: dict[str, Any], folder: Path, chart: bool) -> list[str]:
    """The JSON (and the PNG) of one run; returns what to print about them."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = str(document["started"])[:19].replace("-", "").replace(":", "")
    base = folder / f"bench-{stamp}Z"
    json_path = base.with_suffix(".json")
    json_path.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
    lines = [f"results: {json_path}"]
    if chart:
        png_path = base.with_suffix(".png")
        reason = write_chart(document, png_path)
        lines.append(f"chart:   {png_path}" if reason is None else f"chart:   {reason}")
    return lines


def main(argv: list[str] | None = None) -> int:
    registered = discover()
    probe = _parser(bind(registered, Bench(Settings())))
    args = probe.parse_args(argv)
    settings = Settings(quick=args.quick, sink=args.sink, seed=args.seed)
    scenarios = bind(registered, Bench(settings))
    if args.list:
        width = max(len(s.name) for s in scenarios)
        for scenario in scenarios:
            print(f"{scenario.name:<{width}}  {scenario.title}")
        return 0
    try:
        chosen = select(scenarios, args.scenarios)
    except UnknownScenario as exc:
        probe.error(str(exc))
    if args.sink == "nginx" and not nginx_installed():
        probe.error("--sink nginx: nginx is not installed (apt-get install nginx-light)")
    if args.port is not None:
        why = port_in_use(args.port)
        if why is not None:
            probe.error(
                f"--port {args.port}: 127.0.0.1:{args.port} cannot be listened on ({why}); "
                "choose another, or leave --port out to use a free one"
            )
        os.environ[PORT_VARIABLE] = str(args.port)

    busy = machine_busy()
    suite = Suite(
        params={
            "scenarios": [s.name for s in chosen],
            "quick": args.quick,
            "sink": args.sink,
            "seed": args.seed,
        },
        machine_busy=busy,
    )
    if busy > BUSY_WARNING:
        print(
            f"note: the machine is {100 * busy:.0f}% busy before the run (other processes): "
            "numbers will be low and noisy",
            file=sys.stderr,
        )
    interrupted = False
    with Progress(len(chosen), sys.stderr) as progress:
        try:
            suite.run(chosen, on_start=progress.start, on_end=progress.end)
        except KeyboardInterrupt:
            interrupted = True
    document = suite.document()
    document["interrupted"] = interrupted
    print(suite.table())
    for line in write_results(document, args.results, chart=not args.no_chart):
        print(line)
    if interrupted:
        print("interrupted: the results hold the scenarios that finished", file=sys.stderr)
        return 1
    return 1 if suite.failed else 0


if __name__ == "__main__":
    sys.exit(main())
