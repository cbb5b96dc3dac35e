"""Enrolment and the connection at the relay the organisation's config names: the code alone, pins
rotated without re-enrolment, a config pinning another key refused before the relay is sent
anything, and an address or pin given against the config refused."""

from __future__ import annotations

import queue
from pathlib import Path

import pytest

from app.base.errors import PinMismatchError
from app.base.tlsfiles import TLS_CERT_FILE, TLS_KEY_FILE, public_key_pin, self_signed, write_secret
from app.services.errors import AuthorityUnknownError, RelayConflictError
from app.services.events import ConnectionChanged, Event
from app.services.facade import Enclave
from app.sync.link import RelayAddress
from tests.support.clients import FAST_BACKOFF, WAIT_SECONDS, Client, passphrase
from tests.support.deployment import deployment
from tests.support.mailbox import registered
from tests.support.relay import RelayProcess, new_account

WRONG_PIN = "sha256/" + "A" * 43 + "="


def _open(profile: Path, system_config: Path, *, create: bool = False) -> Client:
    events: queue.Queue[Event] = queue.Queue()
    enclave = Enclave.open(
        profile,
        passphrase(),
        create=create,
        listener=events.put,
        backoff=FAST_BACKOFF,
        system_config=system_config,
    )
    return Client(enclave, profile, events)


def _system(folder: Path, version: int, relay: RelayProcess, *pins: str) -> Path:
    """The organisation's system config ``version`` naming ``relay``'s address and ``pins``."""
    return deployment().install(folder / "enclave.toml", relay, version=version, relay_pins=pins)


def _relay_address(client: Client) -> RelayAddress | None:
    relay = client.enclave._run(lambda c: c.credentials.relay).result(WAIT_SECONDS)
    return None if relay is None else relay.address


def _new_key(relay: RelayProcess) -> tuple[bytes, bytes, str]:
    """A new TLS key and certificate for ``relay`` (not installed yet) and its pin."""
    key_pem, cert_pem = self_signed("127.0.0.1")
    return key_pem, cert_pem, public_key_pin(cert_pem)


def _rotate(relay: RelayProcess, key_pem: bytes, cert_pem: bytes) -> None:
    """Restart ``relay`` on its port with the new key, as an admin rotating it would."""
    relay.stop()
    for name, data in ((TLS_KEY_FILE, key_pem), (TLS_CERT_FILE, cert_pem)):
        (relay.data_dir / name).unlink()
        write_secret(relay.data_dir / name, data)
    relay.start()


def _back_online(client: Client) -> None:
    client.wait_for(ConnectionChanged, lambda e: e.state == "offline")
    client.wait_for(ConnectionChanged, lambda e: e.state == "online")


def test_enrolled_from_the_config_it_follows_a_rotated_pin_list(relay: RelayProcess, tmp_path: Path) -> None:
    """Test that a profile enrols with the code alone at the system config's relay, that a newer
    config listing the next key's pin beside the current one keeps it connected through the relay's
    key change, and that one dropping the old pin leaves the profile pinning the new key alone, all
    without re-enrolment."""
    system = tmp_path / "etc"
    code = deployment().code(new_account(relay.data_dir, "dana", "Dana"))
    client = _open(tmp_path / "dana", _system(system, 1, relay, relay.pin), create=True)
    try:
        assert client.enclave.enrol(None, None, code).result(WAIT_SECONDS).account_id == "dana"
        assert client.enclave.wait_online(WAIT_SECONDS).result(WAIT_SECONDS + 5)
    finally:
        client.close()

    old_pin = relay.pin
    key_pem, cert_pem, new_pin = _new_key(relay)
    client = _open(tmp_path / "dana", _system(system, 2, relay, old_pin, new_pin))
    try:
        assert client.enclave.wait_online(WAIT_SECONDS).result(WAIT_SECONDS + 5)
        assert _relay_address(client) == RelayAddress((relay.https,), (old_pin, new_pin))
        _rotate(relay, key_pem, cert_pem)
        assert relay.pin == new_pin
        _back_online(client)
    finally:
        client.close()

    client = _open(tmp_path / "dana", _system(system, 3, relay, new_pin))
    try:
        assert client.enclave.wait_online(WAIT_SECONDS).result(WAIT_SECONDS + 5)
        assert _relay_address(client) == RelayAddress((relay.https,), (new_pin,))
    finally:
        client.close()


