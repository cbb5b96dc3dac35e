"""How a group's changes resolve to one state, the same on every member's device.

A member keeps every verified change of a group (app/protocol/groupchange.py) and computes the
state from the whole set, never from the order in which changes arrived: two members holding
the same changes hold the same state, whatever they were offline for. ``GroupLog`` keeps the
set; ``resolve`` is the rule.

**Order.** Changes are applied in a topological order of their DAG (a change after its
parents), choosing among the changes ready at each step the lowest (Lamport number, change
id). The Lamport number is checked to be one above the parents' highest, so a change cannot
jump ahead of what it saw.

**Authority.** A change is applied if its author's account is, in the state just before it, an
admin (for any operation) or a member (for LEAVE alone), and if every operation can be applied:
removing, demoting or letting leave the last admin is refused, so a group never loses its last
admin. A change that fails is ignored whole, and its reason kept, so a face can show a forged
or refused change as such.

**Revocation wins.** Authority alone would let an admin removed at change R go on making
changes whose parents predate R: ordered before R, they would pass. So a change by an account
that an applied REMOVE or DEMOTE revoked is void unless the revoking change saw it (it is
among R's ancestors) or it saw the revocation (R is among its ancestors, where authority
decides). Concurrent changes by an admin being removed are therefore dropped: two admins who
remove each other at once end with the one ordered first, everywhere. Voiding a change can
void a revocation in turn (its author's rights came from the voided change); the rule is
applied until nothing more is voided, each round replaying from the genesis, and the set of
void changes only grows, so it ends.

A change whose parents are not all known waits (``GroupLog.missing``); it is applied once they
come. Nothing here checks signatures or certificates: ``GroupLog.add`` takes only changes the
caller verified (``GroupChange.verify`` and the author's certificate against the organisation
and its key log).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum

from app.protocol.groupchange import Create, GroupChange, Op, Operation, Step


@dataclass(frozen=True, slots=True)
class GroupState:
    group_id: bytes
    name: str
    members: frozenset[str]
    admins: frozenset[str]
    timer_seconds: int = 0
    label: str = ""
    secret: bool = False
    version: int = 0
    """How many changes were applied to reach this state."""


class Added(Enum):
    APPLIED = "applied"
    """Known now, its parents too: part of the state (applied, or ignored with a reason)."""
    WAITING = "waiting"
    """Known, but a parent is not: it waits for it."""
    DUPLICATE = "duplicate"
    REFUSED = "refused"
    """Not of this group, or its Lamport number does not follow its parents'."""


@dataclass(frozen=True, slots=True)
class Resolution:
    state: GroupState | None
    """None until the genesis is known."""
    applied: tuple[bytes, ...]
    """The change ids applied, in order."""
    ignored: Mapping[bytes, str]
    """Each known change that was not applied, and why."""


class RefusedChangeError(Exception):
    """A change's operations cannot be applied to the state before it; the message says why."""


def _apply(state: GroupState, author: str, ops: tuple[Op, ...]) -> tuple[GroupState, list[str]]:
    """The state after ``ops`` by ``author``, and the accounts they revoked (removed or demoted by
    someone else); ``RefusedChangeError`` if the author may not, or an operation cannot be done."""
    only_leaving = all(isinstance(op, Step) and op.operation == Operation.LEAVE for op in ops)
    if author not in state.admins and not (only_leaving and author in state.members):
        raise RefusedChangeError(f"{author} is not an admin of the group")
    revoked: list[str] = []
    for op in ops:
        if not isinstance(op, Step):
            raise RefusedChangeError("a group is created once")
        state, target = _step(state, author, op)
        if target is not None:
            revoked.append(target)
    if not state.admins:
        raise RefusedChangeError("the group would have no admin left")
    return replace(state, version=state.version + 1), revoked


SETTINGS = frozenset({Operation.RENAME, Operation.SET_TIMER, Operation.SET_LABEL})


def _step(state: GroupState, author: str, op: Step) -> tuple[GroupState, str | None]:
    """One operation; the account it revoked, if it revoked one."""
    if op.operation in SETTINGS:
        return _setting(state, op), None
    members, admins, account = state.members, state.admins, op.account_id
    if op.operation == Operation.LEAVE:
        return replace(state, members=members - {author}, admins=admins - {author}), None
    if op.operation == Operation.ADD:
        return replace(state, members=members | {account}), None
    if account not in members:
        raise RefusedChangeError(f"{account} is not a member")
    if op.operation == Operation.PROMOTE:
        return replace(state, admins=admins | {account}), None
    if op.operation == Operation.DEMOTE:
        state = replace(state, admins=admins - {account})
    else:
        state = replace(state, members=members - {account}, admins=admins - {account})
    return state, account if account != author else None


def _setting(state: GroupState, op: Step) -> GroupState:
    if op.operation == Operation.RENAME:
        return replace(state, name=op.text)
    if op.operation == Operation.SET_LABEL:
        return replace(state, label=op.text)
    if state.secret and op.seconds == 0:
        raise RefusedChangeError("a secret group keeps a timer")
    return replace(state, timer_seconds=op.seconds)


def _genesis(group_id: bytes, change: GroupChange) -> GroupState:
    create = change.operations[0]
    assert isinstance(create, Create)
    author = change.author.account_id
    state = GroupState(
        group_id,
        create.name,
        frozenset({author}),
        frozenset({author}),
        create.timer_seconds,
        create.label,
        create.secret,
        version=1,
    )
    if create.secret and not create.timer_seconds:
        raise RefusedChangeError("a secret group starts with a timer")
    if len(change.operations) > 1:
        state, _ = _apply(state, author, change.operations[1:])
        state = replace(state, version=1)
    return state


