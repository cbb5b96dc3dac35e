"""PreKeys: one-time prekey refills and the signed prekey's rotation, against an in-memory relay.

The rotation tests move the bench's injected clock by hand; one test drives it through
a real relay (``RelayProcess``) with two real clients.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.base.errors import OfflineError, SignedPreKeyGoneError
from app.crypto.keys import PreKeyBundle
from app.crypto.sealed import unseal
from app.protocol.frames import Status
from app.protocol.lifetime import ENVELOPE_LIFETIME_SECONDS
from app.services import prekeys
from app.services.client import Client as Engine
from app.services.events import MessageArrived, MessageStatusChanged
from app.services.prekeys import (
    GRACE_SECONDS,
    REFILL_ONE_TIME_PREKEYS,
    ROTATION_SECONDS,
    SIGNED_PREKEY_ID,
    PreKeys,
)
from server.config import ServerConfig
from storage.errors import NotFoundError
from storage.records import MessageStatus, PreKeyKind
from tests.storage.harness import FakeClock
from tests.support.clients import (
    WAIT_SECONDS,
    Client,
    enrolled_client,
    import_organisation,
    open_client,
    until,
)
from tests.support.deployment import deployment
from tests.support.devices import Bench, Device, introduce, open_session
from tests.support.ownauthority import OwnAuthority
from tests.support.prekeyrelay import InMemoryPreKeyRelay
from tests.support.relay import RelayProcess, new_account

ENROLLED = 4
"""One-time prekeys the bench's enrolment made (ids 1..4)."""
LONG_CERTIFICATE_SECONDS = 120 * 24 * 3600
"""Certificates that outlive every clock jump of these tests."""


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_800_000_000.0)


@pytest.fixture
def bench(tmp_path: Path, clock: FakeClock) -> Iterator[Bench]:
    opened = Bench(tmp_path, clock)
    yield opened
    opened.close()


@pytest.fixture
def alice(bench: Bench) -> Device:
    return bench.device("alice", one_time_prekeys=ENROLLED, certificate_seconds=LONG_CERTIFICATE_SECONDS)


@pytest.fixture
def bob(bench: Bench, alice: Device) -> Device:
    bob = bench.device("bob", certificate_seconds=LONG_CERTIFICATE_SECONDS)
    introduce(alice, bob)
    return bob


@pytest.fixture
def relay(bob: Device) -> InMemoryPreKeyRelay:
    return InMemoryPreKeyRelay(bob.identity.public)


def _part(bench: Bench, device: Device, relay: object, *, check_seconds: float = 3600.0) -> PreKeys:
    return PreKeys(
        device.store,
        credentials=device.credentials,
        relay=relay,  # type: ignore[arg-type]  # of the link: only its ``call``
        tasks=device.tasks,
        clock=bench.clock,
        random=bench.random,
        check_seconds=check_seconds,
    )


def _one_time_ids(device: Device) -> list[int]:
    return [k.key_id for k in device.store.prekeys.list(PreKeyKind.ONE_TIME)]


def _current_id(device: Device) -> int:
    current = device.store.signed_prekeys.current()
    assert current is not None
    return current.key_id


def test_refills_never_reuse_an_id_even_when_the_upload_fails(bench: Bench, alice: Device) -> None:
    """Test that each refill continues the id counter, and a failed upload does not block the next one."""
    part = _part(bench, alice, alice.relay)
    for _ in range(2):
        with pytest.raises(OfflineError):
            bench.run(part.refill())
    expected = list(range(1, ENROLLED + 2 * REFILL_ONE_TIME_PREKEYS + 1))
    assert _one_time_ids(alice) == expected
    assert prekeys.next_one_time_id(alice.store) == expected[-1] + 1


def test_the_signed_prekey_comes_back_from_the_store_as_it_was_made(alice: Device) -> None:
    """Test that the stored signed prekey is the one enrolment made, and a bundle built from it verifies."""
    stored = prekeys.signed_prekey(alice.store, SIGNED_PREKEY_ID)
    made = alice.signed_prekey
    assert (stored.key_id, stored.keypair, stored.signature) == (made.key_id, made.keypair, made.signature)
    PreKeyBundle(alice.identity.public, stored.key_id, stored.keypair.public, stored.signature).verify()


