"""`hookwire render`: try a template against a context or an event."""

from __future__ import annotations

import argparse
import sys

import orjson

from engine.core.events import utc_now_iso
from engine.core.model import Event
from engine.templates import TemplateError, TemplateRenderError, compile_template
from engine.templates.context import event_context

EXAMPLE_DEVICE = "0123456789abcdef01234567"


def render(args: argparse.Namespace) -> int:
    try:
        context = _render_context(args)
        partials = _json_argument(args.partials, "--partials") if args.partials else None
        if partials is not None and not (
            isinstance(partials, dict) and all(isinstance(v, str) for v in partials.values())
        ):
            raise ValueError('--partials: expected a JSON object of strings, {"name": "text"}')
        if partials is not None and args.language != "mustache":
            raise ValueError("--partials: partials are Mustache's; Handlebars templates have none")
        text = compile_template(args.template, partials, language=args.language).render(context)
    except (ValueError, TemplateError, TemplateRenderError) as exc:
        print(f"hookwire render: {exc}", file=sys.stderr)
        return 1
    sys.stdout.buffer.write(text.encode("utf-8", "surrogateescape"))
    sys.stdout.buffer.flush()
    return 0


def _render_context(args: argparse.Namespace) -> object:
    if args.context is not None:
        return _json_argument(args.context, "--context")
    if args.event is None:
        return {}
    event = Event(1, args.event, args.data, 60, False, utc_now_iso(), args.device, None)
    return event_context(event)


def _json_argument(text: str, option: str) -> object:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{option}: not valid JSON: {exc}") from None
