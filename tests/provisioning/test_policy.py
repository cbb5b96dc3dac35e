"""The effective policy: which source wins for each key, and what a user may change."""

from __future__ import annotations

import pytest

from app.base.limits import MAX_TIMER_SECONDS
from app.provisioning.config import OrgConfig, untrusted_config
from app.provisioning.errors import InvalidPolicyValueError, MandatoryPolicyError
from app.provisioning.policy import Source, effective_policy
from app.provisioning.rules import POLICY_KEYS
from tests.support.organisation import Organisation


def _config(mandatory: str = "", recommended: str = "") -> OrgConfig:
    return untrusted_config(Organisation().config(mandatory=mandatory, recommended=recommended), source="c")


def test_mandatory_beats_the_user_and_recommended_yields_to_the_user() -> None:
    """Test the precedence: system mandatory > imported mandatory > user > system recommended >
    imported recommended > built-in default, key by key."""
    system = _config(
        mandatory="secret_chats_only = true\ntimer_maximum_seconds = 86400",
        recommended="idle_lock_minutes = 10\nnotification_previews = false",
    )
    imported = _config(
        mandatory="secret_chats_only = false\nread_receipts_allowed = false",
        recommended="idle_lock_minutes = 20\ndirectory_lookup_allowed = false\ntimer_maximum_seconds = 60",
    )
    user = {"secret_chats_only": False, "read_receipts_allowed": True, "idle_lock_minutes": 30}
    policy = effective_policy(system=system, imported=imported, user=user)
    expected = {
        "secret_chats_only": (True, Source.SYSTEM_MANDATORY),
        "read_receipts_allowed": (False, Source.IMPORTED_MANDATORY),
        "idle_lock_minutes": (30, Source.USER),
        "notification_previews": (False, Source.SYSTEM_RECOMMENDED),
        "directory_lookup_allowed": (False, Source.IMPORTED_RECOMMENDED),
        "timer_maximum_seconds": (86400, Source.SYSTEM_MANDATORY),
        "attachments_allowed": (True, Source.DEFAULT),
    }
    for key, (value, source) in expected.items():
        assert (policy.value(key), policy.entry(key).source) == (value, source), key
    assert [e.key for e in policy.entries] == [k.name for k in POLICY_KEYS]
    assert effective_policy(system=system, imported=None, user={}).value("idle_lock_minutes") == 10


def test_a_user_setting_of_a_mandatory_key_is_refused() -> None:
    """Test that the user may change a recommended or default key but never a mandatory one."""
    policy = effective_policy(
        system=_config(mandatory="secret_chats_only = true", recommended="idle_lock_minutes = 10"),
        imported=_config(mandatory="notification_previews = false"),
        user={},
    )
    for key in ("secret_chats_only", "notification_previews"):
        with pytest.raises(MandatoryPolicyError, match=f"{key} is set by your organisation"):
            policy.check_user_setting(key, True)
    assert policy.check_user_setting("idle_lock_minutes", 3) == 3
    assert policy.check_user_setting("attachment_types", ["image/png"]) == ("image/png",)


def test_a_user_setting_must_fit_its_key_and_the_rest_of_the_policy() -> None:
    """Test that unknown keys, wrong values and values breaking a cross-key rule are refused."""
    policy = effective_policy(
        system=_config(mandatory="timer_maximum_seconds = 3600"), imported=None, user={}
    )
    with pytest.raises(InvalidPolicyValueError, match="no policy key"):
        policy.check_user_setting("colour", 1)
    with pytest.raises(InvalidPolicyValueError, match="must be true or false"):
        policy.check_user_setting("notification_previews", "yes")
    with pytest.raises(InvalidPolicyValueError, match="above timer_maximum_seconds"):
        policy.check_user_setting("timer_default_seconds", 7200)
    assert policy.check_user_setting("timer_default_seconds", 600) == 600


def test_values_of_different_sources_are_reconciled_in_favour_of_the_higher_one() -> None:
    """Test that a system minimum above an imported maximum raises the maximum, the default follows
    into the range, and a default label outside the labels becomes none."""
    policy = effective_policy(
        system=_config(mandatory="timer_minimum_seconds = 600\nclassification_labels = ['A', 'B']"),
        imported=_config(mandatory="timer_maximum_seconds = 60", recommended="classification_default = 'A'"),
        user={"timer_default_seconds": 0, "classification_default": "C"},
    )
    assert policy.value("timer_maximum_seconds") == 600
    assert policy.entry("timer_maximum_seconds").note == "raised to timer_minimum_seconds"
    assert policy.value("timer_default_seconds") == 600
    assert policy.value("classification_default") == ""
    bare = effective_policy(system=None, imported=None, user={})
    assert bare.value("timer_maximum_seconds") == MAX_TIMER_SECONDS
    assert {e.source for e in bare.entries} == {Source.DEFAULT}
