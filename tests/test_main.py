"""The run command: ``./run.sh`` runs main.py, which opens the local workspace (cli/workspace.py)."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from tests.support.cli import Interactive, passphrase_file


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def workspace(home: Path, secret: Path, port: int, *args: str) -> Interactive:
    """``main.py`` as ``./run.sh`` starts it, with the data folder in ``home``."""
    command = [sys.executable, "main.py", "--port", str(port), "--passphrase-file", str(secret), *args]
    return Interactive(command, {"ENCLAVE_HOME": str(home)})


def test_two_terminals_chat_through_the_relay_the_first_one_started(tmp_path: Path) -> None:
    """Test that the first session starts a relay and enrols, a second profile joins it, they chat,
    the relay stops with the first session, and the next start finds everything again."""
    home, secret, port = tmp_path / "home", passphrase_file(tmp_path), free_port()
    first = workspace(home, secret, port, "--name", "Alice Archer")
    second: Interactive | None = None
    try:
        first.expect("Started the local relay")
        first.expect("Signed in as alice-archer, device")
        second = workspace(home, secret, port, "--profile", str(tmp_path / "bob"))
        second.expect("Joined the local relay")
        second.expect("Signed in as bob, device")
        second.send("/to alice-archer")
        second.expect("Now writing to Alice Archer")
        second.send("Good morning from Bob.")
        first.expect("bob: Good morning from Bob.")
        first.send("Morning, Bob!")  # the arrival chose the conversation to answer in
        second.expect("alice-archer: Morning, Bob!")
        assert second.finish() == 0
        first.send("/quit")
        assert first.finish() == 0
    finally:
        for session in (first, second):
            if session is not None:
                session.stop()
    assert (home / "local-relay" / "relay.sqlite3").exists()
    assert (home / "profiles" / "default" / "keyheader").exists()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()

    again = workspace(home, secret, port)
    try:
        again.expect("Started the local relay")
        again.expect("Signed in as alice-archer, device")
        again.send("/to bob")
        again.send("/history")
        again.expect("bob: Good morning from Bob.")
        assert again.finish() == 0
    finally:
        again.stop()
