"""POST /v1/renew against a real authority, and certificates made with a relay's keys."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from nacl.utils import random

from app.base.errors import CertificateError
from app.crypto.certificate import DeviceCertificate
from app.crypto.keys import IdentityKeyPair
from app.protocol.authority import CertifyRequest, RenewRequest
from tests.support.authority import AuthorityProcess, Organisation, issue_code, run_admin
from tests.support.relay import RelayProcess

OK, FORBIDDEN = 200, 403
DAY = 86400


def _enrolled(authority: AuthorityProcess, account: str) -> tuple[IdentityKeyPair, bytes]:
    identity = IdentityKeyPair.generate(random)
    request = CertifyRequest.make(code=issue_code(authority.data_dir, account), identity=identity)
    status, certificate = authority.client().post("/v1/certify", request.encode())
    assert status == OK, certificate
    return identity, certificate


def _device_id(certificate: bytes) -> int:
    return DeviceCertificate.parse(certificate).device_id


def _renew(
    authority: AuthorityProcess, certificate: bytes, identity: IdentityKeyPair, at: float
) -> tuple[int, bytes]:
    request = RenewRequest.make(certificate=certificate, timestamp=int(at), identity=identity)
    return authority.client().post("/v1/renew", request.encode())


def test_a_certified_device_renews(authority: AuthorityProcess, organisation: Organisation) -> None:
    """Test that a device renews its certificate: a fresh one of the authority key for the same
    account, device and identity key."""
    identity, old = _enrolled(authority, "r.renews")
    status, body = _renew(authority, old, identity, time.time())
    assert status == OK, body
    fresh = DeviceCertificate.parse(body)
    fresh.verify(trust_root=organisation.authority_public, now=int(time.time()))
    before = DeviceCertificate.parse(old)
    assert (fresh.account_id, fresh.device_id, fresh.identity_key) == (
        before.account_id,
        before.device_id,
        before.identity_key,
    )
    assert fresh.expires_at >= before.expires_at


def test_a_revoked_device_renews_no_more(authority: AuthorityProcess) -> None:
    """Test that after enclave-admin authority revoke the device's renewal is refused."""
    identity, certificate = _enrolled(authority, "r.revoked")
    device = str(_device_id(certificate))
    revoked = run_admin(
        "authority", "revoke", "r.revoked", device, "--authority-data", str(authority.data_dir)
    )
    assert revoked.returncode == 0, revoked.stderr
    before = authority.rows()
    status, body = _renew(authority, certificate, identity, time.time())
    assert (status, body) == (FORBIDDEN, b"this device is revoked or not recorded; it may not renew")
    assert authority.rows() == before


@pytest.mark.parametrize("skew", [-301, 301])
def test_a_stale_or_future_timestamp_is_refused(authority: AuthorityProcess, skew: int) -> None:
    """Test that a renew request more than 300 s from the authority's clock is refused."""
    identity, certificate = _enrolled(authority, f"r.skew{abs(skew)}{'a' if skew < 0 else 'b'}")
    before = authority.rows()
    status, body = _renew(authority, certificate, identity, time.time() + skew)
    assert status == FORBIDDEN
    assert b"300 s" in body
    assert authority.rows() == before


def test_a_request_signed_by_another_key_is_refused(authority: AuthorityProcess) -> None:
    """Test that renewing someone's certificate without its identity key is refused."""
    _, certificate = _enrolled(authority, "r.stolen")
    before = authority.rows()
    status, _ = _renew(authority, certificate, IdentityKeyPair.generate(random), time.time())
    assert status == FORBIDDEN
    assert authority.rows() == before


