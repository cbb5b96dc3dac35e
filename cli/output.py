"""How the CLI prints: one line per item, tab-separated fields or ``key: value``, UTC ISO 8601 times.

Text from colleagues is untrusted. Control characters (which could move the cursor,
rewrite earlier lines, or end a field or a line early), line separators and
bidirectional overrides are printed as escapes, and a backslash as ``\\\\``, so every
item stays on one line, each field in its column, showing what it really contains.
"""

from __future__ import annotations

import io
import json
import sys
import time
import unicodedata

from app.services.events import (
    ConnectionChanged,
    ConversationStarted,
    DeviceAddedToAccount,
    Event,
    KeyChanged,
    LogForked,
    MessageArrived,
    MessageHeld,
    MessagesExpired,
    MessageStatusChanged,
    MessageUnreadable,
    Problem,
    TimerChanged,
)
from app.services.types import (
    Contact,
    ConversationSummary,
    LoggedBinding,
    Message,
    PolicyEntry,
    SafetyNumberView,
)

SAFETY_GROUP_DIGITS = 5
_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
_BIDI_CONTROLS = frozenset(chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F))
_ESCAPED_CATEGORIES = frozenset({"Cc", "Zl", "Zp"})


def line_buffered() -> None:
    """Flush stdout at every line, so a pipe or a script sees each item as it is printed."""
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)


def note(text: str) -> None:
    """A line for the person, not the parser: progress, warnings, events other than messages."""
    print(text, file=sys.stderr, flush=True)


def one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def clean(untrusted: str) -> str:
    return "".join(_escape(ch) for ch in untrusted)


def _escape(ch: str) -> str:
    if ch in _ESCAPES:
        return _ESCAPES[ch]
    if ch in _BIDI_CONTROLS or unicodedata.category(ch) in _ESCAPED_CATEGORIES:
        return f"\\u{ord(ch):04x}"
    return ch


def fields(*values: object) -> str:
    return "\t".join(clean(str(value)) for value in values)


def pair(key: str, value: object) -> str:
    return f"{key}: {clean(str(value))}"


def timestamp(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def safety_groups(digits: str) -> str:
    return " ".join(digits[i : i + SAFETY_GROUP_DIGITS] for i in range(0, len(digits), SAFETY_GROUP_DIGITS))


def contact_line(contact: Contact) -> str:
    """account, name, department."""
    return fields(contact.account_id, contact.display_name, contact.department)


def policy_line(entry: PolicyEntry) -> str:
    """key, value as JSON (what ``policy --set`` takes), where it came from (and why it moved)."""
    value = list(entry.value) if isinstance(entry.value, tuple) else entry.value
    source = entry.source.value + (f" ({entry.note})" if entry.note else "")
    return fields(entry.key, json.dumps(value, ensure_ascii=False), source)


def conversation_line(summary: ConversationSummary) -> str:
    """id, kind, peer, timer seconds, unread count, blocked (yes/no), title."""
    c = summary.conversation
    blocked = "yes" if summary.blocked else "no"
    return fields(c.id, c.kind, c.peer_account_id or "", c.timer_seconds, summary.unread, blocked, c.title)


def history_line(message: Message, sender: str, file_name: str) -> str:
    """id, sent at, sender, status, text (a file's caption), file name (empty for text)."""
    return fields(message.id, timestamp(message.sent_at), sender, message.status, message.body, file_name)


def arrival_line(event: MessageArrived, file_name: str) -> str:
    """conversation id, sender, sent at, text (a file's caption), file name (empty for text)."""
    message = event.message
    return fields(event.conversation.id, message.sender, timestamp(message.sent_at), message.body, file_name)


def safety_line(view: SafetyNumberView) -> str:
    """device id, the 60 digits in groups of five, trust."""
    return fields(view.device_id, safety_groups(view.digits), view.trust)


def device_line(binding: LoggedBinding, this_device: int) -> str:
    """device id, added at, revoked at (empty while active), "this device" or empty."""
    revoked = "" if binding.revoked_at is None else timestamp(binding.revoked_at)
    mark = "this device" if binding.device_id == this_device else ""
    return fields(binding.device_id, timestamp(binding.added_at), revoked, mark)


def security_note(event: Event) -> str | None:
    """What every command says on stderr at once, whatever it is doing, about a threat to this
    account (``listen`` included: ``event_note`` leaves these out)."""
    match event:
        case DeviceAddedToAccount(device_id=device_id, added_at=added_at):
            when = time.strftime("%d %b %Y at %H:%M UTC", time.gmtime(added_at)).lstrip("0")
            return (
                f"security: a new device (device {device_id}) was added to your account on {when}"
                " \u2014 if this was not you, tell security (enclave-cli devices lists them all)"
            )
        case LogForked(reason=reason):
            return (
                "security: sending is stopped: the organisation's key log was rewritten or shows"
                f" different people different logs ({clean(reason)}); tell security"
            )
    return None


def event_note(event: Event) -> str | None:
    """What ``listen`` says on stderr about an event other than an arriving message."""
    text: str | None = None
    match event:
        case ConnectionChanged(state=state, reason=reason):
            text = f"connection: {state}" + (f" ({clean(reason)})" if reason else "")
        case MessageStatusChanged(message_id=message_id, conversation_id=conversation_id, status=status):
            text = f"status: message {message_id} in conversation {conversation_id} is {status}"
        case TimerChanged(conversation_id=conversation_id, timer_seconds=seconds, by_peer=by_peer):
            who = "the colleague" if by_peer else "this device"
            text = f"timer: conversation {conversation_id} set to {seconds} s by {who}"
        case MessageHeld(message_id=message_id, conversation_id=conversation_id, account_id=account_id):
            account = clean(account_id)
            text = (
                f"held: message {message_id} in conversation {conversation_id} waits until you accept "
                f"{account}'s new key; compare safety numbers (safety-number {account}), then accept it "
                f"(safety-number {account} --accept)"
            )
        case KeyChanged(account_id=account_id, device_id=device_id):
            text = (
                f"key changed: {clean(account_id)} device {device_id}; compare safety numbers "
                f"(safety-number {clean(account_id)}) before accepting it"
            )
        case ConversationStarted(conversation=c):
            text = f"conversation: {c.id} ({c.kind}) started by {clean(c.peer_account_id or '')}"
        case MessagesExpired(message_ids=ids):
            text = f"expired: {len(ids)} messages disappeared"
        case Problem(message=message):
            text = f"problem: {clean(message)}"
        case MessageUnreadable(account_id=account_id, device_id=device_id, reason=reason):
            named = f"{clean(account_id)} device {device_id}" if account_id is not None else None
            sender = named or "a sender the message does not name"
            text = (
                f"unreadable: a message from {sender} could not be decrypted and was dropped"
                f" ({clean(reason)}); its sender is not told, ask them to send it again"
            )
    return text
