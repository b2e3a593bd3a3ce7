"""`hookwire`: run the daemon, check a config, manage tokens, run the benchmarks."""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import orjson
import trio

from engine import __version__
from engine.cli import admin as _cli_admin
from engine.cli._config import load_or_report
from engine.config.settings import ConfigError
from engine.core.auth import hash_token, new_token
from engine.core.events import utc_now_iso
from engine.core.model import Event
from engine.hooks import load_config
from engine.templates import TemplateError, TemplateRenderError, compile_template
from engine.templates.context import event_context

DEFAULT_CONFIG = "config/engine.toml"
SCOPES = ("publish", "subscribe", "admin", "gateway")
EXAMPLE_DEVICE = "0123456789abcdef01234567"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hookwire", description="The integrations engine: webhooks and event streams."
    )
    parser.add_argument("--version", action="version", version=f"hookwire {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the daemon")
    run.add_argument("--config", default=DEFAULT_CONFIG, help="config file (TOML)")

    check = commands.add_parser("check", help="validate a config file; exit 0 if it is valid")
    check.add_argument("--config", default=DEFAULT_CONFIG, help="config file (TOML)")

    render = commands.add_parser(
        "render",
        help="render a template, to try it before it goes into a hook",
        description="Render TEMPLATE and print the result exactly (no newline added).",
    )
    render.add_argument("template", help="the Mustache template text")
    source = render.add_mutually_exclusive_group()
    source.add_argument("--context", help="the context as JSON, used as is")
    source.add_argument("--event", help="build the variables a hook sees for this event name")
    render.add_argument("--data", default="", help="with --event: the event data")
    render.add_argument(
        "--device", default=EXAMPLE_DEVICE, help="with --event: the device id (default %(default)s)"
    )
    render.add_argument("--partials", help='partials as a JSON object: {"name": "template"}')

    import_ = commands.add_parser(
        "import",
        help="check a Particle webhook JSON document and print its [[hooks]] entry",
        description="Validate a Particle webhook JSON document as the config would (its "
        "templates compiled) and print the [[hooks]] entry that uses it unchanged.",
    )
    import_.add_argument("file", help="the Particle webhook JSON document")
    import_.add_argument("--name", help="a name for the hook (default: the file's name)")
    import_.add_argument(
        "--config",
        default=DEFAULT_CONFIG,
        help="the config it will join: its products and partials count (default %(default)s)",
    )

    receiver = commands.add_parser(
        "receiver", help="a local webhook receiver for trying hooks: prints what arrives"
    )
    receiver.add_argument("--host", default="127.0.0.1")
    receiver.add_argument("--port", type=int, default=9000)

    token = commands.add_parser("token", help="make and hash access tokens")
    token_commands = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    new = token_commands.add_parser("new", help="make a random token and print its config entry")
    new.add_argument("--name", default="my-token", help="name for the [[auth.tokens]] entry")
    new.add_argument(
        "--scopes",
        default="publish,subscribe",
        help="comma-separated scopes: publish, subscribe, admin, gateway",
    )
    hash_ = token_commands.add_parser("hash", help="print the sha256 of a token")
    hash_.add_argument("token", nargs="?", help="the token (read from stdin when omitted)")
    _cli_admin.add_commands(commands, DEFAULT_CONFIG)
    # Listed for --help only: main() hands "bench ..." to bench/run.py before parsing.
    commands.add_parser(
        "bench", help="run the load benchmarks (a source checkout's bench/): hookwire bench --help"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        # Every option after "bench" is the harness's own (argparse would take --help).
        return _bench(argv[1:])
    args = _parser().parse_args(argv)
    if args.command == "run":
        return _run(args.config)
    if args.command == "check":
        return _check(args.config)
    if args.command == "render":
        return _render(args)
    if args.command == "receiver":
        return _receiver(args.host, args.port)
    if args.command == "import":
        return _import(args.file, args.name, args.config)
    if args.command in _cli_admin.COMMANDS:
        return _cli_admin.run(args)
    if args.token_command == "new":
        return _token_new(args.name, args.scopes)
    return _token_hash(args.token)


def _bench(argv: list[str]) -> int:
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


def _check(path: str) -> int:
    config = load_or_report(path)
    if config is None:
        return 1
    print(f"{path}: ok ({len(config.auth.tokens)} tokens, {len(config.hooks)} hooks)")
    return 0


def _run(path: str) -> int:
    config = load_or_report(path)
    if config is None:
        return 1
    logging.basicConfig(
        level=config.log.level.upper(), format=LOG_FORMAT, stream=sys.stderr, force=True
    )
    from engine.daemon import Engine, run_until_signalled
    from engine.journal.schema import JournalError

    try:
        engine = Engine(config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    except JournalError as exc:
        print(f"hookwire: {exc}", file=sys.stderr)
        return 1
    return _serve("hookwire", run_until_signalled, engine)


def _serve(who: str, serve: Callable[..., Awaitable[None]], *args: object) -> int:
    """Run a server until it stops; a socket error (a port taken) is one line, exit 1."""
    failure: BaseException | None = None
    try:
        trio.run(serve, *args)
    except* OSError as group:
        failure = group
    if failure is not None:
        print(f"{who}: cannot serve: {_first_leaf(failure)}", file=sys.stderr)
        return 1
    return 0


def _first_leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def _receiver(host: str, port: int) -> int:
    from engine.cli.receiver import serve_receiver

    return _serve("hookwire receiver", serve_receiver, host, port)


def _import(file: str, name: str | None, config: str) -> int:
    document = Path(file).resolve()
    hook_name = name or document.stem
    entry = (
        f"[[hooks]]\nname = {_toml_string(hook_name)}\nparticle = {_toml_string(str(document))}\n"
    )
    config_path = Path(config)
    try:
        base = config_path.read_text()
    except OSError as exc:
        print(f"{config}: cannot read: {exc.strerror}", file=sys.stderr)
        return 1
    # Checked as part of the config it joins, from the config's folder (relative paths).
    with tempfile.NamedTemporaryFile(
        "w", suffix=".toml", dir=config_path.parent, prefix=".hookwire-import-"
    ) as probe:
        probe.write(f"{base}\n\n{entry}")
        probe.flush()
        try:
            load_config(probe.name)
        except ConfigError as exc:
            for problem in exc.problems:
                print(problem.replace(probe.name, str(config_path)), file=sys.stderr)
            return 1
    print(f"# {file}: a valid Particle webhook. Add this to {config}:")
    print(entry, end="")
    return 0


def _toml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _render(args: argparse.Namespace) -> int:
    try:
        context = _render_context(args)
        partials = _json_argument(args.partials, "--partials") if args.partials else None
        if partials is not None and not (
            isinstance(partials, dict) and all(isinstance(v, str) for v in partials.values())
        ):
            raise ValueError('--partials: expected a JSON object of strings, {"name": "text"}')
        text = compile_template(args.template, partials).render(context)
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


def _token_new(name: str, scopes: str) -> int:
    wanted = [s.strip() for s in scopes.split(",") if s.strip()]
    for scope in wanted:
        if scope not in SCOPES:
            print(
                f'hookwire token new: unknown scope "{scope}"; expected {", ".join(SCOPES)}',
                file=sys.stderr,
            )
            return 2
    token = new_token()
    print(f"token:  {token}")
    print("Keep the token secret; put only its hash in the config:\n")
    print("[[auth.tokens]]")
    print(f'name = "{name}"')
    print(f'sha256 = "{hash_token(token)}"')
    print("scopes = [" + ", ".join(f'"{s}"' for s in wanted) + "]")
    return 0


def _token_hash(token: str | None) -> int:
    if token is None:
        token = sys.stdin.readline().strip()
    if not token:
        print("hookwire token hash: no token given", file=sys.stderr)
        return 2
    print(hash_token(token))
    return 0
