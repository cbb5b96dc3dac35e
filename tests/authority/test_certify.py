"""POST /v1/certify against a real authority over TLS: a good code certifies, every refusal
changes nothing and leaves a code that should still work working."""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable

import pytest
from nacl.utils import random

from app.crypto.certificate import DeviceCertificate
from app.crypto.keys import IdentityKeyPair
from app.crypto.primitives import SIGN_CONTEXT_CERTIFY_REQUEST
from app.protocol import enrolment
from app.protocol.authority import MAX_CERTIFY_BYTES, CertifyRequest
from authority.store import AuthorityStore
from tests.support.authority import AuthorityProcess, Organisation, issue_code

OK, BAD_REQUEST, FORBIDDEN, CONFLICT, TOO_LARGE = 200, 400, 403, 409, 413


def _certify(authority: AuthorityProcess, request: CertifyRequest | bytes) -> tuple[int, bytes]:
    body = request if isinstance(request, bytes) else request.encode()
    return authority.client().post("/v1/certify", body)


def _request(
    code: str, account: str, device_id: int = 1, identity: IdentityKeyPair | None = None
) -> CertifyRequest:
    identity = identity or IdentityKeyPair.generate(random)
    return CertifyRequest.make(code=code, account_id=account, device_id=device_id, identity=identity)


def test_a_good_code_gives_a_certificate_of_the_authority_key(
    authority: AuthorityProcess, organisation: Organisation
) -> None:
    """Test that a certify request with a fresh code is answered with a certificate that verifies
    against the authority's public key (authority.pub) and names the account, device and key."""
    code = issue_code(authority.data_dir, "a.ivanova")
    identity = IdentityKeyPair.generate(random)
    status, body = _certify(authority, _request(code, "a.ivanova", 7, identity))
    assert status == OK, body
    certificate = DeviceCertificate.parse(body)
    certificate.verify(trust_root=organisation.authority_public, now=int(time.time()))
    assert (certificate.account_id, certificate.device_id, certificate.identity_key) == (
        "a.ivanova",
        7,
        identity.public,
    )
    assert 7 * 86400 - 60 <= certificate.expires_at - time.time() <= 7 * 86400


def test_a_spent_code_is_refused_and_changes_nothing(authority: AuthorityProcess) -> None:
    """Test that a code once used is refused (403) for any device, with no row changed."""
    code = issue_code(authority.data_dir, "b.petrov")
    assert _certify(authority, _request(code, "b.petrov", 1))[0] == OK
    before = authority.rows()
    status, body = _certify(authority, _request(code, "b.petrov", 2))
    assert status == FORBIDDEN
    assert b"refused" in body
    assert authority.rows() == before


def test_an_unknown_code_is_refused(authority: AuthorityProcess) -> None:
    """Test that a code the authority never issued is refused with the same answer as a spent one."""
    before = authority.rows()
    status, body = _certify(authority, _request(enrolment.new_enrolment_code(random), "b.petrov", 3))
    assert (status, body) == (FORBIDDEN, b"the enrolment code was refused; ask your admin for a new one")
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
    assert _certify(authority, _request(code, "c.sidorov"))[0] == FORBIDDEN
    assert authority.rows() == before


def _signed(request: CertifyRequest, identity: IdentityKeyPair) -> CertifyRequest:
    """``request`` for ``identity``'s key, signed by it as a device signs (whatever else is wrong)."""
    unsigned = CertifyRequest(
        request.code_id, request.account_id, request.device_id, identity.public, request.mac, b""
    )
    signature = identity.sign(context=SIGN_CONTEXT_CERTIFY_REQUEST, message=unsigned.encode())
    return CertifyRequest(
        request.code_id, request.account_id, request.device_id, identity.public, request.mac, signature
    )


@pytest.mark.parametrize("fault", ["wrong account", "bad mac", "bad signature", "second key"])
def test_a_refused_request_leaves_the_code_working(authority: AuthorityProcess, fault: str) -> None:
    """Test that a request for another account, with a wrong MAC, a wrong identity-key signature,
    or for a device already bound to another key is refused, changes nothing, and the same code
    then certifies its own account's new device."""
    account = "d." + fault.replace(" ", "-")
    code = issue_code(authority.data_dir, account)
    good = _request(code, account, 2)
    if fault == "wrong account":
        bad, expected = _request(code, "someone.else", 2), FORBIDDEN
    elif fault == "bad mac":
        identity = IdentityKeyPair.generate(random)
        wrong = CertifyRequest(good.code_id, account, 2, identity.public, bytes(32), b"")
        bad, expected = _signed(wrong, identity), FORBIDDEN
    elif fault == "bad signature":
        fields = (good.code_id, good.account_id, good.device_id, good.identity_key, good.mac)
        bad, expected = CertifyRequest(*fields, bytes(64)), BAD_REQUEST
    else:
        assert _certify(authority, _request(issue_code(authority.data_dir, account), account, 1))[0] == OK
        bad, expected = _request(code, account, 1), CONFLICT
    before = authority.rows()
    status, body = _certify(authority, bad)
    assert status == expected, body
    assert authority.rows() == before
    assert _certify(authority, good)[0] == OK


@pytest.mark.parametrize(
    ("name", "mangle"),
    [
        ("empty", lambda body: b""),
        ("truncated", lambda body: body[:-1]),
        ("trailing byte", lambda body: body + b"\0"),
        ("version 2", lambda body: b"\x02" + body[1:]),
        ("empty account", lambda body: body[:33] + b"\0\0" + body[35 + len("e.malformed") :]),
    ],
)
def test_malformed_bodies_are_400_and_change_nothing(
    authority: AuthorityProcess, name: str, mangle: Callable[[bytes], bytes]
) -> None:
    """Test that an empty, truncated, over-long, unknown-version or empty-account body is 400,
    changes nothing, and the code it carried still works."""
    code = issue_code(authority.data_dir, "e.malformed")
    good = _request(code, "e.malformed", zlib.crc32(name.encode())).encode()
    before = authority.rows()
    status, body = _certify(authority, mangle(good))
    assert status == BAD_REQUEST, (name, body)
    assert authority.rows() == before
    assert _certify(authority, good)[0] == OK


def test_a_body_past_the_limit_is_413(authority: AuthorityProcess) -> None:
    """Test that a body longer than any certify request is refused unread (413)."""
    before = authority.rows()
    assert _certify(authority, bytes(MAX_CERTIFY_BYTES + 1))[0] == TOO_LARGE
    assert authority.rows() == before
