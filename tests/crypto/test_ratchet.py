"""The Double Ratchet's limits (app/crypto/ratchet.py): the store of skipped message keys and its
bound, the message parser's sizes and version, the sending chain's length.

Whole sessions (round trips, any order, refusals) are tested in test_session.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from app.base.errors import (
    DecryptionError,
    LocalProtocolError,
    RemoteProtocolError,
    UnsupportedVersionError,
)
from app.base.limits import (
    AEAD_TAG_BYTES,
    MAX_CHAIN_LENGTH,
    MAX_PLAINTEXT_BYTES,
    MAX_RATCHET_MESSAGE_BYTES,
    MAX_SKIP,
    MAX_STORED_SKIPPED_KEYS,
)
from app.crypto.ratchet import HEADER_BYTES, RATCHET_VERSION, parse_message
from app.crypto.session import MessageKind, Session, SessionMessage
from tests.support.sessions import SessionPair

KEPT_CHAINS = MAX_STORED_SKIPPED_KEYS // MAX_SKIP
"""How many chains' worth of MAX_SKIP skipped keys fit under the bound (2)."""
CHAINS = KEPT_CHAINS + 1
"""One chain more than fits, so that exactly the first chain's keys must go."""


@dataclass
class Overflowed:
    """Bob after Alice sent CHAINS chains, each losing MAX_SKIP messages before one arrived."""

    pair: SessionPair
    lost: list[list[SessionMessage]]
    """The lost messages of each chain, oldest chain first."""
    stored_after_each_chain: list[int]


def _slot(message: SessionMessage) -> tuple[bytes, int]:
    """The skipped-key slot a ratchet message needs: (its sender's ratchet key, its number)."""
    if message.kind != MessageKind.RATCHET:
        raise ValueError("not a ratchet message")
    header, _, _ = parse_message(message.body)
    return header.dh, header.number


@pytest.fixture
def overflowed() -> Overflowed:
    """A session whose receiver was made to skip more keys than it may store, in CHAINS steps."""
    pair = SessionPair.establish(b"overflow")
    lost: list[list[SessionMessage]] = []
    stored = []
    for chain in range(CHAINS):
        lost.append([pair.alice.encrypt(f"lost {chain}.{i}".encode()) for i in range(MAX_SKIP)])
        if pair.a_to_b(f"arrived {chain}".encode()) != f"arrived {chain}".encode():
            raise AssertionError("the message after the gap did not decrypt")
        stored.append(len(pair.bob.ratchet.skipped))
        pair.b_to_a(f"turn {chain}".encode())
    return Overflowed(pair, lost, stored)


def test_stored_skipped_keys_stop_at_their_bound(overflowed: Overflowed) -> None:
    """Test that skipped keys pile up to MAX_STORED_SKIPPED_KEYS and stay there when more are skipped."""
    assert overflowed.stored_after_each_chain == [MAX_SKIP * (n + 1) for n in range(KEPT_CHAINS)] + [
        MAX_STORED_SKIPPED_KEYS
    ]


def test_the_oldest_skipped_keys_are_the_ones_dropped(overflowed: Overflowed) -> None:
    """Test that past the bound exactly the newest keys stay, oldest first, and the first chain's are gone."""
    expected = [_slot(message) for chain in overflowed.lost[-KEPT_CHAINS:] for message in chain]
    assert list(overflowed.pair.bob.ratchet.skipped) == expected


def test_a_message_whose_key_was_dropped_fails_and_kept_ones_decrypt(overflowed: Overflowed) -> None:
    """Test that a lost message of the dropped chain is refused; the oldest and newest kept ones decrypt."""
    pair, lost = overflowed.pair, overflowed.lost
    for dropped in (lost[0][0], lost[0][-1]):
        with pytest.raises(DecryptionError):
            pair.bob.decrypt(dropped, pair.random)
    assert pair.bob.decrypt(lost[1][0], pair.random) == b"lost 1.0"
    assert pair.bob.decrypt(lost[-1][-1], pair.random) == f"lost {CHAINS - 1}.{MAX_SKIP - 1}".encode()
    assert len(pair.bob.ratchet.skipped) == MAX_STORED_SKIPPED_KEYS - 2


def test_a_session_at_the_skipped_key_bound_saves_and_loads(overflowed: Overflowed) -> None:
    """Test that the state after keys were dropped loads again (loading refuses more than the bound)."""
    reloaded = Session.from_bytes(overflowed.pair.bob.to_bytes())
    assert reloaded.ratchet.skipped == overflowed.pair.bob.ratchet.skipped


def test_one_key_past_the_bound_drops_exactly_the_oldest_one(overflowed: Overflowed) -> None:
    """Test that skipping one more key at the bound keeps the count and drops only the oldest key."""
    pair = overflowed.pair
    before = list(pair.bob.ratchet.skipped)
    lost = pair.alice.encrypt(b"one more lost")
    assert pair.a_to_b(b"after one gap") == b"after one gap"
    assert list(pair.bob.ratchet.skipped) == [*before[1:], _slot(lost)]


def _message(length: int, version: int = RATCHET_VERSION) -> bytes:
    return bytes((version,)) + bytes(length - 1)


@pytest.mark.parametrize("length", [HEADER_BYTES + AEAD_TAG_BYTES, MAX_RATCHET_MESSAGE_BYTES])
def test_parser_takes_messages_at_both_size_limits(length: int) -> None:
    """Test that a message of exactly a header and a tag, or of exactly the size limit, parses."""
    header, raw_header, ciphertext = parse_message(_message(length))
    assert (header.number, len(raw_header), len(ciphertext)) == (0, HEADER_BYTES, length - HEADER_BYTES)


@pytest.mark.parametrize("length", [HEADER_BYTES + AEAD_TAG_BYTES - 1, MAX_RATCHET_MESSAGE_BYTES + 1])
def test_parser_refuses_messages_one_byte_past_a_size_limit(length: int) -> None:
    """Test that a message one byte short of a header and a tag, or one byte over the limit, is refused."""
    with pytest.raises(RemoteProtocolError) as raised:
        parse_message(_message(length))
    assert not isinstance(raised.value, UnsupportedVersionError)


@pytest.mark.parametrize("length", [1, HEADER_BYTES + AEAD_TAG_BYTES])
def test_parser_refuses_an_unknown_version_as_such_whatever_the_length(length: int) -> None:
    """Test that a newer version is UnsupportedVersionError (unknown), for short and full messages."""
    with pytest.raises(UnsupportedVersionError) as raised:
        parse_message(_message(length, version=RATCHET_VERSION + 1))
    assert raised.value.known is False


def test_a_sending_chain_stops_before_its_counter_would_pass_the_limit() -> None:
    """Test that the message numbered MAX_CHAIN_LENGTH - 1 is the last a chain sends."""
    pair = SessionPair.establish(b"long chain")
    pair.alice.ratchet.ns = MAX_CHAIN_LENGTH - 1  # as if that many were sent; sending them takes hours
    last = pair.alice.encrypt(b"last")
    assert _slot(last)[1] == MAX_CHAIN_LENGTH - 1
    with pytest.raises(LocalProtocolError):
        pair.alice.encrypt(b"one too many")


def test_the_largest_plaintext_round_trips_and_one_byte_more_is_refused() -> None:
    """Test that a plaintext of exactly MAX_PLAINTEXT_BYTES is sent and read, and a longer one refused."""
    pair = SessionPair.establish(b"large")
    largest = bytes(MAX_PLAINTEXT_BYTES)
    assert pair.a_to_b(largest) == largest
    with pytest.raises(LocalProtocolError):
        pair.alice.encrypt(largest + b"!")
