"""Device certificates come from the enrolment authority, never the relay (issue 12), with a real
relay, the run's real enrolment authority (tests/support/deployment.py) and real clients.

Enrolment: the code alone gives the authority's certificate, the code's account and a device id
the authority drew, and the relay serves that certificate; nothing is sent without a config in
force or to an authority whose key is not pinned; a refused code leaves the profile as it was; a
relay that cannot register the device yet (down, no account) gets the same certificate later,
with no new code. Trust: whatever key an operator finds in the relay's data folder, a certificate
made with it is refused by colleagues, as is a certificate that names another key than its
bundle's. Renewal: at the authority, served by the relay afterwards, refused for a revoked
device (a Problem; the current certificate stays), and presented again at every authentication.

The renewal tests run the renewal the account's alarm runs (``Account._renew``): the alarm is
due three quarters into a certificate's life, a day at the least, and a client clock moved
forward to it would put the renew request's timestamp outside the authority's five minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from nacl.utils import random

from app.base.errors import (
    AuthorityRefusedError,
    OfflineError,
    PinMismatchError,
    RelayRefusedError,
)
from app.base.tlsfiles import TLS_KEY_FILE
from app.crypto.certificate import DeviceCertificate
from app.crypto.keys import IdentityKeyPair, OneTimePreKey, SignedPreKey
from app.protocol.frames import Bundles, FetchBundles, FrameType, Status
from app.services.errors import AuthorityUnknownError
from app.services.events import (
    ConnectionChanged,
    Event,
    KeyChanged,
    MessageArrived,
    MessageStatusChanged,
    Problem,
)
from app.services.types import MessageStatus
from storage.records import Identity
from tests.support.clients import (
    WAIT_SECONDS,
    Client,
    enrolled_client,
    import_organisation,
    open_client,
    until,
)
from tests.support.deployment import deployment
from tests.support.mailbox import deliverable, registered
from tests.support.organisation import Organisation
from tests.support.ownauthority import OwnAuthority
from tests.support.relay import (
    MAX_DEVICE_ID,
    TEST_AUTHORITY,
    RelayProcess,
    TestDevice,
    certificate_for,
    new_account,
)

WRONG_PIN = "sha256/" + "A" * 43 + "="
OBSERVER = "observer"
"""The account of the raw device (tests/support/relay.py) that fetches bundles as a colleague does."""
DAY = 24 * 3600
OLD_SIGNING_KEY = "signing.key"
"""What a relay from before the enrolment authority kept its certificate-signing seed in."""

E = TypeVar("E")


@pytest.fixture
def own_authority(tmp_path: Path) -> Iterator[OwnAuthority]:
    """An enrolment authority of this test's, certifying for a day (the shortest it allows)."""
    started = OwnAuthority.start(tmp_path / "authority", "--certificate-days", "1")
    yield started
    started.stop()


def _new_profile(root: Path, account_id: str) -> Client:
    return open_client(root / account_id, create=True)


def _config(client: Client, relay: RelayProcess, name: str, **changes: object) -> None:
    """The run's organisation config for ``relay`` (with ``changes``) imported by ``client``."""
    import_organisation(
        client, relay, client.profile.with_name(f"{client.profile.name}.{name}") / "enclave.toml", **changes
    )


def _engine(client: Client, read: Callable[..., E]) -> E:
    """What ``read`` finds in the client's engine, read on its worker thread."""
    return client.enclave._run(read).result(WAIT_SECONDS)


def _certificate(client: Client) -> DeviceCertificate:
    certificate = _engine(client, lambda c: c.credentials.certificate)
    assert certificate is not None
    return certificate


def _pending(client: Client) -> bytes | None:
    """The certificate of an enrolment the relay has not registered yet, if there is one."""
    pending = _engine(client, lambda c: c.credentials.pending_enrolment())
    return None if pending is None else pending[1]


def _renew(client: Client) -> None:
    """The renewal the account's alarm runs, run now (see the module docstring)."""
    client.enclave._run(lambda c: c.account._renew()).result(WAIT_SECONDS)


