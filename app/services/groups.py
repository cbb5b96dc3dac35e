"""Groups: the changes of each group this device is in, their state, and the group conversations.

Every change is kept (storage/groups.py) and the state is resolved from all of them
(app/protocol/groupstate.py), so members who heard the same changes in any order agree. A
change is taken only once checked (``verify``): its author's signature, the author's
certificate by the organisation's authority, and the author's key in the key log, ever bound
to that device (a change signed before a later revocation stays valid, or members who heard
it before and after the revocation would disagree). Expiry of the author's certificate is not
checked for the same reason. A change that fails is dropped and the user told
(``GroupChangeIgnored``); one that verifies but that the rules do not apply (not an admin, void)
is kept, shown as ignored, and changes nothing.

A group has a conversation on this device once its state names this account as a member; it
follows the state's name and timer. A member removed keeps the conversation (its history) but
can no longer send in it, and receives nothing more: senders encrypt to the members of their
state only (docs/PROTOCOL.md section 20).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from app.base.errors import InvalidSignatureError, RemoteProtocolError
from app.crypto.certificate import CertificateError
from app.crypto.primitives import RandomSource
from app.protocol.content import MAX_GROUP_CHANGES, GroupChanges
from app.protocol.groupchange import NO_GROUP, Create, GroupChange, Op, Operation, Step
from app.protocol.groupstate import Added, GroupLog, GroupState
from app.services.clock import Clock, millis
from app.services.credentials import Credentials
from app.services.errors import GroupError, UnloggedKeyError
from app.services.events import Event, GroupChanged, GroupChangeIgnored
from app.services.keylog import Transparency
from storage.records import Conversation, ConversationKind
from storage.store import Store

log = logging.getLogger(__name__)

NONCE_BYTES = 16
WELCOME_BYTES = 192 * 1024
"""How much of a group's log one content carries to a new member (under the content's limit)."""


class Groups:
    """The groups' logs and states, and the conversations that show them."""

    def __init__(
        self,
        store: Store,
        *,
        credentials: Credentials,
        transparency: Transparency,
        clock: Clock,
        random: RandomSource,
    ) -> None:
        self._store = store
        self._credentials = credentials
        self._transparency = transparency
        self._clock = clock
        self._random = random
        self._logs: dict[bytes, GroupLog] = {}

    def log(self, group_id: bytes) -> GroupLog:
        """The group's log as the store keeps it (read once, then kept in step)."""
        kept = self._logs.get(group_id)
        if kept is None:
            kept = GroupLog.of(
                group_id, (GroupChange.parse(b) for b in self._store.group_changes.of_group(group_id))
            )
            self._logs[group_id] = kept
        return kept

    def state(self, group_id: bytes) -> GroupState | None:
        return self.log(group_id).state

    def members(self, group_id: bytes) -> frozenset[str]:
        state = self.state(group_id)
        return frozenset() if state is None else state.members

    def conversation(self, group_id: bytes) -> Conversation | None:
        return self._store.conversations.find_group(group_id)

    async def verify(self, untrusted: GroupChanges) -> tuple[list[GroupChange], list[Event]]:
        """The changes of ``untrusted`` that are what they claim (see the module), and an event for
        each that is not. May sync the key log; raises ``OfflineError`` if it cannot now."""
        trust_root = self._credentials.trust_root()
        good: list[GroupChange] = []
        refused: list[Event] = []
        for raw in untrusted.changes:
            try:
                change = GroupChange.parse(raw)
            except RemoteProtocolError as e:
                refused.append(GroupChangeIgnored(NO_GROUP, "", f"a group change does not parse: {e}"))
                continue
            author = change.author
            group_id = change.own_group_id() if change.is_genesis else change.group_id
            try:
                change.verify()
                author.verify(trust_root=trust_root, now=min(int(self._clock()), author.expires_at - 1))
                await self._transparency.require(
                    author.account_id, author.device_id, author.identity_key, revoked_too=True
                )
            except (InvalidSignatureError, CertificateError, UnloggedKeyError) as e:
                log.warning("dropped a group change that does not verify (%s)", type(e).__name__)
                refused.append(GroupChangeIgnored(group_id, author.account_id, f"forged or unknown: {e}"))
                continue
            good.append(change)
        return good, refused

    def keep(self, changes: Iterable[GroupChange]) -> list[Event]:
        """Store verified changes and bring their groups' conversations in step (inside the caller's
        transaction); the events to emit after it commits."""
        touched: dict[bytes, set[bytes]] = {}
        events: list[Event] = []
        with self._store.transaction():
            for change in changes:
                group_id = change.own_group_id() if change.is_genesis else change.group_id
                group = self.log(group_id)
                if group.add(change) in (Added.DUPLICATE, Added.REFUSED):
                    continue
                # The cached log moved with this transaction; if it rolls back, read it again.
                self._store.after_rollback(lambda g=group_id: self._logs.pop(g, None))
                self._store.group_changes.add(group_id, change.change_id, change.encode())
                touched.setdefault(group_id, set()).add(change.change_id)
            for group_id, new in touched.items():
                events += self._follow(group_id, new)
        return events

    def _follow(self, group_id: bytes, new: set[bytes]) -> list[Event]:
        """The group's conversation after its state moved; events for it and for new ignored changes."""
        group = self.log(group_id)
        resolution = group.resolution()
        events: list[Event] = [
            GroupChangeIgnored(group_id, group.changes[c].author.account_id, reason)
            for c, reason in resolution.ignored.items()
            if c in new
        ]
        state = resolution.state
        me = self._credentials.account.account_id if self._credentials.account else None
        if state is None or me is None:
            return events
        conversation = self.conversation(group_id)
        if conversation is None:
            if me not in state.members:
                return events
            conversation = self._store.conversations.create(
                ConversationKind.GROUP,
                group_id=group_id,
                title=state.name,
                timer_seconds=state.timer_seconds,
                classification=state.label,
            )
        if conversation.title != state.name:
            self._store.conversations.set_title(conversation.id, state.name)
        if conversation.timer_seconds != state.timer_seconds:
            self._store.conversations.set_timer(conversation.id, state.timer_seconds)
        self._store.conversations.set_members(conversation.id, sorted(state.members))
        events.append(GroupChanged(conversation.id, group_id))
        return events

    def create(self, name: str, members: Iterable[str], *, timer_seconds: int, label: str) -> GroupChange:
        """The genesis of a new group this account founds, with its first members (not yet kept)."""
        identity, certificate = self._credentials.sealing_keys()
        others = sorted(set(members) - {certificate.account_id})
        return GroupChange.make(
            identity,
            certificate,
            group_id=NO_GROUP,
            lamport=0,
            parents=(),
            made_at=millis(self._clock),
            operations=(
                Create(self._random(NONCE_BYTES), name, timer_seconds, label),
                *(Step(Operation.ADD, account_id=account) for account in others),
            ),
        )

    def change(self, group_id: bytes, operations: tuple[Op, ...]) -> GroupChange:
        """A change of the group on top of what this device holds, signed by it (not yet kept).
        ``GroupError`` if this device's own rules would ignore it: it would change nothing."""
        identity, certificate = self._credentials.sealing_keys()
        group = self.log(group_id)
        if group.state is None:
            raise GroupError("this device does not hold that group")
        made = GroupChange.make(
            identity,
            certificate,
            group_id=group_id,
            lamport=group.next_lamport(),
            parents=group.heads(),
            made_at=millis(self._clock),
            operations=operations,
        )
        trial = GroupLog.of(group_id, [*group.changes.values(), made])
        reason = trial.resolution().ignored.get(made.change_id)
        if reason is not None:
            raise GroupError(reason)
        return made

    def welcome(self, group_id: bytes) -> list[GroupChanges]:
        """The whole log of the group, in contents small enough to send: what a new member needs
        to resolve its state."""
        contents: list[GroupChanges] = []
        batch: list[bytes] = []
        size = 0
        for raw in self._store.group_changes.of_group(group_id):
            if batch and (size + len(raw) > WELCOME_BYTES or len(batch) == MAX_GROUP_CHANGES):
                contents.append(GroupChanges(tuple(batch)))
                batch, size = [], 0
            batch.append(raw)
            size += len(raw)
        if batch:
            contents.append(GroupChanges(tuple(batch)))
        return contents
