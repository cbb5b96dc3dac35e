"""Registering devices from the enrolment authority's certificates, end to end: a real relay
over TLS on each backend, and devices whose certificates are signed here with the key the
relay is told to trust (``TEST_AUTHORITY``, tests/support/relay.py) or with any other.

The relay signs nothing: a device registers with a certificate signed by the authority
and a challenge signed with the identity key it names (ENROL), then presents its current
certificate whenever it authenticates; the relay keeps the freshest valid one and serves
it in bundles. Each refusal is checked to leave every row of the relay's database as it was.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from nacl.utils import random

from app.crypto.certificate import DeviceCertificate
from app.crypto.keys import IdentityKeyPair, SignedPreKey
from app.protocol.frames import (
    MAX_DEVICES_PER_ACCOUNT,
    Authenticate,
    Authenticated,
    Bundles,
    Enrol,
    FetchBundles,
    FrameType,
    Response,
    SignedPreKeyUpload,
    Status,
)
from server.config import load_config
from server.keys import UPLOAD_KEY_FILE, UPLOAD_TOKEN_KEY_LABEL
from server.relay import NOT_CERTIFIED
from tests.server.relays import RelayFactory, run
from tests.server.stores import database_of
from tests.support.relay import (
    CERTIFICATE_SECONDS,
    TEST_AUTHORITY,
    RelayProcess,
    TestDevice,
    admin,
    certificate_for,
    new_account,
)

LOOSE = {"enrolment_attempts_per_minute": 1000}
"""These tests enrol more often than a minute's default allowance from one address."""
OLD_SIGNING_KEY = "signing.key"
"""The file a relay from before the enrolment authority signed device certificates with."""


async def _snapshot(relay: RelayProcess) -> dict[str, list[tuple[Any, ...]]]:
    return await database_of(relay.data_dir).snapshot()


async def _enrol(device: TestDevice, body: Callable[[], bytes] | None = None) -> Response:
    """ENROL on a connection of its own: ``body()`` (made once connected, so that it may sign
    the challenge), or the device's own enrolment."""
    await device.connect()
    try:
        return await device.request(FrameType.ENROL, device.enrolment() if body is None else body())
    finally:
        await device.disconnect()


async def _authenticate_with(device: TestDevice, certificate: bytes) -> Response:
    """AUTHENTICATE as ``device`` (its challenge signed rightly) presenting ``certificate``, on a
    connection of its own that stays open for the caller to look at (``disconnect`` it)."""
    await device.connect()
    signed = Authenticate(device.device_id, device.challenge_signature(), certificate)
    return await device.request(FrameType.AUTHENTICATE, signed.encode())


async def _refused_and_closed(device: TestDevice, certificate: bytes) -> None:
    """``device`` presenting ``certificate`` is refused as not certified and hung up on."""
    response = await _authenticate_with(device, certificate)
    try:
        assert (response.status, response.reason) == (Status.UNAUTHENTICATED, NOT_CERTIFIED)
        await asyncio.wait_for(device._reader, 10)  # type: ignore[arg-type]
        assert device.ws is not None and device.ws.closed
        assert device.closing is not None
        assert (device.closing.status, device.closing.reason) == (Status.UNAUTHENTICATED, NOT_CERTIFIED)
    finally:
        await device.disconnect()


async def _served_certificate(asker: TestDevice, device: TestDevice) -> bytes:
    """The certificate the relay serves with ``device``'s bundle."""
    fetched = await asker.request(FrameType.FETCH_BUNDLES, FetchBundles(device.account_id).encode())
    assert fetched.status == Status.OK, fetched.reason
    served = {bundle.device_id: bundle.certificate for bundle in Bundles.parse(fetched.body).devices}
    return served[device.device_id]


