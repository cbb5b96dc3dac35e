"""Group use cases: create a group, change it, and say who got and read a message in it.

Each change is made and signed here (``Groups.change``), kept, and sent pairwise to every
device of every account its state concerns: the members before and after it (so a removed
member learns it was removed), and to an account it adds, the whole log of the group, so that
it can resolve the same state. A change this device's own rules would ignore is refused
before anything is sent (``GroupError``). The timer and the label are checked against the
policy as a direct conversation's are.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.protocol.content import GroupChanges
from app.protocol.groupchange import Op, Operation, Step
from app.services.credentials import Credentials
from app.services.errors import GroupError, NotEnrolledError
from app.services.events import Emitter
from app.services.groups import Groups
from app.services.outgoing import Sending
from app.services.rules import RulesSource
from storage.records import Conversation, MessageStatus
from storage.store import Store


@dataclass(frozen=True, slots=True)
class GroupInfo:
    conversation_id: int
    group_id: bytes
    name: str
    members: tuple[str, ...]
    admins: tuple[str, ...]
    timer_seconds: int
    label: str
    secret: bool
    ignored: tuple[tuple[str, str], ...]
    """(claimed author, reason) of each change of the group that was not applied."""


@dataclass(frozen=True, slots=True)
class GroupReceipts:
    """Of one of this device's group messages: how many other members got it and read it."""

    delivered: int
    read: int
    members: int
    by_member: tuple[tuple[str, MessageStatus], ...]
    """Each member who sent a receipt, and the furthest it got (delivered or read), by account."""


class GroupAdmin:
    def __init__(
        self,
        store: Store,
        *,
        groups: Groups,
        sending: Sending,
        credentials: Credentials,
        emitter: Emitter,
        rules: RulesSource,
    ) -> None:
        self._store = store
        self._groups = groups
        self._sending = sending
        self._credentials = credentials
        self._emitter = emitter
        self._rules = rules

    def _me(self) -> str:
        if self._credentials.account is None:
            raise NotEnrolledError("enrol this device first")
        return self._credentials.account.account_id

    async def create(
        self, name: str, members: list[str], *, timer_seconds: int = 0, label: str = ""
    ) -> Conversation:
        """A new group with this account as its admin and ``members``; they hear of it at once.

        Secret groups (the format's secret flag) are not made yet: the secret-chat rules (no search
        index, no previews, no forwarding) are not applied to groups, so none is offered.
        """
        me = self._me()
        self._rules().check_timer(timer_seconds)
        self._rules().check_label(label)
        # Sessions first: if the relay is needed and gone, nothing is made that no member hears of.
        targets = await self._sending.reach(sorted(set(members) - {me}))
        genesis = self._groups.create(name, members, timer_seconds=timer_seconds, label=label)
        with self._store.transaction():
            events = self._groups.keep([genesis])
            self._sending.queue(targets, [GroupChanges((genesis.encode(),))])
        self._emitter.emit(*events)
        conversation = self._groups.conversation(genesis.own_group_id())
        if conversation is None:
            raise GroupError("the new group has no conversation")
        return conversation

    async def rename(self, conversation_id: int, name: str) -> GroupInfo:
        return await self._change(conversation_id, (Step(Operation.RENAME, text=name),))

    async def add(self, conversation_id: int, accounts: list[str]) -> GroupInfo:
        return await self._change(
            conversation_id, tuple(Step(Operation.ADD, account_id=a) for a in sorted(set(accounts)))
        )

    async def remove(self, conversation_id: int, account_id: str) -> GroupInfo:
        return await self._change(conversation_id, (Step(Operation.REMOVE, account_id=account_id),))

    async def promote(self, conversation_id: int, account_id: str) -> GroupInfo:
        return await self._change(conversation_id, (Step(Operation.PROMOTE, account_id=account_id),))

    async def demote(self, conversation_id: int, account_id: str) -> GroupInfo:
        return await self._change(conversation_id, (Step(Operation.DEMOTE, account_id=account_id),))

    async def leave(self, conversation_id: int) -> GroupInfo:
        return await self._change(conversation_id, (Step(Operation.LEAVE),))

    async def set_timer(self, conversation_id: int, timer_seconds: int) -> GroupInfo:
        self._rules().check_timer(timer_seconds)
        return await self._change(conversation_id, (Step(Operation.SET_TIMER, seconds=timer_seconds),))

    async def set_label(self, conversation_id: int, label: str) -> GroupInfo:
        self._rules().check_label(label)
        return await self._change(conversation_id, (Step(Operation.SET_LABEL, text=label),))

    async def _change(self, conversation_id: int, operations: tuple[Op, ...]) -> GroupInfo:
        """Make, keep and send one change. The sessions it needs are made before it is kept, so a
        relay out of reach leaves nothing behind; keeping it and queueing its copies is one
        transaction, so no change is kept that its members will not be sent."""
        me = self._me()
        group_id = self._group_id(conversation_id)
        before = self._groups.members(group_id)
        change = self._groups.change(group_id, operations)
        added = {op.account_id for op in operations if isinstance(op, Step) and op.operation == Operation.ADD}
        targets = await self._sending.reach(sorted((before | added) - {me}))
        with self._store.transaction():
            events = self._groups.keep([change])
            after = self._groups.members(group_id)
            joined = after - before - {me}
            told = (before | after) - {me} - joined
            self._sending.queue([t for t in targets if t[0] in told], [GroupChanges((change.encode(),))])
            if joined:
                welcome = self._groups.welcome(group_id)
                self._sending.queue([t for t in targets if t[0] in joined], welcome)
        self._emitter.emit(*events)
        return self.info(conversation_id)

    def _group_id(self, conversation_id: int) -> bytes:
        group_id = self._store.conversations.get(conversation_id).group_id
        if group_id is None:
            raise GroupError("that conversation is not a group")
        return group_id

    def info(self, conversation_id: int) -> GroupInfo:
        group_id = self._group_id(conversation_id)
        group = self._groups.log(group_id)
        resolution = group.resolution()
        state = resolution.state
        if state is None:
            raise GroupError("this device does not hold that group's beginning")
        return GroupInfo(
            conversation_id,
            group_id,
            state.name,
            tuple(sorted(state.members)),
            tuple(sorted(state.admins)),
            state.timer_seconds,
            state.label,
            state.secret,
            tuple((group.changes[c].author.account_id, reason) for c, reason in resolution.ignored.items()),
        )

    def receipts(self, message_id: int) -> GroupReceipts:
        """ "Read by 41 of 57": of a message this device sent to a group."""
        message = self._store.messages.get(message_id)
        group_id = self._group_id(message.conversation_id)
        delivered, read = self._store.member_receipts.counts(message_id)
        by_member = tuple(sorted(self._store.member_receipts.of_message(message_id).items()))
        return GroupReceipts(delivered, read, len(self._groups.members(group_id) - {self._me()}), by_member)
