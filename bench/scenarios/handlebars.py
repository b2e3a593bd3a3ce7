"""Handlebars renders per second: our compiled Handlebars against pybars3 and pyhandlebars.

One event (JSON data: four readings, an alert flag, a site, a token) becomes a context
through ``event_context``; three templates a webhook typically has, written in Handlebars
(a JSON body with ``{{#each}}``, ``{{@index}}``, ``{{#unless @last}}`` and ``{{#if}}...
{{else}}``, a URL, an Authorization header), are rendered against it by:

- ours: ``compile_template(..., language="handlebars")`` once (URL and header with
  ``refuse_line_breaks``, as hooks compile them), then ``render``;
- pybars3: the pure-Python Handlebars, ``pybars.Compiler().compile`` once, then called;
- pyhandlebars: handlebars-rust behind a Python binding, ``pyhandlebars.Template`` once,
  then ``format``.

Every engine's output is checked to be identical before anything is timed; a mismatch is a
failure (exit 1). pybars3 and pyhandlebars differ from handlebars.js (whose output ours
matches), so the templates and the data keep away from where they do, and all three do
the same work: no escaped value holds ``=`` (pybars3 does not escape it), no float has
an integral value (both render 21.0 as "21.0", JavaScript as "21"), and no boolean or
null is printed. Each figure is the best of ``--repeat`` runs of at most ``--duration``
seconds and ``--max-calls`` calls. A missed target prints MISSED and is not a failure.

    .venv/bin/python -m bench.scenarios.handlebars
    .venv/bin/python -m bench.scenarios.handlebars --duration 1 --repeat 5
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from bench.harness.daemon import machine_busy
from bench.harness.report import Report
from bench.harness.scenario import Bench, scenario
from bench.harness.suite import Findings
from bench.scenarios.templates import REFUSE_LINE_BREAKS, Render, compare, run_in_suite
from bench.scenarios.templates import make_parser as templates_parser
from engine.core.model import Event
from engine.templates import compile_template

try:
    import pybars
except ImportError:  # the bench extra's; without it, pybars3 is not compared
    pybars = None

try:
    import pyhandlebars
except ImportError:  # the bench extra's; without it, pyhandlebars is not compared
    pyhandlebars = None

TARGET_VS_FASTEST = 5.0
"""Ours / the faster of pybars3 and pyhandlebars per event (body + URL + header)."""

BASELINES = ("pybars3", "pyhandlebars")

# A mustache cannot be followed by "}": "}}}}" closes a raw block and "{{/if}}}" an
# unescaped mustache, in handlebars.js as in ours. So the readings end with a string field
# and the {{#if}} sits inside the object.
TEMPLATES = {
    "body": (
        '{"device":"{{{TRACKLE_DEVICE_ID}}}","event":"{{{TRACKLE_EVENT_NAME}}}",'
        '"at":"{{{TRACKLE_PUBLISHED_AT}}}",'
        '{{#if alert}}"level":"alert"{{else}}"level":"ok"{{/if}},'
        '"readings":[{{#each readings}}'
        '{"i":{{@index}},"v":{{v}},"h":{{this.h}},"t":"{{{this.t}}}"}'
        "{{#unless @last}},{{/unless}}{{/each}}]}"
    ),
    "url": "https://api.example.com/devices/{{TRACKLE_DEVICE_ID}}/readings?site={{site.name}}",
    "header": "Bearer {{token}}",
}

EVENT = Event(
    id=1842,
    name="env",
    data=(
        '{"readings":['
        '{"t":"2026-11-28T09:45:00Z","v":21.5,"h":40},'
        '{"t":"2026-11-28T09:50:00Z","v":21.75,"h":41},'
        '{"t":"2026-11-28T09:55:00Z","v":22.25,"h":41},'
        '{"t":"2026-11-28T10:00:00Z","v":22.5,"h":42}],'
        '"alert":true,"site":{"name":"lab"},"token":"abc"}'
    ),
    ttl=60,
    private=True,
    published_at="2026-11-28T10:00:00.000Z",
    device_id="0123456789abcdef01234567",
    product_id=None,
)


# -- engines -------------------------------------------------------------------------------


def _engines() -> dict[str, dict[str, Render]]:
    """Per engine, per template, a render function; all parsing happens here, once."""
    engines = {
        "ours": {
            name: compile_template(
                text, language="handlebars", refuse_line_breaks=REFUSE_LINE_BREAKS[name]
            ).render
            for name, text in TEMPLATES.items()
        }
    }
    if pybars is not None:
        compiler = pybars.Compiler()
        engines["pybars3"] = {
            name: _pybars(compiler.compile(text)) for name, text in TEMPLATES.items()
        }
    if pyhandlebars is not None:
        engines["pyhandlebars"] = {
            name: pyhandlebars.Template(text).format for name, text in TEMPLATES.items()
        }
    return engines


def _pybars(compiled: Callable[[Any], Any]) -> Render:
    return lambda context: str(compiled(context))  # a pybars.strlist


def make_parser() -> argparse.ArgumentParser:
    parser = templates_parser()
    parser.description = "Handlebars renders per second: ours vs pybars3 and pyhandlebars."
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    report = Report(
        "handlebars",
        {"duration": args.duration, "repeat": args.repeat, "max_calls": args.max_calls},
    )
    report.check_machine(machine_busy())
    measure(args, report)
    return report.finish()


def measure(args: argparse.Namespace, report: Report) -> None:
    """Check every engine renders the same text, then time them into ``report``."""
    engines = _engines()
    for engine in BASELINES:
        if engine not in engines:
            report.note(f"{engine} is not installed (pip install -e '.[bench]'): not compared")
    rates = compare(args, report, engines, TEMPLATES, EVENT)
    others = [engine for engine in rates or () if engine != "ours"]
    if rates is None or not others:
        return
    fastest = max(others, key=lambda engine: rates[engine]["event"])
    report.results["event.fastest_baseline"] = fastest
    report.target(
        f"event (body + URL + header): ours / {fastest} (the fastest)",
        rates["ours"]["event"] / rates[fastest]["event"],
        ">=",
        TARGET_VS_FASTEST,
        "x",
    )


# --- the suite's scenario ------------------------------------------------------------


@scenario("handlebars", "Handlebars renders: ours vs pybars3 and pyhandlebars", order=91)
def handlebars(bench: Bench, found: Findings) -> None:
    run_in_suite(bench, found, make_parser(), measure, BASELINES, "Handlebars")


if __name__ == "__main__":
    sys.exit(main())