def test_a_certified_device_registers_and_authenticates_on_a_new_connection(
    start_relay: RelayFactory,
) -> None:
    """Test that ENROL with the authority's certificate and the signed challenge answers OK with an
    empty body and stores the device under the certificate's id, account and identity key with the
    very certificate; that it spends the challenge (AUTHENTICATE or ENROL on that connection is
    refused); and that the device then authenticates on a new connection."""
    relay = start_relay()
    account = new_account(relay.data_dir, "e.alice")

    async def scenario() -> None:
        device = TestDevice(relay)
        device.certify(account)
        await device.connect()
        response = await device.enrol()
        assert (response.status, response.body) == (Status.OK, b"")
        spent = await device.request(FrameType.ENROL, device.enrolment())
        assert spent.status == Status.UNAUTHENTICATED and "challenge" in spent.reason
        assert (await device.authenticate()).status == Status.UNAUTHENTICATED
        await device.disconnect()
        rows = await database_of(relay.data_dir).sql(
            "SELECT device_id, account_id, identity_key, certificate, revoked FROM devices"
        )
        assert [(r[0], r[1], bytes(r[2]), bytes(r[3]), bool(r[4])) for r in rows] == [
            (device.device_id, account, device.identity.public, device.certificate, False)
        ]
        assert (await device.reconnect()).status == Status.OK
        assert device.upload_token
        await device.disconnect()

    run(scenario())


def test_each_refused_enrolment_leaves_the_relay_store_unchanged(start_relay: RelayFactory) -> None:
    """Test that ENROL is refused, with its own status, and changes no row of the relay's database,
    for: a certificate from another issuer, an expired one, bytes that are no certificate, a
    challenge signed by a key other than the certificate's, an ENROL recorded on one connection
    and replayed on another, a signed prekey the identity key did not sign, an account the relay
    does not have, a disabled and a revoked account, a revoked device id, an identity key that is
    another device's, another device's id, and a device's id and key on another account; and that
    the refused device of the disabled account enrols once the account is enabled again."""
    relay = start_relay(**LOOSE)
    alice, bob = new_account(relay.data_dir, "e.alice"), new_account(relay.data_dir, "e.bob")
    carol, dave = new_account(relay.data_dir, "e.carol"), new_account(relay.data_dir, "e.dave")
    stranger = IdentityKeyPair.generate(random)

    async def from_stranger() -> Response:
        device = TestDevice(relay)
        device.certify(alice, issuer=stranger)
        return await _enrol(device)

    async def expired() -> Response:
        device = TestDevice(relay)
        device.certify(alice)
        device.certificate = certificate_for(
            alice, device.device_id, device.identity.public, expires_at=int(time.time()) - 1
        )
        return await _enrol(device)

    async def not_a_certificate() -> Response:
        device = TestDevice(relay)
        device.certify(alice)
        return await _enrol(device, lambda: device.enrolment(certificate=b"\x01" + random(150)))

    async def challenge_signed_by_another_key() -> Response:
        device = TestDevice(relay)
        device.certify(alice)
        device.certificate = certificate_for(alice, device.device_id, stranger.public)
        return await _enrol(device)

    async def replayed() -> Response:
        device = TestDevice(relay)
        device.certify(alice)
        await device.connect()
        recorded = device.enrolment()
        await device.disconnect()
        return await _enrol(device, lambda: recorded)

    async def prekey_signed_by_another_key() -> Response:
        device = TestDevice(relay)
        device.certify(alice)
        await device.connect()
        try:
            spk = SignedPreKey.generate(stranger, 1, random)
            body = Enrol(
                device.certificate,
                device.challenge_signature(),
                SignedPreKeyUpload(spk.key_id, spk.keypair.public, spk.signature),
                (),
            ).encode()
            return await device.request(FrameType.ENROL, body)
        finally:
            await device.disconnect()

    async def certified_for(
        account_id: str, identity: IdentityKeyPair | None = None, device_id: int | None = None
    ) -> Response:
        device = TestDevice(relay) if identity is None else TestDevice(relay, identity=identity)
        device.certify(account_id)
        if device_id is not None:
            device.device_id = device_id
            device.certificate = certificate_for(account_id, device_id, device.identity.public)
        return await _enrol(device)

    async def scenario() -> None:
        held = await TestDevice(relay).join(alice)
        gone = await TestDevice(relay).join(alice)
        await held.disconnect()
        await gone.disconnect()
        assert admin(relay.data_dir, "device", "revoke", str(gone.device_id)).returncode == 0
        assert admin(relay.data_dir, "account", "disable", carol).returncode == 0
        assert admin(relay.data_dir, "account", "revoke", dave).returncode == 0
        disabled = TestDevice(relay)
        disabled.certify(carol)
        cases: list[tuple[str, Callable[[], Awaitable[Response]], Status]] = [
            ("another issuer", from_stranger, Status.UNAUTHENTICATED),
            ("expired", expired, Status.UNAUTHENTICATED),
            ("not a certificate", not_a_certificate, Status.UNAUTHENTICATED),
            ("challenge signed by another key", challenge_signed_by_another_key, Status.UNAUTHENTICATED),
            ("replayed on another connection", replayed, Status.UNAUTHENTICATED),
            ("prekey signed by another key", prekey_signed_by_another_key, Status.BAD_REQUEST),
            ("unknown account", lambda: certified_for("e.nobody"), Status.NOT_FOUND),
            ("disabled account", lambda: _enrol(disabled), Status.ACCOUNT_DISABLED),
            ("revoked account", lambda: certified_for(dave), Status.ACCOUNT_DISABLED),
            ("revoked device id", lambda: _enrol(gone), Status.REVOKED),
            ("another device's key", lambda: certified_for(alice, held.identity), Status.BAD_REQUEST),
            ("another device's id", lambda: certified_for(alice, None, held.device_id), Status.BAD_REQUEST),
            (
                "a device's id and key on another account",
                lambda: certified_for(bob, held.identity, held.device_id),
                Status.BAD_REQUEST,
            ),
        ]
        before = await _snapshot(relay)
        assert len(before["devices"]) == 2 and before["one_time_prekeys"]
        for name, enrol, expected in cases:
            response = await enrol()
            assert response.status == expected, (name, response.status.name, response.reason)
            if expected == Status.UNAUTHENTICATED:
                assert response.reason == NOT_CERTIFIED, name
            assert await _snapshot(relay) == before, name
        assert admin(relay.data_dir, "account", "enable", carol).returncode == 0
        assert (await _enrol(disabled)).status == Status.OK
        assert (await disabled.reconnect()).status == Status.OK
        await disabled.disconnect()

    run(scenario())


