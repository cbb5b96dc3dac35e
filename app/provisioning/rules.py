"""Every policy key, its kind, limits and built-in default: the one table the parser, the JSON
Schema (``app.provisioning.schema``), the Group Policy template and ``enclave-cli policy`` read.

A value is checked here once, whoever offers it (a config file, the user), so a key can never
mean one thing in the file and another in the settings. Rules that tie keys together (the
timer default between its minimum and maximum, the default label among the labels) are in
``cross_key_problems``; JSON Schema cannot state them, so the schema's description does.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass

from app.base.limits import MAX_ATTACHMENT_BYTES, MAX_TIMER_SECONDS

PolicyValue = bool | int | str | tuple[str, ...]

MAX_LABEL_CHARS = 64
MAX_LABELS = 32
MAX_ATTACHMENT_TYPES = 64
MAX_IDLE_LOCK_MINUTES = 7 * 24 * 60
MAX_PASSPHRASE_MIN_LENGTH = 1024

LABEL_PATTERN = f"^[^\\u0000-\\u001f\\u007f-\\u009f]{{1,{MAX_LABEL_CHARS}}}$"
"""A classification label: 1 to 64 characters, no control character (C0, DEL, C1)."""
_MIME_PART = "[a-z0-9][a-z0-9!#$&^_.+-]{0,62}"
MIME_PATTERN = f"^(\\*/\\*|{_MIME_PART}/(\\*|{_MIME_PART}))$"
"""A permitted attachment type: ``type/subtype``, ``type/*`` or ``*/*``, in lower case."""


class Kind(enum.Enum):
    BOOL = "boolean"
    INT = "integer"
    LABEL = "label"
    LABELS = "labels"
    MIME_TYPES = "types"


@dataclass(frozen=True, slots=True)
class PolicyKey:
    name: str
    kind: Kind
    default: PolicyValue
    summary: str
    minimum: int = 0
    maximum: int = 0


POLICY_KEYS: tuple[PolicyKey, ...] = (
    PolicyKey(
        "timer_default_seconds",
        Kind.INT,
        0,
        "Disappearing timer of a new conversation, in seconds (0: off).",
        0,
        MAX_TIMER_SECONDS,
    ),
    PolicyKey(
        "timer_minimum_seconds",
        Kind.INT,
        0,
        "Shortest timer a conversation may have, in seconds (above 0: the timer cannot be off).",
        0,
        MAX_TIMER_SECONDS,
    ),
    PolicyKey(
        "timer_maximum_seconds",
        Kind.INT,
        MAX_TIMER_SECONDS,
        "Longest timer a conversation may have, in seconds.",
        0,
        MAX_TIMER_SECONDS,
    ),
    PolicyKey("secret_chats_only", Kind.BOOL, False, "Only secret chats may be started."),
    PolicyKey("read_receipts_allowed", Kind.BOOL, True, "Read receipts may be sent."),
    PolicyKey("attachments_allowed", Kind.BOOL, True, "Files may be sent."),
    PolicyKey(
        "attachment_max_bytes",
        Kind.INT,
        MAX_ATTACHMENT_BYTES,
        "Largest file that may be sent, in bytes.",
        1,
        MAX_ATTACHMENT_BYTES,
    ),
    PolicyKey(
        "attachment_types",
        Kind.MIME_TYPES,
        ("*/*",),
        "MIME types of the files that may be sent (type/subtype, type/* or */*).",
    ),
    PolicyKey("classification_labels", Kind.LABELS, (), "Classification labels a conversation may carry."),
    PolicyKey(
        "classification_default",
        Kind.LABEL,
        "",
        "Label of a new conversation; one of classification_labels, or empty for none.",
    ),
    PolicyKey(
        "notification_previews", Kind.BOOL, True, "Notifications show the sender and the text's beginning."
    ),
    PolicyKey(
        "passphrase_required",
        Kind.BOOL,
        False,
        "A profile is protected by a passphrase, not the system keystore.",
    ),
    PolicyKey(
        "passphrase_min_length",
        Kind.INT,
        1,
        "Fewest characters a profile passphrase may have (length is the strength measured).",
        1,
        MAX_PASSPHRASE_MIN_LENGTH,
    ),
    PolicyKey(
        "idle_lock_minutes",
        Kind.INT,
        0,
        "Minutes without use after which the window locks (0: never).",
        0,
        MAX_IDLE_LOCK_MINUTES,
    ),
    PolicyKey("directory_lookup_allowed", Kind.BOOL, True, "Colleagues may be looked up in the directory."),
    PolicyKey(
        "verified_keys_required",
        Kind.LABELS,
        (),
        "Labels whose conversations send only to colleagues whose keys were verified.",
    ),
)
BY_NAME: Mapping[str, PolicyKey] = {key.name: key for key in POLICY_KEYS}

_LABEL = re.compile(LABEL_PATTERN)
_MIME = re.compile(MIME_PATTERN)


class ValueProblem(Exception):
    """A value does not fit its key; the caller wraps it into the error of its context."""


def untrusted_value(key: PolicyKey, untrusted: object) -> PolicyValue:
    """``untrusted`` as a value of ``key``, or ``ValueProblem`` saying what is wrong with it.

    A list comes back as a tuple in the order given; a repeated item is refused, so that a
    list means what it shows.
    """
    if key.kind is Kind.BOOL:
        if type(untrusted) is not bool:
            raise ValueProblem("must be true or false")
        return untrusted
    if key.kind is Kind.INT:
        if type(untrusted) is not int:
            raise ValueProblem(f"must be a whole number {key.minimum}..{key.maximum}")
        if not key.minimum <= untrusted <= key.maximum:
            raise ValueProblem(f"{untrusted} is out of range {key.minimum}..{key.maximum}")
        return untrusted
    if key.kind is Kind.LABEL:
        if type(untrusted) is not str:
            raise ValueProblem("must be a text")
        if untrusted and not _LABEL.match(untrusted):
            raise ValueProblem(f"a label is 1 to {MAX_LABEL_CHARS} characters, none a control character")
        return untrusted
    return _untrusted_list(key, untrusted)


def _untrusted_list(key: PolicyKey, untrusted: object) -> tuple[str, ...]:
    pattern, limit, what = (
        (_LABEL, MAX_LABELS, f"a label of 1 to {MAX_LABEL_CHARS} characters, none a control character")
        if key.kind is Kind.LABELS
        else (_MIME, MAX_ATTACHMENT_TYPES, "a MIME type in lower case: type/subtype, type/* or */*")
    )
    if not isinstance(untrusted, list | tuple):
        raise ValueProblem("must be a list")
    if len(untrusted) > limit:
        raise ValueProblem(f"holds {len(untrusted)} items; at most {limit}")
    for index, item in enumerate(untrusted):
        if type(item) is not str or not pattern.match(item):
            raise ValueProblem(f"item {index + 1} must be {what}")
    if len(set(untrusted)) != len(untrusted):
        raise ValueProblem("holds an item twice")
    return tuple(untrusted)


def cross_key_problems(values: Mapping[str, PolicyValue]) -> list[tuple[str, str]]:
    """(key, problem) for each rule tying keys together that ``values`` breaks.

    Only keys present in ``values`` are compared, so a file may set any subset: a minimum
    alone, or a default label whose labels another source gives.
    """
    problems: list[tuple[str, str]] = []
    low, default, high = (values.get(f"timer_{n}_seconds") for n in ("minimum", "default", "maximum"))
    if isinstance(low, int) and isinstance(high, int) and low > high:
        problems.append(("timer_minimum_seconds", f"{low} is above timer_maximum_seconds ({high})"))
    if isinstance(default, int) and isinstance(low, int) and default < low:
        problems.append(("timer_default_seconds", f"{default} is below timer_minimum_seconds ({low})"))
    if isinstance(default, int) and isinstance(high, int) and default > high:
        problems.append(("timer_default_seconds", f"{default} is above timer_maximum_seconds ({high})"))
    labels = values.get("classification_labels")
    if isinstance(labels, tuple):
        chosen = values.get("classification_default")
        if isinstance(chosen, str) and chosen and chosen not in labels:
            problems.append(("classification_default", f"{chosen!r} is not one of classification_labels"))
        required = values.get("verified_keys_required")
        if isinstance(required, tuple):
            problems.extend(
                ("verified_keys_required", f"{label!r} is not one of classification_labels")
                for label in required
                if label not in labels
            )
    return problems
