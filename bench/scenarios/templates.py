"""Template renders per second: our compiled Mustache against chevron, mystace and f-strings.

One event (JSON data, ~8 keys) becomes a context through ``event_context``; three templates
a webhook typically has (a JSON body as a string template, a URL, an Authorization header)
are rendered against it by:

- ours: ``compile_template`` once (URL and header with ``refuse_line_breaks``, as hooks
  compile them), then ``render``;
- chevron: ``chevron.render(text, context)``, the test oracle, which re-parses every call;
- mystace: the fastest spec-conformant engine on PyPI for Python 3.11 (it passes all 136
  tests of the spec's required modules), its tree built once (``MustacheRenderer``);
- f-string: hand-written Python for these three templates and this data's types, the
  ceiling any template engine can approach.

Every engine's output is checked to be identical before anything is timed; a mismatch is a
failure (exit 1). Each figure is the best of ``--repeat`` runs of at most ``--duration``
seconds and ``--max-calls`` calls. A missed target prints MISSED and is not a failure.

    .venv/bin/python -m bench.scenarios.templates
    .venv/bin/python -m bench.scenarios.templates --duration 1 --repeat 5
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import chevron

from bench.harness.daemon import machine_busy
from bench.harness.report import Report
from bench.harness.scenario import Bench, options, scenario
from bench.harness.suite import Findings
from engine.core.model import Event
from engine.templates import compile_template
from engine.templates.context import event_context
from engine.templates.values import escape_html

try:
    from mystace import MustacheRenderer
except ImportError:  # the bench extra's; without it, ours is compared with chevron only
    MustacheRenderer = None

TARGET_VS_CHEVRON = 20.0
"""Ours / chevron per template: compiling once must beat re-parsing by far."""

TARGET_VS_FASTEST = 5.0
"""Ours / mystace per event (body + URL + header): beat the best pre-parsed engine."""

BATCH = 100
"""Calls between two clock readings: keeps the timing loop's own cost small."""

TEMPLATES = {
    "body": (
        '{"device":"{{{TRACKLE_DEVICE_ID}}}","event":"{{{TRACKLE_EVENT_NAME}}}",'
        '"temp":{{{temp}}},"hum":{{{hum}}},"at":"{{{TRACKLE_PUBLISHED_AT}}}",'
        '"tags":[{{#tags}}"{{.}}",{{/tags}}"end"]}'
    ),
    "url": (
        "https://api.example.com/devices/{{{TRACKLE_DEVICE_ID}}}/readings"
        "?unit={{unit}}&site={{site.name}}"
    ),
    "header": "Bearer {{{token}}}",
}
REFUSE_LINE_BREAKS = {"body": False, "url": True, "header": True}

EVENT = Event(
    id=1842,
    name="env",
    data='{"temp":21.5,"hum":40,"unit":"C","site":{"name":"lab"},"tags":["a","b"],"token":"abc"}',
    ttl=60,
    private=True,
    published_at="2026-11-28T10:00:00.000Z",
    device_id="0123456789abcdef01234567",
    product_id=None,
)

Render = Callable[[Any], str]


# -- the ceiling: what a person would write for these templates and this data -------------


def _body_fstring(c: Any) -> str:
    tags = "".join([f'"{escape_html(tag)}",' for tag in c["tags"]])
    return (
        f'{{"device":"{c["TRACKLE_DEVICE_ID"]}","event":"{c["TRACKLE_EVENT_NAME"]}",'
        f'"temp":{c["temp"]},"hum":{c["hum"]},"at":"{c["TRACKLE_PUBLISHED_AT"]}",'
        f'"tags":[{tags}"end"]}}'
    )


def _url_fstring(c: Any) -> str:
    return (
        f"https://api.example.com/devices/{c['TRACKLE_DEVICE_ID']}/readings"
        f"?unit={escape_html(c['unit'])}&site={escape_html(c['site']['name'])}"
    )


def _header_fstring(c: Any) -> str:
    return f"Bearer {c['token']}"


# -- engines -------------------------------------------------------------------------------


def _engines() -> dict[str, dict[str, Render]]:
    """Per engine, per template, a render function; all parsing happens here, once."""
    ours = {
        name: compile_template(text, refuse_line_breaks=REFUSE_LINE_BREAKS[name]).render
        for name, text in TEMPLATES.items()
    }
    oracle = {name: _chevron(text) for name, text in TEMPLATES.items()}
    fstring = {"body": _body_fstring, "url": _url_fstring, "header": _header_fstring}
    engines = {"ours": ours, "chevron": oracle, "f-string": fstring}
    if MustacheRenderer is not None:
        engines["mystace"] = {
            name: MustacheRenderer.from_template(text).render for name, text in TEMPLATES.items()
        }
    return engines


def _chevron(text: str) -> Render:
    return lambda context: chevron.render(text, context)


def per_event(renders: dict[str, Render]) -> Callable[[Any], object]:
    body, url, header = renders["body"], renders["url"], renders["header"]
    return lambda context: (body(context), url(context), header(context))


def mismatches(engines: dict[str, dict[str, Render]], context: Any) -> list[str]:
    """One line for each template an engine renders otherwise than ours (ours' templates)."""
    problems = []
    for template in engines["ours"]:
        want = engines["ours"][template](context)
        for engine, renders in engines.items():
            got = renders[template](context)
            if got != want:
                problems.append(f"{template}: {engine} rendered {got!r}, ours {want!r}")
    return problems


# -- timing --------------------------------------------------------------------------------