def test_the_same_device_enrolling_again_is_ok_and_takes_its_new_prekeys(start_relay: RelayFactory) -> None:
    """Test that a registered device sending ENROL again (its first answer lost) with new prekeys is
    answered OK, its prekeys become the new ones (five, not doubled), its certificate and every
    other row stay, and it still authenticates."""
    relay = start_relay()
    account = new_account(relay.data_dir, "e.again")

    async def scenario() -> None:
        device = await TestDevice(relay).join(account)
        await device.disconnect()
        before = await _snapshot(relay)
        assert len(before["one_time_prekeys"]) == 5
        for _ in range(2):
            response = await _enrol(device)
            assert (response.status, response.body) == (Status.OK, b"")
            after = await _snapshot(relay)
            assert len(after["one_time_prekeys"]) == 5
            assert after["one_time_prekeys"] != before["one_time_prekeys"]
            assert {k: v for k, v in after.items() if k not in ("devices", "one_time_prekeys")} == {
                k: v for k, v in before.items() if k not in ("devices", "one_time_prekeys")
            }
            [row_before], [row_after] = before["devices"], after["devices"]
            assert device.certificate in row_after and device.certificate in row_before
            before = after
        assert (await device.reconnect()).status == Status.OK
        await device.disconnect()

    run(scenario())


def test_concurrent_enrolments_of_one_certificate_register_one_device(
    start_relay: RelayFactory, tmp_path: Path
) -> None:
    """Test that ten connections enrolling one certificate at once (on PostgreSQL through two relay
    processes) are all answered OK and register one device, with one enrolment's five prekeys."""
    relay = start_relay(**LOOSE)
    relays = [relay]
    if load_config(relay.data_dir).backend == "postgres":
        second = tmp_path / "second"
        second.mkdir()
        (second / "server.toml").write_bytes((relay.data_dir / "server.toml").read_bytes())
        relays.append(start_relay(data_dir=second))
    account = new_account(relay.data_dir, "e.race")

    async def scenario() -> None:
        first = TestDevice(relay)
        first.certify(account)
        copies = [
            TestDevice(
                relays[i % len(relays)],
                identity=first.identity,
                device_id=first.device_id,
                account_id=account,
                certificate=first.certificate,
            )
            for i in range(10)
        ]
        for device in copies:
            await device.connect()
        try:
            responses = await asyncio.gather(*(device.enrol() for device in copies))
        finally:
            for device in copies:
                await device.disconnect()
        assert [r.status for r in responses] == [Status.OK] * 10
        database = database_of(relay.data_dir)
        assert await database.sql("SELECT device_id FROM devices") == [(first.device_id,)]
        assert await database.sql("SELECT COUNT(*) FROM one_time_prekeys") == [(5,)]
        assert (await first.reconnect()).status == Status.OK
        await first.disconnect()

    run(scenario())


