"""POST /v1/certify against a real authority over TLS: a good code certifies a new device of its
account under an id the authority draws; every refusal changes nothing and leaves a code that
should still work working."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from nacl.utils import random

from app.crypto.certificate import DeviceCertificate
from app.crypto.keys import IdentityKeyPair
from app.crypto.primitives import SIGN_CONTEXT_CERTIFY_REQUEST
from app.protocol import enrolment
from app.protocol.authority import MAX_CERTIFY_BYTES, CertifyRequest
from authority.store import MAX_DEVICE_ID, AuthorityStore
from tests.support.authority import AuthorityProcess, Organisation, issue_code

OK, BAD_REQUEST, FORBIDDEN, CONFLICT, TOO_LARGE = 200, 400, 403, 409, 413
CODE_REFUSED = b"the enrolment code was refused; ask your admin for a new one"


def _certify(authority: AuthorityProcess, request: CertifyRequest | bytes) -> tuple[int, bytes]:
    body = request if isinstance(request, bytes) else request.encode()
    return authority.client().post("/v1/certify", body)


def _request(code: str, identity: IdentityKeyPair | None = None) -> CertifyRequest:
    return CertifyRequest.make(code=code, identity=identity or IdentityKeyPair.generate(random))


def _certified(authority: AuthorityProcess, account: str, identity: IdentityKeyPair) -> DeviceCertificate:
    status, body = _certify(authority, _request(issue_code(authority.data_dir, account), identity))
    assert status == OK, body
    return DeviceCertificate.parse(body)


def test_a_good_code_gives_a_certificate_of_the_authority_key(
    authority: AuthorityProcess, organisation: Organisation
) -> None:
    """Test that a certify request with a fresh code is answered with a certificate that verifies
    against the authority's public key (authority.pub) and names the code's account, the device
    id the authority recorded and the identity key."""
    identity = IdentityKeyPair.generate(random)
    certificate = _certified(authority, "a.ivanova", identity)
    certificate.verify(trust_root=organisation.authority_public, now=int(time.time()))
    assert (certificate.account_id, certificate.identity_key) == ("a.ivanova", identity.public)
    _, devices = authority.rows()
    row = next(r for r in devices if r[0] == certificate.device_id)
    assert row[1:4] == ("a.ivanova", identity.public, 0)
    assert 7 * 86400 - 60 <= certificate.expires_at - time.time() <= 7 * 86400


def test_two_certifications_get_different_device_ids_of_the_codes_account(
    authority: AuthorityProcess,
) -> None:
    """Test that two devices of one account and one of another each get their own device id, all
    in 1..2^31-1, each certificate for the account of the code it used."""
    certificates = [
        _certified(authority, account, IdentityKeyPair.generate(random))
        for account in ("a.twice", "a.twice", "a.other")
    ]
    ids = [c.device_id for c in certificates]
    assert len(set(ids)) == 3
    assert all(1 <= device_id <= MAX_DEVICE_ID for device_id in ids)
    assert [c.account_id for c in certificates] == ["a.twice", "a.twice", "a.other"]


def test_an_identity_key_certified_once_is_refused_a_second_time(authority: AuthorityProcess) -> None:
    """Test that an identity key certified once is refused (409) with a second good code, of its
    own account or another, and that nothing is written: the code stays unspent."""
    identity = IdentityKeyPair.generate(random)
    _certified(authority, "k.once", identity)
    for account in ("k.once", "k.elsewhere"):
        code = issue_code(authority.data_dir, account)
        before = authority.rows()
        status, body = _certify(authority, _request(code, identity))
        assert (status, body) == (CONFLICT, b"this identity key is certified already; nothing was changed")
        assert authority.rows() == before
        assert _certify(authority, _request(code))[0] == OK


def test_a_spent_code_is_refused_and_changes_nothing(authority: AuthorityProcess) -> None:
    """Test that a code once used is refused (403) for any other key, with no row changed."""
    code = issue_code(authority.data_dir, "b.petrov")
    assert _certify(authority, _request(code))[0] == OK
    before = authority.rows()
    assert _certify(authority, _request(code)) == (FORBIDDEN, CODE_REFUSED)
    assert authority.rows() == before


def test_an_unknown_code_is_refused(authority: AuthorityProcess) -> None:
    """Test that a code the authority never issued is refused with the same answer as a spent one."""
    before = authority.rows()
    assert _certify(authority, _request(enrolment.new_enrolment_code(random))) == (FORBIDDEN, CODE_REFUSED)
    assert authority.rows() == before


def test_an_expired_code_is_refused(authority: AuthorityProcess) -> None:
    """Test that a code past its expiry is refused and stays unspent."""
    code = enrolment.new_enrolment_code(random)
    store = AuthorityStore.open(authority.data_dir)
    try:
        store.add_code(
            code_id=enrolment.code_id(code),
            code_key=enrolment.code_key(code),
            account_id="c.sidorov",
            expires_at=int(time.time()) - 1,
        )
    finally:
        store.close()
    before = authority.rows()
    assert _certify(authority, _request(code)) == (FORBIDDEN, CODE_REFUSED)
    assert authority.rows() == before


def _signed(code_id: bytes, mac: bytes, identity: IdentityKeyPair) -> CertifyRequest:
    """A request for ``identity``'s key with this code id and MAC, signed by it as a device signs."""
    unsigned = CertifyRequest(code_id, identity.public, mac, b"")
    signature = identity.sign(context=SIGN_CONTEXT_CERTIFY_REQUEST, message=unsigned.encode())
    return CertifyRequest(code_id, identity.public, mac, signature)


