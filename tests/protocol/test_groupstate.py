"""Group changes and their resolution (app/protocol/groupchange.py, groupstate.py): signed steps that
every member resolves to the same state, whatever order they arrive in; a forged, unauthorised or
backdated change is ignored with its reason."""

from __future__ import annotations

import itertools
import random as stdlib_random
from dataclasses import dataclass, field, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.base.errors import InvalidSignatureError, LocalProtocolError, RemoteProtocolError
from app.crypto.certificate import DeviceCertificate
from app.crypto.keys import IdentityKeyPair
from app.protocol.groupchange import MAX_OPERATIONS, NO_GROUP, Create, GroupChange, Operation, Step
from app.protocol.groupstate import Added, GroupLog, resolve

AUTHORITY = IdentityKeyPair.from_seed(b"\x01" * 32)
DEVICE_IDS = itertools.count(1)


@dataclass
class Member:
    """One account's device, which makes changes on top of what its own log holds."""

    account_id: str
    identity: IdentityKeyPair = field(init=False)
    certificate: DeviceCertificate = field(init=False)
    log: GroupLog | None = None

    def __post_init__(self) -> None:
        device_id = next(DEVICE_IDS)
        self.identity = IdentityKeyPair.from_seed(device_id.to_bytes(32, "big"))
        self.certificate = DeviceCertificate.issue(
            AUTHORITY,
            account_id=self.account_id,
            device_id=device_id,
            identity_key=self.identity.public,
            expires_at=2**40,
        )

    def create(self, name: str, *members: str, timer: int = 0, secret: bool = False) -> GroupChange:
        genesis = GroupChange.make(
            self.identity,
            self.certificate,
            group_id=NO_GROUP,
            lamport=0,
            parents=(),
            made_at=0,
            operations=(
                Create(b"n" * 16, name, timer, "", secret),
                *(Step(Operation.ADD, account_id=m) for m in members),
            ),
        )
        self.log = GroupLog.of(genesis.own_group_id(), [genesis])
        return genesis

    def join(self, changes: list[GroupChange]) -> None:
        """Take the group's log as it was handed over (a new member's welcome)."""
        genesis = next(c for c in changes if c.is_genesis)
        self.log = GroupLog.of(genesis.own_group_id(), changes)

    def change(self, *steps: Step) -> GroupChange:
        assert self.log is not None
        made = GroupChange.make(
            self.identity,
            self.certificate,
            group_id=self.log.group_id,
            lamport=self.log.next_lamport(),
            parents=self.log.heads(),
            made_at=0,
            operations=steps,
        )
        assert self.log.add(made) is Added.APPLIED
        return made

    def receive(self, *changes: GroupChange) -> None:
        assert self.log is not None
        for change in changes:
            change.verify()
            self.log.add(change)


def add(account: str) -> Step:
    return Step(Operation.ADD, account_id=account)


def remove(account: str) -> Step:
    return Step(Operation.REMOVE, account_id=account)


def promote(account: str) -> Step:
    return Step(Operation.PROMOTE, account_id=account)


def demote(account: str) -> Step:
    return Step(Operation.DEMOTE, account_id=account)


def test_a_change_round_trips_and_its_signature_is_the_authors() -> None:
    """Test that a change parses back to itself, verifies with its author's key, and that one flipped byte
    of its body fails the signature."""
    alice = Member("alice")
    genesis = alice.create("Crisis cell", "bob", timer=3600)
    assert GroupChange.parse(genesis.encode()) == genesis
    genesis.verify()
    encoded = bytearray(genesis.encode())
    encoded[-70] ^= 1
    forged = GroupChange.parse(bytes(encoded))
    with pytest.raises(InvalidSignatureError):
        forged.verify()


@pytest.mark.parametrize(
    "broken",
    [
        lambda c: replace(c, lamport=1),
        lambda c: replace(c, group_id=b"\x07" * 16),
        lambda c: replace(c, operations=(Step(Operation.RENAME, text="no create"),)),
        lambda c: replace(c, operations=(*c.operations, Create(b"x" * 16, "twice"))),
    ],
)
def test_a_malformed_genesis_cannot_be_made(broken: object) -> None:
    """Test that a genesis with a number, a group id, no CREATE first or two CREATEs does not encode (the
    parser applies the same check)."""
    alice = Member("alice")
    genesis = alice.create("Task force")
    bad = broken(genesis)  # type: ignore[operator]
    with pytest.raises(LocalProtocolError, match="genesis"):
        bad.encode()