def test_bundles_serve_exactly_the_certificate_the_device_presented(start_relay: RelayFactory) -> None:
    """Test that FETCH_BUNDLES serves each device of an account with the very bytes of the
    certificate it enrolled with, signed by the authority and naming that device."""
    relay = start_relay()
    alice, bob = new_account(relay.data_dir, "b.alice"), new_account(relay.data_dir, "b.bob")

    async def scenario() -> None:
        asker = await TestDevice(relay).join(alice)
        phone, laptop = await TestDevice(relay).join(bob), await TestDevice(relay).join(bob)
        for device in (phone, laptop):
            served = await _served_certificate(asker, device)
            assert served == device.certificate
            certificate = DeviceCertificate.parse(served)
            certificate.verify(trust_root=TEST_AUTHORITY.public, now=int(time.time()))
            assert (certificate.account_id, certificate.device_id, certificate.identity_key) == (
                bob,
                device.device_id,
                device.identity.public,
            )
        for device in (asker, phone, laptop):
            await device.disconnect()

    run(scenario())


def test_a_fresher_certificate_replaces_the_kept_one_and_an_older_or_expired_one_does_not(
    start_relay: RelayFactory,
) -> None:
    """Test that AUTHENTICATE with an unexpired certificate expiring later than the kept one makes
    the relay keep and serve it; that an expired certificate still authenticates (with an upload
    token) and an older unexpired one too, and neither replaces the fresher one kept."""
    relay = start_relay()
    alice, bob = new_account(relay.data_dir, "f.alice"), new_account(relay.data_dir, "f.bob")

    async def presenting(device: TestDevice, certificate: bytes) -> None:
        response = await _authenticate_with(device, certificate)
        await device.disconnect()
        assert response.status == Status.OK, response.reason
        assert Authenticated.parse(response.body).upload_token

    def expiring(device: TestDevice, expires_at: int) -> bytes:
        return certificate_for(bob, device.device_id, device.identity.public, expires_at=expires_at)

    async def scenario() -> None:
        asker = await TestDevice(relay).join(alice)
        device = await TestDevice(relay).join(bob)
        await device.disconnect()
        first = device.certificate
        now = int(time.time())
        fresher = expiring(device, now + 2 * CERTIFICATE_SECONDS)
        await presenting(device, fresher)
        assert await _served_certificate(asker, device) == fresher
        await presenting(device, expiring(device, now - 1))
        assert await _served_certificate(asker, device) == fresher
        await presenting(device, first)
        assert await _served_certificate(asker, device) == fresher
        rows = await database_of(relay.data_dir).sql(
            "SELECT certificate FROM devices WHERE device_id = $1", device.device_id
        )
        assert [bytes(row[0]) for row in rows] == [fresher]
        await asker.disconnect()

    run(scenario())


def test_an_expired_certificate_authenticates_but_is_never_kept(start_relay: RelayFactory) -> None:
    """Test that a device whose certificates have all expired still authenticates (it may receive
    while it cannot renew) and is given an upload token, and that an expired certificate expiring
    later than the expired one kept does not replace it: only an unexpired one is ever kept."""
    relay = start_relay()
    account = new_account(relay.data_dir, "x.alice")

    async def scenario() -> None:
        device = TestDevice(relay)
        device.certify(account)
        expires_at = int(time.time()) + 3
        device.certificate = certificate_for(
            account, device.device_id, device.identity.public, expires_at=expires_at
        )
        await device.connect()
        assert (await device.enrol()).status == Status.OK
        await device.disconnect()
        kept = device.certificate
        later_but_expired = certificate_for(
            account, device.device_id, device.identity.public, expires_at=expires_at + 1
        )
        while time.time() <= expires_at + 1:
            await asyncio.sleep(expires_at + 1 - time.time() + 0.1)
        for presented in (kept, later_but_expired):
            device.certificate = presented
            assert (await device.reconnect()).status == Status.OK
            assert device.upload_token
            assert await _served_certificate(device, device) == kept
            await device.disconnect()

    run(scenario())