def _certified(authority_data: Path, account_id: str) -> list[tuple[int, bytes]]:
    """The device id and identity key of every device the authority over ``authority_data``
    certified for ``account_id`` (from its own database, read-only)."""
    uri = f"file:{authority_data / 'authority.sqlite3'}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
        rows = db.execute(
            "SELECT device_id, identity_key FROM devices WHERE account_id = ? ORDER BY device_id",
            (account_id,),
        ).fetchall()
    return [(int(device_id), bytes(key)) for device_id, key in rows]


def _served(relay: RelayProcess, account_id: str) -> dict[int, bytes]:
    """The certificate the relay hands out with each device's bundle in FETCH_BUNDLES, as a
    colleague's device asks for them (a raw device of ``OBSERVER``, made if need be)."""

    async def fetching() -> dict[int, bytes]:
        device = await TestDevice(relay).join(OBSERVER)
        try:
            response = await device.request(FrameType.FETCH_BUNDLES, FetchBundles(account_id).encode())
        finally:
            await device.disconnect()
        assert response.status == Status.OK, response.reason
        return {bundle.device_id: bundle.certificate for bundle in Bundles.parse(response.body).devices}

    if not any(account == OBSERVER for account in _relay_accounts(relay)):
        new_account(relay.data_dir, OBSERVER, "Observer")
    return asyncio.run(fetching())


def _relay_accounts(relay: RelayProcess) -> list[str]:
    uri = f"file:{relay.data_dir / 'relay.sqlite3'}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
        return [row[0] for row in db.execute("SELECT account_id FROM accounts")]


def _events(client: Client) -> list[Event]:
    """Every event the client emitted that no ``wait_for`` took yet."""
    while True:
        try:
            client.seen.append(client.events.get_nowait())
        except queue.Empty:
            return list(client.seen)


def _enrolled(client: Client, code: str) -> Identity:
    account = client.enclave.enrol(None, None, code).result(WAIT_SECONDS)
    assert client.enclave.wait_online(WAIT_SECONDS).result(WAIT_SECONDS + 5)
    return account


# Enrolment.


def test_the_code_alone_enrols_with_the_certificate_the_authority_signed(
    relay: RelayProcess, tmp_path: Path
) -> None:
    """Test that with the config imported the code alone enrols: the certificate is the one the
    authority signed and recorded, for the code's account, this device's key and a device id the
    authority drew, and the relay serves exactly that certificate with the device's bundle."""
    new_account(relay.data_dir, "e.ada", "Ada")
    client = _new_profile(tmp_path, "e.ada")
    try:
        _config(client, relay, "config")
        account = _enrolled(client, deployment().code("e.ada"))
        certificate = _certificate(client)
        identity = _engine(client, lambda c: c.credentials.identity)
        certificate.verify(trust_root=TEST_AUTHORITY.public, now=int(time.time()))
        assert (certificate.account_id, certificate.device_id) == (account.account_id, account.device_id)
        assert account.account_id == "e.ada" and 1 <= account.device_id <= MAX_DEVICE_ID
        assert identity is not None and certificate.identity_key == identity.public
        authority_data = deployment().authority().data_dir
        assert _certified(authority_data, "e.ada") == [(account.device_id, identity.public)]
        assert _served(relay, "e.ada") == {account.device_id: certificate.encode()}
        assert _pending(client) is None
    finally:
        client.close()


def test_with_no_config_in_force_nothing_is_sent_and_the_code_stays_good(
    relay: RelayProcess, tmp_path: Path
) -> None:
    """Test that enrolling with no organisation config in force is AuthorityUnknownError, with the
    relay given or not, and sends nothing: no certificate is kept, the relay registers nothing, and
    once the config is imported the same code enrols."""
    new_account(relay.data_dir, "e.bea", "Bea")
    code = deployment().code("e.bea")
    client = _new_profile(tmp_path, "e.bea")
    try:
        for relay_url, pin in ((relay.https, relay.pin), (None, None)):
            with pytest.raises(AuthorityUnknownError, match="no organisation config is in force"):
                client.enclave.enrol(relay_url, pin, code).result(WAIT_SECONDS)
        assert client.enclave.account is None and _pending(client) is None
        assert registered(relay, "e.bea") == []
        _config(client, relay, "config")
        assert _enrolled(client, code).account_id == "e.bea"
    finally:
        client.close()


