"""The enrolment-code derivations and the authority's request formats (app/protocol)."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from nacl.utils import random

from app.base.errors import RemoteProtocolError, UnsupportedVersionError
from app.crypto.keys import IdentityKeyPair
from app.crypto.primitives import SIGN_CONTEXT_CERTIFY_REQUEST
from app.protocol import authority, enrolment
from tests.support import vectors

CODE = "ABCD-EFGH-IJKL-MNOP-QRST-UVWX"
CODE_ID = "b041fee2ba1ab47416905ab2bf7131c36b17498fd098f4f10af356668164d7a5"
CODE_KEY = "6de80edfe8ed06fd85f0af0508b531a66bfb15d93cb3ecf290263b957eed55bc"
DOC = vectors.DOC.read_text(encoding="utf-8")


def test_the_derivations_match_their_fixed_vectors() -> None:
    """Test that code_id and code_key of a fixed code are the published values."""
    assert enrolment.code_id(CODE).hex() == CODE_ID
    assert enrolment.code_key(CODE).hex() == CODE_KEY


def test_the_vectors_are_keyed_blake2b_as_documented() -> None:
    """Test that the vectors equal an independent keyed BLAKE2b-256 (Python's hashlib) of the
    normalised code with the documented keys, and that PROTOCOL.md quotes keys and vectors."""
    for key, expected in (
        (b"enclave:v1:authority-code-id", CODE_ID),
        (b"enclave:v1:authority-code-key", CODE_KEY),
    ):
        assert hashlib.blake2b(b"ABCDEFGHIJKLMNOPQRSTUVWX", key=key, digest_size=32).hexdigest() == expected
        assert f"`{key.decode()}` ({len(key)} bytes)" in DOC
        assert expected in DOC
    assert (enrolment.CODE_ID_KEY, enrolment.CODE_KEY_KEY) == (
        b"enclave:v1:authority-code-id",
        b"enclave:v1:authority-code-key",
    )
    assert f'`"{authority.MAC_CONTEXT_CERTIFY.decode()}"`' in DOC
    assert f"at most {authority.MAX_CERTIFY_BYTES} bytes, `MAX_CERTIFY_BYTES`" in DOC
    assert f"at most {authority.MAX_RENEW_BYTES} bytes, `MAX_RENEW_BYTES`" in DOC


def test_case_spaces_and_dashes_do_not_matter() -> None:
    """Test that a code typed in lower case, with spaces or without dashes derives the same values."""
    for typed in (
        "abcd-efgh-ijkl-mnop-qrst-uvwx",
        "ABCD EFGH IJKL MNOP QRST UVWX",
        "ABCDEFGHIJKLMNOPQRSTUVWX",
    ):
        assert enrolment.code_id(typed) == enrolment.code_id(CODE)
        assert enrolment.code_key(typed) == enrolment.code_key(CODE)


def test_a_new_code_has_the_shown_format() -> None:
    """Test that a new code is six groups of four base32 characters and codes differ."""
    code = enrolment.new_enrolment_code(random)
    groups = code.split("-")
    assert [len(g) for g in groups] == [4] * 6
    assert all(c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567" for c in "".join(groups))
    assert enrolment.new_enrolment_code(random) != code


def test_a_certify_request_round_trips_and_verifies() -> None:
    """Test that a certify request parses back to itself, its MAC verifies under its code's
    code_key only, and its signature under its identity key."""
    identity = IdentityKeyPair.generate(random)
    request = authority.CertifyRequest.make(code=CODE, identity=identity)
    parsed = authority.CertifyRequest.parse(request.encode())
    assert parsed == request
    assert parsed.mac_valid(enrolment.code_key(CODE))
    assert not parsed.mac_valid(enrolment.code_key(enrolment.new_enrolment_code(random)))
    parsed.verify_possession()


def test_a_certify_request_has_the_documented_bytes() -> None:
    """Test that the body is version 1, code_id, IK, HMAC-SHA256(code_key, "enclave:v1:certify" ||
    IK) and an Ed25519 signature by IK over the context and all preceding bytes, 161 bytes in all,
    checked with Python's hmac and an independent Ed25519 verifier."""
    identity = IdentityKeyPair.generate(random)
    body = authority.CertifyRequest.make(code=CODE, identity=identity).encode()
    assert len(body) == authority.MAX_CERTIFY_BYTES == 161
    assert body[0] == 1
    assert body[1:33].hex() == CODE_ID
    assert body[33:65] == identity.public
    expected_mac = hmac.new(bytes.fromhex(CODE_KEY), b"enclave:v1:certify" + identity.public, "sha256")
    assert body[65:97] == expected_mac.digest()
    signed = SIGN_CONTEXT_CERTIFY_REQUEST + body[:97]
    Ed25519PublicKey.from_public_bytes(identity.public).verify(body[97:], signed)


def test_a_renew_request_round_trips() -> None:
    """Test that a renew request parses back to itself and verifies under its signer only."""
    identity = IdentityKeyPair.generate(random)
    request = authority.RenewRequest.make(certificate=b"c" * 40, timestamp=1_700_000_000, identity=identity)
    parsed = authority.RenewRequest.parse(request.encode())
    assert parsed == request
    parsed.verify(identity.public)


@pytest.mark.parametrize("cut", [0, 1, 33, 100])
def test_truncated_or_padded_requests_are_refused(cut: int) -> None:
    """Test that a truncated or over-long certify request is a RemoteProtocolError, and a renew
    request of version 2 an UnsupportedVersionError."""
    body = authority.CertifyRequest.make(code=CODE, identity=IdentityKeyPair.generate(random)).encode()
    with pytest.raises(RemoteProtocolError):
        authority.CertifyRequest.parse(body[:cut])
    with pytest.raises(RemoteProtocolError):
        authority.CertifyRequest.parse(body + b"\0")
    with pytest.raises(UnsupportedVersionError):
        authority.RenewRequest.parse(b"\x02" + body[1:])
