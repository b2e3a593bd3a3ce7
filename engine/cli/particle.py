"""`hookwire import`: check a Particle webhook JSON document as part of a config."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from engine.config.settings import ConfigError
from engine.hooks import load_config


def import_document(file: str, name: str | None, config: str) -> int:
    """Check FILE as a `[[hooks]] particle = FILE` entry of CONFIG, and print that entry.

    The hook is named `name`, else the document's own `name`, else after the file.
    """
    document = Path(file).resolve()
    hook_name = name or _document_name(document) or document.stem
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


def _document_name(path: Path) -> str | None:
    """The webhook's own `name`, if the document has one; the check reports any problem."""
    try:
        document = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    own = document.get("name") if isinstance(document, dict) else None
    return own if isinstance(own, str) and own else None


def _toml_string(text: str) -> str:
    """`text` as a TOML basic string (a document's name may hold any character)."""
    # JSON's escapes are TOML's, but TOML wants DEL escaped too.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")