def test_a_refused_code_leaves_the_profile_unenrolled(relay: RelayProcess, tmp_path: Path) -> None:
    """Test that a code the authority never issued, and one spent already, are refused with HTTP 403,
    keep no certificate and register nothing, and that the profile then enrols with a good code."""
    new_account(relay.data_dir, "e.cid", "Cid")
    spent = deployment().code("e.cid")
    first = _new_profile(tmp_path, "e.cid")
    try:
        _config(first, relay, "config")
        _enrolled(first, spent)
    finally:
        first.close()
    client = _new_profile(tmp_path / "second", "e.cid")
    try:
        _config(client, relay, "config")
        before = registered(relay, "e.cid")
        for code in ("not-the-code", spent):
            with pytest.raises(AuthorityRefusedError, match="refused") as refused:
                client.enclave.enrol(None, None, code).result(WAIT_SECONDS)
            assert refused.value.status == 403
        assert client.enclave.account is None and _pending(client) is None
        assert registered(relay, "e.cid") == before
        assert _enrolled(client, deployment().code("e.cid")).account_id == "e.cid"
    finally:
        client.close()


def test_an_authority_presenting_another_key_than_pinned_is_sent_nothing(
    relay: RelayProcess, tmp_path: Path
) -> None:
    """Test that an enrolment authority whose TLS key matches none of the config's authority pins is
    PinMismatchError before the code's proof is sent: nothing is certified (the same code works once
    a config pins the authority's key) and the relay registers nothing."""
    new_account(relay.data_dir, "e.dex", "Dex")
    code = deployment().code("e.dex")
    client = _new_profile(tmp_path, "e.dex")
    try:
        _config(client, relay, "v1", authority_pins=(WRONG_PIN,))
        with pytest.raises(PinMismatchError, match="matches no pinned key"):
            client.enclave.enrol(None, None, code).result(WAIT_SECONDS)
        assert client.enclave.account is None and _pending(client) is None
        assert _certified(deployment().authority().data_dir, "e.dex") == []
        assert registered(relay, "e.dex") == []
        _config(client, relay, "v2", version=2)
        assert _enrolled(client, code).account_id == "e.dex"
    finally:
        client.close()


def test_a_relay_down_after_certification_registers_the_same_certificate_later(
    relay: RelayProcess, tmp_path: Path
) -> None:
    """Test that when the relay cannot be reached after the authority certified the device, enrol is
    OfflineError and the profile is not enrolled, and that the next enrol, with any code text, once
    the relay is back registers the certificate the authority gave: the code was spent once."""
    new_account(relay.data_dir, "e.eve", "Eve")
    client = _new_profile(tmp_path, "e.eve")
    try:
        _config(client, relay, "config")
        relay.stop()
        with pytest.raises(OfflineError, match="cannot be reached"):
            client.enclave.enrol(None, None, deployment().code("e.eve")).result(WAIT_SECONDS)
        assert client.enclave.account is None
        pending = _pending(client)
        assert pending is not None
        relay.start()
        account = _enrolled(client, "any code text")
        assert _certificate(client).encode() == pending
        assert DeviceCertificate.parse(pending).device_id == account.device_id
        assert [device_id for device_id, _ in _certified(deployment().authority().data_dir, "e.eve")] == [
            account.device_id
        ]
        assert _served(relay, "e.eve") == {account.device_id: pending}
        assert _pending(client) is None
    finally:
        client.close()


def test_an_account_the_relay_does_not_have_yet_is_registered_once_it_is_made(
    relay: RelayProcess, tmp_path: Path
) -> None:
    """Test that a certificate for an account the relay does not have is refused there (NOT_FOUND),
    leaving the profile unenrolled, and that after ``enclave-admin account create`` the next enrol
    registers the same certificate without a new code."""
    code = deployment().code("e.fay")
    client = _new_profile(tmp_path, "e.fay")
    try:
        _config(client, relay, "config")
        with pytest.raises(RelayRefusedError) as refused:
            client.enclave.enrol(None, None, code).result(WAIT_SECONDS)
        assert refused.value.status_name == "NOT_FOUND"
        assert client.enclave.account is None
        pending = _pending(client)
        assert pending is not None
        new_account(relay.data_dir, "e.fay", "Fay")
        account = _enrolled(client, "")
        assert _certificate(client).encode() == pending
        assert [device_id for device_id, _ in _certified(deployment().authority().data_dir, "e.fay")] == [
            account.device_id
        ]
    finally:
        client.close()