def test_the_grace_period_outlasts_every_envelope_the_relay_can_still_deliver() -> None:
    """Test that a retired key is kept longer than a message envelope lives and the relay keeps one."""
    assert GRACE_SECONDS > ENVELOPE_LIFETIME_SECONDS
    assert ServerConfig(Path("unused")).retention_seconds < GRACE_SECONDS
    assert ROTATION_SECONDS == 7 * 24 * 3600


def test_no_rotation_before_seven_days(
    bench: Bench, clock: FakeClock, bob: Device, relay: InMemoryPreKeyRelay
) -> None:
    """Test that a signed prekey younger than the rotation period stays current and nothing is uploaded."""
    part = _part(bench, bob, relay)
    clock.advance(ROTATION_SECONDS - 1)
    bench.run(part.rotate())
    assert relay.asked == 0
    assert _current_id(bob) == SIGNED_PREKEY_ID
    assert bob.store.signed_prekeys.unpublished() is None


def test_after_seven_days_a_new_signed_prekey_is_uploaded_then_made_current(
    bench: Bench, clock: FakeClock, bob: Device, relay: InMemoryPreKeyRelay
) -> None:
    """Test that a week-old signed prekey is replaced by a new one the relay accepted, the old one kept."""
    part = _part(bench, bob, relay)
    clock.advance(ROTATION_SECONDS)
    bench.run(part.rotate())

    [uploaded] = relay.signed
    assert uploaded.key_id == SIGNED_PREKEY_ID + 1
    current = bob.store.signed_prekeys.current()
    assert current is not None and current.key_id == uploaded.key_id
    assert prekeys.signed_prekey(bob.store, current.key_id).keypair.public == uploaded.public
    assert current.published_at == clock()
    old = bob.store.signed_prekeys.get(SIGNED_PREKEY_ID)
    assert old.retired_at == clock() and old.private_key == bob.signed_prekey.keypair.private

    clock.advance(ROTATION_SECONDS - 1)
    bench.run(part.rotate())
    assert len(relay.signed) == 1, "the new key's week starts when the relay accepted it"


@pytest.mark.parametrize("failure", ["offline", "refused"])
def test_a_failed_upload_keeps_the_current_key_and_offers_the_same_new_one_again(
    bench: Bench, clock: FakeClock, bob: Device, relay: InMemoryPreKeyRelay, failure: str
) -> None:
    """Test that after a failed upload the old key stays current, and a retry uploads the key made then."""
    part = _part(bench, bob, relay)
    if failure == "offline":
        relay.online = False
    else:
        relay.refusal = Status.INTERNAL_ERROR
    clock.advance(ROTATION_SECONDS + 60)
    bench.run(part.rotate())

    assert relay.signed == []
    assert _current_id(bob) == SIGNED_PREKEY_ID
    waiting = bob.store.signed_prekeys.unpublished()
    assert waiting is not None and waiting.key_id == SIGNED_PREKEY_ID + 1
    assert bob.store.signed_prekeys.get(SIGNED_PREKEY_ID).retired_at is None

    relay.online, relay.refusal = True, None
    bench.run(part.rotate())  # what the next connect does
    [uploaded] = relay.signed
    assert uploaded.key_id == waiting.key_id
    assert uploaded.public == prekeys.signed_prekey(bob.store, waiting.key_id).keypair.public
    assert _current_id(bob) == waiting.key_id
    assert bob.store.signed_prekeys.unpublished() is None


def test_the_retired_key_is_deleted_once_its_grace_period_is_over(
    bench: Bench, clock: FakeClock, bob: Device, relay: InMemoryPreKeyRelay
) -> None:
    """Test that the previous signed prekey is kept through its grace period and deleted after it."""
    part = _part(bench, bob, relay)
    clock.advance(ROTATION_SECONDS)
    bench.run(part.rotate())
    retired_at = bob.store.signed_prekeys.get(SIGNED_PREKEY_ID).retired_at
    assert retired_at is not None

    clock.now = retired_at + GRACE_SECONDS - 1
    relay.online = False  # deleting needs no relay
    bench.run(part.rotate())
    assert bob.store.signed_prekeys.get(SIGNED_PREKEY_ID).private_key == bob.signed_prekey.keypair.private

    clock.now = retired_at + GRACE_SECONDS + 1
    bench.run(part.rotate())
    with pytest.raises(NotFoundError):
        bob.store.signed_prekeys.get(SIGNED_PREKEY_ID)


