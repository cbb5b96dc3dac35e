# ruff: noqa: RUF001, RUF002 - the look-alike letters are the subject of this module
"""What an account id is, and when two of them look alike: the one rule for the relay, the
admin tool and the clients.

An account id is what colleagues type and see to reach a person, and what a device
certificate names, so two ids that a reader could take for each other must not both
exist. ``canonical_account_id`` turns what an admin typed into the stored form, or
refuses it:

- NFKC, then case folding, then NFKC again (case folding can leave text that NFKC
  would still change): ``A.IVANOVA`` and the full-width ``ａ.ivanova`` are
  ``a.ivanova``; Hangul compatibility jamo become the composed syllables.
- 1 to ``MAX_ACCOUNT_ID_BYTES`` bytes of UTF-8 after that.
- Letters and decimal digits of any script (officials write Russian, Persian, Korean and
  English, so ``анна.петрова``, ``علی.رضایی`` and ``김민준`` are ids), combining marks after
  a letter (Arabic harakat, Indic vowel signs), and the separators ``.``, ``-``, ``_``; no
  space, no punctuation, no modifier letter (the Arabic tatweel), no invisible character
  (a zero-width non-joiner included).
- No separator first, last, or next to another.
- No id mixing Latin, Cyrillic and Greek letters: an ``a.ivanоva`` with a Cyrillic ``о``
  has no honest use, and created first it would make the real one look like its copy.

``skeleton`` is what an id looks like, in the manner of Unicode TR39's skeletons but with
a table of our own: a new id is refused when its skeleton equals an existing id's. It
folds case and width, drops combining marks (``é`` ~ ``e``, ``ё`` ~ ``е``: Russian writes
one for the other), counts every script's digits as ASCII digits, treats the three
separators as one, and maps the look-alikes in ``CONFUSABLE`` and ``CONFUSABLE_PAIRS``.
The table is a documented subset chosen for our users, not all of TR39's
confusables.txt: the lower-case Cyrillic and Greek letters that look like Latin ones
(what mixes up Russian and English ids), the Arabic letters that Persian and Arabic
keyboards type differently for one look (``ي``/``ی``, ``ك``/``ک``), and ASCII's own (``0``/``o``,
``1``/``l``, ``rn``/``m``). TR39's full data lives in ICU (PyICU, a native build against
libicu the relay would need on every machine) or in packages that ship a copy of
confusables.txt without the skeleton algorithm; a 60-line table here is reviewable, has
no install step, and covers the scripts we serve. A false alarm (two honest ids that
differ only by an accent) costs the admin another id; a missed one lets a person pose as
another, so the table leans to refusing.
"""

from __future__ import annotations

import unicodedata

from app.base.errors import EnclaveError
from app.base.limits import MAX_ACCOUNT_ID_BYTES

SEPARATORS = frozenset(".-_")
LETTERS = frozenset(("Ll", "Lu", "Lt", "Lo"))
"""Letters: not modifier letters (Lm), among which are the Arabic tatweel, an elongation
stroke that changes no letter, and apostrophe-like marks."""
CONFUSABLE_SCRIPTS = ("LATIN", "CYRILLIC", "GREEK")
"""Scripts whose letters one id may not mix (Unicode character names begin with them)."""

CONFUSABLE = {
    # Cyrillic, lower case, as case folding leaves it.
    "а": "a", "г": "r", "ԁ": "d", "е": "e", "һ": "h", "і": "i", "ј": "j", "к": "k", "ӏ": "l",
    "о": "o", "р": "p", "ԛ": "q", "с": "c", "ѕ": "s", "у": "y", "ԝ": "w", "х": "x",
    # Greek, lower case.
    "α": "a", "β": "b", "γ": "y", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "υ": "u",
    "χ": "x", "ϲ": "c", "ϳ": "j", "η": "n",
    # Latin letters without a decomposition that look like plain ones.
    "ı": "i", "ɩ": "i", "ɑ": "a", "ɡ": "g", "ł": "l", "đ": "d", "ø": "o", "ħ": "h",
    # Arabic script: the letters Arabic and Persian keyboards type for one look.
    "ي": "ی", "ى": "ی", "ك": "ک", "ە": "ه",
    # ASCII digits (every script's digits are made ASCII first).
    "0": "o", "1": "l",
}  # fmt: skip
"""Single characters that look like another; a value is what both are compared as."""

CONFUSABLE_PAIRS = {"rn": "m", "cl": "d", "vv": "w"}
"""Two letters that together look like one (after ``CONFUSABLE``)."""


class AccountIdError(EnclaveError):
    """An account id breaks the rule of app/base/accountid.py; the message says how."""


def canonical_account_id(untrusted: str) -> str:
    """The stored form of ``untrusted``, or ``AccountIdError`` saying what breaks the rule."""
    value = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", untrusted).casefold())
    size = len(value.encode("utf-8", errors="surrogatepass"))
    if not 1 <= size <= MAX_ACCOUNT_ID_BYTES:
        raise AccountIdError(
            f"the account id is {size} bytes in UTF-8; it must be 1 to {MAX_ACCOUNT_ID_BYTES}"
        )
    previous = ""
    for character in value:
        _check_character(value, character, previous)
        previous = character
    if value[0] in SEPARATORS or value[-1] in SEPARATORS:
        raise AccountIdError(f"the account id {value!r} begins or ends with a separator (. - _)")
    scripts = sorted({_script(c) for c in value} & set(CONFUSABLE_SCRIPTS))
    if len(scripts) > 1:
        raise AccountIdError(
            f"the account id {value!r} mixes {' and '.join(s.title() for s in scripts)} letters,"
            " which only a look-alike would do"
        )
    return value


def _check_character(value: str, character: str, previous: str) -> None:
    category = unicodedata.category(character)
    if character in SEPARATORS:
        if previous in SEPARATORS:
            raise AccountIdError(f"the account id {value!r} has two separators in a row")
        return
    if category in LETTERS or category == "Nd":
        return
    if category[0] == "M" and previous and unicodedata.category(previous)[0] in "LM":
        return
    name = unicodedata.name(character, "unnamed")
    raise AccountIdError(
        f"the account id {value!r} holds {character!r} (U+{ord(character):04X} {name}):"
        " an account id has letters, digits and . - _ only"
    )


def _script(character: str) -> str:
    return unicodedata.name(character, "").split(" ", 1)[0]


def skeleton(account_id: str) -> str:
    """What ``account_id`` looks like: two ids with one skeleton could be taken for each other.

    It works on any text, an id stored before this rule included, so a new id is compared
    with every existing one.
    """
    folded = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", account_id).casefold())
    parts = []
    for character in folded:
        if unicodedata.combining(character):
            continue
        if character in SEPARATORS:
            parts.append(".")
            continue
        digit = unicodedata.digit(character, None)
        plain = str(digit) if digit is not None else character
        parts.append(CONFUSABLE.get(plain, plain))
    shape = "".join(parts)
    for pair, single in CONFUSABLE_PAIRS.items():
        shape = shape.replace(pair, single)
    return shape
