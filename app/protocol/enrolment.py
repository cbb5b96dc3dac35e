"""Enrolment codes and what each party may derive from one.

An admin gives a user a one-time code (``new_enrolment_code``: 120 random bits, shown as
24 base32 characters in groups of four). Two values come from it, each a keyed BLAKE2b
with its own key, so that knowing one tells nothing about the other:

- ``code_id``: the enrolment authority's look-up key for the code (it is sent in clear);
- ``code_key``: the authority's HMAC key, with which the device proves it holds the code.

The relay is given nothing derived from a code: it registers a device from the
certificate the authority signed for it, so a relay's data folder holds nothing that
could certify a device.

Case, spaces and dashes do not matter when a code is typed; every derivation reads the
normalised form. docs/PROTOCOL.md, "Enrolment authority", gives the bytes.
"""

from __future__ import annotations

import base64

from app.crypto.primitives import RandomSource, blake2b_256

CODE_BYTES = 15
"""120 bits: 24 base32 characters, typed in groups of four."""
CODE_ID_KEY = b"enclave:v1:authority-code-id"
CODE_KEY_KEY = b"enclave:v1:authority-code-key"


def new_enrolment_code(random: RandomSource) -> str:
    """A fresh code in the form shown to its user: ``ABCD-EFGH-…`` (six groups of four)."""
    raw = base64.b32encode(random(CODE_BYTES)).decode("ascii")
    return "-".join(raw[i : i + 4] for i in range(0, len(raw), 4))


def normalised_code(code: str) -> bytes:
    """The bytes every derivation reads: upper case, no spaces, no dashes, UTF-8."""
    return "".join(code.split()).replace("-", "").upper().encode("utf-8")


def code_id(code: str) -> bytes:
    return blake2b_256(key=CODE_ID_KEY, data=normalised_code(code))


def code_key(code: str) -> bytes:
    return blake2b_256(key=CODE_KEY_KEY, data=normalised_code(code))