# What colleagues accept.


def _plant(
    relay: RelayProcess, account_id: str, *, identity: IdentityKeyPair, certificate: bytes, device_id: int
) -> None:
    """A device added to the relay's database directly, as anyone with the relay's data folder can:
    a bundle made with ``identity`` (its signed prekey and one-time prekeys) and ``certificate``."""
    signed = SignedPreKey.generate(identity, 1, random)
    one_time = [OneTimePreKey.generate(key_id, random) for key_id in range(1, 4)]
    with (
        contextlib.closing(sqlite3.connect(relay.data_dir / "relay.sqlite3", timeout=WAIT_SECONDS)) as db,
        db,
    ):
        db.execute(
            "INSERT INTO devices (device_id, account_id, identity_key, signed_prekey_id, signed_prekey,"
            " signed_prekey_signature, certificate) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (device_id, account_id, identity.public, 1, signed.keypair.public, signed.signature, certificate),
        )
        db.executemany(
            "INSERT INTO one_time_prekeys VALUES (?, ?, ?)",
            [(device_id, key.key_id, key.keypair.public) for key in one_time],
        )


def _new_device_id(*taken: int) -> int:
    while True:
        device_id = 1 + int.from_bytes(random(4), "big") % MAX_DEVICE_ID
        if device_id not in taken:
            return device_id


def _only_bob_is_reached(relay: RelayProcess, alice: Client, bob: Client, planted: list[int]) -> None:
    """Alice writes to Bob for the first time with the planted devices beside Bob's: his device gets
    the message, and none of the planted ones gets a session, an envelope, a key on record or a
    key change."""
    assert bob.enclave.account is not None
    bob_device = bob.enclave.account.device_id
    assert set(_served(relay, "bob")) == {bob_device, *planted}, "the relay hands the planted devices out"
    conversation = alice.enclave.start_conversation("bob").result(WAIT_SECONDS)
    sent = alice.enclave.send_text(conversation.id, "for Bob alone").result(WAIT_SECONDS)
    assert bob.wait_for(MessageArrived).message.body == "for Bob alone"
    alice.wait_for(
        MessageStatusChanged, lambda e: e.message_id == sent.id and e.status is MessageStatus.DELIVERED
    )
    assert _engine(alice, lambda c: c.sessions.devices("bob")) == [bob_device]
    assert _engine(alice, lambda c: [d.device_id for d in c.store.contacts.devices("bob")]) == [bob_device]
    assert [n.device_id for n in alice.enclave.safety_numbers("bob").result(WAIT_SECONDS)] == [bob_device]
    assert [deliverable(relay, device_id) for device_id in planted] == [0] * len(planted)
    assert not any(isinstance(e, KeyChanged) for e in _events(alice))


def _relay_secrets(data_dir: Path) -> dict[str, bytes]:
    """Every 32-byte secret in the relay's data folder, by where it was found: each file of 32
    bytes (``upload.key``, an old ``signing.key``), and the TLS key's private scalar."""
    secrets = {
        path.name: path.read_bytes()
        for path in data_dir.iterdir()
        if path.is_file() and path.stat().st_size == 32
    }
    tls_key = load_pem_private_key((data_dir / TLS_KEY_FILE).read_bytes(), password=None)
    assert isinstance(tls_key, ec.EllipticCurvePrivateKey)
    secrets[TLS_KEY_FILE] = tls_key.private_numbers().private_value.to_bytes(32, "big")
    return secrets