@pytest.mark.parametrize("fault", ["mac of another code", "zero mac", "mac for another key", "bad signature"])
def test_a_refused_request_leaves_the_code_working(authority: AuthorityProcess, fault: str) -> None:
    """Test that a request whose MAC is another code's, zero, or made for another identity key
    (403), or whose signature is not its key's (400), changes nothing, and the same code then
    certifies a device."""
    code = issue_code(authority.data_dir, "d.refused")
    good, identity = _request(code), IdentityKeyPair.generate(random)
    if fault == "mac of another code":
        other = _request(issue_code(authority.data_dir, "d.other"), identity)
        bad, expected = _signed(good.code_id, other.mac, identity), FORBIDDEN
    elif fault == "zero mac":
        bad, expected = _signed(good.code_id, bytes(32), identity), FORBIDDEN
    elif fault == "mac for another key":
        bad, expected = _signed(good.code_id, good.mac, identity), FORBIDDEN
    else:
        bad, expected = CertifyRequest(good.code_id, good.identity_key, good.mac, bytes(64)), BAD_REQUEST
    before = authority.rows()
    status, body = _certify(authority, bad)
    assert status == expected, body
    if expected == FORBIDDEN:
        assert body == CODE_REFUSED
    assert authority.rows() == before
    assert _certify(authority, good)[0] == OK


@pytest.mark.parametrize(
    ("name", "mangle"),
    [
        ("empty", lambda body: b""),
        ("truncated", lambda body: body[:-1]),
        ("version 2", lambda body: b"\x02" + body[1:]),
    ],
)
def test_malformed_bodies_are_400_and_change_nothing(
    authority: AuthorityProcess, name: str, mangle: Callable[[bytes], bytes]
) -> None:
    """Test that an empty, truncated or unknown-version body is 400, changes nothing, and the code
    it carried still works."""
    good = _request(issue_code(authority.data_dir, "e.malformed")).encode()
    before = authority.rows()
    status, body = _certify(authority, mangle(good))
    assert status == BAD_REQUEST, (name, body)
    assert authority.rows() == before
    assert _certify(authority, good)[0] == OK


def test_a_body_past_the_limit_is_413(authority: AuthorityProcess) -> None:
    """Test that a body longer than a certify request (every one is 161 bytes), even a good one
    with a byte after it, is refused unread (413), changing nothing; the code still works."""
    good = _request(issue_code(authority.data_dir, "e.too-long")).encode()
    before = authority.rows()
    for body in (good + b"\0", bytes(MAX_CERTIFY_BYTES + 1)):
        assert _certify(authority, body)[0] == TOO_LARGE
    assert authority.rows() == before
    assert _certify(authority, good)[0] == OK
