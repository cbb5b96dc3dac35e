"""The key log as a device follows it: keys the log does not hold are refused, the user's own
account is watched, a log that forks stops sending, and a colleague's head is compared.

The devices are the bench's (tests/support/devices.py): real stores and sessions, and a key
log served from memory with the real tree, proofs and signed heads (tests/support/benchlog.py).
tests/services/test_keylog_relay.py does the same against a real relay.
"""

from __future__ import annotations

import pytest

from app.base.errors import InvalidSignatureError, OfflineError, RemoteProtocolError
from app.services.errors import LogForkedError
from app.services.events import DeviceAddedToAccount, LogForked, MessageArrived, Problem
from storage.records import MessageStatus
from tests.support.benchlog import BenchLog
from tests.support.devices import Bench, Device, introduce, open_session
from tests.support.transport import InMemoryDirectory

UNLOGGED = "not in the organisation's key log"


def _problems(device: Device) -> list[str]:
    return [p.message for p in device.emitted(Problem)]


def test_a_colleague_device_the_log_does_not_hold_gets_no_message(bench: Bench) -> None:
    """Test that a device whose certificate the authority signed but the log does not hold is
    never written to: the message fails, no session is made, and the user is told why; a
    device the log holds is written to after the same one fetch."""
    directory = InMemoryDirectory()
    alice = bench.device("alice", directory=directory)
    hidden = bench.device("bob", logged=False)
    hidden.publish(directory)
    alice.store.contacts.upsert("bob", "Bob")

    message = bench.run(alice.sending.send_text(alice.direct(hidden).id, "for Bob's eyes"))

    assert alice.store.messages.get(message.id).status is MessageStatus.FAILED
    assert alice.store.sessions.devices("bob") == []
    assert any(UNLOGGED in p and "bob's device 1" in p for p in _problems(alice))
    assert alice.log.requests[0] == "/v1/log/head"

    carol = bench.device("carol")
    carol.publish(directory)
    alice.store.contacts.upsert("carol", "Carol")
    bench.run(alice.sending.send_text(alice.direct(carol).id, "for Carol"))
    assert alice.store.sessions.devices("carol") == [1]
    bench.deliver(alice, carol)
    assert [e.message.body for e in carol.emitted(MessageArrived)] == ["for Carol"]


def test_a_first_message_from_a_device_the_log_does_not_hold_is_refused(bench: Bench) -> None:
    """Test that a first message sealed by an unlogged device is dropped unread and acked, the
    user is told, and its sender's key is not recorded; a logged one from a new device arrives."""
    alice = bench.device("alice")
    hidden = bench.device("bob", logged=False)
    hidden.store.contacts.upsert("alice", "Alice")
    hidden.store.contacts.record_device_key("alice", 1, alice.identity.public)
    open_session(hidden, alice, answered=False)
    bench.run(hidden.sending.send_text(hidden.direct(alice).id, "trust me"))

    [envelope] = bench.deliver(hidden, alice)

    assert alice.emitted(MessageArrived) == []
    assert envelope.envelope_id in alice.transport.acked
    assert alice.store.contacts.device("bob", 1) is None
    assert any(UNLOGGED in p for p in _problems(alice))

    carol = bench.device("carol")
    carol.store.contacts.upsert("alice", "Alice")
    carol.store.contacts.record_device_key("alice", 1, alice.identity.public)
    open_session(carol, alice, answered=False)
    bench.run(carol.sending.send_text(carol.direct(alice).id, "logged and well"))
    bench.deliver(carol, alice)
    assert [e.message.body for e in alice.emitted(MessageArrived)] == ["logged and well"]


def test_a_device_added_to_the_users_own_account_is_shown_once(bench: Bench) -> None:
    """Test that a device added to this user's account after this one is told as soon as the log
    shows it, with when it was added, and only once; this device itself is not."""
    alice = bench.device("alice")
    bench.run(alice.transparency.sync())
    assert alice.emitted(DeviceAddedToAccount) == []

    stranger = bench.device("alice", 2)
    bench.run(alice.transparency.sync())
    bench.run(alice.transparency.sync())

    assert alice.emitted(DeviceAddedToAccount) == [
        DeviceAddedToAccount(stranger.device_id, int(bench.clock()))
    ]
    status = bench.run(alice.transparency.own_devices())
    assert [(b.device_id, b.revoked) for b in status.devices] == [(1, None), (2, None)]
    assert status.size == 2 and status.forked is None


