"""`hookwire`: the command line, each command group handled by a module of its own."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from engine import __version__
from engine.cli import admin as _cli_admin
from engine.cli import bench as bench_command
from engine.cli import cluster as cluster_command
from engine.cli import deliveries as deliveries_command
from engine.cli import hooks as hooks_command
from engine.cli import init as init_command
from engine.cli import particle as particle_command
from engine.cli import render as render_command
from engine.cli import serve as serve_command
from engine.cli import token as token_command
from engine.templates import LANGUAGES

DEFAULT_CONFIG = "config/engine.toml"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hookwire", description="The integrations engine: webhooks and event streams."
    )
    parser.add_argument("--version", action="version", version=f"hookwire {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the daemon")
    run.add_argument(
        "--config", default=DEFAULT_CONFIG, help="config file (TOML; default %(default)s)"
    )

    init = commands.add_parser(
        "init",
        help="write a starter config with a fresh admin token",
        description=f"Write DIR/{init_command.CONFIG_NAME} (the gateway off, one admin token, "
        "printed once) and its journal folder DIR/var/. An existing config is never overwritten.",
    )
    init.add_argument(
        "dir",
        nargs="?",
        default=".",
        metavar="DIR",
        help="the folder to write to (default: the current one)",
    )

    check = commands.add_parser("check", help="validate a config file; exit 0 if it is valid")
    check.add_argument(
        "--config", default=DEFAULT_CONFIG, help="config file (TOML; default %(default)s)"
    )

    render = commands.add_parser(
        "render",
        help="render a template, to try it before it goes into a hook",
        description="Render TEMPLATE and print the result exactly (no newline added).",
    )
    render.add_argument("template", help="the template text")
    render.add_argument(
        "--language",
        choices=LANGUAGES,
        default=LANGUAGES[0],
        help="the template language, as a hook's template_language (default %(default)s)",
    )
    source = render.add_mutually_exclusive_group()
    source.add_argument("--context", help="the context as JSON, used as is")
    source.add_argument("--event", help="build the variables a hook sees for this event name")
    render.add_argument("--data", default="", help="with --event: the event data")
    render.add_argument(
        "--device",
        default=render_command.EXAMPLE_DEVICE,
        help="with --event: the device id (default %(default)s)",
    )
    render.add_argument(
        "--partials", help='Mustache partials as a JSON object: {"name": "template"}'
    )

    import_ = commands.add_parser(
        "import",
        help="check a Particle webhook JSON document and print its [[hooks]] entry",
        description="Validate a Particle webhook JSON document as the config would (its "
        "templates compiled) and print the [[hooks]] entry that uses it unchanged.",
    )
    import_.add_argument("file", help="the Particle webhook JSON document")
    import_.add_argument(
        "--name", help="a name for the hook (default: the document's name, else the file's)"
    )
    import_.add_argument(
        "--config",
        default=DEFAULT_CONFIG,
        help="the config it will join: its products and partials count (default %(default)s)",
    )

    receiver = commands.add_parser(
        "receiver", help="a local webhook receiver for trying hooks: prints what arrives"
    )
    receiver.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default %(default)s)"
    )
    receiver.add_argument(
        "--port", type=int, default=9000, help="port to listen on (default %(default)s)"
    )

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
    deliveries_command.add_commands(commands, DEFAULT_CONFIG)
    hooks_command.add_commands(commands, DEFAULT_CONFIG)
    cluster_command.add_commands(commands, DEFAULT_CONFIG)
    # Listed for --help only: main() hands "bench ..." to bench/run.py before parsing.
    commands.add_parser(
        "bench", help="run the load benchmarks (a source checkout's bench/): hookwire bench --help"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        # Every option after "bench" is the harness's own (argparse would take --help).
        return bench_command.hand_over(argv[1:])
    args = _parser().parse_args(argv)
    if args.command == "run":
        return serve_command.run(args.config)
    if args.command == "init":
        return init_command.init(args.dir)
    if args.command == "check":
        return serve_command.check(args.config)
    if args.command == "render":
        return render_command.render(args)
    if args.command == "receiver":
        return serve_command.receiver(args.host, args.port)
    if args.command == "import":
        return particle_command.import_document(args.file, args.name, args.config)
    if args.command in _cli_admin.COMMANDS:
        return _cli_admin.run(args)
    if args.command in deliveries_command.COMMANDS:
        return deliveries_command.run(args)
    if args.command in hooks_command.COMMANDS:
        return hooks_command.run(args)
    if args.command in cluster_command.COMMANDS:
        return cluster_command.run(args)
    if args.token_command == "new":
        return token_command.new(args.name, args.scopes)
    return token_command.hash_(args.token)