def test_rotation_never_runs_twice_at_once(
    bench: Bench, clock: FakeClock, bob: Device, relay: InMemoryPreKeyRelay
) -> None:
    """Test that a rotation asked for while one waits for the relay does nothing: one key, one upload."""
    part = _part(bench, bob, relay)
    clock.advance(ROTATION_SECONDS)
    relay.hold()
    part.online()
    bench.until(lambda: relay.asked == 1, "the first upload reached the relay")
    part.online()
    bench.run(part.rotate())
    relay.release()
    bench.until(lambda: bob.store.signed_prekeys.unpublished() is None, "the rotation finished")

    assert relay.asked == 1 and len(relay.signed) == 1
    assert _current_id(bob) == SIGNED_PREKEY_ID + 1
    assert bob.store.signed_prekeys.next_id() == SIGNED_PREKEY_ID + 2


def test_the_schedule_keeps_checking_the_injected_clock_while_open(
    bench: Bench, clock: FakeClock, bob: Device, relay: InMemoryPreKeyRelay
) -> None:
    """Test that after the first check at connect, later checks rotate on time with no connect between."""
    part = _part(bench, bob, relay, check_seconds=0.01)
    part.online()
    bench.until(
        lambda: bob.store.signed_prekeys.current() is not None and relay.asked == 0, "the first check"
    )
    clock.advance(ROTATION_SECONDS)
    bench.until(lambda: len(relay.signed) == 1, "a timed check rotated")
    clock.advance(ROTATION_SECONDS)
    bench.until(lambda: len(relay.signed) == 2, "the next week's check rotated again")
    assert _current_id(bob) == SIGNED_PREKEY_ID + 2


def test_a_first_message_sealed_to_the_retired_key_opens_within_grace_and_not_after(
    bench: Bench, clock: FakeClock, alice: Device, bob: Device, relay: InMemoryPreKeyRelay
) -> None:
    """Test that a first message naming the previous signed prekey opens in its grace, and is dropped after.

    After the grace the message names a deleted key: opening it is ``SignedPreKeyGoneError``,
    and Receiving acks and drops it like any envelope that does not decrypt.
    """
    carol = bench.device("carol", certificate_seconds=LONG_CERTIFICATE_SECONDS)
    introduce(carol, bob)
    open_session(alice, bob, answered=False)  # both fetched Bob's bundle before he rotated
    open_session(carol, bob, answered=False)
    part = _part(bench, bob, relay)
    clock.advance(ROTATION_SECONDS)
    bench.run(part.rotate())
    assert _current_id(bob) == SIGNED_PREKEY_ID + 1

    bench.run(alice.sending.send_text(alice.direct(bob).id, "sealed to your old key"))
    bench.deliver(alice, bob)
    assert [e.message.body for e in bob.emitted(MessageArrived)] == ["sealed to your old key"]

    clock.advance(GRACE_SECONDS + 1)
    bench.run(part.rotate())
    with pytest.raises(NotFoundError):
        bob.store.signed_prekeys.get(SIGNED_PREKEY_ID)
    bench.run(carol.sending.send_text(carol.direct(bob).id, "too late"))
    [late] = bench.deliver(carol, bob)
    unsealed = unseal(
        recipient=bob.identity,
        untrusted=late.sealed,
        envelope_id=late.envelope_id,
        trust_root=bench.trust_root.public,
        now=int(clock()),
    )
    with pytest.raises(SignedPreKeyGoneError):
        bob.sessions.open(unsealed.sender, unsealed.message)
    assert [e.message.body for e in bob.emitted(MessageArrived)] == ["sealed to your old key"]
    assert late.envelope_id in bob.transport.acked and bob.store.seen.contains(late.envelope_id)
    assert bob.store.sessions.get("carol", 1) is None


