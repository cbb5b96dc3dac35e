"""The organisation config: its model, and the strict parser of the TOML an admin signs.

``untrusted_config`` takes the exact bytes of a file and returns an ``OrgConfig`` or raises
``MalformedConfigError`` naming the key and its line. It checks what the published JSON
Schema (``packaging/provisioning/enclave-config.schema.json``, made by
``app.provisioning.schema`` from the same constants) states, plus the rules a schema
cannot state: the cross-key rules of ``app.provisioning.rules``, a key set both mandatory
and recommended, ``issued`` before ``expires``, an authority key other than the root, a log
key other than both, and admins with names and keys of their own.
Nothing here checks the signature or the clock: ``app.provisioning.accept`` does, and
parses only bytes whose signature has verified.
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from app.protocol.logentry import MAX_ADMIN_NAME_BYTES
from app.provisioning.errors import MalformedConfigError
from app.provisioning.lines import KeyPath, key_lines, line_of
from app.provisioning.rules import BY_NAME, PolicyValue, ValueProblem, cross_key_problems, untrusted_value

CONFIG_FORMAT = 1
CONFIG_FORMATS = frozenset({CONFIG_FORMAT})
"""The ``format`` values this build reads (and the only one ever defined)."""
MAX_CONFIG_BYTES = 256 * 1024
MAX_VERSION = 2**53 - 1
"""The largest version (JSON's largest exact integer, so every tool reads it alike)."""
MAX_NAME_CHARS = 128
MAX_RELAYS = 8
MAX_PINS = 8
MAX_ADMINS = 32

KEY_PATTERN = "^[0-9a-f]{64}$"
"""An Ed25519 public key: 64 lower-case hex digits."""
NAME_PATTERN = f"^[^\\u0000-\\u001f\\u007f-\\u009f]{{1,{MAX_NAME_CHARS}}}$"
URL_PATTERN = "^https://([A-Za-z0-9.-]+|\\[[0-9A-Fa-f:.]+\\])(:[0-9]{1,5})?$"
"""A relay: ``https://HOST`` or ``https://HOST:PORT``, no path."""
PIN_PATTERN = "^sha256/[A-Za-z0-9+/]{43}=$"
"""A TLS public-key pin as ``enclave-server`` prints it."""
KEY_RULE = "an Ed25519 public key in 64 hex digits"
NAME_RULE = f"1 to {MAX_NAME_CHARS} characters, none a control character"

TOP_KEYS = (
    "format",
    "version",
    "issued",
    "expires",
    "organisation",
    "relay",
    "enrolment",
    "transparency",
    "policy",
)
REQUIRED_TOP_KEYS = TOP_KEYS[:-1]
POLICY_TABLES = ("mandatory", "recommended")


@dataclass(frozen=True, slots=True)
class ConfigAdmin:
    """An admin the config names: the name key-log entries carry, and the Ed25519 public key that
    signs that admin's actions into the log."""

    name: str
    key: bytes


@dataclass(frozen=True, slots=True)
class OrgConfig:
    """One organisation config as signed: who the organisation is, where its relay is, whom it
    delegates to (the enrolment authority, the key log's key, the admins), and its policy split
    into mandatory and recommended values."""

    version: int
    issued: dt.datetime
    expires: dt.datetime
    organisation: str
    root_key: bytes
    relay_urls: tuple[str, ...]
    relay_pins: tuple[str, ...]
    authority_key: bytes
    authority_urls: tuple[str, ...]
    authority_pins: tuple[str, ...]
    log_key: bytes
    """The key that signs the key log's heads (the relay's ``log.key``); clients take it from here."""
    admins: tuple[ConfigAdmin, ...]
    """The admins whose own keys sign admin actions into the key log, in the file's order."""
    mandatory: Mapping[str, PolicyValue]
    recommended: Mapping[str, PolicyValue]


class _Reader:
    """Walks the parsed TOML with the text's line numbers at hand, refusing with key and line."""

    def __init__(self, source: str, text: str) -> None:
        self.source = source
        self.lines = key_lines(text)

    def refuse(self, path: KeyPath, problem: str) -> MalformedConfigError:
        return MalformedConfigError(self.source, problem, key=".".join(path), line=line_of(self.lines, path))

    def table(
        self, parent: Mapping[str, object], path: KeyPath, allowed: tuple[str, ...], required: tuple[str, ...]
    ) -> Mapping[str, object]:
        return self.checked_table(parent[path[-1]] if path else parent, path, allowed, required)

    def checked_table(
        self, value: object, path: KeyPath, allowed: tuple[str, ...], required: tuple[str, ...]
    ) -> Mapping[str, object]:
        if not isinstance(value, dict):
            raise self.refuse(path, "must be a table")
        for name in value:
            if name not in allowed:
                raise self.refuse((*path, name), f"unknown key {name!r}")
        for name in required:
            if name not in value:
                where = f"[{'.'.join(path)}]" if path else "the top level"
                raise MalformedConfigError(
                    self.source,
                    f"{where} lacks the key {name!r}",
                    line=line_of(self.lines, path) if path else None,
                )
        return value

    def integer(self, table: Mapping[str, object], path: KeyPath, low: int, high: int) -> int:
        value = table[path[-1]]
        if type(value) is not int:
            raise self.refuse(path, f"must be a whole number {low}..{high}")
        if not low <= value <= high:
            raise self.refuse(path, f"{value} is out of range {low}..{high}")
        return value

    def moment(self, table: Mapping[str, object], path: KeyPath) -> dt.datetime:
        value = table[path[-1]]
        if not isinstance(value, dt.datetime) or value.tzinfo is None:
            raise self.refuse(path, "must be a date and time with its offset, as 2025-06-01T09:00:00Z")
        return value

    def text(self, table: Mapping[str, object], path: KeyPath, pattern: str, what: str) -> str:
        value = table[path[-1]]
        if type(value) is not str or not re.match(pattern, value):
            raise self.refuse(path, f"must be {what}")
        return value

    def texts(
        self, table: Mapping[str, object], path: KeyPath, pattern: str, what: str, limit: int
    ) -> tuple[str, ...]:
        value = table[path[-1]]
        if not isinstance(value, list) or not 1 <= len(value) <= limit:
            raise self.refuse(path, f"must be a list of 1 to {limit} items")
        for index, item in enumerate(value):
            if type(item) is not str or not re.match(pattern, item):
                raise self.refuse(path, f"item {index + 1} must be {what}")
        if len(set(value)) != len(value):
            raise self.refuse(path, "holds an item twice")
        return tuple(value)


def untrusted_config(untrusted: bytes, *, source: str) -> OrgConfig:
    """The config in ``untrusted`` (a whole file's bytes), or ``MalformedConfigError``.

    ``source`` names the file in messages.
    """
    if len(untrusted) > MAX_CONFIG_BYTES:
        raise MalformedConfigError(source, f"it is {len(untrusted)} bytes; at most {MAX_CONFIG_BYTES}")
    try:
        text = untrusted.decode("utf-8")
        document = tomllib.loads(text)
    except UnicodeDecodeError as e:
        raise MalformedConfigError(source, f"it is not UTF-8 (byte {e.start})") from e
    except tomllib.TOMLDecodeError as e:
        # tomllib's message ends with "(at line N, column M)".
        raise MalformedConfigError(source, f"it is not valid TOML: {e}") from e
    r = _Reader(source, text)
    top = r.table(document, (), TOP_KEYS, REQUIRED_TOP_KEYS)
    fmt = top["format"]
    if type(fmt) is not int or fmt not in CONFIG_FORMATS:
        raise r.refuse(
            ("format",), f"format {fmt!r} is not one this Enclave reads ({CONFIG_FORMAT}); update Enclave"
        )
    version = r.integer(top, ("version",), 1, MAX_VERSION)
    issued = r.moment(top, ("issued",))
    expires = r.moment(top, ("expires",))
    if expires <= issued:
        raise r.refuse(("expires",), "must be later than issued")

    org = r.table(top, ("organisation",), ("name", "root_key"), ("name", "root_key"))
    name = r.text(
        org,
        ("organisation", "name"),
        NAME_PATTERN,
        NAME_RULE,
    )
    root = r.text(org, ("organisation", "root_key"), KEY_PATTERN, KEY_RULE)
    relay = r.table(top, ("relay",), ("urls", "pins"), ("urls", "pins"))
    urls = r.texts(relay, ("relay", "urls"), URL_PATTERN, "https://HOST or https://HOST:PORT", MAX_RELAYS)
    pins = r.texts(relay, ("relay", "pins"), PIN_PATTERN, "a key pin, sha256/<base64>", MAX_PINS)
    enrolment_keys = ("authority_key", "urls", "pins")
    enrolment = r.table(top, ("enrolment",), enrolment_keys, enrolment_keys)
    authority_urls = r.texts(
        enrolment, ("enrolment", "urls"), URL_PATTERN, "https://HOST or https://HOST:PORT", MAX_RELAYS
    )
    authority_pins = r.texts(
        enrolment, ("enrolment", "pins"), PIN_PATTERN, "a key pin, sha256/<base64>", MAX_PINS
    )
    authority = r.text(enrolment, ("enrolment", "authority_key"), KEY_PATTERN, KEY_RULE)
    if authority == root:
        raise r.refuse(("enrolment", "authority_key"), "must not be the root key (the root stays offline)")
    log_key, admins = _transparency(r, top, root=root, authority=authority)

    mandatory, recommended = _policy(r, top)
    return OrgConfig(
        version=version,
        issued=issued,
        expires=expires,
        organisation=name,
        root_key=bytes.fromhex(root),
        relay_urls=urls,
        relay_pins=pins,
        authority_key=bytes.fromhex(authority),
        authority_urls=authority_urls,
        authority_pins=authority_pins,
        log_key=log_key,
        admins=admins,
        mandatory=mandatory,
        recommended=recommended,
    )


def _transparency(
    r: _Reader, top: Mapping[str, object], *, root: str, authority: str
) -> tuple[bytes, tuple[ConfigAdmin, ...]]:
    """The ``[transparency]`` table: the log key and the admins, each key apart from every other
    the config names (one key in two roles would let its holder act in both)."""
    table = r.table(top, ("transparency",), ("log_key", "admins"), ("log_key",))
    log_key = r.text(table, ("transparency", "log_key"), KEY_PATTERN, KEY_RULE)
    for other, what in ((root, "the root key"), (authority, "the enrolment authority's key")):
        if log_key == other:
            raise r.refuse(("transparency", "log_key"), f"must not be {what} (the relay holds the log key)")
    taken = {root: "the root key", authority: "the enrolment authority's key", log_key: "the log key"}
    untrusted_admins = table.get("admins", [])
    if not isinstance(untrusted_admins, list) or len(untrusted_admins) > MAX_ADMINS:
        raise r.refuse(("transparency", "admins"), f"must be a list of 0 to {MAX_ADMINS} admins")
    names: dict[str, int] = {}
    admins = []
    for index, untrusted_admin in enumerate(untrusted_admins):
        path = ("transparency", "admins", str(index))
        if not isinstance(untrusted_admin, dict):
            raise r.refuse(path, 'must be a table { name = "...", key = "<64 hex digits>" }')
        entry = r.checked_table(untrusted_admin, path, ("name", "key"), ("name", "key"))
        name = r.text(entry, (*path, "name"), NAME_PATTERN, NAME_RULE)
        if len(name.encode("utf-8")) > MAX_ADMIN_NAME_BYTES:
            raise r.refuse(
                (*path, "name"), f"must be at most {MAX_ADMIN_NAME_BYTES} bytes in UTF-8 (a key-log entry's)"
            )
        if name in names:
            raise r.refuse((*path, "name"), f"is the name of transparency.admins.{names[name]} too")
        key = r.text(entry, (*path, "key"), KEY_PATTERN, KEY_RULE)
        if key in taken:
            raise r.refuse((*path, "key"), f"must not be {taken[key]}")
        names[name] = index
        taken[key] = f"the key of transparency.admins.{index}"
        admins.append(ConfigAdmin(name, bytes.fromhex(key)))
    return bytes.fromhex(log_key), tuple(admins)


def _policy(
    r: _Reader, top: Mapping[str, object]
) -> tuple[Mapping[str, PolicyValue], Mapping[str, PolicyValue]]:
    """The ``[policy.mandatory]`` and ``[policy.recommended]`` tables, each checked key by key
    and together against the cross-key rules."""
    tables: dict[str, dict[str, PolicyValue]] = {"mandatory": {}, "recommended": {}}
    if "policy" in top:
        policy = r.table(top, ("policy",), POLICY_TABLES, ())
        for kind in POLICY_TABLES:
            if kind not in policy:
                continue
            entries = r.table(policy, ("policy", kind), tuple(BY_NAME), ())
            for key, untrusted_item in entries.items():
                try:
                    tables[kind][key] = untrusted_value(BY_NAME[key], untrusted_item)
                except ValueProblem as e:
                    raise r.refuse(("policy", kind, key), str(e)) from e
        for key in tables["recommended"]:
            if key in tables["mandatory"]:
                raise r.refuse(("policy", "recommended", key), "is also mandatory; set it in one table only")
    combined = {**tables["recommended"], **tables["mandatory"]}
    for key, problem in cross_key_problems(combined):
        kind = "mandatory" if key in tables["mandatory"] else "recommended"
        raise r.refuse(("policy", kind, key), problem)
    return MappingProxyType(tables["mandatory"]), MappingProxyType(tables["recommended"])
