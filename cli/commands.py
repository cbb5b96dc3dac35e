"""The subcommands of ``enclave-cli``: each gets the open session and its arguments, returns an exit status.

Items go to stdout, one line each (``cli.output``); notes for the person go to stderr.
A typed error raised here is reported by ``cli.main`` as one line with exit status 1.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

from app.services.errors import SecretChatError
from app.services.events import ConnectionChanged, Event, MessageArrived
from app.services.types import GroupInfo, Message, MessageStatus
from cli import output
from cli.chat import Chat
from cli.errors import CliError
from cli.files import save_path
from cli.output import note, pair
from cli.session import ONLINE_SECONDS, REFUSED, Session

Command = Callable[[Session, argparse.Namespace], int]


def enrol(session: Session, args: argparse.Namespace) -> int:
    identity = session.call(session.enclave.enrol(args.server, args.pin, args.code))
    print(pair("account", identity.account_id))
    print(pair("device", identity.device_id))
    return 0


def contacts(session: Session, args: argparse.Namespace) -> int:
    """The local contacts; with ``--search``, the directory's matches, added as contacts."""
    if args.search is None:
        for contact in session.call(session.enclave.contacts()):
            print(output.contact_line(contact))
        return 0
    found = session.add_from_directory(args.search)
    if not found:
        note(f"no colleague in the directory matches {args.search!r}")
    for contact in found:
        print(output.contact_line(contact))
    return 0


def conversations(session: Session, args: argparse.Namespace) -> int:
    for summary in session.call(session.enclave.conversations()):
        print(output.conversation_line(summary))
    return 0


def send(session: Session, args: argparse.Namespace) -> int:
    """Send a text or a file, then wait (up to ``--wait``) until the relay has stored it.

    It stops waiting early, with ``status: pending``, when the message cannot leave before
    the user acts: it waits for a colleague's new key to be accepted, or the relay
    refused this device (exit status 1: nothing sent from this profile will leave).
    """
    deadline = time.monotonic() + args.wait
    path: Path | None = getattr(args, "path", None)
    conversation_id = _conversation_id(session, args, start=True)
    message: Message
    if path is not None:
        message = session.call(session.enclave.send_file(conversation_id, path, args.caption))
    else:
        message = session.call(session.enclave.send_text(conversation_id, args.text))
    print(pair("conversation", conversation_id))
    print(pair("message", message.id))
    outcome = session.final_status(message, deadline)
    status = outcome.status
    print(pair("status", status))
    if outcome.refused is not None:
        raise CliError(f"the relay refused this device: {outcome.refused}")
    if outcome.held_for is not None:
        account = output.clean(outcome.held_for)
        note(
            f"waiting until you accept {account}'s new key: compare safety numbers with {account} "
            f"(enclave-cli safety-number {account}), then accept it with "
            f"enclave-cli safety-number {account} --accept, and the message leaves"
        )
    elif status is MessageStatus.PENDING:
        note(
            "the relay has not taken it yet: it waits in this profile's outbox and leaves "
            "the next time enclave-cli (listen, for one) reaches the relay with this profile"
        )
    if status is MessageStatus.FAILED:
        raise CliError("the message could not be sent: the relay refused it, or the colleague has no device")
    return 0


def secret(session: Session, args: argparse.Namespace) -> int:
    """Start a secret chat; ``send --conversation ID`` then writes into it."""
    session.require_online()
    session.contact(args.account)
    conversation = session.call(session.enclave.start_secret_chat(args.account, args.timer))
    print(pair("conversation", conversation.id))
    print(pair("timer", conversation.timer_seconds))
    session.linger()
    return 0


def listen(session: Session, args: argparse.Namespace) -> int:
    """Print arriving messages until Ctrl-C, ``--wait`` seconds, ``--count`` messages, or a refusal.

    ``--count N`` stops once N have arrived; any that arrived with them are printed too.
    The relay pushes every queued message at once and the core stores and acknowledges
    each as it comes, so by the time the N-th is printed more may have been taken from
    the relay; none is left unprinted, because no later ``listen`` would see it. Those
    queued while the profile is still open are printed in full (file name,
    ``--save-files``, ``--mark-read``); then the profile is closed, which waits for the
    core to finish what it was storing, and any that arrived in that last moment are
    printed as well (see ``_Listening.late``).

    The relay refusing this device (revoked, account disabled) ends it at once, exit 1.
    """
    session.enrolled()
    if args.save_files is not None:
        args.save_files.mkdir(parents=True, exist_ok=True)
    deadline = None if args.wait is None else time.monotonic() + args.wait
    listening = _Listening(session, args)
    try:
        while not listening.done:
            event = session.next_event(deadline)
            if event is None:
                break
            listening.show(event)
        listening.show_all(session.drain())
        if listening.arrived and listening.refused is None:
            session.linger()  # their delivery (and read) receipts
            listening.show_all(session.drain())
    except KeyboardInterrupt:
        pass
    finally:
        session.close()
        listening.late(session.drain())
    if listening.refused is not None:
        raise CliError(f"the relay refused this device: {listening.refused}")
    if args.count is not None and listening.arrived < args.count:
        raise CliError(f"{listening.arrived} of {args.count} messages arrived within {args.wait} s")
    return 0


