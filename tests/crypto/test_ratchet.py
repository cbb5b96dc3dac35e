"""The Double Ratchet's store of skipped message keys and its bound (app/crypto/ratchet.py).

Whole sessions (round trips, any order, refusals) are tested in test_session.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from app.base.errors import DecryptionError
from app.base.limits import MAX_SKIP, MAX_STORED_SKIPPED_KEYS
from app.crypto.ratchet import parse_message
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
