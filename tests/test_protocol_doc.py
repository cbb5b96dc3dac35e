"""docs/PROTOCOL.md stays true: its constants, limits and test vectors are the code's."""

from __future__ import annotations

import re

import pytest

from app.base import limits
from app.crypto import certificate, primitives
from app.protocol import frames, logentry
from app.services import incoming, prekeys
from tests.support import vectors

DOC = vectors.DOC.read_text(encoding="utf-8")


def _named(module: object, prefix: str) -> dict[str, object]:
    return {name: value for name, value in vars(module).items() if name.startswith(prefix)}


@pytest.mark.parametrize("prefix", ["INFO_", "SIGN_CONTEXT_"])
def test_every_purpose_string_is_quoted_exactly(prefix: str) -> None:
    """Test that each HKDF info and signature context appears in the doc's table with its exact bytes."""
    constants = _named(primitives, prefix)
    assert constants
    for name, value in constants.items():
        assert isinstance(value, bytes)
        assert f"| `{name}` | `{value.decode('ascii')}` |" in DOC, name


def test_doc_names_no_purpose_string_the_code_lacks() -> None:
    """Test that the doc's purpose-string tables list nothing the code has dropped."""
    quoted = set(re.findall(r"^\| `((?:INFO|SIGN_CONTEXT)_[A-Z0-9_]+)` \|", DOC, flags=re.MULTILINE))
    assert quoted == set(_named(primitives, "INFO_")) | set(_named(primitives, "SIGN_CONTEXT_"))


def test_every_limit_is_in_the_limits_table_with_its_value() -> None:
    """Test that each MAX_* limit of the formats (limits, frames, certificates, key log entries)
    and the padding block appear in section 13 with the code's value."""
    named = {
        **_named(limits, "MAX_"),
        **_named(frames, "MAX_"),
        "MAX_CERTIFICATE_BYTES": certificate.MAX_CERTIFICATE_BYTES,
        "MAX_ENTRY_BYTES": logentry.MAX_ENTRY_BYTES,
        "PADDING_BLOCK_BYTES": limits.PADDING_BLOCK_BYTES,
    }
    for name, value in named.items():
        assert f"| `{name}` | {value} |" in DOC, name


def test_every_length_prefixed_field_states_its_maximum() -> None:
    """Test that no var16, var32, text16 or text32 in a byte layout or a table of the doc lacks its
    maximum in parentheses (an implementation written from the text must know where to refuse)."""
    in_layout, bare = False, []
    for number, line in enumerate(DOC.splitlines(), 1):
        if line.startswith("```"):
            in_layout = not in_layout
            continue
        if in_layout or line.startswith("|"):
            bare += [f"{number}: {line}" for _ in re.findall(r"\b(?:var|text)(?:16|32)\b(?!\()", line)]
    assert bare == []


def test_the_certificate_grace_is_the_engines() -> None:
    """Test that section 7 states the grace the receiving engine gives a sender's certificate."""
    assert f"`CERTIFICATE_GRACE_SECONDS` = {incoming.CERTIFICATE_GRACE_SECONDS}" in DOC


def test_test_vectors_are_what_the_code_produces() -> None:
    """Test that the vectors in section 16 equal a fresh run of tests/support/vectors.py."""
    assert vectors.in_doc(DOC) == vectors.make()


def test_the_signed_prekey_schedule_is_the_codes() -> None:
    """Test that section 3's rotation period and grace are the engine's values, in seconds."""
    assert f"`ROTATION_SECONDS` = {prekeys.ROTATION_SECONDS}" in DOC
    assert f"`GRACE_SECONDS` = {prekeys.GRACE_SECONDS}" in DOC
