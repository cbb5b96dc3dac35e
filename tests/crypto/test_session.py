"""X3DH and the Double Ratchet, end to end between two in-memory devices."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.base.errors import (
    CryptoError,
    DecryptionError,
    DuplicateMessageError,
    InvalidSignatureError,
    LocalProtocolError,
    RemoteProtocolError,
    TooManySkippedMessagesError,
)
from app.base.limits import MAX_SKIP
from app.crypto.keys import PreKeyBundle
from app.crypto.ratchet import RatchetState, _open, kdf_ck, parse_message
from app.crypto.session import MessageKind, PreKeyMessage, Session, SessionMessage, initiate_session
from tests.support.sessions import Device, SeededRandom, SessionPair


def test_messages_round_trip_in_both_directions() -> None:
    """Test that alternating and repeated messages decrypt on both sides."""
    pair = SessionPair.establish()
    for i in range(5):
        assert pair.a_to_b(f"a{i}".encode()) == f"a{i}".encode()
        assert pair.a_to_b(f"a{i}'".encode()) == f"a{i}'".encode()
        assert pair.b_to_a(f"b{i}".encode()) == f"b{i}".encode()


def test_initiator_wraps_messages_in_prekey_messages_until_the_first_reply() -> None:
    """Test that Alice's messages carry X3DH data until Bob answers, and not after."""
    random = SeededRandom(b"wrap")
    alice_device, bob_device = Device.create(random), Device.create(random)
    alice = initiate_session(alice_device.identity, bob_device.bundle(), random)
    first, second = alice.encrypt(b"one"), alice.encrypt(b"two")
    assert first.kind == second.kind == MessageKind.PREKEY
    bob, plaintext = bob_device.accept(first, random)
    assert plaintext == b"one"
    assert bob.decrypt(second, random) == b"two"
    alice.decrypt(bob.encrypt(b"ack"), random)
    assert alice.encrypt(b"three").kind == MessageKind.RATCHET


def test_a_lost_first_message_does_not_break_the_session() -> None:
    """Test that Bob can start the session from Alice's second message when the first is lost."""
    random = SeededRandom(b"lost")
    alice_device, bob_device = Device.create(random), Device.create(random)
    alice = initiate_session(alice_device.identity, bob_device.bundle(), random)
    alice.encrypt(b"lost on the way")
    bob, plaintext = bob_device.accept(alice.encrypt(b"second"), random)
    assert plaintext == b"second"
    assert alice.decrypt(bob.encrypt(b"reply"), random) == b"reply"


def test_session_without_one_time_prekey_works() -> None:
    """Test that X3DH without a one-time prekey (the directory ran out) still agrees."""
    random = SeededRandom(b"no-opk")
    alice_device, bob_device = Device.create(random), Device.create(random, prekeys=0)
    spk = bob_device.signed_prekey
    bundle = PreKeyBundle(bob_device.identity.public, spk.key_id, spk.keypair.public, spk.signature)
    alice = initiate_session(alice_device.identity, bundle, random)
    bob, plaintext = bob_device.accept(alice.encrypt(b"hi"), random)
    assert plaintext == b"hi"
    assert alice.decrypt(bob.encrypt(b"both ways"), random) == b"both ways"


def test_bundle_with_a_forged_prekey_signature_is_refused() -> None:
    """Test that a directory answer whose signed prekey is not signed by the identity is refused."""
    random = SeededRandom(b"forged")
    alice_device, bob_device, mallory = Device.create(random), Device.create(random), Device.create(random)
    genuine = bob_device.bundle()
    forged = PreKeyBundle(
        genuine.identity_key,
        genuine.signed_prekey_id,
        mallory.signed_prekey.keypair.public,
        mallory.signed_prekey.signature,
        genuine.one_time_prekey_id,
        genuine.one_time_prekey,
    )
    with pytest.raises(InvalidSignatureError):
        initiate_session(alice_device.identity, forged, random)


def test_replayed_prekey_message_is_refused_once_its_one_time_prekey_is_spent() -> None:
    """Test that replaying the first message after Bob spent the one-time prekey is refused."""
    random = SeededRandom(b"replay-x3dh")
    alice_device, bob_device = Device.create(random), Device.create(random)
    alice = initiate_session(alice_device.identity, bob_device.bundle(), random)
    first = alice.encrypt(b"once")
    bob_device.accept(first, random)
    with pytest.raises(DecryptionError):
        bob_device.accept(first, random)


@settings(max_examples=40, deadline=None)
@given(st.permutations(range(12)))
def test_messages_delivered_in_any_order_all_decrypt(order: list[int]) -> None:
    """Test that twelve messages of one chain decrypt whatever order they arrive in."""
    pair = SessionPair.establish()
    sent = [pair.alice.encrypt(f"m{i}".encode()) for i in range(12)]
    for i in order:
        assert pair.bob.decrypt(sent[i], pair.random) == f"m{i}".encode()


