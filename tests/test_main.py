"""The run command: ``./run.sh`` runs main.py, which opens the local workspace (cli/workspace.py)."""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from pathlib import Path

from app.base.leases import GRACE_SECONDS
from tests.support.cli import Interactive, passphrase_file

STOP_SECONDS = GRACE_SECONDS + 15
"""A killed session's lease counts for the grace; then the relay's check and its shutdown."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def workspace(home: Path, secret: Path, port: int, *args: str) -> Interactive:
    """``main.py`` as ``./run.sh`` starts it, with the data folder in ``home``."""
    command = [sys.executable, "main.py", "--port", str(port), "--passphrase-file", str(secret), *args]
    return Interactive(command, {"ENCLAVE_HOME": str(home)})


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return False
    return True


def _wait_until_closed(port: int) -> None:
    """Wait until nothing listens on ``port``: the relay stopped once no workspace held a lease."""
    deadline = time.monotonic() + STOP_SECONDS
    while _listening(port):
        assert time.monotonic() < deadline, f"the local relay still listens on {port} after {STOP_SECONDS} s"
        time.sleep(0.2)


def test_two_terminals_chat_through_the_relay_the_first_one_started(tmp_path: Path) -> None:
    """Test that the first session starts a relay and enrols, a second profile joins it, they chat,
    the relay stops once both sessions have ended, and the next start finds everything again."""
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
    _wait_until_closed(port)

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


def _kill(session: Interactive) -> None:
    """SIGKILL: the session gets no chance to clean up, or to stop anything it started."""
    os.kill(session.process.pid, signal.SIGKILL)
    session.process.wait()


def test_the_relay_outlives_a_killed_starter_and_stops_with_the_last_session(tmp_path: Path) -> None:
    """Test that killing the session that started the relay leaves it serving the other one, and
    that killing the last session too stops the relay: no relay is left running, however they ended."""
    home, secret, port = tmp_path / "home", passphrase_file(tmp_path), free_port()
    leases = home / "local-relay" / "workspaces"
    first = workspace(home, secret, port, "--name", "Alice Archer")
    sessions = [first]
    try:
        first.expect("Started the local relay")
        first.expect("Signed in as alice-archer, device")
        second = workspace(home, secret, port, "--profile", str(tmp_path / "bob"))
        sessions.append(second)
        second.expect("Joined the local relay")
        second.expect("Signed in as bob, device")
        _kill(first)
        deadline = time.monotonic() + STOP_SECONDS
        while len(list(leases.iterdir())) > 1:  # the relay deletes a lease once its holder is gone
            assert time.monotonic() < deadline, "the relay did not notice the killed session"
            time.sleep(0.2)
        second.send("/to alice-archer")
        second.expect("Now writing to Alice Archer")
        second.send("Are you still there?")
        again = workspace(home, secret, port)
        sessions.append(again)
        again.expect("Joined the local relay")
        again.expect("bob: Are you still there?")
        _kill(second)
        _kill(again)
    finally:
        for session in sessions:
            session.stop()
    _wait_until_closed(port)


def test_a_second_port_on_the_same_data_folder_is_refused_naming_the_running_relay(tmp_path: Path) -> None:
    """Test that a session asking for another port, while a relay runs on the data folder, is told
    so (the relay refuses a second process on its folder) instead of a banner naming the wrong port."""
    home, secret = tmp_path / "home", passphrase_file(tmp_path)
    first = workspace(home, secret, free_port(), "--name", "Alice Archer")
    try:
        first.expect("Signed in as alice-archer, device")
        second = workspace(home, secret, free_port(), "--profile", str(tmp_path / "bob"))
        line = second.expect("another relay")
        assert "is running on the data folder" in line
        assert second.finish() == 1
        assert not any("Joined" in seen or "Signed in" in seen for seen in second.output)
    finally:
        first.stop()
