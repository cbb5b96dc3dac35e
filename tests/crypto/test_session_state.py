"""Saved session state: it round-trips, and damaged or foreign state is refused by type."""

from __future__ import annotations

import hashlib

import pytest

from app.base.errors import CorruptStateError, UnsupportedStateVersionError
from app.crypto.session import STATE_CHECKSUM_BYTES, Session
from tests.support.sessions import SessionPair


@pytest.fixture
def state() -> bytes:
    """Bob's state mid-conversation, holding skipped keys and a pending chain."""
    pair = SessionPair.establish(b"state")
    pair.alice.encrypt(b"skipped 0")
    pair.alice.encrypt(b"skipped 1")
    pair.a_to_b(b"arrived")
    return pair.bob.to_bytes()


def _with_checksum(body: bytes) -> bytes:
    return body + hashlib.blake2b(body, digest_size=STATE_CHECKSUM_BYTES).digest()


def test_state_round_trips_and_keeps_working() -> None:
    """Test that a session saved and loaded at every step carries on the conversation."""
    pair = SessionPair.establish(b"reload")
    pair.alice.encrypt(b"skipped")
    for i in range(6):
        pair.alice = Session.from_bytes(pair.alice.to_bytes())
        pair.bob = Session.from_bytes(pair.bob.to_bytes())
        assert pair.a_to_b(f"to bob {i}".encode()) == f"to bob {i}".encode()
        assert pair.b_to_a(f"to alice {i}".encode()) == f"to alice {i}".encode()
    assert len(pair.bob.ratchet.skipped) == 1


def test_state_of_an_unknown_version_is_refused(state: bytes) -> None:
    """Test that state from a newer Enclave raises UnsupportedStateVersionError, marked unknown."""
    future = _with_checksum(state[:4] + b"\x02" + state[5:-STATE_CHECKSUM_BYTES])
    with pytest.raises(UnsupportedStateVersionError) as raised:
        Session.from_bytes(future)
    assert raised.value.version == 2
    assert raised.value.known is False


def test_every_corrupted_byte_is_detected(state: bytes) -> None:
    """Test that changing any single byte of saved state raises a typed state error."""
    for index in range(len(state)):
        corrupted = state[:index] + bytes((state[index] ^ 0x10,)) + state[index + 1 :]
        with pytest.raises((CorruptStateError, UnsupportedStateVersionError)):
            Session.from_bytes(corrupted)


@pytest.mark.parametrize("cut", [0, 3, 5, 40, -1])
def test_truncated_state_is_refused(state: bytes, cut: int) -> None:
    """Test that a cut-off state raises CorruptStateError."""
    with pytest.raises(CorruptStateError):
        Session.from_bytes(state[:cut])


def test_structurally_broken_state_with_a_valid_checksum_is_refused(state: bytes) -> None:
    """Test that state whose checksum matches but whose fields do not parse is refused as corrupt."""
    body = state[:-STATE_CHECKSUM_BYTES]
    with pytest.raises(CorruptStateError):
        Session.from_bytes(_with_checksum(body + b"\x00"))
    with pytest.raises(CorruptStateError):
        Session.from_bytes(_with_checksum(body[:5] + b"\xe0" + body[6:]))