def calls_per_second(
    fn: Callable[[Any], object], arg: Any, duration: float, max_calls: int, repeat: int
) -> float:
    """Best of ``repeat`` runs, each at most ``duration`` seconds and ``max_calls`` calls."""
    best = 0.0
    for _ in range(repeat):
        calls = 0
        start = time.perf_counter()
        deadline = start + duration
        while True:
            for _ in range(BATCH):
                fn(arg)
            calls += BATCH
            now = time.perf_counter()
            if now >= deadline or calls >= max_calls:
                break
        best = max(best, calls / (now - start))
    return best


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Template renders per second: ours vs chevron, mystace and f-strings."
    )
    parser.add_argument(
        "--duration", type=float, default=0.3, help="seconds of one timed run (default 0.3)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="timed runs; the best counts")
    parser.add_argument(
        "--max-calls", type=int, default=3_000_000, help="stop a timed run after this many calls"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    report = Report(
        "templates", {"duration": args.duration, "repeat": args.repeat, "max_calls": args.max_calls}
    )
    report.check_machine(machine_busy())
    measure(args, report)
    return report.finish()


def measure(args: argparse.Namespace, report: Report) -> None:
    """Check every engine renders the same text, then time them into ``report``."""
    engines = _engines()
    if "mystace" not in engines:
        report.note("mystace is not installed (pip install -e '.[bench]'): not compared")
    rates = compare(args, report, engines, TEMPLATES, EVENT)
    if rates is None:
        return
    for part in TEMPLATES:
        report.target(
            f"{part}: ours / chevron",
            rates["ours"][part] / rates["chevron"][part],
            ">=",
            TARGET_VS_CHEVRON,
            "x",
        )
    if "mystace" in rates:
        report.target(
            "event (body + URL + header): ours / mystace",
            rates["ours"]["event"] / rates["mystace"]["event"],
            ">=",
            TARGET_VS_FASTEST,
            "x",
        )


def compare(
    args: argparse.Namespace,
    report: Report,
    engines: dict[str, dict[str, Render]],
    templates: dict[str, str],
    event: Event,
) -> dict[str, dict[str, float]] | None:
    """Check every engine renders ``event``'s context as ours does (a mismatch fails the
    report: None), then time each template and the three per event, into ``report``; the
    rates per engine and part ("event" for all three)."""
    context = event_context(event)
    problems = mismatches(engines, context)
    if problems:
        for problem in problems:
            print(f"MISMATCH {problem}", file=sys.stderr)
        report.fail(f"engines disagree: {problems[0]}")
        return None

    def rate(fn: Callable[[Any], object], arg: Any) -> float:
        return calls_per_second(fn, arg, args.duration, args.max_calls, args.repeat)

    rates: dict[str, dict[str, float]] = {}
    for engine, renders in engines.items():
        rates[engine] = {name: rate(render, context) for name, render in renders.items()}
        rates[engine]["event"] = rate(per_event(renders), context)

    for part in (*templates, "event"):
        what = "body + URL + header" if part == "event" else f"{len(templates[part])} chars"
        report.section(f"{part} ({what})")
        for engine in engines:
            value = rates[engine][part]
            report.row(engine, f"{value:,.0f} /s  ({1e6 / value:.2f} us)")
            report.results[f"{part}.{engine}_per_s"] = round(value)

    context_rate = rate(event_context, event)
    with_context = 1 / (1 / context_rate + 1 / rates["ours"]["event"])
    report.section("event_context(event)")
    report.row("contexts built", f"{context_rate:,.0f} /s  ({1e6 / context_rate:.2f} us)")
    report.results["context_per_s"] = round(context_rate)
    report.row("variables per context", len(context), key="context_variables")
    report.row(
        "ours, context + 3 renders",
        f"{with_context:,.0f} events/s  ({1e6 / with_context:.2f} us)",
    )
    report.results["event_with_context.ours_per_s"] = round(with_context)

    others = [engine for engine in engines if engine != "ours"]
    if others:
        report.section(f"ours / {', '.join(others)}")
    for part in (*templates, "event") if others else ():
        ours = rates["ours"][part]
        ratios = {engine: ours / rates[engine][part] for engine in others}
        report.row(part, "  ".join(f"{ratio:.2f}x" for ratio in ratios.values()))
        for engine, ratio in ratios.items():
            report.results[f"{part}.ours_vs_{engine}"] = round(ratio, 3)
    return rates


# --- the suite's scenario ------------------------------------------------------------


@scenario("templates", "Template renders: ours vs chevron", order=90)
def templates(bench: Bench, found: Findings) -> None:
    run_in_suite(bench, found, make_parser(), measure, ("chevron", "mystace", "f-string"), "")


def run_in_suite(
    bench: Bench,
    found: Findings,
    parser: argparse.ArgumentParser,
    run: Callable[[argparse.Namespace, Report], None],
    baselines: Sequence[str],
    what: str,
) -> None:
    """A render scenario in the suite: ``run`` with the suite's duration and repeat, then
    ours and each baseline's events rendered/s as throughputs and headlines (``what``
    names the templates' language in the headline, "" for Mustache)."""
    args = options(
        parser,
        duration=bench.settings.pick(0.3, 0.05),
        repeat=bench.settings.count(3, 1),
    )
    found.params.update(duration=args.duration, repeat=args.repeat)
    run(args, found)
    results = found.results
    unit = "events rendered/s (body + URL + header)"
    ours = float(results.get("event.ours_per_s", 0))
    found.throughput("ours (compiled)", ours, unit)
    for engine in baselines:
        rate = results.get(f"event.{engine}_per_s")
        if isinstance(rate, int | float):
            found.throughput(engine, float(rate), unit, baseline=True)
            found.headline(
                f"{what} {unit}".strip(),
                ours,
                "/s",
                baseline=engine,
                baseline_value=float(rate),
            )


if __name__ == "__main__":
    sys.exit(main())
