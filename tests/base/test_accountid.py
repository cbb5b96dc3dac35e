# ruff: noqa: RUF001, RUF003 - look-alike letters are what these tests are about
"""The account id rule and look-alike skeletons of app/base/accountid.py."""

from __future__ import annotations

import re

import pytest

from app.base.accountid import AccountIdError, canonical_account_id, skeleton


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("a.ivanova", "a.ivanova"),
        ("A.IVANOVA", "a.ivanova"),
        ("ａ.ｉｖａｎｏｖａ", "a.ivanova"),
        ("Анна.Петрова", "анна.петрова"),
        ("علی.رضایی", "علی.رضایی"),
        ("김민준", "김민준"),
        ("ㄱㅏ", "가"),
        ("j_smith-2", "j_smith-2"),
        ("کاربر۱۲", "کاربر۱۲"),
        ("a" * 64, "a" * 64),
        ("ж" * 32, "ж" * 32),
    ],
)
def test_ids_in_every_script_we_serve_are_taken_in_one_form(typed: str, stored: str) -> None:
    """Test that Latin, Cyrillic, Persian and Hangul ids are accepted, folded to one case and width."""
    assert canonical_account_id(typed) == stored


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        ("", "the account id is 0 bytes in UTF-8; it must be 1 to 64"),
        ("ж" * 33, "the account id is 66 bytes in UTF-8; it must be 1 to 64"),
        ("bad name!", "holds ' ' (U+0020 SPACE)"),
        ("a.ivanova ", "holds ' ' (U+0020 SPACE)"),
        ("bad!", "holds '!' (U+0021 EXCLAMATION MARK)"),
        ("mi\u200cravam", "U+200C ZERO WIDTH NON-JOINER"),
        ("علـی", "U+0640 ARABIC TATWEEL"),
        ("\u0301a", "U+0301 COMBINING ACUTE ACCENT"),
        (".ivanova", "begins or ends with a separator"),
        ("ivanova-", "begins or ends with a separator"),
        ("a..ivanova", "two separators in a row"),
        ("a._ivanova", "two separators in a row"),
        ("a.ivanоva", "mixes Cyrillic and Latin letters"),
        ("αlpha", "mixes Greek and Latin letters"),
    ],
)
def test_ids_that_break_the_rule_are_refused_saying_how(typed: str, reason: str) -> None:
    """Test that empty, overlong, spaced, punctuated, invisible, badly separated and mixed-script ids
    are refused with a message naming what breaks the rule."""
    with pytest.raises(AccountIdError, match=re.escape(reason)):
        canonical_account_id(typed)


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("a.ivanova", "а.іvаnоvа"),  # Cyrillic а, і, о
        ("a.ivanova", "a_ivanova"),
        ("a.ivanova", "a-ivanova"),
        ("a.ivanova", "á.ivanova"),
        ("f.semenov", "f.semёnov"),
        ("cop", "сор"),  # all Cyrillic
        ("pavel1", "pavel۱"),  # Persian digit one
        ("pavel1", "pavell"),
        ("modem", "rnodern"),
        ("oleg", "0leg"),
        ("kyle", "κyle"),
        ("علی", "علي"),  # Persian and Arabic yeh
    ],
)
def test_look_alikes_share_a_skeleton(one: str, other: str) -> None:
    """Test that Cyrillic, Greek, accented, digit and separator look-alikes of an id share its skeleton."""
    assert skeleton(one) == skeleton(other)


@pytest.mark.parametrize(
    ("one", "other"),
    [("anna", "анна"), ("a.ivanova", "a.ivanov"), ("김민준", "김민수"), ("ivan", "иван")],
)
def test_different_ids_have_different_skeletons(one: str, other: str) -> None:
    """Test that a Russian id and its Latin transliteration, and ids one letter apart, stay distinct."""
    assert skeleton(one) != skeleton(other)


def test_a_skeleton_is_made_of_any_text_an_old_id_included() -> None:
    """Test that ids stored before the rule (capitals, spaces) still get a skeleton to compare with."""
    assert skeleton("A.Ivanova") == skeleton("a.ivanova")
    assert skeleton("a ivanova") == "a ivanova"
