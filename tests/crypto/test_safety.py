"""Safety numbers: Signal's published vectors, symmetry, and the QR comparison."""

from __future__ import annotations

import pytest

from app.base.errors import RemoteProtocolError, UnsupportedVersionError
from app.crypto.keys import IdentityKeyPair
from app.crypto.safety import SafetyNumber, fingerprint
from tests.support.sessions import SeededRandom

# libsignal's fingerprint test vectors (rust/protocol/src/fingerprint.rs): 33-byte keys
# with their type prefix, 5200 iterations, phone numbers as stable identifiers.
ALICE_KEY = bytes.fromhex("0506863bc66d02b40d27b8d49ca7c09e9239236f9d7d25d6fcca5ce13c7064d868")
BOB_KEY = bytes.fromhex("05f781b6fb32fed9ba1cf2de978d4d5da28dc34046ae814402b5c0dbd96fda907b")
DISPLAYABLE = "300354477692869396892869876765458257569162576843440918079131"
ALICE_FINGERPRINT_PREFIX = bytes.fromhex("1e301a0353dce3dbe7684cb8336e85136cdc0ee96219494ada305d62a7bd61df")
BOB_FINGERPRINT_PREFIX = bytes.fromhex("d62cbf73a11592015b6b9f1682ac306fea3aaf3885b84d12bca631e9d4fb3a4d")


def test_numeric_fingerprint_matches_libsignal_vectors() -> None:
    """Test that our safety number equals libsignal's for its published keys, on both sides."""
    alice = fingerprint(ALICE_KEY, b"+14152222222")
    bob = fingerprint(BOB_KEY, b"+14153333333")
    assert alice[:32] == ALICE_FINGERPRINT_PREFIX
    assert bob[:32] == BOB_FINGERPRINT_PREFIX
    assert SafetyNumber(local=alice, remote=bob).digits == DISPLAYABLE
    assert SafetyNumber(local=bob, remote=alice).digits == DISPLAYABLE


@pytest.fixture
def parties() -> tuple[IdentityKeyPair, IdentityKeyPair, IdentityKeyPair]:
    random = SeededRandom(b"safety")
    return (
        IdentityKeyPair.generate(random),
        IdentityKeyPair.generate(random),
        IdentityKeyPair.generate(random),
    )


def _number(local: IdentityKeyPair, local_id: str, remote: IdentityKeyPair, remote_id: str) -> SafetyNumber:
    return SafetyNumber.compute(
        local_identity=local.public, local_id=local_id, remote_identity=remote.public, remote_id=remote_id
    )


def test_both_sides_see_the_same_digits_and_their_scans_match(
    parties: tuple[IdentityKeyPair, IdentityKeyPair, IdentityKeyPair],
) -> None:
    """Test that Alice and Bob compute the same 60 digits and accept each other's QR code."""
    alice, bob, _ = parties
    mine, theirs = _number(alice, "alice", bob, "bob"), _number(bob, "bob", alice, "alice")
    assert mine.digits == theirs.digits
    assert len(mine.digits) == 60 and mine.digits.isdigit()
    assert len(mine.groups()) == 12
    assert mine.matches_scan(theirs.qr_payload())
    assert theirs.matches_scan(mine.qr_payload())
    assert not mine.matches_scan(mine.qr_payload())


def test_a_key_in_the_middle_changes_the_number_and_fails_the_scan(
    parties: tuple[IdentityKeyPair, IdentityKeyPair, IdentityKeyPair],
) -> None:
    """Test that if Alice holds Mallory's key for Bob, the digits differ and the scan fails."""
    alice, bob, mallory = parties
    alice_view, bob_view = _number(alice, "alice", mallory, "bob"), _number(bob, "bob", alice, "alice")
    assert alice_view.digits != bob_view.digits
    assert not alice_view.matches_scan(bob_view.qr_payload())
    assert not bob_view.matches_scan(alice_view.qr_payload())


def test_malformed_qr_payload_is_refused(
    parties: tuple[IdentityKeyPair, IdentityKeyPair, IdentityKeyPair],
) -> None:
    """Test that a QR code that is not a safety payload raises the protocol error."""
    alice, bob, _ = parties
    number = _number(alice, "alice", bob, "bob")
    payload = number.qr_payload()
    with pytest.raises(RemoteProtocolError):
        number.matches_scan(payload[:-1])
    with pytest.raises(RemoteProtocolError):
        number.matches_scan(payload + b"\x00")
    with pytest.raises(UnsupportedVersionError):
        number.matches_scan(b"\x09" + payload[1:])
