"""Groups in the engine (app/services/groups.py, groupadmin.py), with real stores and sessions: changes
reach every member and resolve to one state, messages go to the members of that state only, and a
forged or unauthorised change is ignored and shown as such."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import nacl.utils
import pytest

from app.base.errors import OfflineError
from app.protocol.content import GroupChanges
from app.protocol.groupchange import GroupChange, Operation, Step
from app.services.errors import GroupError, PolicyRefusedError, VerificationRequiredError
from app.services.events import GroupChanged, GroupChangeIgnored, MessageArrived, MessageUnreadable, Problem
from storage.records import MessageStatus
from tests.support.devices import Bench, Device, introduce, open_session

DEVICE_IDS = itertools.count(100)


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Bench]:
    opened = Bench(tmp_path)
    yield opened
    opened.close()


def _people(bench: Bench, *names: str) -> list[Device]:
    """Devices (one each, distinct ids) that all know each other and hold sessions both ways."""
    devices = [bench.device(name, device_id=next(DEVICE_IDS)) for name in names]
    for a, b in itertools.combinations(devices, 2):
        introduce(a, b)
        open_session(a, b)
    return devices


def _spread(bench: Bench, sender: Device, everyone: list[Device], *, receipts: bool = True) -> dict[int, int]:
    return bench.route(sender, [d for d in everyone if d is not sender], receipts=receipts)


def _group(device: Device) -> int:
    [conversation] = [c for c in device.store.conversations.list() if c.group_id is not None]
    return conversation.id


def _bodies(device: Device) -> list[str]:
    return [e.message.body for e in device.emitted(MessageArrived)]


def test_a_group_reaches_its_members_and_counts_who_got_and_read_a_message(bench: Bench) -> None:
    """Test that a new group appears on every member's device with its name, that a text reaches each
    member, and that the sender sees "delivered to 2 of 2", then "read by 1 of 2"."""
    alice, bob, carol = people = _people(bench, "alice", "bob", "carol")
    conversation = bench.run(alice.groups.create("Crisis cell", ["bob", "carol"], timer_seconds=0))
    _spread(bench, alice, people)
    for member in (bob, carol):
        info = member.groups.info(_group(member))
        assert (info.name, info.members, info.admins) == (
            "Crisis cell",
            ("alice", "bob", "carol"),
            ("alice",),
        )
        assert member.emitted(GroupChanged)
    sent = bench.run(alice.sending.send_text(conversation.id, "Status at 10:00"))
    assert set(_spread(bench, alice, people).values()) == {1}
    assert _bodies(bob) == _bodies(carol) == ["Status at 10:00"]
    for member in (bob, carol):
        bench.route(member, [alice], receipts=True)
    receipts = alice.groups.receipts(sent.id)
    assert (receipts.delivered, receipts.read, receipts.members) == (2, 0, 2)
    assert alice.store.messages.get(sent.id).status is MessageStatus.DELIVERED
    assert bob.conversations.mark_read(_group(bob)) == 1
    bench.route(bob, [alice], receipts=True)
    counted = alice.groups.receipts(sent.id)
    assert counted.read == 1
    assert counted.by_member == (("bob", MessageStatus.READ), ("carol", MessageStatus.DELIVERED))
    assert alice.store.messages.get(sent.id).status is MessageStatus.DELIVERED, "not all have read"


def test_a_removed_member_gets_nothing_sent_after_and_cannot_open_what_others_got(bench: Bench) -> None:
    """Test that once Carol is removed no envelope of a later message is made for her device, and that
    with her whole saved state she cannot open the copy sealed for Bob either."""
    alice, bob, carol = people = _people(bench, "alice", "bob", "carol")
    conversation = bench.run(alice.groups.create("Cell", ["bob", "carol"]))
    _spread(bench, alice, people)
    bench.run(alice.groups.remove(conversation.id, "carol"))
    _spread(bench, alice, people)
    assert "carol" not in carol.groups.info(_group(carol)).members, "Carol was told she was removed"
    with pytest.raises(GroupError):
        bench.run(carol.sending.send_text(_group(carol), "still here?"))
    before = len(alice.transport.offered)
    bench.run(alice.sending.send_text(conversation.id, "after the removal"))
    got = _spread(bench, alice, people)
    assert carol.device_id not in got and got[bob.device_id] == 1
    for_bob = [o.envelope for o in alice.transport.offered[before:] if o.recipient_device == bob.device_id]
    bench.run(carol.receiving.receive(for_bob[-1], carol.transport))
    assert "after the removal" not in _bodies(carol)
    assert carol.emitted(MessageUnreadable)


def test_members_offline_during_several_changes_converge(bench: Bench) -> None:
    """Test that Bob, offline during a rename, an addition, a promotion and a timer, ends with Alice's
    state once the changes reach him, in whatever order they come, and that Dave, added, gets the state
    from the log handed to him."""
    alice, bob, _, dave = people = _people(bench, "alice", "bob", "carol", "dave")
    conversation = bench.run(alice.groups.create("Cell", ["bob", "carol"]))
    _spread(bench, alice, people)
    start = len(alice.transport.offered)
    bench.run(alice.groups.rename(conversation.id, "Task force"))
    bench.run(alice.groups.add(conversation.id, ["dave"]))
    bench.run(alice.groups.promote(conversation.id, "carol"))
    bench.run(alice.groups.set_timer(conversation.id, 3600))
    alice.delivery.kick()
    bench.until(lambda: alice.store.outbox.next_attempt() is None, "the changes left")
    for_bob = [o.envelope for o in alice.transport.offered[start:] if o.recipient_device == bob.device_id]
    for envelope in reversed(for_bob):
        bench.run(bob.receiving.receive(envelope, bob.transport))
    for_dave = [o.envelope for o in alice.transport.offered[start:] if o.recipient_device == dave.device_id]
    for envelope in for_dave:
        bench.run(dave.receiving.receive(envelope, dave.transport))
    expected = alice.groups.info(conversation.id)
    assert (expected.name, expected.timer_seconds) == ("Task force", 3600)
    for member in (bob, dave):
        info = member.groups.info(_group(member))
        assert (info.name, info.members, info.admins, info.timer_seconds) == (
            expected.name,
            expected.members,
            expected.admins,
            expected.timer_seconds,
        )
        assert member.store.conversations.get(_group(member)).timer_seconds == 3600


def test_two_admins_changing_the_group_at_once_end_in_the_same_state_everywhere(bench: Bench) -> None:
    """Test that concurrent changes by two admins (a rename each, and one removing the other) leave
    every member with the same state once all changes have reached everyone."""
    alice, bob, carol = people = _people(bench, "alice", "bob", "carol")
    conversation = bench.run(alice.groups.create("Cell", ["bob", "carol"]))
    bench.run(alice.groups.promote(conversation.id, "bob"))
    _spread(bench, alice, people)
    bench.run(alice.groups.rename(conversation.id, "Alice's name"))
    bench.run(bob.groups.rename(_group(bob), "Bob's name"))
    bench.run(bob.groups.remove(_group(bob), "alice"))
    _spread(bench, alice, people)
    _spread(bench, bob, people)
    states = {
        (i.name, i.members, i.admins)
        for i in (
            alice.groups.info(_group(alice)),
            bob.groups.info(_group(bob)),
            carol.groups.info(_group(carol)),
        )
    }
    assert len(states) == 1, states


def test_a_change_by_a_member_who_is_not_an_admin_is_ignored_and_shown(bench: Bench) -> None:
    """Test that Mallory, a plain member, cannot change the group: her own device refuses to make the
    change, and one she signs anyway and sends is ignored by the others, who are told why."""
    alice, bob, mallory = people = _people(bench, "alice", "bob", "mallory")
    bench.run(alice.groups.create("Cell", ["bob", "mallory"]))
    _spread(bench, alice, people)
    with pytest.raises(GroupError, match="not an admin"):
        bench.run(mallory.groups.rename(_group(mallory), "Mallory's"))
    group_id = mallory.store.conversations.get(_group(mallory)).group_id
    assert group_id is not None
    log = mallory.group_state.log(group_id)
    forged = GroupChange.make(
        mallory.identity,
        mallory.certificate,
        group_id=group_id,
        lamport=log.next_lamport(),
        parents=log.heads(),
        made_at=0,
        operations=(Step(Operation.ADD, account_id="eve"), Step(Operation.PROMOTE, account_id="mallory")),
    )
    mallory.sending.queue(
        bench.run(mallory.sending.reach(["alice", "bob"])), [GroupChanges((forged.encode(),))]
    )
    _spread(bench, mallory, people)
    for member in (alice, bob):
        info = member.groups.info(_group(member))
        assert "eve" not in info.members and info.admins == ("alice",)
        [ignored] = [e for e in member.emitted(GroupChangeIgnored) if e.account_id == "mallory"]
        assert "not an admin" in ignored.reason
        assert ("mallory", ignored.reason) in info.ignored


def test_a_change_with_a_broken_signature_is_dropped_and_shown_as_forged(bench: Bench) -> None:
    """Test that a change whose signature does not verify is not kept at all, and the user is told."""
    alice, bob = people = _people(bench, "alice", "bob")
    conversation = bench.run(alice.groups.create("Cell", ["bob"]))
    _spread(bench, alice, people)
    group_id = alice.store.conversations.get(conversation.id).group_id
    assert group_id is not None
    genuine = alice.group_state.change(group_id, (Step(Operation.RENAME, text="Genuine"),))
    tampered = genuine.encode().replace(b"Genuine", b"Forgery")
    alice.sending.queue(bench.run(alice.sending.reach(["bob"])), [GroupChanges((tampered,))])
    _spread(bench, alice, people)
    assert bob.groups.info(_group(bob)).name == "Cell"
    assert any("forged" in e.reason for e in bob.emitted(GroupChangeIgnored))
    assert len(bob.store.group_changes.of_group(group_id)) == 1


def test_a_message_from_outside_the_group_is_dropped(bench: Bench) -> None:
    """Test that a group message from an account that is not a member, as the recipient's state says,
    is not stored, and is shown as ignored."""
    alice, bob, carol = people = _people(bench, "alice", "bob", "carol")
    conversation = bench.run(alice.groups.create("Cell", ["bob", "carol"]))
    _spread(bench, alice, people)
    bench.run(alice.groups.remove(conversation.id, "carol"))
    bench.route(alice, [bob])  # Carol does not hear of her removal, and writes to the group
    bench.run(carol.sending.send_text(_group(carol), "am I still in?"))
    _spread(bench, carol, people)
    assert "am I still in?" not in _bodies(bob)
    assert any(e.reason == "a message from a non-member" for e in bob.emitted(GroupChangeIgnored))


def test_a_hundred_member_group_works_end_to_end(bench: Bench) -> None:
    """Test a group of 100 members: created, a text to all, every member stores it once, and the
    sender's count reaches 99 of 99 delivered."""
    alice = bench.device("alice", device_id=next(DEVICE_IDS))
    members = [bench.device(f"m{i:03}", device_id=next(DEVICE_IDS)) for i in range(99)]
    for member in members:
        introduce(alice, member)
        open_session(alice, member)
    conversation = bench.run(alice.groups.create("Ministry", [m.account_id for m in members]))
    bench.route(alice, members)
    sent = bench.run(alice.sending.send_text(conversation.id, "To all staff"))
    got = bench.route(alice, members)
    assert len(got) == 99 and set(got.values()) == {1}
    for member in members:
        assert _bodies(member) == ["To all staff"]
        bench.route(member, [alice])
    assert alice.groups.receipts(sent.id).delivered == 99


