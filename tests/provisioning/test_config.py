"""The strict parser of the organisation config: what it accepts, and where it says a file is wrong."""

from __future__ import annotations

import datetime as dt
import json
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from app.provisioning.config import untrusted_config
from app.provisioning.errors import MalformedConfigError
from tests.support.organisation import EXAMPLE, REPO, Organisation

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
    assert _schema_accepts(example)


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
    (
        ("timer_maximum_seconds = 2592000", "timer_maximum_seconds = 99999999"),
        "policy.mandatory.timer_maximum_seconds",
        53,
        True,
    ),
    (
        ("secret_chats_only = false", 'secret_chats_only = "no"'),
        "policy.mandatory.secret_chats_only",
        54,
        True,
    ),
    (('    "image/*",', '    "Image/*",'), "policy.mandatory.attachment_types", 57, True),
    (
        ("passphrase_min_length = 12", "passphrase_min_strength = 12"),
        "policy.mandatory.passphrase_min_strength",
        64,
        True,
    ),
    (
        ('classification_default = "OFFICIAL"', 'classification_default = "SECRET"'),
        "policy.recommended.classification_default",
        70,
        False,
    ),
    (
        ("idle_lock_minutes = 15", "idle_lock_minutes = 15\nsecret_chats_only = true"),
        "policy.recommended.secret_chats_only",
        74,
        False,
    ),
    (
        ("timer_default_seconds = 604800", "timer_default_seconds = 2592001"),
        "policy.recommended.timer_default_seconds",
        69,
        False,
    ),
    (
        ('verified_keys_required = ["OFFICIAL-SENSITIVE"]', 'verified_keys_required = ["TOP SECRET"]'),
        "policy.mandatory.verified_keys_required",
        66,
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