def _signed_ids(client: Client) -> tuple[int | None, list[int]]:
    """(the current signed prekey's id, every signed prekey id still in the store) of a client."""

    def read(engine: Engine) -> tuple[int | None, list[int]]:
        current = engine.store.signed_prekeys.current()
        kept = []
        for key_id in range(1, engine.store.signed_prekeys.next_id()):
            with contextlib.suppress(NotFoundError):
                kept.append(engine.store.signed_prekeys.get(key_id).key_id)
        return (None if current is None else current.key_id), kept

    return client.enclave._run(read).result(WAIT_SECONDS)


def test_through_a_real_relay_a_message_sealed_before_rotation_opens_and_the_old_key_goes_after_grace(
    tmp_path: Path,
) -> None:
    """Test that Alice's first message, sealed to the bundle fetched before Bob rotated, opens; after grace
    Bob's old signed prekey is gone from his store and the relay hands out only keys he holds.

    Bob's clock runs more than five weeks ahead by the end: even with the 30 days' grace every
    sender's certificate gets, the newcomer's must outlive the run's 7-day certificates, so it
    comes from an enrolment authority of the test's that certifies for 60 days.
    """
    relay = RelayProcess(tmp_path / "relay").start()
    long_lived = OwnAuthority.start(tmp_path / "authority", "--certificate-days", "60")
    bob_clock = FakeClock(time.time())
    clients: list[Client] = []
    try:
        alice = enrolled_client(relay, tmp_path, "alice", "Alice Archer")
        clients.append(alice)
        new_account(relay.data_dir, "bob", "Bob Baker")
        bob = open_client(tmp_path / "bob", create=True, clock=bob_clock)
        clients.append(bob)
        import_organisation(bob, relay, tmp_path / "bob.config" / "enclave.toml")
        bob.enclave.enrol(None, None, deployment().code("bob")).result(WAIT_SECONDS)
        assert bob.enclave.wait_online(WAIT_SECONDS).result(WAIT_SECONDS + 5)
        assert _signed_ids(bob) == (SIGNED_PREKEY_ID, [SIGNED_PREKEY_ID])
        bob.close()
        clients.remove(bob)

        alice.enclave.add_contact("bob", "Bob Baker").result(WAIT_SECONDS)
        # Bob is away: Alice fetches his bundle (his first signed prekey) and seals to it.
        conversation = alice.enclave.start_conversation("bob").result(WAIT_SECONDS)
        alice.enclave.send_text(conversation.id, "sealed before you rotated").result(WAIT_SECONDS)
        alice.wait_for(MessageStatusChanged, lambda e: e.status is MessageStatus.SENT)

        # A week later Bob connects: he rotates at connect, and the waiting message opens.
        bob_clock.advance(ROTATION_SECONDS + 3600)
        bob = open_client(tmp_path / "bob", clock=bob_clock)
        clients.append(bob)
        arrived = bob.wait_for(MessageArrived)
        assert arrived.message.body == "sealed before you rotated"
        until(lambda: _signed_ids(bob)[0] == SIGNED_PREKEY_ID + 1, "Bob's new signed prekey is current")
        assert _signed_ids(bob) == (SIGNED_PREKEY_ID + 1, [SIGNED_PREKEY_ID, SIGNED_PREKEY_ID + 1])

        # After the grace period the next connect deletes the first key (and rotates again).
        bob.close()
        clients.remove(bob)
        bob_clock.advance(GRACE_SECONDS + 3600)
        bob = open_client(tmp_path / "bob", clock=bob_clock)
        clients.append(bob)
        until(lambda: SIGNED_PREKEY_ID not in _signed_ids(bob)[1], "Bob's first signed prekey was deleted")
        until(lambda: _signed_ids(bob)[0] == SIGNED_PREKEY_ID + 2, "Bob rotated again")

        # A newcomer's first message is sealed to what the relay hands out now: it opens.
        carol = enrolled_client(relay, tmp_path, "carol", "Carol Cole", authority=long_lived)
        clients.append(carol)
        carol.enclave.add_contact("bob", "Bob Baker").result(WAIT_SECONDS)
        to_bob = carol.enclave.start_conversation("bob").result(WAIT_SECONDS)
        carol.enclave.send_text(to_bob.id, "hello from the current key").result(WAIT_SECONDS)
        assert bob.wait_for(MessageArrived).message.body == "hello from the current key"
    finally:
        for client in clients:
            client.close()
        long_lived.stop()
        relay.stop()