def test_authenticate_refuses_a_certificate_not_for_this_device_and_closes(start_relay: RelayFactory) -> None:
    """Test that AUTHENTICATE with the challenge signed rightly but presenting a certificate signed by
    another key, or naming another device id, another account or another identity key, or bytes that
    are no certificate, or none, is refused as not certified and the connection closed, the kept
    certificate unchanged; the device's own certificate still authenticates after."""
    relay = start_relay()
    alice, bob = new_account(relay.data_dir, "a.alice"), new_account(relay.data_dir, "a.bob")
    stranger = IdentityKeyPair.generate(random)

    async def scenario() -> None:
        device = await TestDevice(relay).join(alice)
        other = await TestDevice(relay).join(bob)
        await device.disconnect()
        await other.disconnect()
        later = int(time.time()) + 2 * CERTIFICATE_SECONDS
        ik, device_id = device.identity.public, device.device_id
        wrong = {
            "another issuer": certificate_for(alice, device_id, ik, issuer=stranger, expires_at=later),
            "another device id": certificate_for(alice, other.device_id, ik, expires_at=later),
            "another account": certificate_for(bob, device_id, ik, expires_at=later),
            "another identity key": certificate_for(
                alice, device_id, other.identity.public, expires_at=later
            ),
            "another device's own": other.certificate,
            "not a certificate": random(150),
            "none": b"",
        }
        before = await _snapshot(relay)
        for name, certificate in wrong.items():
            try:
                await _refused_and_closed(device, certificate)
            except AssertionError as e:
                raise AssertionError(name) from e
            assert await _snapshot(relay) == before, name
        assert (await device.reconnect()).status == Status.OK
        await device.disconnect()

    run(scenario())


def _seeds_in(folder: Path) -> dict[str, bytes]:
    """Every key the relay holds in ``folder``, as a 32-byte Ed25519 seed: each file of 32 bytes
    (``upload.key``, an old ``signing.key``), the upload token key derived from ``upload.key``,
    and the TLS private key's scalar."""
    seeds: dict[str, bytes] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        name = str(path.relative_to(folder))
        if len(data) == 32:
            seeds[name] = data
        if path.name == UPLOAD_KEY_FILE:
            seeds[f"{name}, derived"] = hmac.digest(data, UPLOAD_TOKEN_KEY_LABEL, "sha256")
        if b"PRIVATE KEY-----" in data:
            key = load_pem_private_key(data, password=None)
            assert isinstance(key, ec.EllipticCurvePrivateKey)
            seeds[name] = key.private_numbers().private_value.to_bytes(32, "big")
    return seeds


def test_a_certificate_made_with_any_key_in_the_relays_data_folder_is_refused(
    start_relay: RelayFactory, tmp_path: Path
) -> None:
    """Test that no key the relay holds certifies a device: with each file of its data folder read
    after start (its upload.key, its TLS key, and a signing.key of 32 random bytes left there by an
    old relay) and the upload token key used as an Ed25519 seed, a certificate signed with it is
    refused by ENROL and by AUTHENTICATE (connection closed), and the relay's database, and the
    old signing.key, are left as they were."""
    data_dir = tmp_path / "relay"
    data_dir.mkdir()
    old_signing_key = random(32)
    (data_dir / OLD_SIGNING_KEY).write_bytes(old_signing_key)
    relay = start_relay(data_dir=data_dir, **LOOSE)
    account = new_account(relay.data_dir, "k.alice")

    async def scenario() -> None:
        honest = await TestDevice(relay).join(account)
        await honest.disconnect()
        seeds = _seeds_in(relay.data_dir)
        assert {OLD_SIGNING_KEY, UPLOAD_KEY_FILE, f"{UPLOAD_KEY_FILE}, derived", "tls.key"} <= set(seeds)
        assert seeds[OLD_SIGNING_KEY] == old_signing_key
        before = await _snapshot(relay)
        for name, seed in seeds.items():
            issuer = IdentityKeyPair.from_seed(seed)
            assert issuer.public != TEST_AUTHORITY.public
            forged = TestDevice(relay)
            forged.certify(account, issuer=issuer)
            response = await _enrol(forged)
            assert (response.status, response.reason) == (Status.UNAUTHENTICATED, NOT_CERTIFIED), name
            later = int(time.time()) + 2 * CERTIFICATE_SECONDS
            renewal = certificate_for(
                account, honest.device_id, honest.identity.public, issuer=issuer, expires_at=later
            )
            try:
                await _refused_and_closed(honest, renewal)
            except AssertionError as e:
                raise AssertionError(name) from e
            assert await _snapshot(relay) == before, name
        assert (relay.data_dir / OLD_SIGNING_KEY).read_bytes() == old_signing_key

    run(scenario())


