"""engine.core.notify: systemd's readiness datagrams, to a socket the test opens."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from engine.core import notify


def test_addresses() -> None:
    assert notify.socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert notify.socket_address("@hookwire/notify") == b"\0hookwire/notify"
    assert notify.socket_address("") is None
    assert notify.socket_address("relative/path") is None


def test_nothing_sent_without_a_socket() -> None:
    assert notify.notify(notify.READY, {}) is False


def test_a_path(tmp_path: Path) -> None:
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(path)
        assert notify.notify(notify.READY, {"NOTIFY_SOCKET": path})
        assert notify.notify(notify.STOPPING, {"NOTIFY_SOCKET": path})
        assert listener.recv(100) == b"READY=1"
        assert listener.recv(100) == b"STOPPING=1"


def test_the_abstract_namespace() -> None:
    name = f"hookwire-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(b"\0" + name.encode())
        assert notify.notify(notify.READY, {"NOTIFY_SOCKET": "@" + name})
        assert listener.recv(100) == b"READY=1"


def test_a_socket_gone_is_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert not notify.notify(notify.READY, {"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert "cannot tell the service manager READY=1" in caplog.text