def test_a_certificate_naming_another_accounts_device_is_refused(
    authority: AuthorityProcess, organisation: Organisation
) -> None:
    """Test that a certificate of the authority key for a recorded device id and identity key, but
    another account than the device's, does not renew (device ids are global; the account is checked)."""
    identity, certificate = _enrolled(authority, "r.owner")
    other = DeviceCertificate.issue(
        organisation.authority_key(),
        account_id="r.intruder",
        device_id=_device_id(certificate),
        identity_key=identity.public,
        expires_at=int(time.time()) + DAY,
    ).encode()
    before = authority.rows()
    status, body = _renew(authority, other, identity, time.time())
    assert (status, body) == (FORBIDDEN, b"this device is revoked or not recorded; it may not renew")
    assert authority.rows() == before


def test_renewal_within_and_past_the_grace(authority: AuthorityProcess, organisation: Organisation) -> None:
    """Test that a certificate of the authority expired a day ago renews, and one expired longer
    ago than the 30-day grace does not."""
    identity, certificate = _enrolled(authority, "r.grace")
    key, now, before = organisation.authority_key(), int(time.time()), authority.rows()
    for expired_days_ago, expected in ((1, OK), (31, FORBIDDEN)):
        old = DeviceCertificate.issue(
            key,
            account_id="r.grace",
            device_id=_device_id(certificate),
            identity_key=identity.public,
            expires_at=now - expired_days_ago * DAY,
        ).encode()
        assert _renew(authority, old, identity, now)[0] == expected
    assert DeviceCertificate.parse(certificate).identity_key == identity.public
    assert authority.rows() == before


def test_a_relays_keys_certify_nothing(
    authority: AuthorityProcess, organisation: Organisation, tmp_path: Path
) -> None:
    """Test that a certificate made with any 32-byte secret in a real relay's data folder taken as
    an Ed25519 seed does not verify against the authority key, and the authority refuses to renew it."""
    relay = RelayProcess(tmp_path / "relay").start()
    try:
        seeds = [
            p.read_bytes() for p in (tmp_path / "relay").iterdir() if p.is_file() and p.stat().st_size == 32
        ]
    finally:
        relay.stop()
    assert seeds
    identity, certificate = _enrolled(authority, "r.relay")
    before = authority.rows()
    for seed in seeds:
        relay_key = IdentityKeyPair.from_seed(seed)
        forged = DeviceCertificate.issue(
            relay_key,
            account_id="r.relay",
            device_id=_device_id(certificate),
            identity_key=identity.public,
            expires_at=int(time.time()) + DAY,
        )
        with pytest.raises(CertificateError):
            forged.verify(trust_root=organisation.authority_public, now=int(time.time()))
        assert relay_key.public != organisation.authority_public
        assert _renew(authority, forged.encode(), identity, time.time())[0] == FORBIDDEN
    assert authority.rows() == before


def test_a_code_s_name_and_department_are_in_every_certificate_of_its_device(
    authority: AuthorityProcess, organisation: Organisation
) -> None:
    """Test that a code issued with a name and department certifies its device under them, signed
    with the rest, and that a renewal carries them on; a bad name issues no code."""
    identity = IdentityKeyPair.generate(random)
    code = issue_code(authority.data_dir, "r.named", "--name", "Анна Иванова", "--department", "Финансы")
    status, body = authority.client().post(
        "/v1/certify", CertifyRequest.make(code=code, identity=identity).encode()
    )
    assert status == OK, body
    first = DeviceCertificate.parse(body)
    first.verify(trust_root=organisation.authority_public, now=int(time.time()))
    assert (first.display_name, first.department, first.version) == ("Анна Иванова", "Финансы", 2)
    status, renewed = _renew(authority, body, identity, time.time())
    assert status == OK, renewed
    assert (DeviceCertificate.parse(renewed).display_name, DeviceCertificate.parse(renewed).department) == (
        "Анна Иванова",
        "Финансы",
    )
    refused = run_admin(
        "authority", "code", "r.bad", "--authority-data", str(authority.data_dir), "--name", "A\x1bB"
    )
    assert refused.returncode == 1
    assert "the name holds the control character U+001B; no code was issued" in refused.stderr
