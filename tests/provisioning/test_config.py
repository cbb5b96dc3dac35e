"""The strict parser of the organisation config: what it accepts, and where it says a file is wrong."""

from __future__ import annotations

import datetime as dt
import json
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from app.provisioning.config import MAX_ADMINS, ConfigAdmin, untrusted_config
from app.provisioning.errors import MalformedConfigError
from tests.support.organisation import (
    EXAMPLE,
    EXAMPLE_ADMIN,
    EXAMPLE_AUTHORITY,
    EXAMPLE_LOG_KEY,
    EXAMPLE_ROOT,
    REPO,
    Organisation,
)

SCHEMA = json.loads((REPO / "packaging" / "provisioning" / "enclave-config.schema.json").read_text("utf-8"))


def _as_json(value: Any) -> Any:
    """TOML's values as JSON has them: a date-time becomes its RFC 3339 text."""
    if isinstance(value, dict):
        return {k: _as_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_json(v) for v in value]
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    return value


def _schema_accepts(text: bytes) -> bool:
    try:
        document = tomllib.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False
    return jsonschema.Draft202012Validator(SCHEMA).is_valid(_as_json(document))


def test_the_shipped_example_parses_and_follows_the_schema() -> None:
    """Test that packaging/provisioning/example.toml is valid for both the parser and the JSON Schema."""
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    example = EXAMPLE.read_bytes()
    config = untrusted_config(example, source="example.toml")
    assert config.version == 1 and config.organisation == "Ministry of Examples"
    assert config.mandatory["attachment_types"] == ("application/pdf", "image/*", "text/plain")
    assert config.recommended["timer_default_seconds"] == 604800
    assert len(config.relay_pins) == 2
    assert config.log_key == bytes.fromhex(EXAMPLE_LOG_KEY)
    assert config.admins == (ConfigAdmin(EXAMPLE_ADMIN[0], bytes.fromhex(EXAMPLE_ADMIN[1])),)
    assert _schema_accepts(example)


ADMIN_LINE = f'    {{ name = "{EXAMPLE_ADMIN[0]}", key = "{EXAMPLE_ADMIN[1]}" }},'
OTHER_KEY = "ab" * 32


def _admin_line(name: str, key: str) -> str:
    return f'    {{ name = "{name}", key = "{key}" }},'


def _also(line: str) -> tuple[str, str]:
    """A change that lists a second admin, ``line``, after the example's."""
    return (ADMIN_LINE, f"{ADMIN_LINE}\n{line}")