def test_a_relay_told_another_authority_key_refuses_the_devices_it_registered(
    start_relay: RelayFactory,
) -> None:
    """Test that the authority key checked at AUTHENTICATE is the one the relay is given now: after a
    restart trusting another key, a registered device is refused and closed, and one certified by
    the new key enrols and authenticates."""
    relay = start_relay()
    account = new_account(relay.data_dir, "n.alice")
    successor = IdentityKeyPair.generate(random)

    async def scenario() -> None:
        device = await TestDevice(relay).join(account)
        await device.disconnect()
        relay.stop()
        moved = RelayProcess(relay.data_dir, authority_key=successor.public)
        moved.port = relay.port
        moved.start()
        try:
            device.relay = moved
            await _refused_and_closed(device, device.certificate)
            newcomer = TestDevice(moved)
            newcomer.certify(account, issuer=successor)
            await newcomer.connect()
            assert (await newcomer.enrol()).status == Status.OK
            assert (await newcomer.reconnect()).status == Status.OK
            await newcomer.disconnect()
        finally:
            moved.stop()

    run(scenario())


def test_an_account_registers_no_more_devices_than_a_bundle_answer_carries(start_relay: RelayFactory) -> None:
    """Test that once an account has MAX_DEVICES_PER_ACCOUNT unrevoked devices, a further certified
    device's ENROL is refused (BAD_REQUEST, saying why) changing nothing, and the account's bundles
    are still served; once one device is revoked the newcomer enrols. (Unbounded, one device more
    made every FETCH_BUNDLES for the account fail: the answer could not be encoded.)"""
    relay = start_relay(**LOOSE)
    account, asker_account = new_account(relay.data_dir, "m.many"), new_account(relay.data_dir, "m.asker")

    async def scenario() -> None:
        asker = await TestDevice(relay).join(asker_account)
        devices = []
        for _ in range(MAX_DEVICES_PER_ACCOUNT):
            devices.append(await TestDevice(relay).join(account))
            await devices[-1].disconnect()
        newcomer = TestDevice(relay)
        newcomer.certify(account)
        before = await _snapshot(relay)
        refused = await _enrol(newcomer)
        assert refused.status == Status.BAD_REQUEST and str(MAX_DEVICES_PER_ACCOUNT) in refused.reason
        assert await _snapshot(relay) == before
        fetched = await asker.request(FrameType.FETCH_BUNDLES, FetchBundles(account).encode())
        assert fetched.status == Status.OK
        assert {b.device_id for b in Bundles.parse(fetched.body).devices} == {d.device_id for d in devices}
        assert (await _enrol(devices[0])).status == Status.OK
        assert admin(relay.data_dir, "device", "revoke", str(devices[0].device_id)).returncode == 0
        assert (await _enrol(newcomer)).status == Status.OK
        assert (await newcomer.reconnect()).status == Status.OK
        await newcomer.disconnect()
        await asker.disconnect()

    run(scenario())


def test_a_certificate_naming_an_account_id_no_frame_carries_is_refused_cleanly(
    start_relay: RelayFactory,
) -> None:
    """Test that a certificate the authority's key signed naming an account id with a control
    character (NUL, which PostgreSQL cannot hold, a newline, an escape) is refused as naming no
    account of this relay (NOT_FOUND), not as the relay's own failure, logging no traceback and
    storing nothing."""
    relay = start_relay(**LOOSE)

    async def scenario() -> None:
        before = await _snapshot(relay)
        lines_before = len(relay.output)
        for account_id in ("fu\x00zzer", "al\nice", "\x1b[2J", "al\x85ice"):
            device = TestDevice(relay)
            device.certify(account_id)
            response = await _enrol(device)
            assert response.status == Status.NOT_FOUND, (account_id, response.reason)
        assert await _snapshot(relay) == before
        relay.stop()
        assert not [line for line in relay.output[lines_before:] if "Traceback" in line or "ERROR" in line]

    run(scenario())