def _order(changes: Mapping[bytes, GroupChange]) -> list[bytes]:
    """The changes whose ancestors are all known, parents first, ties by (Lamport, id). A change
    whose number is not one above its parents' highest is left out, and so are its descendants."""
    children: dict[bytes, list[bytes]] = {}
    waiting: dict[bytes, int] = {}
    ready: list[tuple[int, bytes]] = []
    for change_id, change in changes.items():
        waiting[change_id] = len(change.parents)
        for parent in change.parents:
            children.setdefault(parent, []).append(change_id)
        if not change.parents:
            heapq.heappush(ready, (change.lamport, change_id))
    order: list[bytes] = []
    while ready:
        _, change_id = heapq.heappop(ready)
        order.append(change_id)
        for child in children.get(change_id, ()):
            waiting[child] -= 1
            lamport = changes[child].lamport
            if waiting[child] == 0 and lamport == 1 + max(changes[p].lamport for p in changes[child].parents):
                heapq.heappush(ready, (lamport, child))
    return order


def _ancestors(changes: Mapping[bytes, GroupChange], order: list[bytes]) -> dict[bytes, int]:
    """Each ordered change's ancestors, as a bit set over positions in ``order``."""
    position = {change_id: index for index, change_id in enumerate(order)}
    ancestors: dict[bytes, int] = {}
    for change_id in order:
        bits = 0
        for parent in changes[change_id].parents:
            bits |= ancestors[parent] | (1 << position[parent])
        ancestors[change_id] = bits
    return ancestors


def resolve(group_id: bytes, changes: Mapping[bytes, GroupChange]) -> Resolution:
    """The state ``changes`` (verified, all of ``group_id``) resolve to (see the module's rules)."""
    order = _order(changes)
    position = {change_id: index for index, change_id in enumerate(order)}
    ancestors = _ancestors(changes, order)
    void: dict[bytes, str] = {}
    while True:
        state, applied, ignored, revocations = _replay(group_id, changes, order, void)
        newly = {
            change_id: f"made by {target} while an admin was taking their rights away"
            for revoking, target in revocations
            for change_id in order
            if change_id not in void
            and changes[change_id].author.account_id == target
            and not ancestors[revoking] >> position[change_id] & 1
            and not ancestors[change_id] >> position[revoking] & 1
            and change_id != revoking
        }
        if not newly:
            return Resolution(state, tuple(applied), {**ignored, **void})
        void.update(newly)


def _replay(
    group_id: bytes, changes: Mapping[bytes, GroupChange], order: list[bytes], void: Mapping[bytes, str]
) -> tuple[GroupState | None, list[bytes], dict[bytes, str], list[tuple[bytes, str]]]:
    """(state, applied, ignored with reasons, (revoking change, revoked account) pairs)."""
    state: GroupState | None = None
    applied: list[bytes] = []
    ignored: dict[bytes, str] = {}
    revocations: list[tuple[bytes, str]] = []
    for change_id in order:
        if change_id in void:
            continue
        change = changes[change_id]
        try:
            if change.is_genesis:
                if state is not None:
                    raise RefusedChangeError("the group has its genesis")
                state = _genesis(group_id, change)
            elif state is None:
                raise RefusedChangeError("the genesis was refused")
            else:
                state, revoked = _apply(state, change.author.account_id, change.operations)
                revocations.extend((change_id, account) for account in revoked)
        except RefusedChangeError as e:
            ignored[change_id] = str(e)
            continue
        applied.append(change_id)
    return state, applied, ignored, revocations


@dataclass
class GroupLog:
    """The verified changes of one group a device holds, and what they resolve to."""

    group_id: bytes
    changes: dict[bytes, GroupChange] = field(default_factory=dict)
    _resolution: Resolution | None = None

    @classmethod
    def of(cls, group_id: bytes, changes: Iterable[GroupChange]) -> GroupLog:
        log = cls(group_id)
        for change in changes:
            log.add(change)
        return log

    def add(self, change: GroupChange) -> Added:
        """Take a verified change of this group (see ``Added``)."""
        change_id = change.change_id
        if change_id in self.changes:
            return Added.DUPLICATE
        if change.is_genesis:
            if change.own_group_id() != self.group_id:
                return Added.REFUSED
        elif change.group_id != self.group_id:
            return Added.REFUSED
        known = [self.changes[p] for p in change.parents if p in self.changes]
        if (
            len(known) == len(change.parents)
            and known
            and change.lamport != 1 + max(p.lamport for p in known)
        ):
            return Added.REFUSED
        self.changes[change_id] = change
        self._resolution = None
        return Added.WAITING if self.missing() & self._ancestry(change_id) else Added.APPLIED

    def _ancestry(self, change_id: bytes) -> set[bytes]:
        """``change_id`` and every ancestor id it names, known or not."""
        seen, todo = set(), [change_id]
        while todo:
            current = todo.pop()
            if current in seen:
                continue
            seen.add(current)
            if current in self.changes:
                todo.extend(self.changes[current].parents)
        return seen

    def missing(self) -> set[bytes]:
        """Parents named by known changes but not known themselves."""
        return {p for change in self.changes.values() for p in change.parents if p not in self.changes}

    def resolution(self) -> Resolution:
        if self._resolution is None:
            self._resolution = resolve(self.group_id, self.changes)
        return self._resolution

    @property
    def state(self) -> GroupState | None:
        return self.resolution().state

    def heads(self) -> tuple[bytes, ...]:
        """The applied-or-ignored changes no known change names as a parent: a new change's parents."""
        named = {p for change in self.changes.values() for p in change.parents}
        ordered = set(_order(self.changes))
        return tuple(sorted(c for c in ordered if c not in named))

    def next_lamport(self) -> int:
        return 1 + max((self.changes[h].lamport for h in self.heads()), default=-1)
