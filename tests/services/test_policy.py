"""A profile's organisation configs: the accepted ones kept across restarts, refused ones change nothing."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.base.errors import ProvisioningError
from app.provisioning.errors import (
    BadSignatureError,
    DowngradedConfigError,
    ExpiredConfigError,
    ForeignConfigError,
    MalformedConfigError,
    MandatoryPolicyError,
    OtherRelayConfigError,
    UnsignedConfigError,
)
from app.provisioning.policy import Source
from app.services.policy import Provisioning
from app.services.settings import RelaySettings, save_relay
from app.sync.link import RelayAddress
from storage.keyheader import MINIMUM_COST
from storage.keys import Passphrase
from storage.store import Store
from tests.support.organisation import Organisation

NOW = 1_750_000_000.0
PIN_A = "sha256/" + "A" * 43 + "="
PIN_B = "sha256/" + "B" * 43 + "="


def _store_state(store: Store) -> str:
    """A digest of everything the organisation's state and the user's settings hold in the store."""
    rows = [
        store._db.all("SELECT * FROM org_trust"),
        store._db.all("SELECT * FROM org_configs ORDER BY origin"),
        store._db.all("SELECT * FROM settings ORDER BY key"),
    ]
    return hashlib.sha256(repr(rows).encode()).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.create(tmp_path / "profile", Passphrase("p", MINIMUM_COST))
    yield opened
    opened.close()


def test_each_refusal_leaves_the_profile_untouched(tmp_path: Path, store: Store) -> None:
    """Test that an unsigned, mis-signed, malformed, downgraded, expired or foreign config is refused
    with its own error and leaves the configs, the trusted root, the versions and the policy as they were."""
    org, other = Organisation(), Organisation()
    system = tmp_path / "etc" / "enclave.toml"
    org.write(system, org.config(version=3, mandatory="secret_chats_only = true"))
    provisioning = Provisioning(store, system_config=system, clock=lambda: NOW)
    provisioning.load_system()
    provisioning.import_config(org.write(tmp_path / "mine.toml", org.config(version=7)))
    before, policy = _store_state(store), provisioning.view()
    good = org.config(version=8)
    cases: list[tuple[Path, type[ProvisioningError]]] = [
        (org.write(tmp_path / "unsigned.toml", good, signed=False), UnsignedConfigError),
        (org.write(tmp_path / "missigned.toml", good), BadSignatureError),
        (org.write(tmp_path / "malformed.toml", b"version = [", signed=True), MalformedConfigError),
        (org.write(tmp_path / "old.toml", org.config(version=6)), DowngradedConfigError),
        (
            org.write(tmp_path / "expired.toml", org.config(version=9, expires="2025-06-10T00:00:00Z")),
            ExpiredConfigError,
        ),
        (other.write(tmp_path / "foreign.toml", other.config(version=10)), ForeignConfigError),
    ]
    (tmp_path / "missigned.toml").write_bytes(good.replace(b"Ministry", b"Mimistry"))
    for path, error in cases:
        with pytest.raises(error):
            provisioning.import_config(path)
        assert _store_state(store) == before, path.name
        assert provisioning.view() == policy, path.name
    assert policy.policy.entry("secret_chats_only").source is Source.SYSTEM_MANDATORY
    assert [(c.origin, c.version) for c in policy.configs] == [("system", 3), ("user", 7)]


def test_a_refused_system_config_is_reported_and_the_last_accepted_stays(
    tmp_path: Path, store: Store
) -> None:
    """Test that at open a system config older than the accepted one is refused (no downgrade across
    restarts), the refusal is shown with the policy, and a newer one replaces the old."""
    org = Organisation()
    system = tmp_path / "enclave.toml"
    org.write(system, org.config(version=5, recommended="idle_lock_minutes = 5"))
    Provisioning(store, system_config=system, clock=lambda: NOW).load_system()
    org.write(system, org.config(version=4, recommended="idle_lock_minutes = 9"))
    later = Provisioning(store, system_config=system, clock=lambda: NOW)
    later.load_system()
    view = later.view()
    assert view.policy.value("idle_lock_minutes") == 5
    assert len(view.refusals) == 1 and "older than version 5" in view.refusals[0]
    org.write(system, org.config(version=6, recommended="idle_lock_minutes = 7"))
    newest = Provisioning(store, system_config=system, clock=lambda: NOW)
    newest.load_system()
    assert newest.view().policy.value("idle_lock_minutes") == 7 and newest.view().refusals == ()


def test_user_settings_yield_to_mandatory_and_beat_recommended(tmp_path: Path, store: Store) -> None:
    """Test that the user may set a recommended key (and it wins over it), never a mandatory one."""
    org = Organisation()
    path = org.write(
        tmp_path / "c.toml",
        org.config(mandatory="notification_previews = false", recommended="idle_lock_minutes = 5"),
    )
    provisioning = Provisioning(store, system_config=tmp_path / "none.toml", clock=lambda: NOW)
    provisioning.import_config(path)
    entry = provisioning.set_user("idle_lock_minutes", 30)
    assert (entry.value, entry.source) == (30, Source.USER)
    before = _store_state(store)
    with pytest.raises(MandatoryPolicyError):
        provisioning.set_user("notification_previews", True)
    assert _store_state(store) == before
    assert provisioning.clear_user("idle_lock_minutes").source is Source.IMPORTED_RECOMMENDED


def test_a_first_import_into_an_enrolled_profile_must_name_its_relay(tmp_path: Path, store: Store) -> None:
    """Test that a profile enrolled before any config refuses a first imported config that names
    none of its relay's pins (another organisation's file would fix that root for good and move the
    device to its relay), changing nothing; one naming the pin is accepted, and later configs of
    that organisation may rotate the pins freely."""
    enrolled = RelaySettings(RelayAddress(("https://relay.example:8443",), (PIN_A,)))
    save_relay(store, enrolled)
    provisioning = Provisioning(store, system_config=tmp_path / "none" / "enclave.toml", clock=lambda: NOW)
    stranger, org = Organisation(), Organisation()
    before = _store_state(store)
    elsewhere = stranger.write(tmp_path / "stranger.toml", stranger.config(version=1, relay_pins=(PIN_B,)))
    with pytest.raises(OtherRelayConfigError, match="names other relays"):
        provisioning.import_config(elsewhere)
    assert _store_state(store) == before
    assert provisioning.relay() is None

    provisioning.import_config(
        org.write(tmp_path / "v1.toml", org.config(version=1, relay_pins=(PIN_A, PIN_B)))
    )
    rotated = org.write(tmp_path / "v2.toml", org.config(version=2, relay_pins=(PIN_B,)))
    provisioning.import_config(rotated)
    relay = provisioning.relay()
    assert relay is not None and relay.pins == (PIN_B,)
