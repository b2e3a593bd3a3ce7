"""`hookwire init` in process: what it writes, what it prints, and what it refuses."""

from __future__ import annotations

import hashlib
import re
import tomllib
from pathlib import Path

import pytest

from engine.cli import main
from engine.cli.init import CONFIG_NAME


def _token(out: str) -> str:
    found = re.search(r"admin token:\s+(\S+)", out)
    assert found, out
    return found.group(1)


def test_init_writes_a_config_with_the_hash_of_the_token_it_prints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "etc" / "hookwire"  # made, parents and all
    assert main(["init", str(folder)]) == 0
    token = _token(capsys.readouterr().out)
    config = tomllib.loads((folder / CONFIG_NAME).read_text())
    (entry,) = config["auth"]["tokens"]
    assert entry["sha256"] == hashlib.sha256(token.encode()).hexdigest()
    assert set(entry["scopes"]) == {"publish", "subscribe", "admin"}
    assert "gateway" not in config  # off by default
    assert config["journal"] == {"backend": "sqlite", "path": "var/hookwire.db", "retention": "7d"}
    assert (folder / "var").is_dir()
    assert token not in (folder / CONFIG_NAME).read_text()


def test_each_init_makes_a_new_token(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", str(tmp_path / "a")]) == 0
    assert main(["init", str(tmp_path / "b")]) == 0
    first, second = re.findall(r"admin token:\s+(\S+)", capsys.readouterr().out)
    assert first != second


def test_the_written_config_passes_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["init", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main(["check", "--config", str(tmp_path / CONFIG_NAME)]) == 0
    # One token: the count line says so in the singular.
    assert capsys.readouterr().out == f"{tmp_path / CONFIG_NAME}: ok (1 token, 0 hooks)\n"


def test_init_defaults_to_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["init"]) == 0
    assert (tmp_path / CONFIG_NAME).is_file()
    assert (tmp_path / "var").is_dir()
    assert f"hookwire run --config {CONFIG_NAME}" in capsys.readouterr().out


def test_init_refuses_to_overwrite_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / CONFIG_NAME).write_text("# mine\n")
    assert main(["init", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"hookwire init: {tmp_path / CONFIG_NAME} already exists; nothing was written "
        "(move it away, or choose another folder)\n"
    )
    assert (tmp_path / CONFIG_NAME).read_text() == "# mine\n"
    assert not (tmp_path / "var").exists()


def test_init_where_the_journal_folder_cannot_be_made_writes_no_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "var").write_text("a file where the folder goes")
    assert main(["init", str(tmp_path)]) == 1
    assert "hookwire init: cannot make" in capsys.readouterr().err
    assert not (tmp_path / CONFIG_NAME).exists()