def test_a_certificate_made_with_any_key_in_the_relays_data_folder_is_refused(
    relay: RelayProcess, pair: tuple[Client, Client]
) -> None:
    """Test that whoever holds the relay's data folder cannot certify a device: for every 32-byte
    secret there (``upload.key``, an old relay's ``signing.key``, the TLS key's scalar), a device
    certified for Bob with it as an Ed25519 seed, put into the relay's database with a bundle of
    the operator's key, gets no session, no message and no key change from Alice, while Bob's own
    device gets her message."""
    alice, bob = pair
    (relay.data_dir / OLD_SIGNING_KEY).write_bytes(random(32))
    secrets = _relay_secrets(relay.data_dir)
    assert {"upload.key", OLD_SIGNING_KEY, TLS_KEY_FILE} <= set(secrets)
    assert bob.enclave.account is not None
    planted: list[int] = []
    for seed in secrets.values():
        operator = IdentityKeyPair.generate(random)
        device_id = _new_device_id(bob.enclave.account.device_id, *planted)
        forged = certificate_for("bob", device_id, operator.public, issuer=IdentityKeyPair.from_seed(seed))
        _plant(relay, "bob", identity=operator, certificate=forged, device_id=device_id)
        planted.append(device_id)
    _only_bob_is_reached(relay, alice, bob, planted)


def test_a_bundle_whose_certificate_names_another_key_is_refused(
    relay: RelayProcess, pair: tuple[Client, Client]
) -> None:
    """Test that a device put into the relay's database with a bundle of the operator's key and a
    certificate the authority really signed for another key (Bob's own certificate, or one naming
    the planted device's id and a key other than its bundle's) gets nothing from Alice."""
    alice, bob = pair
    assert bob.enclave.account is not None
    replayed = _certificate(bob).encode()
    planted: list[int] = []
    for certified in (
        lambda _: replayed,
        lambda device_id: certificate_for("bob", device_id, IdentityKeyPair.generate(random).public),
    ):
        device_id = _new_device_id(bob.enclave.account.device_id, *planted)
        _plant(
            relay,
            "bob",
            identity=IdentityKeyPair.generate(random),
            certificate=certified(device_id),
            device_id=device_id,
        )
        planted.append(device_id)
    _only_bob_is_reached(relay, alice, bob, planted)


# Renewal.


def test_a_renewed_certificate_is_served_and_a_revoked_device_is_refused_renewal(
    relay: RelayProcess, own_authority: OwnAuthority, tmp_path: Path
) -> None:
    """Test that a renewal at the authority gives a later certificate for the same device, which the
    relay serves once the link has authenticated again; and that once the device is revoked at the
    authority a renewal is refused: a Problem says so and the current certificate stays, here and at
    the relay."""
    bob = enrolled_client(relay, tmp_path, "bob", "Bob Baker", authority=own_authority)
    try:
        assert bob.enclave.account is not None
        device_id = bob.enclave.account.device_id
        first = _certificate(bob)
        assert first.expires_at <= time.time() + DAY
        assert _served(relay, "bob") == {device_id: first.encode()}

        own_authority.restart("--certificate-days", "7")
        _renew(bob)
        renewed = _certificate(bob)
        renewed.verify(trust_root=TEST_AUTHORITY.public, now=int(time.time()))
        assert (renewed.account_id, renewed.device_id, renewed.identity_key) == (
            first.account_id,
            first.device_id,
            first.identity_key,
        )
        assert renewed.expires_at >= first.expires_at + 5 * DAY
        until(
            lambda: registered(relay, "bob") == [(device_id, renewed.encode())], "the relay keeps the renewal"
        )
        assert _served(relay, "bob") == {device_id: renewed.encode()}
        assert not any(isinstance(e, Problem) for e in _events(bob))

        own_authority.revoke("bob", device_id)
        _renew(bob)
        problem = bob.wait_for(Problem)
        assert "not renewed" in problem.message and "revoked" in problem.message
        assert _certificate(bob) == renewed
        assert _served(relay, "bob") == {device_id: renewed.encode()}
    finally:
        bob.close()


