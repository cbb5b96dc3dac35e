"""Each refusal of a config, by its own type and a message naming why; and what is accepted."""

from __future__ import annotations

import pytest

from app.base.errors import ProvisioningError
from app.provisioning.accept import Candidate, InForce, Origin, check_candidate
from app.provisioning.errors import (
    BadSignatureError,
    DowngradedConfigError,
    ExpiredConfigError,
    ForeignConfigError,
    MalformedConfigError,
    UnsignedConfigError,
)
from tests.support.organisation import Organisation

NOW = 1_750_000_000.0  # 2025-06-15


def _candidate(org: Organisation, config: bytes, signature: bytes | None = b"") -> Candidate:
    return Candidate(Origin.USER, "enclave.toml", config, org.sign(config) if signature == b"" else signature)


def test_a_genuine_config_is_accepted_and_the_same_one_again_changes_nothing() -> None:
    """Test that a signed, valid, current config is accepted, and that offering it again is no change."""
    org = Organisation()
    config = org.config(version=4)
    accepted = check_candidate(_candidate(org, config), trusted_root=None, in_force=None, now=NOW)
    assert accepted.changed and accepted.config.version == 4 and accepted.config.root_key == org.root_public
    again = check_candidate(
        _candidate(org, config), trusted_root=org.root_public, in_force=InForce(4, config), now=NOW
    )
    assert not again.changed
    newer = check_candidate(
        _candidate(org, org.config(version=5)),
        trusted_root=org.root_public,
        in_force=InForce(4, config),
        now=NOW,
    )
    assert newer.changed and newer.config.version == 5


def test_each_refusal_names_its_cause() -> None:
    """Test that unsigned, mis-signed, malformed, expired, downgraded and foreign configs are each refused
    with their own error type and a message saying why."""
    org, other = Organisation(), Organisation()
    good = org.config(version=5)
    in_force = InForce(5, good)
    cases: list[tuple[Candidate, type[ProvisioningError], str]] = [
        (_candidate(org, good, None), UnsignedConfigError, "not signed"),
        (_candidate(org, good, b"garbage\n"), BadSignatureError, "not an Enclave config signature"),
        (_candidate(org, good, org.sign(good + b"\n")), BadSignatureError, "does not verify"),
        (
            _candidate(org, good.replace(b"Ministry", b"Minestry"), org.sign(good)),
            BadSignatureError,
            "changed after",
        ),
        (_candidate(org, b"format = ["), MalformedConfigError, "not valid TOML"),
        (
            _candidate(org, org.config(version=6, expires="2025-06-01T10:00:00Z")),
            ExpiredConfigError,
            "expired",
        ),
        (_candidate(org, org.config(version=4)), DowngradedConfigError, "older than version 5"),
        (
            _candidate(org, org.config(version=5, recommended="idle_lock_minutes = 5")),
            DowngradedConfigError,
            "with other content",
        ),
        (_candidate(other, other.config(version=9)), ForeignConfigError, "another organisation"),
    ]
    for candidate, error, words in cases:
        with pytest.raises(error, match=words):
            check_candidate(candidate, trusted_root=org.root_public, in_force=in_force, now=NOW)


def test_a_config_naming_another_root_than_its_signer_is_mis_signed() -> None:
    """Test that a config signed by one key but naming another as its root is refused, even first time."""
    org, other = Organisation(), Organisation()
    config = other.config()
    with pytest.raises(BadSignatureError, match="names the root key"):
        check_candidate(_candidate(org, config), trusted_root=None, in_force=None, now=NOW)
