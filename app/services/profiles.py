"""Opening a profile from a face: where its key comes from, and whether a folder holds one.

A face chooses the key source (the OS keystore, or a passphrase the person types) and
hands it to ``Enclave.open``; it never touches the key header or the database itself.
"""

from __future__ import annotations

from pathlib import Path

from storage.keyheader import Protection
from storage.keys import KeySource, Keystore, Passphrase, keystore_available
from storage.store import DATABASE_NAME, KEY_HEADER_NAME, protection_of

__all__ = [
    "KeySource",
    "Keystore",
    "Passphrase",
    "keystore_available",
    "needs_passphrase",
    "profile_exists",
]


def profile_exists(profile: Path) -> bool:
    """Whether ``profile`` holds an Enclave profile, whole or damaged: its key header, or its
    database without one (opening it then says the key header is missing; it is never
    created anew over)."""
    return (profile / KEY_HEADER_NAME).exists() or (profile / DATABASE_NAME).exists()


def needs_passphrase(profile: Path) -> bool:
    """Whether the existing profile in ``profile`` is protected by a passphrase (not the keystore)."""
    return protection_of(profile) is Protection.PASSPHRASE
