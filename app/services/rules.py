"""What the organisation's policy allows, as the engine's parts ask it before they act.

``PolicyRules`` is the effective policy (``app.provisioning.policy``) as typed values with
one check per rule. The part that owns an action calls its check first, before anything
is stored, sealed or sent, so a refused call changes nothing (docs/ARCHITECTURE.md lists
which part enforces which rule). Every refusal is a ``PolicyRefusedError`` that names the
key and what it allows, in one line.

Timers that come from a peer are not refused (that would lose what the peer wrote) but
brought into this device's range, since the range is this organisation's rule about
what its devices keep:

- a conversation's timer (a peer's timer change, a conversation a peer started) becomes
  the nearest allowed value (``nearest_timer``): it is the timer this user's own messages
  will carry, so it must be one the user could have chosen. The peer's side keeps its
  value; the ``TimerChanged`` event carries the value applied here.
- an arriving message keeps a timer shorter than the maximum that its sender chose,
  even one below the minimum (this device never keeps a message longer than its sender
  wished), but is kept no longer than the maximum, and a message sent without a timer
  gets the minimum (``arriving_timer``).

The idle lock and notification previews are the window's to apply; they are here so the
face reads every rule from one value (``PolicyView.rules``).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from app.provisioning.policy import EffectivePolicy
from app.services.errors import (
    DirectChatNotAllowedError,
    DirectoryNotAllowedError,
    FileNotAllowedError,
    PolicyRefusedError,
    ProfileProtectionError,
    TimerNotAllowedError,
)
from storage.keys import KeySource, Keystore, Passphrase

T = TypeVar("T")


def _value(policy: EffectivePolicy, key: str, kind: type[T]) -> T:
    value = policy.value(key)
    if not isinstance(value, kind):
        raise TypeError(f"{key} holds {value!r}, not a {kind.__name__}")
    return value


def timer_text(seconds: int) -> str:
    return "off" if seconds == 0 else f"{seconds} s"


def type_permitted(mime_type: str, permitted: tuple[str, ...]) -> bool:
    """Whether ``mime_type`` is one of ``permitted`` (``type/subtype``, ``type/*`` or ``*/*``)."""
    main, _, _ = mime_type.lower().partition("/")
    return any(p in ("*/*", f"{main}/*", mime_type.lower()) for p in permitted)


@dataclass(frozen=True, slots=True)
class PolicyRules:
    timer_default: int
    timer_minimum: int
    timer_maximum: int
    secret_chats_only: bool
    read_receipts_allowed: bool
    attachments_allowed: bool
    attachment_max_bytes: int
    attachment_types: tuple[str, ...]
    classification_labels: tuple[str, ...]
    classification_default: str
    notification_previews: bool
    """For the window: whether a notification shows the sender and the text's beginning."""
    passphrase_required: bool
    passphrase_min_length: int
    idle_lock_minutes: int
    """For the window: lock after this many minutes without use (0: never)."""
    directory_lookup_allowed: bool
    verified_keys_required: tuple[str, ...]

    @classmethod
    def of(cls, policy: EffectivePolicy) -> PolicyRules:
        return cls(
            timer_default=_value(policy, "timer_default_seconds", int),
            timer_minimum=_value(policy, "timer_minimum_seconds", int),
            timer_maximum=_value(policy, "timer_maximum_seconds", int),
            secret_chats_only=_value(policy, "secret_chats_only", bool),
            read_receipts_allowed=_value(policy, "read_receipts_allowed", bool),
            attachments_allowed=_value(policy, "attachments_allowed", bool),
            attachment_max_bytes=_value(policy, "attachment_max_bytes", int),
            attachment_types=_value(policy, "attachment_types", tuple),
            classification_labels=_value(policy, "classification_labels", tuple),
            classification_default=_value(policy, "classification_default", str),
            notification_previews=_value(policy, "notification_previews", bool),
            passphrase_required=_value(policy, "passphrase_required", bool),
            passphrase_min_length=_value(policy, "passphrase_min_length", int),
            idle_lock_minutes=_value(policy, "idle_lock_minutes", int),
            directory_lookup_allowed=_value(policy, "directory_lookup_allowed", bool),
            verified_keys_required=_value(policy, "verified_keys_required", tuple),
        )

    # Timers (Conversations, Receiving).

    def check_timer(self, seconds: int) -> None:
        """A timer the user chose, if the range allows it (0, off, only if the minimum is 0)."""
        allowed = f"timers from {timer_text(self.timer_minimum)} to {self.timer_maximum} s"
        if seconds < self.timer_minimum:
            raise TimerNotAllowedError("timer_minimum_seconds", allowed, f"{timer_text(seconds)} is refused")
        if seconds > self.timer_maximum:
            raise TimerNotAllowedError("timer_maximum_seconds", allowed, f"{timer_text(seconds)} is refused")

    def nearest_timer(self, seconds: int, *, secret: bool = False) -> int:
        """The allowed timer nearest to a conversation timer a peer set (module docstring).

        A secret chat always disappears: where the range would turn its timer off (a
        maximum of 0), the peer's timer stays.
        """
        nearest = min(max(seconds, self.timer_minimum), self.timer_maximum)
        return seconds if secret and nearest == 0 else nearest

    def arriving_timer(self, seconds: int, *, secret: bool = False) -> int:
        """The timer an arriving message is kept with here (module docstring; ``secret`` as above)."""
        kept = self.timer_minimum if seconds == 0 else min(seconds, self.timer_maximum)
        return seconds if secret and kept == 0 else kept

    # Conversations.

    def check_direct(self) -> None:
        """A normal (not secret) conversation may be started or written in."""
        if self.secret_chats_only:
            raise DirectChatNotAllowedError(
                "secret_chats_only", "only secret chats", "start a secret chat to write to this colleague"
            )

    def label_of(self, classification: str) -> str:
        """A conversation's label: its own, or the current default for one made before it had any."""
        return classification or self.classification_default

    def check_label(self, label: str) -> None:
        """A label a group may be given: none (the default then applies) or one of the policy's."""
        if label and label not in self.classification_labels:
            allowed = ", ".join(self.classification_labels) or "none"
            raise PolicyRefusedError(
                "classification_labels", f"the labels allowed are: {allowed}", f"not {label!r}"
            )

    def requires_verification(self, classification: str) -> bool:
        return self.label_of(classification) in self.verified_keys_required

    # Files (Sending).

    def check_file(self, *, size: int, mime_type: str) -> None:
        if not self.attachments_allowed:
            raise FileNotAllowedError("attachments_allowed", "no files may be sent", "send text only")
        if size > self.attachment_max_bytes:
            raise FileNotAllowedError(
                "attachment_max_bytes",
                f"files of at most {self.attachment_max_bytes} bytes",
                f"this one has {size}",
            )
        if not type_permitted(mime_type, self.attachment_types):
            raise FileNotAllowedError(
                "attachment_types",
                f"files of type {', '.join(self.attachment_types) or 'none'}",
                f"{mime_type} is refused",
            )

    # The directory (Contacts).

    def check_directory(self) -> None:
        if not self.directory_lookup_allowed:
            raise DirectoryNotAllowedError(
                "directory_lookup_allowed", "no directory look-ups", "add colleagues from your contacts"
            )

    # A new profile (Enclave.open).

    def check_new_profile(self, key: KeySource) -> None:
        """How a profile about to be made is protected: the keystore, or a passphrase long enough.

        Length is counted in characters of the NFC form, the form the key is derived from.
        """
        if isinstance(key, Keystore) and self.passphrase_required:
            raise ProfileProtectionError(
                "passphrase_required", "profiles protected by a passphrase", "not the system keystore"
            )
        if isinstance(key, Passphrase):
            length = len(unicodedata.normalize("NFC", key.secret))
            if length < self.passphrase_min_length:
                raise ProfileProtectionError(
                    "passphrase_min_length",
                    f"passphrases of at least {self.passphrase_min_length} characters",
                    f"this one has {length}",
                )


RulesSource = Callable[[], PolicyRules]
"""What a part is given to read the policy in force now (``Provisioning.rules``)."""
