"""`hookwire token new` prints a [[auth.tokens]] entry that is valid TOML for any name."""

from __future__ import annotations

import tomllib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.cli import main
from engine.cli.token import toml_string
from engine.core.auth import hash_token


def _entry(out: str) -> dict[str, object]:
    toml = out[out.index("[[auth.tokens]]") :]
    (entry,) = tomllib.loads(toml)["auth"]["tokens"]
    assert isinstance(entry, dict)
    return entry


@pytest.mark.parametrize(
    "name", ['a"b', "back\\slash", "two\nlines", "tab\there", "del\x7f", "bell\x07", "ünï ☃"]
)
def test_token_new_prints_valid_toml_for_any_name(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["token", "new", "--name", name, "--scopes", "publish,admin"]) == 0
    out = capsys.readouterr().out
    entry = _entry(out)
    token = out.split()[1]  # "token:  hw_..."
    assert entry == {"name": name, "sha256": hash_token(token), "scopes": ["publish", "admin"]}


@given(st.text())
def test_toml_string_round_trips(text: str) -> None:
    assert tomllib.loads(f"x = {toml_string(text)}")["x"] == text