def test_a_restarted_device_resumes_from_the_head_it_kept(bench: Bench) -> None:
    """Test that after a restart a device asks only for the entries after the head it accepted,
    and still knows every binding it replayed before."""
    alice = bench.device("alice")
    bench.device("bob")
    bench.run(alice.transparency.sync())
    alice = bench.reopen(alice)
    bench.device("carol")
    alice.log.requests.clear()

    bench.run(alice.transparency.sync())

    assert alice.log.requests == ["/v1/log/head", "/v1/log/entries?start=2&count=1"]
    assert alice.store.key_log.binding("bob", 1) is not None
    assert alice.store.key_log.binding("carol", 1) is not None


def test_a_log_rewritten_behind_the_device_stops_sending(bench: Bench) -> None:
    """Test that a head that does not extend the one accepted before is a fork: both heads are
    kept, the user is told, nothing more is sealed and a new message is refused."""
    alice = bench.device("alice")
    bob = bench.device("bob")
    introduce(alice, bob)
    open_session(alice, bob)
    bench.run(alice.transparency.sync())
    kept = alice.store.key_log.head()
    rewritten = bench.log.fork(keep=1)
    bench.device("mallory", log=rewritten)
    rewritten.add(bench.certify("bob", 2, b"\x07" * 32, 3600), int(bench.clock()))
    alice.log.entries[:] = rewritten.entries  # the relay now serves the rewritten log

    with pytest.raises(LogForkedError):
        bench.run(alice.transparency.sync())

    assert len(alice.emitted(LogForked)) == 1
    fork = alice.store.key_log.fork(bench.log.public)
    assert fork is not None and kept is not None and fork.kept_note == kept.note
    assert fork.other_note == bench.log.head()
    with pytest.raises(LogForkedError, match="tell security"):
        bench.run(alice.sending.send_text(alice.direct(bob).id, "not any more"))
    assert alice.store.outbox.due(float("inf")) == []


def test_a_colleagues_head_from_another_log_is_caught_by_the_message_that_carries_it(
    bench: Bench,
) -> None:
    """Test that when the relay shows two colleagues two logs under one key, the first message
    between them (which carries the sender's head) makes the recipient find the fork."""
    alice = bench.device("alice")
    other = bench.log.fork(keep=len(bench.log.entries))
    bob = bench.device("bob", log=other)
    bench.log.entries.append(other.entries[-1])  # Bob is in both logs
    bench.device("mallory", log=other)  # a device only the log Bob is shown holds
    bench.device("carol")  # and two that only Alice's holds, so hers is the longer
    bench.device("dave")
    introduce(alice, bob)
    open_session(bob, alice)
    bench.run(alice.transparency.sync())
    bench.run(bob.transparency.sync())

    bench.run(bob.sending.send_text(bob.direct(alice).id, "hello Alice"))
    bench.deliver(bob, alice)
    bench.until(lambda: bool(alice.emitted(LogForked)), "Alice found the fork")

    assert [e.message.body for e in alice.emitted(MessageArrived)] == ["hello Alice"]
    fork = alice.store.key_log.fork(bench.log.public)
    assert fork is not None and fork.other_note == other.head()
    with pytest.raises(LogForkedError):
        bench.run(alice.sending.send_text(alice.direct(bob).id, "hello Bob"))


def test_a_colleagues_head_of_the_same_log_passes(bench: Bench) -> None:
    """Test that a colleague's head that is older or newer than this device's but of the same log
    is checked with a proof and changes nothing."""
    alice = bench.device("alice")
    bob = bench.device("bob")
    bench.run(bob.transparency.sync())
    older = bob.transparency.head_note()
    bench.device("carol")
    bench.run(alice.transparency.sync())
    assert older is not None

    bench.run(alice.transparency.compare(older))
    bench.device("dave")
    bench.run(bob.transparency.sync())
    newer = bob.transparency.head_note()
    assert newer is not None
    bench.run(alice.transparency.compare(newer))

    assert alice.emitted(LogForked) == [] and alice.transparency.forked() is None
    assert alice.transparency.head_note() == newer
    assert any(r.startswith("/v1/log/consistency?old=2&new=3") for r in alice.log.requests)


def test_a_head_signed_by_another_key_is_refused(bench: Bench) -> None:
    """Test that a log signed by a key other than the one the config names is not taken (nothing
    is kept), and a colleague's key that only it holds is refused."""
    impostor = BenchLog()
    alice = bench.device("alice", log=impostor)
    bob = bench.device("bob", log=impostor)

    with pytest.raises((RemoteProtocolError, InvalidSignatureError)):
        bench.run(alice.transparency.sync())
    assert alice.store.key_log.head() is None
    with pytest.raises(OfflineError):
        bench.run(alice.transparency.require("bob", 1, bob.identity.public))