def test_the_policy_bounds_a_groups_timer_and_label(bench: Bench) -> None:
    """Test that a group cannot be created or changed with a timer outside the policy's range or a label
    the policy does not list, and that nothing is made or sent then."""
    alice, _ = people = _people(bench, "alice", "bob")
    rules = alice.provisioning.rules()
    with pytest.raises(PolicyRefusedError, match="classification_labels"):
        bench.run(alice.groups.create("Cell", ["bob"], label="NOT A LABEL"))
    with pytest.raises(PolicyRefusedError):
        bench.run(alice.groups.create("Cell", ["bob"], timer_seconds=rules.timer_maximum + 1))
    assert not [c for c in alice.store.conversations.list() if c.group_id is not None]
    assert alice.transport.offered == []
    assert rules.classification_labels == (), "this organisation lists no label: only none is taken"
    conversation = bench.run(alice.groups.create("Cell", ["bob"]))
    _spread(bench, alice, people)
    with pytest.raises(PolicyRefusedError):
        bench.run(alice.groups.set_label(conversation.id, "NOT A LABEL"))
    assert alice.groups.info(conversation.id).label == ""


def test_a_label_that_requires_verified_keys_holds_a_group_message_until_every_member_is_verified(
    bench: Bench,
) -> None:
    """Test that in a group whose label requires verified keys a message is refused, naming a member whose
    key is not verified, until every member's key is, and that nothing is stored on a refusal."""
    alice, bob, carol = people = _people(bench, "alice", "bob", "carol")
    for key, value in (
        ("classification_labels", ["OFFICIAL", "OFFICIAL-SENSITIVE"]),
        ("verified_keys_required", ["OFFICIAL-SENSITIVE"]),
    ):
        alice.provisioning.set_user(key, value)
    conversation = bench.run(alice.groups.create("Cell", ["bob", "carol"], label="OFFICIAL-SENSITIVE"))
    _spread(bench, alice, people)
    alice.verification.mark_verified("bob", bob.device_id)
    messages = alice.store.messages.count()
    with pytest.raises(VerificationRequiredError, match="compare safety numbers with carol") as refused:
        bench.run(alice.sending.send_text(conversation.id, "held"))
    assert refused.value.account_id == "carol" and alice.store.messages.count() == messages
    alice.verification.mark_verified("carol", carol.device_id)
    bench.run(alice.sending.send_text(conversation.id, "verified"))
    _spread(bench, alice, people)
    assert _bodies(bob) == _bodies(carol) == ["verified"]