def test_text_that_would_not_encode_is_refused_when_parsed() -> None:
    """Test that a rename to an empty name or one with a control character is refused by the parser
    (RemoteProtocolError), as the writer refuses to make it."""
    alice = Member("alice")
    alice.create("Budget")
    good = alice.change(Step(Operation.RENAME, text="Budget 2027"))
    encoded = good.encode()
    bad = encoded.replace(b"Budget 2027", b"Budget\x072027")
    with pytest.raises(RemoteProtocolError):
        GroupChange.parse(bad)


def test_members_and_admins_follow_the_changes() -> None:
    """Test create with members, rename, promote, remove, leave and timers, applied in order."""
    alice, bob, carol = Member("alice"), Member("bob"), Member("carol")
    genesis = alice.create("Cell", "bob", "carol")
    assert alice.log is not None
    state = alice.log.state
    assert state is not None
    assert (state.members, state.admins, state.name) == ({"alice", "bob", "carol"}, {"alice"}, "Cell")
    alice.change(promote("bob"), Step(Operation.RENAME, text="Crisis cell"))
    bob.join(list(alice.log.changes.values()))
    bob.change(remove("carol"), Step(Operation.SET_TIMER, seconds=600))
    alice.receive(*bob.log.changes.values())  # type: ignore[union-attr]
    state = alice.log.state
    assert state is not None
    assert (state.members, state.admins) == ({"alice", "bob"}, {"alice", "bob"})
    assert (state.name, state.timer_seconds, state.version) == ("Crisis cell", 600, 3)
    carol.join([genesis])
    assert carol.log is not None and carol.log.state is not None
    assert "carol" in carol.log.state.members, "what carol saw before she heard of her removal"


def test_a_non_admin_change_is_ignored_and_named() -> None:
    """Test that a change by a member who is not an admin is kept but not applied, with its reason, and
    that the change after it still applies."""
    alice, mallory = Member("alice"), Member("mallory")
    genesis = alice.create("Cell", "mallory")
    mallory.join([genesis])
    forged = mallory.change(Step(Operation.RENAME, text="Mallory's"), promote("mallory"))
    alice.receive(forged)
    after = alice.change(Step(Operation.RENAME, text="Still Alice's"))
    assert alice.log is not None
    resolution = alice.log.resolution()
    assert resolution.state is not None and resolution.state.name == "Still Alice's"
    assert resolution.state.admins == {"alice"}
    assert "not an admin" in resolution.ignored[forged.change_id]
    assert after.change_id in resolution.applied


def test_a_member_may_leave_but_the_last_admin_may_not() -> None:
    """Test that LEAVE by a plain member applies, and that the only admin's LEAVE or self-demotion is
    refused: a group never loses its last admin."""
    alice, bob = Member("alice"), Member("bob")
    genesis = alice.create("Cell", "bob")
    bob.join([genesis])
    leaving = bob.change(Step(Operation.LEAVE))
    alice.receive(leaving)
    alone = alice.change(Step(Operation.LEAVE))
    assert alice.log is not None
    resolution = alice.log.resolution()
    assert resolution.state is not None and resolution.state.members == {"alice"}
    assert "no admin left" in resolution.ignored[alone.change_id]


def test_a_removed_admins_backdated_change_is_void() -> None:
    """Test that an admin removed at change R cannot get a change in by naming parents from before R:
    the remover did not see it, so it is void, on every member, in whichever order it arrives."""
    alice, bob, carol = Member("alice"), Member("bob"), Member("carol")
    genesis = alice.create("Cell", "bob", "carol")
    promoted = alice.change(promote("bob"))
    bob.join([genesis, promoted])
    carol.join([genesis, promoted])
    backdated = bob.change(add("mallory"))  # made on top of `promoted`, never shown to alice before
    removal = alice.change(remove("bob"))
    for order in ([backdated, removal], [removal, backdated]):
        carol.join([genesis, promoted])
        carol.receive(*order)
        assert carol.log is not None
        resolution = carol.log.resolution()
        assert resolution.state is not None and resolution.state.members == {"alice", "carol"}
        assert "taking their rights away" in resolution.ignored[backdated.change_id]


