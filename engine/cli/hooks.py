"""`hookwire hooks list|show|create|delete` and `hookwire reload`: a running daemon, over its API.

Unlike ``dead-letters``, which opens the journal file, these ask the daemon itself, with the
engine's own HTTP client: hooks created here are routed to from the next event. Tables are
for people; ``--json`` prints the API's answer unchanged, for scripts.

Exit status: 0 when the daemon did it; 1 when it refused (``hookwire: <status>: <its
sentence>``), cannot be reached or did not answer in time, or FILE cannot be read; 2 for a
usage mistake (no token, a URL that is not http or https); 130 when interrupted.

``run_async`` is the command itself, for a caller already in trio (the tests); ``run`` is
its thin synchronous wrapper for ``hookwire``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from urllib.parse import quote

import orjson
import trio

from engine.cli._daemon_api import (
    DEFAULT_URL,
    TIMEOUT,
    Stop,
    answer_of,
    find_daemon,
    send,
)
from engine.cli._text import one_line, table
from engine.http.client import (
    Response,
)

COMMANDS = ("hooks", "reload")

TOKEN_VARIABLE = "HOOKWIRE_TOKEN"


def add_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], config: str
) -> None:
    """Add ``hooks`` and ``reload`` to ``hookwire``'s subcommands."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--url",
        help=f"the daemon's API (default: the [server] address of --config, else {DEFAULT_URL})",
    )
    common.add_argument(
        "--config", default=config, help="config file whose [server] to call (default %(default)s)"
    )
    common.add_argument(
        "--token",
        help="an access token: the hooks or admin scope, admin for reload "
        f"(default: ${TOKEN_VARIABLE}, which keeps it out of the process list)",
    )
    common.add_argument(
        "--timeout",
        type=_seconds,
        default=TIMEOUT,
        metavar="SECONDS",
        help="give up after this long (default %(default)g)",
    )
    common.add_argument(
        "--insecure", action="store_true", help="https: do not verify the daemon's certificate"
    )
    common.add_argument("--json", action="store_true", help="print the API's JSON, for scripts")
    product = argparse.ArgumentParser(add_help=False)
    product.add_argument("--product", metavar="P", help="a product's hooks (its id or slug)")
    both = [common, product]

    hooks = commands.add_parser(
        "hooks",
        help="list, show, create and delete the running daemon's webhooks",
        description="The running daemon's webhooks, through its API (GET, POST and DELETE "
        "/v1/webhooks): hooks created here take the next event.",
    )
    actions = hooks.add_subparsers(dest="hooks_command", required=True, metavar="ACTION")
    actions.add_parser("list", parents=both, help="every hook, with its delivery counts")
    show = actions.add_parser("show", parents=both, help="one hook, a field a line")
    show.add_argument("id", help="the hook's id")
    create = actions.add_parser(
        "create",
        parents=both,
        help="create a hook from a Particle webhook JSON document; prints its id",
    )
    create.add_argument("file", metavar="FILE", help="the document (- reads stdin)")
    create.add_argument("--name", help="the hook's name (sets the document's name)")
    delete = actions.add_parser(
        "delete",
        parents=both,
        help="delete a hook created through the API",
        description="Delete a hook; its queued deliveries end as dead letters "
        "('hook removed'). Answers once none of them can still be sent.",
    )
    delete.add_argument("id", help="the hook's id")
    trial = actions.add_parser(
        "test",
        parents=both,
        help="send one made-up event through a hook; print the request and the answer",
        description="Send one made-up event through a hook now (POST /v1/webhooks/ID/test): "
        "nothing is stored, counted or retried. Prints the request sent (secrets masked) and "
        "what came back.",
    )
    trial.add_argument("id", help="the hook's id")
    trial.add_argument("--event", help="the event's name (default: the hook's event prefix)")
    trial.add_argument("--data", help="the event's data (default: test)")
    trial.add_argument("--device", help="the event's device id")
    commands.add_parser(
        "reload",
        parents=[common],
        help="make the running daemon read its config file again",
        description="Ask the daemon to read its config file again (POST /v1/reload) and "
        "print what changed, or the file's problems (then nothing changed).",
    )


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    """Run one of ``COMMANDS``; returns the exit status."""
    try:
        return trio.run(run_async, args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader left (`| head`): say nothing more, and let the exit not complain either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


async def run_async(args: argparse.Namespace) -> int:
    """Run one of ``COMMANDS`` in the caller's trio run; returns the exit status."""
    try:
        token = args.token or os.environ.get(TOKEN_VARIABLE)
        if not token:
            scope = "the admin scope" if args.command == "reload" else "the hooks or admin scope"
            raise Stop(
                f"hookwire: no token: give --token TOKEN or set {TOKEN_VARIABLE} "
                f"(a token with {scope})",
                2,
            )
        daemon = find_daemon(args.url, args.config)
        method, path, body = _call(args)
        response = await send(daemon, method, daemon.base + path, token, body, args)
        answer = answer_of(daemon, response)
        _report(args, response, answer)
    except Stop as stop:
        print(stop, file=sys.stderr)
        return stop.status
    return 0


# What to ask


def _call(args: argparse.Namespace) -> tuple[str, str, bytes]:
    """The method, path and body of the command's request."""
    if args.command == "reload":
        return "POST", "/v1/reload", b""
    hooks = "/v1/webhooks"
    if args.product is not None:
        hooks = f"/v1/products/{quote(args.product, safe='')}/webhooks"
    action = args.hooks_command
    if action == "list":
        return "GET", hooks, b""
    if action == "create":
        return "POST", hooks, _document(args.file, args.name)
    one = f"{hooks}/{quote(args.id, safe='')}"
    if action == "test":
        given = {"name": args.event, "data": args.data, "deviceId": args.device}
        return "POST", f"{one}/test", orjson.dumps({k: v for k, v in given.items() if v})
    return ("GET" if action == "show" else "DELETE"), one, b""


def _document(file: str, name: str | None) -> bytes:
    """The document as read (the daemon checks it), or with ``name`` set."""
    try:
        data = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    except OSError as exc:
        raise Stop(f"hookwire: {file}: cannot read: {exc.strerror or exc}") from None
    if name is None:
        return data
    where = "stdin" if file == "-" else file
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise Stop(f"hookwire: {where}: not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise Stop(f"hookwire: {where}: expected a JSON object (a Particle webhook)")
    return orjson.dumps({**document, "name": name})


def _report(args: argparse.Namespace, response: Response, answer: object) -> None:
    """Print what the daemon did: its JSON with --json, else for people."""
    command = "reload" if args.command == "reload" else args.hooks_command
    if args.json:
        _print_bytes(response.body.rstrip(b"\n") + b"\n")
    elif command == "create":
        print(_field(answer, "id"))
    elif command == "delete":
        print(f"deleted {args.id}")
    elif command == "show":
        print(table([], _fields(_object(answer))))
    elif command == "list":
        _print_list(answer, args.product)
    elif command == "test":
        _print_trial(_object(answer))
    else:
        _print_reload(_object(answer))


def _print_trial(answer: dict[str, object]) -> None:
    """The request as sent and the answer, as they would look on the wire; or why not."""
    request = answer.get("request")
    if isinstance(request, dict):
        print(f"> {request.get('method')} {request.get('url')}")
        for name, value in request.get("headers") or []:
            print(f"> {name}: {value}")
        if request.get("body"):
            print(f">\n{request['body']}")
    response = answer.get("response")
    if isinstance(response, dict):
        print(f"< {response.get('status')} ({response.get('seconds')} s)")
        for name, value in response.get("headers") or []:
            print(f"< {name}: {value}")
        if response.get("body"):
            print(f"<\n{response['body']}")
    if answer.get("answered") is not True:
        raise Stop(f"hookwire: no answer: {answer.get('error', 'unknown reason')}")


def _print_list(answer: object, product: str | None) -> None:
    if not isinstance(answer, list):
        raise Stop(f"hookwire: expected a list of webhooks, got {one_line(str(answer), 80)}")
    if not answer:
        print("no webhooks" if product is None else f"no webhooks in product {product}")
        return
    headers = ["ID", "NAME", "SOURCE", "EVENT", "URL", "ENABLED", "DELIVERED", "DEAD"]
    rows = []
    for hook in answer:
        hook = _object(hook)
        counters = _object(hook.get("counters", {}))
        rows.append(
            [
                _field(hook, "id"),
                _field(hook, "name"),
                _field(hook, "source"),
                _field(hook, "event"),
                _field(hook, "url"),
                _enabled(hook),
                _field(counters, "delivered"),
                _field(counters, "dead"),
            ]
        )
    print(table(headers, rows))


_SHOWN = {
    "id": "id",
    "name": "name",
    "source": "source",
    "event": "event",
    "url": "url",
    "requestType": "method",
    "deviceID": "device",
    "product_id": "product",
    "created_at": "created",
}
_NOT_SHOWN = {"ok", "enabled", "disabled", "disabled_reason", "counters", "integration_type"}


def _fields(hook: dict[str, object]) -> list[list[str]]:
    """A hook's fields in a fixed order, then the counters and fields the daemon adds
    (``last_delivered_at``, ``last_failure``...) under their own names."""
    counters = _object(hook.get("counters", {}))
    fields = [[label, _field(hook, key)] for key, label in _SHOWN.items() if key in hook]
    fields += [
        ["enabled", _enabled(hook)],
        ["delivered", _field(counters, "delivered")],
        ["dead", _field(counters, "dead")],
    ]
    fields += [[key, _field(counters, key)] for key in counters if key not in ("delivered", "dead")]
    fields += [[key, _field(hook, key)] for key in hook if key not in {*_SHOWN, *_NOT_SHOWN}]
    return fields


def _enabled(hook: dict[str, object]) -> str:
    if hook.get("enabled", True) is not False:
        return "yes"
    reason = hook.get("disabled_reason")
    return f"no: {one_line(reason, None)}" if isinstance(reason, str) and reason else "no"


def _print_reload(answer: dict[str, object]) -> None:
    hooks = _object(answer.get("hooks", {}))
    parts = []
    for key in ("added", "changed", "removed"):
        given = hooks.get(key)
        names = [str(n) for n in given] if isinstance(given, list) else []
        listed = f" ({', '.join(one_line(n, None) for n in names)})" if names else ""
        parts.append(f"{len(names)} {key}{listed}")
    tokens = answer.get("tokens")
    count = f"; {_count(tokens, 'token')}" if isinstance(tokens, int) else ""
    print(f"reloaded: hooks {', '.join(parts)}{count}")
    later = answer.get("needs_restart")
    if isinstance(later, list) and later:
        print(f"changed, but only a restart applies them: {', '.join(str(k) for k in later)}")


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}" if n == 1 else f"{n} {thing}s"


def _object(value: object) -> dict[str, object]:
    if not isinstance(value, dict):
        raise Stop(f"hookwire: expected a JSON object, got {one_line(str(value), 80)}")
    return value


def _field(value: object, key: str) -> str:
    """A field as one line of text: strings as they are, other JSON as JSON, "-" if absent."""
    found = value.get(key) if isinstance(value, dict) else None
    if found is None:
        return "-"
    if isinstance(found, str):
        return one_line(found, None)
    return orjson.dumps(found).decode()


def _print_bytes(data: bytes) -> None:
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