def test_a_member_whose_key_changed_is_passed_over_and_the_user_told(bench: Bench) -> None:
    """Test that a group message goes to the members whose keys are as accepted, not to one whose key
    changed (it waits for no one), and that the sender is told that member did not get it."""
    alice, bob, carol = people = _people(bench, "alice", "bob", "carol")
    conversation = bench.run(alice.groups.create("Cell", ["bob", "carol"]))
    _spread(bench, alice, people)
    alice.store.contacts.record_device_key("carol", carol.device_id, nacl.utils.random(32))
    bench.run(alice.sending.send_text(conversation.id, "to those I can check"))
    got = _spread(bench, alice, people)
    assert got.get(bob.device_id) == 1 and carol.device_id not in got
    assert any("carol, whose key changed" in p.message for p in alice.emitted(Problem))


def test_a_group_that_needs_the_relay_to_reach_a_member_is_not_made_offline(bench: Bench) -> None:
    """Test that creating a group with a member this device has no session with, while the relay cannot
    be reached, is an OfflineError that leaves no group behind: no change kept, no conversation."""
    [alice] = _people(bench, "alice")
    stranger = bench.device("stranger", device_id=next(DEVICE_IDS))
    with pytest.raises(OfflineError):
        bench.run(alice.groups.create("Cell", [stranger.account_id]))
    assert not [c for c in alice.store.conversations.list() if c.group_id is not None]
    assert alice.store.outbox.due(float("inf")) == []
