"""Sealed sender: what the relay can and cannot see, and what the recipient checks."""

from __future__ import annotations

import pytest

from app.base.errors import (
    CertificateError,
    CryptoError,
    DecryptionError,
    EnvelopeIdMismatchError,
    LocalProtocolError,
    RemoteProtocolError,
)
from app.base.limits import MAX_SEALED_BYTES
from app.crypto.certificate import DeviceCertificate
from app.crypto.keys import IdentityKeyPair
from app.crypto.sealed import seal, unseal
from app.crypto.session import MessageKind, SessionMessage
from tests.support.sessions import SeededRandom

NOW = 1_800_000_000
LATER = NOW + 3600
ENVELOPE_ID = bytes(range(16))


@pytest.fixture
def random() -> SeededRandom:
    return SeededRandom(b"sealed")


@pytest.fixture
def issuer(random: SeededRandom) -> IdentityKeyPair:
    return IdentityKeyPair.generate(random)


@pytest.fixture
def alice(random: SeededRandom) -> IdentityKeyPair:
    return IdentityKeyPair.generate(random)


@pytest.fixture
def bob(random: SeededRandom) -> IdentityKeyPair:
    return IdentityKeyPair.generate(random)


def _certificate(
    issuer: IdentityKeyPair, who: IdentityKeyPair, account: str = "a.ivanova"
) -> DeviceCertificate:
    return DeviceCertificate.issue(
        issuer, account_id=account, device_id=3, identity_key=who.public, expires_at=LATER
    )


def _seal(
    alice: IdentityKeyPair, certificate: DeviceCertificate, bob: IdentityKeyPair, random: SeededRandom
) -> bytes:
    message = SessionMessage(MessageKind.RATCHET, b"ratchet bytes")
    return seal(
        sender=alice,
        certificate=certificate,
        recipient_identity=bob.public,
        envelope_id=ENVELOPE_ID,
        message=message,
        random=random,
    )


def test_recipient_learns_sender_and_message(
    alice: IdentityKeyPair, bob: IdentityKeyPair, issuer: IdentityKeyPair, random: SeededRandom
) -> None:
    """Test that unsealing returns the sender's certificate and the session message."""
    sealed = _seal(alice, _certificate(issuer, alice), bob, random)
    opened = unseal(
        recipient=bob, untrusted=sealed, envelope_id=ENVELOPE_ID, trust_root=issuer.public, now=NOW
    )
    assert opened.sender.account_id == "a.ivanova"
    assert opened.sender.identity_key == alice.public
    assert opened.message == SessionMessage(MessageKind.RATCHET, b"ratchet bytes")


def test_relay_sees_nothing_that_names_the_sender(
    alice: IdentityKeyPair, bob: IdentityKeyPair, issuer: IdentityKeyPair, random: SeededRandom
) -> None:
    """Test that the sealed bytes contain neither the sender's key, account id, certificate nor message."""
    certificate = _certificate(issuer, alice)
    sealed = _seal(alice, certificate, bob, random)
    for secret in (alice.public, alice.dh.public, b"a.ivanova", certificate.signature, b"ratchet bytes"):
        assert secret not in sealed


def test_only_the_recipient_can_unseal(
    alice: IdentityKeyPair, bob: IdentityKeyPair, issuer: IdentityKeyPair, random: SeededRandom
) -> None:
    """Test that another device cannot open an envelope addressed to Bob."""
    sealed = _seal(alice, _certificate(issuer, alice), bob, random)
    eve = IdentityKeyPair.generate(random)
    with pytest.raises(DecryptionError):
        unseal(recipient=eve, untrusted=sealed, envelope_id=ENVELOPE_ID, trust_root=issuer.public, now=NOW)


def test_flipping_any_byte_of_a_sealed_envelope_is_refused(
    alice: IdentityKeyPair, bob: IdentityKeyPair, issuer: IdentityKeyPair, random: SeededRandom
) -> None:
    """Test that every one-byte change of a sealed envelope is refused."""
    sealed = _seal(alice, _certificate(issuer, alice), bob, random)
    for index in range(len(sealed)):
        tampered = sealed[:index] + bytes((sealed[index] ^ 0x01,)) + sealed[index + 1 :]
        with pytest.raises((CryptoError, RemoteProtocolError)):
            unseal(
                recipient=bob, untrusted=tampered, envelope_id=ENVELOPE_ID, trust_root=issuer.public, now=NOW
            )


def test_certificate_from_another_issuer_is_refused(
    alice: IdentityKeyPair, bob: IdentityKeyPair, issuer: IdentityKeyPair, random: SeededRandom
) -> None:
    """Test that a certificate not signed by the organisation's trust root is refused."""
    rogue = IdentityKeyPair.generate(random)
    sealed = _seal(alice, _certificate(rogue, alice), bob, random)
    with pytest.raises(CertificateError):
        unseal(recipient=bob, untrusted=sealed, envelope_id=ENVELOPE_ID, trust_root=issuer.public, now=NOW)


