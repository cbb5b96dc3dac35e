"""The organisation's policy through ``Enclave``, the facade the window and enclave-cli call: each rule
refused there with its typed error, on a real profile that an organisation config governs."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.services.errors import (
    DirectChatNotAllowedError,
    DirectoryNotAllowedError,
    FileNotAllowedError,
    ProfileProtectionError,
    TimerNotAllowedError,
    VerificationRequiredError,
)
from app.services.facade import Enclave
from app.services.profiles import Keystore, Passphrase, new_profile_rules, profile_exists
from app.services.types import MessageStatus
from storage.keyheader import MINIMUM_COST
from storage.store import Store
from tests.support.clients import passphrase
from tests.support.devices import Bench, introduce, open_session
from tests.support.organisation import Organisation

WAIT = 10.0
HOUR, DAY = 3600, 24 * 3600
MANDATORY = """
timer_default_seconds = 3600
timer_minimum_seconds = 3600
timer_maximum_seconds = 86400
read_receipts_allowed = false
attachment_types = ["image/*"]
classification_labels = ["OFFICIAL", "OFFICIAL-SENSITIVE"]
classification_default = "OFFICIAL-SENSITIVE"
verified_keys_required = ["OFFICIAL-SENSITIVE"]
directory_lookup_allowed = false
notification_previews = false
"""


def _outbox(profile: Path, bench: Bench) -> int:
    """How many envelopes wait in the closed profile's outbox."""
    store = Store.open(profile, passphrase(), clock=bench.clock)
    try:
        return len(store.outbox.due(float("inf")))
    finally:
        store.close()


def test_each_policy_rule_is_enforced_at_the_facade(tmp_path: Path) -> None:
    """Test that through Enclave a timer outside the range, a message before the required verification,
    a file of a type not permitted, a directory look-up, a read receipt and, once a config allows secret
    chats only, a normal conversation are each refused with their own error, and that the window's own
    rules (idle lock, previews) are in the policy view."""
    bench = Bench(tmp_path / "bench")
    alice, bob = bench.device("alice"), bench.device("bob")
    introduce(alice, bob)
    open_session(alice, bob)
    bench.run(bob.sending.send_text(bob.direct(alice).id, "read me"))
    bench.deliver(bob, alice)
    bench.deliver(alice, bob)  # the delivery receipt has left: alice's outbox is empty
    profile, clock, org = alice.store.profile_dir, bench.clock, bench.organisation
    bench.close()

    system = org.write(
        tmp_path / "etc" / "enclave.toml",
        org.config(mandatory=MANDATORY, recommended="idle_lock_minutes = 15"),
    )
    picture = tmp_path / "photo.png"
    picture.write_bytes(b"\x89PNG")
    report = tmp_path / "report.pdf"
    report.write_bytes(b"%PDF-1.7")
    with Enclave.open(profile, passphrase(), clock=clock, system_config=system) as enclave:
        rules = enclave.policy().result(WAIT).rules
        assert (rules.idle_lock_minutes, rules.notification_previews) == (15, False)
        conversation = enclave.start_conversation("bob").result(WAIT)

        with pytest.raises(TimerNotAllowedError, match="timer_minimum_seconds"):
            enclave.set_timer(conversation.id, 60).result(WAIT)
        with pytest.raises(TimerNotAllowedError, match="timer_maximum_seconds"):
            enclave.start_secret_chat("bob", 2 * DAY).result(WAIT)
        with pytest.raises(VerificationRequiredError, match="verified_keys_required"):
            enclave.send_text(conversation.id, "too early").result(WAIT)
        with pytest.raises(DirectoryNotAllowedError, match="directory_lookup_allowed"):
            enclave.lookup("bob").result(WAIT)

        enclave.mark_verified("bob", 1).result(WAIT)
        sent = enclave.send_text(conversation.id, "verified").result(WAIT)
        assert (sent.status, sent.expire_after) == (MessageStatus.PENDING, HOUR), "the nearest allowed timer"
        with pytest.raises(FileNotAllowedError, match="attachment_types"):
            enclave.send_file(conversation.id, report).result(WAIT)
        assert enclave.send_file(conversation.id, picture).result(WAIT).status is MessageStatus.PENDING
        assert enclave.mark_read(conversation.id).result(WAIT) == 1
        incoming = [m for m in enclave.history(conversation.id).result(WAIT).messages if not m.outgoing]
        assert [m.status for m in incoming] == [MessageStatus.READ], "read here all the same"

        enclave.import_config(
            org.write(tmp_path / "mine.toml", org.config(version=2, mandatory="secret_chats_only = true"))
        ).result(WAIT)
        with pytest.raises(DirectChatNotAllowedError, match="secret_chats_only"):
            enclave.start_conversation("bob").result(WAIT)
        with pytest.raises(DirectChatNotAllowedError):
            enclave.send_text(conversation.id, "not here").result(WAIT)
        pending = enclave.pending().result(WAIT)
    assert [m.body for m in pending] == ["verified", ""], "no refused message was stored"
    assert _outbox(profile, bench) == 0, "reading sent no read receipt (and nothing else was sealed)"


def test_a_profile_is_made_only_with_the_protection_the_policy_allows(tmp_path: Path) -> None:
    """Test that where the system config requires a passphrase of 12 characters, making a profile with
    the keystore or a shorter passphrase is refused before anything is written, that a face can read
    the rule first, and that a long enough passphrase makes the profile."""
    org = Organisation()
    system = org.write(
        tmp_path / "etc" / "enclave.toml",
        org.config(mandatory="passphrase_required = true\npassphrase_min_length = 12"),
    )
    rules = new_profile_rules(system)
    assert (rules.passphrase_required, rules.passphrase_min_length) == (True, 12)
    profile = tmp_path / "profile"
    with pytest.raises(ProfileProtectionError, match="passphrase_required"):
        Enclave.open(profile, Keystore(), create=True, system_config=system)
    with pytest.raises(ProfileProtectionError, match="at least 12 characters; this one has 11"):
        Enclave.open(profile, Passphrase("eleven-char", MINIMUM_COST), create=True, system_config=system)
    assert not profile.exists() and not profile_exists(profile)
    Enclave.open(profile, Passphrase("twelve-chars", MINIMUM_COST), create=True, system_config=system).close()
    assert profile_exists(profile)
    assert not new_profile_rules(tmp_path / "none.toml").passphrase_required
