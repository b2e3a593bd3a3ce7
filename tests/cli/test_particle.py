"""`hookwire import`: a Particle webhook document checked against a config, its entry printed."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from engine.cli.particle import import_document

HOOK = {"event": "temp", "url": "https://api.example.com/x"}
CONFIG = '[[products]]\nid = 1001\nslug = "demo"\n'


def run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], document: object, name: str | None = None
) -> tuple[int, str, str, Path]:
    """import_document on ``document`` in tmp_path/hooks/temp.json: (code, out, err, file)."""
    config = tmp_path / "engine.toml"
    config.write_text(CONFIG)
    file = tmp_path / "hooks" / "temp.json"
    file.parent.mkdir(exist_ok=True)
    file.write_text(json.dumps(document))
    code = import_document(str(file), name, str(config))
    out, err = capsys.readouterr()
    return code, out, err, file


def entry(out: str) -> dict[str, object]:
    """The printed [[hooks]] entry, read as TOML."""
    hooks = tomllib.loads(out)["hooks"]
    assert isinstance(hooks, list)
    (only,) = hooks
    assert isinstance(only, dict)
    return only


@pytest.mark.parametrize(
    ("document", "name", "expected"),
    [
        ({**HOOK, "name": "Temperature"}, None, "Temperature"),
        ({**HOOK, "name": "Temperature"}, "mine", "mine"),
        (HOOK, None, "temp"),  # the file's name
        ({**HOOK, "name": 'say "hi"\n\t\x7fé'}, None, 'say "hi"\n\t\x7fé'),
    ],
)
def test_the_entry_carries_the_documents_name_unless_one_is_given(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    document: object,
    name: str | None,
    expected: str,
) -> None:
    code, out, err, file = run(tmp_path, capsys, document, name)
    assert (code, err) == (0, "")
    assert entry(out) == {"name": expected, "particle": str(file)}


def test_a_document_as_particle_api_js_sends_it_imports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = {
        **HOOK,
        "name": "temp to api",
        "deviceId": "",
        "auth": {"user": "u", "pass": "p"},
        "query": {"limit": 10, "verbose": True},
        "headers": {"X-Ratio": 0.5},
        "productIdOrSlug": "demo",
        "mydevices": True,
    }
    code, out, err, file = run(tmp_path, capsys, document)
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        f"# {file}: a valid Particle webhook. Add this to {tmp_path / 'engine.toml'}:",
        "[[hooks]]",
        'name = "temp to api"',
        f'particle = "{file}"',
    ]


def test_problems_are_the_configs_own_words(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = {
        **HOOK,
        "mydevices": False,
        "deviceID": "a",
        "deviceId": "b",
        "auth": {"bearer": "t"},
        "headers": {"Authorization": "Basic eDp5"},
        "form": {"n": None},
    }
    code, out, err, file = run(tmp_path, capsys, document)
    where = f"{tmp_path / 'engine.toml'}: hooks[0] ({file})"
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        f'{where}.deviceId: expected the same device as deviceID ("a"), got "b"',
        f"{where}.mydevices: expected true, got false (false adds other users' public events; "
        "this engine has none: a hook sees only the events published to this engine)",
        f"{where}.form.n: expected a string, a number, true or false, got null",
        f"{where}.auth: expected either auth or headers.Authorization, got both (a request "
        "carries one Authorization header)",
    ]


def test_template_problems_of_a_bearer_token_are_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err, file = run(tmp_path, capsys, {**HOOK, "auth": {"bearer": "{{#a}}"}})
    assert code == 1
    assert err == (
        f'{tmp_path / "engine.toml"}: hooks[0] ({file}).auth.bearer: 1:1: section "a" is never '
        "closed\n"
    )