# (what to change in the example, the key the parser names, its line in the changed text,
# whether the JSON Schema states the rule too)
CASES = [
    (("format = 1 ", "format = 2 "), "format", 16, True),
    (("version = 1 ", "version = 0 "), "version", 17, True),
    (("version = 1 ", 'version = "1"'), "version", 17, True),
    (("expires = 2026-06-01T09:00:00Z", "expires = 2026-06-01T09:00:00"), "expires", 19, True),
    (("expires = 2026-06-01T09:00:00Z", "expires = 2024-06-01T09:00:00Z"), "expires", 19, False),
    (('name = "Ministry of Examples"', 'name = "Ministry\\u0007"'), "organisation.name", 22, True),
    (('root_key = "d75a', 'root_key = "D75A'), "organisation.root_key", 26, True),
    (("urls = [", "colour = 1\nurls = ["), "relay.colour", 30, True),
    (('"https://relay.ministry.example:8443"', '"http://relay.ministry.example"'), "relay.urls", 30, True),
    (
        ('    "sha256/LPJ', '    "sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",\n    "sha256/LPJ'),
        "relay.pins",
        33,
        True,
    ),
    (
        (
            'authority_key = "3d40',
            'authority_key = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"\n#',
        ),
        "enrolment.authority_key",
        41,
        False,
    ),
    (('"https://enrol.ministry.example:8444"', '"https://enrol.example/path"'), "enrolment.urls", 44, True),
    (('pins = ["sha256/Ln1U', 'pins = ["sha256/short", "sha256/Ln1U'), "enrolment.pins", 45, True),
    (("[transparency]\n", "[transparency]\nlog_size = 1\n"), "transparency.log_size", 48, True),
    (
        (f'log_key = "{EXAMPLE_LOG_KEY}"', f'log_key = "{EXAMPLE_LOG_KEY[:-1]}"'),
        "transparency.log_key",
        52,
        True,
    ),
    ((f'log_key = "{EXAMPLE_LOG_KEY}"', f'log_key = "{EXAMPLE_ROOT}"'), "transparency.log_key", 52, False),
    (
        (f'log_key = "{EXAMPLE_LOG_KEY}"', f'log_key = "{EXAMPLE_AUTHORITY}"'),
        "transparency.log_key",
        52,
        False,
    ),
    ((f"admins = [\n{ADMIN_LINE}\n]", 'admins = "Anna Admin"'), "transparency.admins", 56, True),
    (
        _also("\n".join(_admin_line(f"Admin {n}", f"{n:064x}") for n in range(MAX_ADMINS))),
        "transparency.admins",
        56,
        True,
    ),
    ((ADMIN_LINE, '    "Anna Admin",'), "transparency.admins.0", 57, True),
    ((ADMIN_LINE, _admin_line("Anna\\u0007", EXAMPLE_ADMIN[1])), "transparency.admins.0.name", 57, True),
    ((ADMIN_LINE, _admin_line("Ж" * 65, EXAMPLE_ADMIN[1])), "transparency.admins.0.name", 57, False),
    ((ADMIN_LINE, ADMIN_LINE.replace(" }", ", role = 1 }")), "transparency.admins.0.role", 57, True),
    (
        (ADMIN_LINE, _admin_line(EXAMPLE_ADMIN[0], EXAMPLE_ADMIN[1].upper())),
        "transparency.admins.0.key",
        57,
        True,
    ),
    ((ADMIN_LINE, _admin_line(EXAMPLE_ADMIN[0], EXAMPLE_ROOT)), "transparency.admins.0.key", 57, False),
    ((ADMIN_LINE, _admin_line(EXAMPLE_ADMIN[0], EXAMPLE_AUTHORITY)), "transparency.admins.0.key", 57, False),
    ((ADMIN_LINE, _admin_line(EXAMPLE_ADMIN[0], EXAMPLE_LOG_KEY)), "transparency.admins.0.key", 57, False),
    (_also(_admin_line(EXAMPLE_ADMIN[0], OTHER_KEY)), "transparency.admins.1.name", 58, False),
    (_also(_admin_line("Boris Admin", EXAMPLE_ADMIN[1])), "transparency.admins.1.key", 58, False),
    (
        ("timer_maximum_seconds = 2592000", "timer_maximum_seconds = 99999999"),
        "policy.mandatory.timer_maximum_seconds",
        66,
        True,
    ),
    (
        ("secret_chats_only = false", 'secret_chats_only = "no"'),
        "policy.mandatory.secret_chats_only",
        67,
        True,
    ),
    (('    "image/*",', '    "Image/*",'), "policy.mandatory.attachment_types", 70, True),
    (
        ("passphrase_min_length = 12", "passphrase_min_strength = 12"),
        "policy.mandatory.passphrase_min_strength",
        77,
        True,
    ),
    (
        ('classification_default = "OFFICIAL"', 'classification_default = "SECRET"'),
        "policy.recommended.classification_default",
        83,
        False,
    ),
    (
        ("idle_lock_minutes = 15", "idle_lock_minutes = 15\nsecret_chats_only = true"),
        "policy.recommended.secret_chats_only",
        87,
        False,
    ),
    (
        ("timer_default_seconds = 604800", "timer_default_seconds = 2592001"),
        "policy.recommended.timer_default_seconds",
        82,
        False,
    ),
    (
        ('verified_keys_required = ["OFFICIAL-SENSITIVE"]', 'verified_keys_required = ["TOP SECRET"]'),
        "policy.mandatory.verified_keys_required",
        79,
        False,
    ),
]


@pytest.mark.parametrize(
    ("change", "key", "line", "in_schema"), CASES, ids=[c[1] + f"@{c[2]}" for c in CASES]
)
def test_a_bad_key_is_named_with_its_line(
    change: tuple[str, str], key: str, line: int, in_schema: bool
) -> None:
    """Test that each broken rule is a MalformedConfigError naming the key and its line, and that the
    JSON Schema refuses the same file wherever it can state the rule."""
    text = EXAMPLE.read_text("utf-8")
    assert change[0] in text
    broken = text.replace(change[0], change[1], 1).encode()
    with pytest.raises(MalformedConfigError) as refused:
        untrusted_config(broken, source="enclave.toml")
    assert (refused.value.key, refused.value.line) == (key, line), str(refused.value)
    assert f"at {key} (line {line})" in str(refused.value)
    assert _schema_accepts(broken) is not in_schema