class _Listening:
    """What ``listen`` prints of the core's events, and how many messages it printed."""

    def __init__(self, session: Session, args: argparse.Namespace) -> None:
        self._session = session
        self._args = args
        self.arrived = 0
        self.refused: str | None = None

    @property
    def done(self) -> bool:
        count: int | None = self._args.count
        return self.refused is not None or (count is not None and self.arrived >= count)

    def show_all(self, events: list[Event]) -> None:
        for event in events:
            self.show(event)

    def show(self, event: Event) -> None:
        """One event, with the profile open: a message in full, anything else as a note."""
        if isinstance(event, MessageArrived):
            self.arrived += 1
            self._arrival(event)
        elif isinstance(event, ConnectionChanged) and event.state == REFUSED:
            self.refused = event.reason or REFUSED
        elif (text := output.event_note(event)) is not None:
            note(text)

    def late(self, events: list[Event]) -> None:
        """Messages whose events came after the last look, once the profile is closed.

        Their text is printed like any other; what needs the open profile (the file
        name column, saving the file, marking it read) cannot be done any more, and a
        note says so. ``history`` shows them in full.
        """
        for event in events:
            if isinstance(event, MessageArrived):
                self.arrived += 1
                print(output.arrival_line(event, ""))
                note(
                    f"message {event.message.id} arrived as listen was closing the profile: "
                    "a file it may carry is neither named nor saved here, and it is not marked "
                    "read; history shows it in full"
                )

    def _arrival(self, event: MessageArrived) -> None:
        session, args = self._session, self._args
        files = session.call(session.enclave.attachments(event.message.id))
        print(output.arrival_line(event, files[0].name if files else ""))
        if args.save_files is not None:
            for file in files:
                try:
                    dest = save_path(args.save_files, file.name)
                    session.call(session.enclave.save_attachment(file.id, dest))
                    note(f"saved: {dest}")
                except SecretChatError:
                    name = output.clean(file.name)
                    note(f"not saved: {name} is in a secret chat, whose files stay inside it")
        if args.mark_read:
            session.call(session.enclave.mark_read(event.conversation.id))


def history(session: Session, args: argparse.Namespace) -> int:
    """The last ``--limit`` messages, oldest first."""
    conversation_id = _conversation_id(session, args, start=False)
    own = session.enrolled().account_id
    page = session.call(session.enclave.history(conversation_id, limit=args.limit))
    for message in reversed(page.messages):
        files = session.call(session.enclave.attachments(message.id))
        sender = own if message.outgoing else message.sender
        print(output.history_line(message, sender, files[0].name if files else ""))
    return 0


def timer(session: Session, args: argparse.Namespace) -> int:
    session.require_online()
    conversation_id = _conversation_id(session, args, start=True)
    conversation = session.call(session.enclave.set_timer(conversation_id, args.seconds))
    print(pair("conversation", conversation.id))
    print(pair("timer", conversation.timer_seconds))
    session.linger()
    return 0


def group(session: Session, args: argparse.Namespace) -> int:
    """``group ACTION``: a change is sent to the members before this returns (it lingers to let it
    leave); ``info`` and ``receipts`` read this profile only."""
    enclave = session.enclave
    if args.action == "info":
        _print_group(session.call(enclave.group_info(args.id)))
        return 0
    if args.action == "receipts":
        counts = session.call(enclave.group_receipts(args.message))
        print(pair("delivered", counts.delivered))
        print(pair("read", counts.read))
        print(pair("members", counts.members))
        for account, status in counts.by_member:
            print(output.fields(account, status))
        return 0
    session.require_online()
    # No directory look-up for the members: fetching their keys names and certifies them (and a
    # policy that forbids look-ups must not forbid groups).
    if args.action == "create":
        made = session.call(
            enclave.create_group(args.name, args.members, timer_seconds=args.timer, label=args.label)
        )
        info = session.call(enclave.group_info(made.id))
    else:
        changes = {
            "rename": lambda: enclave.rename_group(args.id, args.name),
            "add": lambda: enclave.add_to_group(args.id, args.accounts),
            "remove": lambda: enclave.remove_from_group(args.id, args.account),
            "promote": lambda: enclave.promote_in_group(args.id, args.account),
            "demote": lambda: enclave.demote_in_group(args.id, args.account),
            "leave": lambda: enclave.leave_group(args.id),
            "timer": lambda: enclave.set_group_timer(args.id, args.seconds),
        }
        info = session.call(changes[args.action]())
    _print_group(info)
    session.linger()
    return 0


