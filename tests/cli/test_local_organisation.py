"""The local workspace runs a real deployment's trust model: ``./run.sh`` makes a local
organisation (cli/localorg.py) whose authority key is apart from the relay's folder, keeps
its passphrases in the OS keystore (never a file), and enrols through the local authority."""

from __future__ import annotations

import socket
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest

from app.provisioning.keyfile import Role, open_key_file
from storage.keys import KEPT_USER_PREFIX, KEYSTORE_SERVICE
from tests.conftest import require
from tests.storage.harness import SecretService
from tests.support.authority import run_admin as admin
from tests.support.cli import Interactive, passphrase_file


def free_port() -> int:
    """A port free now whose next one is free too (the workspace's authority takes it)."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        with socket.socket() as next_one:
            try:
                next_one.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port


def sign_in(home: Path, secret: Path, port: int, env: dict[str, str]) -> None:
    """One workspace session that enrols (first start) and quits."""
    session = Interactive(
        [sys.executable, "main.py", "--port", str(port), "--passphrase-file", str(secret), "--name", "Anna"],
        {"ENCLAVE_HOME": str(home), **env},
    )
    try:
        session.expect("enrolment authority on https://127.0.0.1:")
        session.expect("Signed in as anna, device")
        session.send("/quit")
        assert session.finish() == 0
    finally:
        session.stop()


def files_under(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file()]


@pytest.fixture
def keystore_bus(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A private Secret Service for this test's processes (never the user's keyring)."""
    require(
        SecretService.available(), "gnome-keyring-daemon and dbus-daemon are not installed (test.sh does)"
    )
    service = SecretService.start(tmp_path / "secret-service")
    yield {"DBUS_SESSION_BUS_ADDRESS": service.address}
    service.stop()


def test_the_workspace_keeps_the_organisation_keys_passphrases_in_the_keystore_and_the_authority_key_apart(
    tmp_path: Path, keystore_bus: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Test that a first start with a keystore makes a local organisation whose two keys open only
    with passphrases the keystore keeps (written to no file), whose authority key is in the
    authority's folder and nowhere in the relay's, whose signed config verifies under its root
    and names the local relay's and authority's pins and the relay's log key, and that the
    profile's device was certified by that authority and registered at the relay under the same id."""
    home, secret, port = tmp_path / "home", passphrase_file(tmp_path), free_port()
    sign_in(home, secret, port, keystore_bus)

    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", keystore_bus["DBUS_SESSION_BUS_ADDRESS"])
    backend = keyring.get_keyring()
    kept = {
        role: backend.get_password(
            KEYSTORE_SERVICE, f"{KEPT_USER_PREFIX}local-organisation {home.resolve()} {role}"
        )
        for role in ("root", "authority")
    }
    assert all(kept.values()) and kept["root"] != kept["authority"]
    organisation = home / "local-organisation"
    keys = {
        "root": (organisation / "root" / "root.key", organisation / "root" / "root.pub"),
        "authority": (
            home / "local-authority" / "authority.key",
            organisation / "authority" / "authority.pub",
        ),
    }
    for role, (sealed_file, public_file) in keys.items():
        key = open_key_file(sealed_file.read_bytes(), str(kept[role]), role=Role[role.upper()], source="test")
        assert key.public_key.hex() == public_file.read_text().strip()
    everything = b"".join(path.read_bytes() for path in files_under(home))
    assert all(str(value).encode() not in everything for value in kept.values())

    authority_seed = open_key_file(
        (home / "local-authority" / "authority.key").read_bytes(),
        str(kept["authority"]),
        role=Role.AUTHORITY,
        source="test",
    ).secret_key[:32]
    sealed = (home / "local-authority" / "authority.key").read_bytes()
    for path in files_under(home / "local-relay"):
        assert authority_seed not in path.read_bytes() and sealed not in path.read_bytes(), path

    verified = admin(
        "config",
        "verify",
        str(organisation / "enclave.toml"),
        "--expect-root",
        (organisation / "root" / "root.pub").read_text().strip(),
    )
    assert verified.returncode == 0, verified.stderr
    lines = dict(line.split(": ", 1) for line in verified.stdout.splitlines() if ": " in line)
    assert lines["relays"] == f"https://127.0.0.1:{port}"
    relay_log = (home / "local-relay" / "relay.log").read_text()
    assert lines["pins"] in relay_log
    assert lines["enrolment authority"] == (organisation / "authority" / "authority.pub").read_text().strip()
    assert lines["log key"] == (home / "local-relay" / "log.pub").read_text().strip()
    assert f"Relay log key for the provisioning config: {lines['log key']}" in relay_log

    with sqlite3.connect(home / "local-authority" / "authority.sqlite3") as db:
        certified = db.execute("SELECT account_id, device_id FROM devices").fetchall()
    listed = admin("--data", str(home / "local-relay"), "device", "list", "--account", "anna")
    assert listed.returncode == 0, listed.stderr
    [(account, device_id)] = certified
    assert account == "anna"
    assert listed.stdout.splitlines()[1].split("\t")[:2] == [str(device_id), "anna"]


def test_without_a_keystore_the_organisation_keys_are_sealed_with_the_given_passphrase(
    tmp_path: Path,
) -> None:
    """Test that where no keystore exists, the local organisation's keys open with the passphrase
    the workspace was given, and that the passphrase is in no file of the data folder."""
    home, secret, port = tmp_path / "home", passphrase_file(tmp_path), free_port()
    sign_in(home, secret, port, {"PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"})
    passphrase = secret.read_text().splitlines()[0]
    for path, role in (
        (home / "local-organisation" / "root" / "root.key", Role.ROOT),
        (home / "local-authority" / "authority.key", Role.AUTHORITY),
    ):
        open_key_file(path.read_bytes(), passphrase, role=role, source=str(path))
    assert all(passphrase.encode() not in path.read_bytes() for path in files_under(home))


def test_a_second_start_signs_no_new_config_while_the_services_keep_their_keys(tmp_path: Path) -> None:
    """Test that a second start, with the relay and the authority restarted on the same keys,
    finds the config it signed unchanged (same version and bytes) and signs in again."""
    home, secret, port = tmp_path / "home", passphrase_file(tmp_path), free_port()
    env = {"PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}
    sign_in(home, secret, port, env)
    config = home / "local-organisation" / "enclave.toml"
    first = config.read_bytes(), config.with_name("enclave.toml.sig").read_bytes()
    session = Interactive(
        [sys.executable, "main.py", "--port", str(port), "--passphrase-file", str(secret)],
        {"ENCLAVE_HOME": str(home), **env},
    )
    try:
        session.expect("Signed in as")
        session.send("/quit")
        assert session.finish() == 0
    finally:
        session.stop()
    assert (config.read_bytes(), config.with_name("enclave.toml.sig").read_bytes()) == first