@settings(max_examples=40, deadline=None)
@given(st.permutations(range(9)))
def test_messages_across_dh_ratchet_steps_decrypt_in_any_order(order: list[int]) -> None:
    """Test that messages held back from three sending chains, each ended by a reply, decrypt in any order.

    Bob reads the first message of each chain before he replies, so every reply moves Alice
    to a new ratchet key and Bob must keep the rest of the chain he leaves (the "skip up to
    pn" step); a reply to nothing new would leave Alice on one chain.
    """
    pair = SessionPair.establish()
    held = []
    for chain in range(3):
        assert pair.a_to_b(f"c{chain} opens".encode()) == f"c{chain} opens".encode()
        held.extend(pair.alice.encrypt(f"c{chain}m{i}".encode()) for i in range(3))
        pair.b_to_a(f"turn {chain}".encode())
    assert len({parse_message(message.body)[0].dh for message in held}) == 3
    for i in order:
        assert pair.bob.decrypt(held[i], pair.random) == f"c{i // 3}m{i % 3}".encode()


def test_message_beyond_the_skip_bound_is_refused_and_the_session_survives() -> None:
    """Test that a message more than MAX_SKIP ahead is refused and later messages still work."""
    pair = SessionPair.establish()
    first = pair.alice.encrypt(b"first")
    for _ in range(MAX_SKIP):
        pair.alice.encrypt(b"lost")
    too_far = pair.alice.encrypt(b"too far")
    before = pair.bob.to_bytes()
    with pytest.raises(TooManySkippedMessagesError):
        pair.bob.decrypt(too_far, pair.random)
    assert pair.bob.to_bytes() == before
    assert pair.bob.decrypt(first, pair.random) == b"first"


def test_message_exactly_at_the_skip_bound_decrypts() -> None:
    """Test that skipping exactly MAX_SKIP messages is still allowed."""
    pair = SessionPair.establish()
    for _ in range(MAX_SKIP):
        pair.alice.encrypt(b"lost")
    assert pair.a_to_b(b"at the bound") == b"at the bound"


def test_replayed_message_is_refused() -> None:
    """Test that a message decrypted once is refused the second time."""
    pair = SessionPair.establish()
    message = pair.alice.encrypt(b"once")
    pair.bob.decrypt(message, pair.random)
    with pytest.raises(DuplicateMessageError):
        pair.bob.decrypt(message, pair.random)


def test_replayed_out_of_order_message_is_refused() -> None:
    """Test that a message decrypted from a skipped key is refused when it comes again."""
    pair = SessionPair.establish()
    first, second = pair.alice.encrypt(b"1"), pair.alice.encrypt(b"2")
    pair.bob.decrypt(second, pair.random)
    pair.bob.decrypt(first, pair.random)
    assert pair.bob.ratchet.skipped == {}
    with pytest.raises(DuplicateMessageError):
        pair.bob.decrypt(first, pair.random)


def test_replay_from_an_older_chain_is_refused() -> None:
    """Test that a message of a finished sending chain is refused when replayed."""
    pair = SessionPair.establish()
    old = pair.alice.encrypt(b"old chain")
    pair.bob.decrypt(old, pair.random)
    pair.b_to_a(b"new turn")
    pair.a_to_b(b"new chain")
    with pytest.raises(DecryptionError):
        pair.bob.decrypt(old, pair.random)


def _flipped(data: bytes, index: int, mask: int) -> bytes:
    return data[:index] + bytes((data[index] ^ mask,)) + data[index + 1 :]


@pytest.mark.parametrize("kind", [MessageKind.RATCHET, MessageKind.PREKEY])
def test_flipping_any_single_byte_of_a_message_is_refused(kind: MessageKind) -> None:
    """Test that every one-byte change of a message is refused and leaves the session intact."""
    random = SeededRandom(b"flip")
    alice_device, bob_device = Device.create(random), Device.create(random)
    alice = initiate_session(alice_device.identity, bob_device.bundle(), random)
    bob, _ = bob_device.accept(alice.encrypt(b"start"), random)
    if kind == MessageKind.RATCHET:
        alice.decrypt(bob.encrypt(b"reply"), random)
    message = alice.encrypt(b"a short message worth protecting")
    assert message.kind == kind
    state = bob.to_bytes()
    for index in range(len(message.body)):
        for mask in (0x01, 0x80, 0xFF):
            tampered = SessionMessage(kind, _flipped(message.body, index, mask))
            with pytest.raises((CryptoError, RemoteProtocolError)):
                bob.decrypt(tampered, random)
    assert bob.to_bytes() == state
    assert bob.decrypt(message, random) == b"a short message worth protecting"