def test_expired_certificate_is_refused(
    alice: IdentityKeyPair, bob: IdentityKeyPair, issuer: IdentityKeyPair, random: SeededRandom
) -> None:
    """Test that a certificate past its expiry is refused."""
    sealed = _seal(alice, _certificate(issuer, alice), bob, random)
    with pytest.raises(CertificateError):
        unseal(recipient=bob, untrusted=sealed, envelope_id=ENVELOPE_ID, trust_root=issuer.public, now=LATER)


def test_stolen_certificate_does_not_let_another_key_impersonate(
    alice: IdentityKeyPair, bob: IdentityKeyPair, issuer: IdentityKeyPair, random: SeededRandom
) -> None:
    """Test that Mallory sealing with her own key and Alice's certificate is refused."""
    mallory = IdentityKeyPair.generate(random)
    sealed = _seal(mallory, _certificate(issuer, alice), bob, random)
    with pytest.raises(CertificateError):
        unseal(recipient=bob, untrusted=sealed, envelope_id=ENVELOPE_ID, trust_root=issuer.public, now=NOW)


def test_certificate_round_trips_and_refuses_trailing_bytes(
    issuer: IdentityKeyPair, alice: IdentityKeyPair
) -> None:
    """Test that a certificate parses back to itself and extra bytes after it are refused."""
    certificate = _certificate(issuer, alice, account="Ким Минсу")
    assert DeviceCertificate.parse(certificate.encode()) == certificate
    with pytest.raises(RemoteProtocolError):
        DeviceCertificate.parse(certificate.encode() + b"\x00")


def _sealed_of_length(
    length: int, alice: IdentityKeyPair, bob: IdentityKeyPair, issuer: IdentityKeyPair, random: SeededRandom
) -> tuple[bytes, SessionMessage]:
    """A genuine envelope of exactly ``length`` bytes (its session message sized to fit), and that message."""
    certificate = _certificate(issuer, alice)
    overhead = len(_seal(alice, certificate, bob, random)) - len(b"ratchet bytes")
    message = SessionMessage(MessageKind.RATCHET, bytes(length - overhead))
    sealed = seal(
        sender=alice,
        certificate=certificate,
        recipient_identity=bob.public,
        envelope_id=ENVELOPE_ID,
        message=message,
        random=random,
    )
    if len(sealed) != length:
        raise AssertionError(f"made {len(sealed)} bytes, not {length}")
    return sealed, message


def test_envelope_of_exactly_the_size_limit_opens(
    alice: IdentityKeyPair, bob: IdentityKeyPair, issuer: IdentityKeyPair, random: SeededRandom
) -> None:
    """Test that a sealed envelope of MAX_SEALED_BYTES is opened."""
    sealed, message = _sealed_of_length(MAX_SEALED_BYTES, alice, bob, issuer, random)
    assert (
        unseal(
            recipient=bob, untrusted=sealed, envelope_id=ENVELOPE_ID, trust_root=issuer.public, now=NOW
        ).message
        == message
    )


def test_envelope_one_byte_over_the_size_limit_is_malformed(
    alice: IdentityKeyPair, bob: IdentityKeyPair, issuer: IdentityKeyPair, random: SeededRandom
) -> None:
    """Test that a genuine sealed envelope of MAX_SEALED_BYTES + 1 is refused as too large."""
    sealed, _ = _sealed_of_length(MAX_SEALED_BYTES + 1, alice, bob, issuer, random)
    with pytest.raises(RemoteProtocolError, match="exceeds the limit"):
        unseal(recipient=bob, untrusted=sealed, envelope_id=ENVELOPE_ID, trust_root=issuer.public, now=NOW)


def test_an_envelope_id_other_than_the_sealed_one_is_refused_naming_the_sender(
    alice: IdentityKeyPair, bob: IdentityKeyPair, issuer: IdentityKeyPair, random: SeededRandom
) -> None:
    """Test that sealed bytes put under another envelope id are refused, with the sender they name."""
    sealed = _seal(alice, _certificate(issuer, alice), bob, random)
    other = bytes(reversed(ENVELOPE_ID))
    with pytest.raises(EnvelopeIdMismatchError) as refused:
        unseal(recipient=bob, untrusted=sealed, envelope_id=other, trust_root=issuer.public, now=NOW)
    assert (refused.value.account_id, refused.value.device_id) == ("a.ivanova", 3)
    assert unseal(recipient=bob, untrusted=sealed, envelope_id=ENVELOPE_ID, trust_root=issuer.public, now=NOW)


def test_sealing_refuses_an_envelope_id_of_another_length(
    alice: IdentityKeyPair, bob: IdentityKeyPair, issuer: IdentityKeyPair, random: SeededRandom
) -> None:
    """Test that an envelope id that is not 16 bytes is a programming error, caught before sealing."""
    message = SessionMessage(MessageKind.RATCHET, b"ratchet bytes")
    with pytest.raises(LocalProtocolError):
        seal(
            sender=alice,
            certificate=_certificate(issuer, alice),
            recipient_identity=bob.public,
            envelope_id=ENVELOPE_ID[:15],
            message=message,
            random=random,
        )
