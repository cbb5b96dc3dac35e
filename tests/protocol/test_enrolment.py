"""The enrolment-code derivations and the authority's request formats (app/protocol)."""

from __future__ import annotations

import hashlib

import pytest
from nacl.utils import random

from app.base.errors import RemoteProtocolError, UnsupportedVersionError
from app.base.limits import MAX_ACCOUNT_ID_BYTES
from app.crypto.keys import IdentityKeyPair
from app.protocol import authority, enrolment
from tests.support import vectors

CODE = "ABCD-EFGH-IJKL-MNOP-QRST-UVWX"
CODE_ID = "b041fee2ba1ab47416905ab2bf7131c36b17498fd098f4f10af356668164d7a5"
CODE_KEY = "6de80edfe8ed06fd85f0af0508b531a66bfb15d93cb3ecf290263b957eed55bc"
RELAY_PROOF = "c6bf20b7c65b6d697812bb75893063e824792f43b2049eb5ff62fcfb2035c695"
DOC = vectors.DOC.read_text(encoding="utf-8")


def test_the_derivations_match_their_fixed_vectors() -> None:
    """Test that code_id, code_key and relay_proof of a fixed code are the published values."""
    assert enrolment.code_id(CODE).hex() == CODE_ID
    assert enrolment.code_key(CODE).hex() == CODE_KEY
    assert enrolment.relay_proof(CODE).hex() == RELAY_PROOF


def test_the_vectors_are_keyed_blake2b_as_documented() -> None:
    """Test that the vectors equal an independent keyed BLAKE2b-256 (Python's hashlib) of the
    normalised code with the documented keys, and that PROTOCOL.md quotes keys and vectors."""
    for key, expected in (
        (b"enclave:v1:authority-code-id", CODE_ID),
        (b"enclave:v1:authority-code-key", CODE_KEY),
        (b"enclave:v1:relay-code", RELAY_PROOF),
    ):
        assert hashlib.blake2b(b"ABCDEFGHIJKLMNOPQRSTUVWX", key=key, digest_size=32).hexdigest() == expected
        assert f"`{key.decode()}` ({len(key)} bytes)" in DOC
        assert expected in DOC
    assert (enrolment.CODE_ID_KEY, enrolment.CODE_KEY_KEY, enrolment.RELAY_PROOF_KEY) == (
        b"enclave:v1:authority-code-id",
        b"enclave:v1:authority-code-key",
        b"enclave:v1:relay-code",
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
    """Test that a certify request parses back to itself, its MAC verifies under code_key only,
    and its signature under its identity key."""
    identity = IdentityKeyPair.generate(random)
    request = authority.CertifyRequest.make(code=CODE, account_id="a.ivanova", device_id=3, identity=identity)
    parsed = authority.CertifyRequest.parse(request.encode())
    assert parsed == request
    assert parsed.mac_valid(enrolment.code_key(CODE))
    assert not parsed.mac_valid(enrolment.relay_proof(CODE))
    parsed.verify_possession()


def test_a_renew_request_round_trips() -> None:
    """Test that a renew request parses back to itself and verifies under its signer only."""
    identity = IdentityKeyPair.generate(random)
    request = authority.RenewRequest.make(certificate=b"c" * 40, timestamp=1_700_000_000, identity=identity)
    parsed = authority.RenewRequest.parse(request.encode())
    assert parsed == request
    parsed.verify(identity.public)


@pytest.mark.parametrize("cut", [0, 1, 33, 100])
def test_truncated_or_padded_requests_are_refused(cut: int) -> None:
    """Test that a truncated or over-long certify request is a RemoteProtocolError."""
    body = authority.CertifyRequest.make(
        code=CODE,
        account_id="a" * MAX_ACCOUNT_ID_BYTES,
        device_id=1,
        identity=IdentityKeyPair.generate(random),
    ).encode()
    assert len(body) == authority.MAX_CERTIFY_BYTES
    with pytest.raises(RemoteProtocolError):
        authority.CertifyRequest.parse(body[:cut])
    with pytest.raises(RemoteProtocolError):
        authority.CertifyRequest.parse(body + b"\0")
    with pytest.raises(UnsupportedVersionError):
        authority.RenewRequest.parse(b"\x02" + body[1:])