def test_a_config_without_the_transparency_table_or_its_log_key_is_refused_saying_so() -> None:
    """Test that a config lacking [transparency], or its log_key, is refused naming what it lacks and
    the table's line, as the JSON Schema refuses it."""
    text = EXAMPLE.read_text("utf-8")
    start, end = text.index("[transparency]\n"), text.index("# Policy:")
    no_table = (text[:start] + text[end:]).encode()
    with pytest.raises(MalformedConfigError, match="the top level lacks the key 'transparency'"):
        untrusted_config(no_table, source="enclave.toml")
    no_key = text.replace(f'log_key = "{EXAMPLE_LOG_KEY}"\n', "").encode()
    with pytest.raises(MalformedConfigError) as refused:
        untrusted_config(no_key, source="enclave.toml")
    assert refused.value.line == 47 and "[transparency] lacks the key 'log_key'" in str(refused.value)
    no_name = text.replace(f'name = "{EXAMPLE_ADMIN[0]}", ', "").encode()
    with pytest.raises(MalformedConfigError) as nameless:
        untrusted_config(no_name, source="enclave.toml")
    assert nameless.value.line == 57 and "[transparency.admins.0] lacks the key 'name'" in str(nameless.value)
    assert not any(_schema_accepts(broken) for broken in (no_table, no_key, no_name))


def _without_admins(text: str, instead: str) -> str:
    """``text`` with ``instead`` in place of its ``admins = [ ... ]`` lines."""
    start = text.index("admins = [")
    return text[:start] + instead + text[text.index("\n]\n", start) + 3 :]


def test_the_admins_are_optional_and_parse_in_order_from_either_toml_form() -> None:
    """Test that a [transparency] without admins, or with an empty list, names none; that admins
    given to the test organisation come back as the keys' bytes in order; and that the same admins
    written as [[transparency.admins]] tables parse alike, with each table's line in a refusal."""
    org = Organisation()
    log_key = bytes.fromhex(OTHER_KEY)
    text = org.config(log_key=log_key).decode()
    for admins in ("", "admins = []\n"):
        bare = _without_admins(text, admins)
        config = untrusted_config(bare.encode(), source="c.toml")
        assert (config.log_key, config.admins) == (log_key, ())
        assert _schema_accepts(bare.encode())
    keys = (bytes(range(32)), bytes(range(1, 33)))
    listed = org.config(log_key=log_key, admins=(("Ada", keys[0]), ("Бо", keys[1])))
    expected = (ConfigAdmin("Ada", keys[0]), ConfigAdmin("Бо", keys[1]))
    assert untrusted_config(listed, source="c.toml").admins == expected
    tables = "".join(
        f'\n[[transparency.admins]]\nname = "{name}"\nkey = "{key.hex()}"\n'
        for name, key in zip(("Ada", "Бо"), keys, strict=True)
    )
    as_tables = _without_admins(text, "")
    as_tables = as_tables.replace("\n[policy.mandatory]\n", f"{tables}\n[policy.mandatory]\n")
    assert untrusted_config(as_tables.encode(), source="c.toml").admins == expected
    twice = as_tables.replace(keys[1].hex(), keys[0].hex())
    with pytest.raises(MalformedConfigError) as refused:
        untrusted_config(twice.encode(), source="c.toml")
    line = twice.splitlines().index(f'key = "{keys[0].hex()}"', twice.splitlines().index('name = "Бо"')) + 1
    assert (refused.value.key, refused.value.line) == ("transparency.admins.1.key", line)
    assert "the key of transparency.admins.0" in str(refused.value)


def test_toml_syntax_errors_and_odd_bytes_are_malformed_with_a_line() -> None:
    """Test that broken TOML, bytes that are not UTF-8 and an oversized file are refused as malformed."""
    with pytest.raises(MalformedConfigError, match=r"not valid TOML.*line 3"):
        untrusted_config(b"format = 1\nversion = 1\nissued = = 2\n", source="c.toml")
    with pytest.raises(MalformedConfigError, match="not UTF-8"):
        untrusted_config(b"name = '\xff'", source="c.toml")
    with pytest.raises(MalformedConfigError, match="at most"):
        untrusted_config(b"#" * (256 * 1024 + 1), source="c.toml")
    with pytest.raises(MalformedConfigError, match="the top level lacks the key 'version'"):
        untrusted_config(b"format = 1\n", source="c.toml")


def test_a_policy_subset_and_no_policy_at_all_are_valid(tmp_path: Path) -> None:
    """Test that a config may set any subset of the policy, or none: the rest keeps its default."""
    org = Organisation()
    config = untrusted_config(org.config(mandatory="", recommended=""), source="c.toml")
    assert dict(config.mandatory) == {} and dict(config.recommended) == {}
    text = org.config().decode()
    bare = untrusted_config(text[: text.index("\n[policy.mandatory]\n")].encode(), source="c.toml")
    assert dict(bare.mandatory) == {}
    only_min = untrusted_config(org.config(mandatory="timer_minimum_seconds = 60"), source="c.toml")
    assert dict(only_min.mandatory) == {"timer_minimum_seconds": 60}