def test_message_keys_are_gone_from_the_state_after_use() -> None:
    """Test forward secrecy: after message N, no key in the saved state decrypts message N.

    The test knows message N's real key (from a copy of Alice's state) and checks it is
    not in Bob's serialised state; then it tries every 32 bytes of that state, at every
    offset, as a message key and as a chain key, against message N.
    """
    pair = SessionPair.establish()
    pair.a_to_b(b"earlier")
    chain_key = pair.alice.ratchet.cks
    assert chain_key is not None
    message_key, _ = kdf_ck(chain_key)
    message = pair.alice.encrypt(b"message N")
    later = pair.alice.encrypt(b"message N+1")
    assert pair.bob.decrypt(message, pair.random) == b"message N"
    state = pair.bob.to_bytes()
    assert message_key not in state
    assert chain_key not in state

    _, raw_header, ciphertext = parse_message(message.body)
    for offset in range(len(state) - 31):
        window = state[offset : offset + 32]
        for candidate in (window, kdf_ck(window)[0]):
            with pytest.raises(DecryptionError):
                _open(candidate, pair.bob.associated_data, raw_header, ciphertext)
    assert pair.bob.decrypt(later, pair.random) == b"message N+1"


def test_stolen_state_cannot_read_messages_after_the_next_dh_step() -> None:
    """Test post-compromise security: a copy of Alice's state stops working once she ratchets anew."""
    pair = SessionPair.establish()
    pair.a_to_b(b"before the theft")
    stolen = Session.from_bytes(pair.alice.to_bytes())

    from_bob = pair.bob.encrypt(b"read by the thief too")
    assert stolen.decrypt(from_bob, SeededRandom(b"thief")) == b"read by the thief too"
    assert pair.alice.decrypt(from_bob, pair.random) == b"read by the thief too"

    healed = pair.alice.encrypt(b"after healing")
    with pytest.raises(DecryptionError):
        stolen.decrypt(healed, SeededRandom(b"thief"))
    assert pair.bob.decrypt(healed, pair.random) == b"after healing"

    reply = pair.bob.encrypt(b"bob after healing")
    with pytest.raises(DecryptionError):
        stolen.decrypt(reply, SeededRandom(b"thief"))


def test_responder_cannot_send_before_receiving() -> None:
    """Test that a fresh responder state refuses to encrypt (it has no sending chain yet)."""
    random = SeededRandom(b"resp")
    bob = Device.create(random)
    state = RatchetState.responder(b"\x00" * 32, bob.signed_prekey.keypair)
    with pytest.raises(LocalProtocolError):
        state.encrypt(b"too early", b"")


def test_same_seed_gives_the_same_bytes() -> None:
    """Test that all randomness is injected: two runs from one seed give identical sessions."""
    first, second = SessionPair.establish(b"same"), SessionPair.establish(b"same")
    assert first.alice.encrypt(b"x").body == second.alice.encrypt(b"x").body
    assert first.bob.to_bytes() == second.bob.to_bytes()


def test_prekey_message_for_another_base_key_asks_for_a_new_session() -> None:
    """Test that a PreKeyMessage starting a different session is refused by the existing one."""
    pair = SessionPair.establish()
    random = SeededRandom(b"other")
    other = Device.create(random)
    stranger = initiate_session(other.identity, Device.create(random).bundle(), random)
    message = stranger.encrypt(b"x")
    parsed = PreKeyMessage.parse(message.body)
    assert parsed.base_key != pair.bob.base_key
    with pytest.raises(DecryptionError):
        pair.bob.decrypt(message, pair.random)


def test_a_first_chain_message_replayed_after_the_responder_moved_on_is_a_duplicate() -> None:
    """Test that Alice's prekey message, replayed once Bob is on a later chain of hers, is refused as a
    replay (not a new session, not a mere failure) and leaves his state as it was, while one still
    missing from that chain (its key skipped and kept) decrypts."""
    random = SeededRandom(b"first-chain")
    alice_device, bob_device = Device.create(random), Device.create(random)
    alice = initiate_session(alice_device.identity, bob_device.bundle(), random)
    first, late = alice.encrypt(b"one"), alice.encrypt(b"late")
    bob, _ = bob_device.accept(first, random)
    alice.decrypt(bob.encrypt(b"reply"), random)
    assert bob.decrypt(alice.encrypt(b"next chain"), random) == b"next chain"
    state = bob.to_bytes()
    with pytest.raises(DuplicateMessageError):
        bob.decrypt(first, random)
    assert bob.to_bytes() == state
    assert bob.decrypt(late, random) == b"late"