def test_an_imported_config_that_drops_the_current_pin_disconnects_at_once(
    relay: RelayProcess, tmp_path: Path
) -> None:
    """Test that a config imported while the profile is open applies to the running link: dropping
    the pin of the key the relay presents ends the connection (offline, naming the pin), and the
    relay coming back with the newly pinned key brings it online."""
    code = deployment().code(new_account(relay.data_dir, "erin", "Erin"))
    first = deployment().install(tmp_path / "v1" / "enclave.toml", relay)
    client = _open(tmp_path / "erin", tmp_path / "no-system" / "enclave.toml", create=True)
    try:
        client.enclave.import_config(first).result(WAIT_SECONDS)
        client.enclave.enrol(None, None, code).result(WAIT_SECONDS)
        assert client.enclave.wait_online(WAIT_SECONDS).result(WAIT_SECONDS + 5)
        key_pem, cert_pem, new_pin = _new_key(relay)
        second = deployment().install(
            tmp_path / "v2" / "enclave.toml", relay, version=2, relay_pins=(new_pin,)
        )
        client.enclave.import_config(second).result(WAIT_SECONDS)
        offline = client.wait_for(ConnectionChanged, lambda e: e.state == "offline" and bool(e.reason))
        assert "matches no pinned key" in offline.reason
        _rotate(relay, key_pem, cert_pem)
        client.wait_for(ConnectionChanged, lambda e: e.state == "online")
    finally:
        client.close()


def test_a_config_pinning_another_key_sends_nothing_and_the_code_stays_usable(
    relay: RelayProcess, tmp_path: Path
) -> None:
    """Test that enrolling at a system config's relay whose key matches none of its pins fails before
    the relay is sent anything (not the certificate the authority gave), and that once the admin
    fixes the config the same code enrols the same profile, closed and opened again meanwhile."""
    system = tmp_path / "etc"
    code = deployment().code(new_account(relay.data_dir, "finn", "Finn"))
    client = _open(tmp_path / "finn", _system(system, 1, relay, WRONG_PIN), create=True)
    try:
        with pytest.raises(PinMismatchError, match="matches no pinned key"):
            client.enclave.enrol(None, None, code).result(WAIT_SECONDS)
        assert client.enclave.account is None
        assert registered(relay, "finn") == []
    finally:
        client.close()
    client = _open(tmp_path / "finn", _system(system, 2, relay, relay.pin))
    try:
        account = client.enclave.enrol(None, None, code).result(WAIT_SECONDS)
        assert account.account_id == "finn"
        assert [device_id for device_id, _ in registered(relay, "finn")] == [account.device_id]
    finally:
        client.close()


def test_a_relay_given_against_the_config_is_refused_and_none_at_all_needs_a_config(
    relay: RelayProcess, tmp_path: Path
) -> None:
    """Test that with a config in force an address or pin it does not list is refused before
    anything is sent (not even to the enrolment authority: nothing was certified), one it lists is
    accepted, and that with no config in force no relay given is enough."""
    code = deployment().code(new_account(relay.data_dir, "gale", "Gale"))
    client = _open(tmp_path / "gale", _system(tmp_path / "etc", 1, relay, relay.pin), create=True)
    try:
        for url, pin in (("https://127.0.0.1:9", None), (None, WRONG_PIN), (relay.https, WRONG_PIN)):
            with pytest.raises(RelayConflictError, match="is not among them"):
                client.enclave.enrol(url, pin, code).result(WAIT_SECONDS)
        assert client.enclave._run(lambda c: c.credentials.pending_enrolment()).result(WAIT_SECONDS) is None
        assert client.enclave.enrol(relay.https + "/", relay.pin, code).result(WAIT_SECONDS)
    finally:
        client.close()
    bare = _open(tmp_path / "hal", tmp_path / "no-system" / "enclave.toml", create=True)
    try:
        with pytest.raises(AuthorityUnknownError, match="no organisation config is in force"):
            bare.enclave.enrol(relay.https, relay.pin, "any-code").result(WAIT_SECONDS)
    finally:
        bare.close()