def _print_group(info: GroupInfo) -> None:
    print(pair("conversation", info.conversation_id))
    print(pair("group", info.group_id.hex()))
    print(pair("name", output.clean(info.name)))
    print(pair("members", " ".join(output.clean(m) for m in info.members)))
    print(pair("admins", " ".join(output.clean(a) for a in info.admins)))
    print(pair("timer", info.timer_seconds))
    if info.label:
        print(pair("label", output.clean(info.label)))
    if info.secret:
        print(pair("secret", "yes"))
    for author, reason in info.ignored:
        note(f"a change claimed by {output.clean(author)} was not applied: {output.clean(reason)}")


def safety_number(session: Session, args: argparse.Namespace) -> int:
    """The safety number of each of the colleague's devices; ``--verify`` and ``--accept`` act first.

    ``--accept`` lets the messages that waited for the new key leave before it returns.
    """
    if args.verify is not None:
        session.call(session.enclave.mark_verified(args.account, args.verify))
    if args.accept:
        # Online first, so the messages that waited for the new key are encrypted and leave now.
        online = session.go_online(ONLINE_SECONDS)
        session.call(session.enclave.accept_key_change(args.account))
        if online:
            session.linger()
        else:
            note("messages that waited for this key leave with this profile's next connection")
    views = session.call(session.enclave.safety_numbers(args.account))
    if not views:
        raise CliError(f"no device of {args.account!r} is known yet: exchange a message first")
    for view in views:
        print(output.safety_line(view))
    return 0


def devices(session: Session, args: argparse.Namespace) -> int:
    """This account's devices as the organisation's key log states them, after catching up with it
    when the relay answers; how far the log was checked goes to stderr, and with ``--save-head``
    the head checked to a file. A device the user did not enrol is someone else who reads what
    colleagues send them: tell security."""
    own = session.enrolled()
    session.go_online(ONLINE_SECONDS)
    status = session.call(session.enclave.key_log())
    if status.size is None or status.checked_at is None:
        note("key log: not checked yet (the relay has not answered)")
    else:
        note(f"key log: {status.size} entries, checked {output.timestamp(status.checked_at)}")
    if status.forked is not None:
        note(f"key log forked: {output.clean(status.forked)}; sending is stopped, tell security")
    if args.save_head is not None:
        if status.head is None:
            raise CliError("no head to save: this device has not checked the key log yet")
        try:
            args.save_head.write_bytes(status.head)
        except OSError as e:
            raise CliError(f"cannot write {args.save_head}: {e.strerror}") from e
        note(f"saved the head to {args.save_head} (enclave-admin log verify --head checks a log against it)")
    for binding in status.devices:
        print(output.device_line(binding, own.device_id))
    return 0 if status.forked is None else 1


def _conversation_id(session: Session, args: argparse.Namespace, *, start: bool) -> int:
    """``--conversation ID``, or the direct conversation with ``ACCOUNT`` (started if ``start``)."""
    if args.conversation is not None:
        return int(args.conversation)
    if start:
        return session.direct_conversation(args.account).id
    return session.existing_conversation(args.account).id


def chat(session: Session, args: argparse.Namespace) -> int:
    session.enrolled()
    return Chat(session).run()


def policy(session: Session, args: argparse.Namespace) -> int:
    """The effective policy, one key a line with its source; first import a config, or set or
    unset the user's own value of a key, if asked. Which configs are in force, and why one
    found at open was refused, go to stderr."""
    enclave = session.enclave
    if args.import_config is not None:
        session.call(enclave.import_config(args.import_config))
        note(f"imported {args.import_config}")
    elif args.set_value is not None:
        key, equals, text = args.set_value.partition("=")
        if not equals:
            raise CliError('--set takes KEY=VALUE, the value in JSON (3600, true, ["image/*"])')
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text  # a bare label: --set classification_default=OFFICIAL
        session.call(enclave.set_policy(key, value))
    elif args.unset is not None:
        session.call(enclave.clear_policy(args.unset))
    view = session.call(enclave.policy())
    note(f"system location: {view.system_location}")
    for config in view.configs:
        note(f"{config.origin} config: {config.organisation} v{config.version}, expires {config.expires}")
    for refusal in view.refusals:
        note(f"refused: {output.clean(refusal)}")
    for entry in view.policy.entries:
        print(output.policy_line(entry))
    return 0


COMMANDS: dict[str, Command] = {
    "enrol": enrol,
    "contacts": contacts,
    "conversations": conversations,
    "send": send,
    "send-file": send,
    "secret": secret,
    "listen": listen,
    "history": history,
    "timer": timer,
    "group": group,
    "safety-number": safety_number,
    "devices": devices,
    "chat": chat,
    "policy": policy,
}