def test_a_busy_authority_delays_the_renewal_without_troubling_the_user(
    relay: RelayProcess, own_authority: OwnAuthority, tmp_path: Path
) -> None:
    """Test that a renewal the authority answers with 429 (its per-address limit spent) keeps the
    current certificate and tells the user nothing: the first Problem the user sees is the later
    refusal of a revoked device, not the busy answer."""
    bob = enrolled_client(relay, tmp_path, "bob", "Bob Baker", authority=own_authority)
    try:
        assert bob.enclave.account is not None
        own_authority.restart("--certificate-days", "7", "--attempts-per-minute", "1")
        _renew(bob)
        renewed = _certificate(bob)
        _renew(bob)
        assert _certificate(bob) == renewed
        own_authority.restart("--certificate-days", "7")
        own_authority.revoke("bob", bob.enclave.account.device_id)
        _renew(bob)
        assert "revoked" in bob.wait_for(Problem).message
    finally:
        bob.close()


def test_a_renewal_not_signed_by_the_configs_authority_key_is_refused(
    relay: RelayProcess, tmp_path: Path
) -> None:
    """Test that when the authority's answer is not signed by the authority key of the config in
    force (here a newer config names another key), the renewal is refused: a Problem says so and
    the device keeps its current certificate, in its store and at the relay."""
    bob = enrolled_client(relay, tmp_path, "bob", "Bob Baker")
    try:
        assert bob.enclave.account is not None
        current = _certificate(bob)
        run = deployment()
        rotated = Organisation(root=run.signer.root, authority=(IdentityKeyPair.generate(random).public, b""))
        config = rotated.config(
            version=2,
            relay_urls=(relay.https,),
            relay_pins=(relay.pin,),
            authority_urls=(run.authority_url,),
            authority_pins=(run.authority().pin,),
            mandatory="",
            recommended="",
        )
        path = rotated.write(tmp_path / "rotated" / "enclave.toml", config)
        bob.enclave.import_config(path).result(WAIT_SECONDS)
        _renew(bob)
        problem = bob.wait_for(Problem)
        assert "not renewed" in problem.message and "not signed by this organisation" in problem.message
        assert _certificate(bob) == current
        assert _engine(bob, lambda c: c.credentials.current_certificate()) == current.encode()
        assert _served(relay, "bob") == {bob.enclave.account.device_id: current.encode()}
    finally:
        bob.close()


def test_every_authentication_presents_the_certificate_the_device_holds(
    relay: RelayProcess, own_authority: OwnAuthority, tmp_path: Path
) -> None:
    """Test that after a renewal made while the relay was down, the link's next authentication, once
    the relay is back, presents the renewed certificate: the relay keeps and serves it and the device
    is online and reached; and that a restarted client holds it in its store and goes online again."""
    alice = enrolled_client(relay, tmp_path, "alice", "Alice Archer")
    bob = enrolled_client(relay, tmp_path, "bob", "Bob Baker", authority=own_authority)
    try:
        assert bob.enclave.account is not None
        device_id = bob.enclave.account.device_id
        first = _certificate(bob)
        bob.wait_for(ConnectionChanged, lambda e: e.state == "online")
        relay.stop()
        bob.wait_for(ConnectionChanged, lambda e: e.state == "offline")
        own_authority.restart("--certificate-days", "7")
        _renew(bob)
        renewed = _certificate(bob)
        assert renewed.expires_at > first.expires_at
        assert registered(relay, "bob") == [(device_id, first.encode())], "the relay has not seen it yet"
        relay.start()
        bob.wait_for(ConnectionChanged, lambda e: e.state == "online")
        assert registered(relay, "bob") == [(device_id, renewed.encode())]
        assert _served(relay, "bob") == {device_id: renewed.encode()}
        alice.enclave.add_contact("bob", "Bob Baker").result(WAIT_SECONDS)
        conversation = alice.enclave.start_conversation("bob").result(WAIT_SECONDS)
        alice.enclave.send_text(conversation.id, "after the restart").result(WAIT_SECONDS)
        assert bob.wait_for(MessageArrived).message.body == "after the restart"

        bob.close()
        bob = open_client(bob.profile)
        assert bob.enclave.wait_online(WAIT_SECONDS).result(WAIT_SECONDS + 5)
        assert _certificate(bob) == renewed
        assert registered(relay, "bob") == [(device_id, renewed.encode())]
    finally:
        alice.close()
        bob.close()
