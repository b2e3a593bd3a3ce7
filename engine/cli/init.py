"""`hookwire init [DIR]`: a starter config with a fresh admin token, and its journal folder."""

from __future__ import annotations

import shlex
import sys
from importlib import resources
from pathlib import Path

from engine.core.auth import hash_token, new_token

CONFIG_NAME = "hookwire.toml"
JOURNAL_FOLDER = "var"  # the starter's [journal] path is var/hookwire.db, under the config's folder
TEMPLATE = "starter.toml"  # package data of engine.config


def starter_config(sha256: str, config_path: str) -> str:
    """The shipped template with the admin token's hash and the config's path filled in."""
    template = resources.files("engine.config").joinpath(TEMPLATE).read_text(encoding="utf-8")
    return template.replace("@ADMIN_SHA256@", sha256).replace("@CONFIG_PATH@", config_path)


def init(directory: str) -> int:
    folder = Path(directory)
    config = folder / CONFIG_NAME
    if config.exists():
        print(
            f"hookwire init: {config} already exists; nothing was written "
            "(move it away, or choose another folder)",
            file=sys.stderr,
        )
        return 1
    token = new_token()
    text = starter_config(hash_token(token), shlex.quote(str(config.absolute())))
    journal = folder / JOURNAL_FOLDER
    try:
        folder.mkdir(parents=True, exist_ok=True)
        journal.mkdir(exist_ok=True)
    except OSError as exc:
        print(f"hookwire init: cannot make {journal}/: {exc.strerror or exc}", file=sys.stderr)
        return 1
    try:
        # "x": a config that appeared since the check above is not overwritten either.
        with config.open("x", encoding="utf-8") as file:
            file.write(text)
    except FileExistsError:
        print(f"hookwire init: {config} already exists; nothing was written", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"hookwire init: cannot write {config}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"wrote {config} and {journal}/ (the journal's folder)")
    print(f"admin token:  {token}")
    print("It is shown only this once: the config keeps only its sha256. Keep it secret.\n")
    print(f"Check:  hookwire check --config {shlex.quote(str(config))}")
    print(f"Serve:  hookwire run --config {shlex.quote(str(config))}")
    return 0