def test_two_admins_removing_each_other_at_once_end_with_one_everywhere() -> None:
    """Test that when two admins remove each other concurrently, every member ends with the same one
    admin, whichever order they heard the two changes in."""
    alice, bob, carol = Member("alice"), Member("bob"), Member("carol")
    genesis = alice.create("Cell", "bob", "carol")
    promoted = alice.change(promote("bob"))
    bob.join([genesis, promoted])
    by_alice = alice.change(remove("bob"))
    by_bob = bob.change(remove("alice"))
    states = []
    for order in ([by_alice, by_bob], [by_bob, by_alice]):
        carol.join([genesis, promoted])
        carol.receive(*order)
        assert carol.log is not None
        states.append(carol.log.state)
    assert states[0] == states[1]
    assert states[0] is not None and len(states[0].admins) == 1 and "carol" in states[0].members


def test_a_change_waits_for_its_missing_parent() -> None:
    """Test that a change whose parent has not arrived waits, and applies once the parent comes."""
    alice, carol = Member("alice"), Member("carol")
    genesis = alice.create("Cell", "carol")
    first = alice.change(Step(Operation.RENAME, text="One"))
    second = alice.change(Step(Operation.RENAME, text="Two"))
    carol.join([genesis])
    assert carol.log is not None
    assert carol.log.add(second) is Added.WAITING
    assert carol.log.missing() == {first.change_id}
    assert carol.log.state is not None and carol.log.state.name == "Cell"
    assert carol.log.add(first) is Added.APPLIED
    assert carol.log.state.name == "Two" and not carol.log.missing()


def test_a_change_of_another_group_or_misnumbered_is_refused() -> None:
    """Test that a change naming another group id, or whose Lamport number does not follow its parents',
    is refused."""
    alice = Member("alice")
    genesis = alice.create("Cell")
    other = Member("zed")
    other.create("Other")
    foreign = other.change(Step(Operation.RENAME, text="Foreign"))
    assert alice.log is not None
    assert alice.log.add(foreign) is Added.REFUSED
    jumped = GroupChange.make(
        alice.identity,
        alice.certificate,
        group_id=alice.log.group_id,
        lamport=5,
        parents=(genesis.change_id,),
        made_at=0,
        operations=(Step(Operation.RENAME, text="Jumped"),),
    )
    assert alice.log.add(jumped) is Added.REFUSED


def test_a_genesis_adding_a_thousand_members_resolves() -> None:
    """Test that one change can create a group of 1,000 members (MAX_OPERATIONS) and round-trips."""
    alice = Member("alice")
    genesis = alice.create("Ministry", *(f"official.{i}" for i in range(MAX_OPERATIONS - 1)))
    assert GroupChange.parse(genesis.encode()) == genesis
    assert alice.log is not None and alice.log.state is not None
    assert len(alice.log.state.members) == MAX_OPERATIONS


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_every_order_of_arrival_resolves_to_the_same_state(seed: int) -> None:
    """Test that random concurrent changes by three admins and a member, handed to a newcomer in any
    order, resolve to exactly the state of the log holding all of them."""
    rng = stdlib_random.Random(seed)
    alice, bob, carol, dave = Member("alice"), Member("bob"), Member("carol"), Member("dave")
    genesis = alice.create("Cell", "bob", "carol", "dave")
    start = [genesis, alice.change(promote("bob"), promote("carol"))]
    for member in (bob, carol, dave):
        member.join(start)
    everyone = [alice, bob, carol, dave]
    made = list(start)
    for _ in range(12):
        author = rng.choice(everyone)
        target = rng.choice(["alice", "bob", "carol", "dave", "erin"])
        step = rng.choice([add, remove, promote, demote])(target)
        if rng.random() < 0.2:
            step = Step(Operation.RENAME, text=f"name {rng.randrange(100)}")
        made.append(author.change(step))  # its author's own log may ignore it: still a signed change
        if rng.random() < 0.5:
            other = rng.choice(everyone)
            other.receive(*made)
    reference = resolve(genesis.own_group_id(), {c.change_id: c for c in made})
    for _ in range(3):
        shuffled = made[:]
        rng.shuffle(shuffled)
        late = Member("late")
        late.join([genesis])
        late.receive(*shuffled)
        assert late.log is not None
        assert late.log.resolution() == reference
