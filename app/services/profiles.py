"""Opening a profile from a face: where its key comes from, and whether a folder holds one.

A face chooses the key source (the OS keystore, or a passphrase the person types) and
hands it to ``Enclave.open``; it never touches the key header or the database itself.
"""

from __future__ import annotations

from pathlib import Path

from storage.keyheader import Protection
from storage.keys import KeySource, Keystore, Passphrase, keystore_available
from storage.store import profile_present, protection_of

__all__ = [
    "KeySource",
    "Keystore",
    "Passphrase",
    "keystore_available",
    "needs_passphrase",
    "profile_exists",
]


def profile_exists(profile: Path) -> bool:
    """Whether ``profile`` holds an Enclave profile, whole or damaged (``storage.store.profile_present``)."""
    return profile_present(profile)


def needs_passphrase(profile: Path) -> bool:
    """Whether the existing profile in ``profile`` is protected by a passphrase (not the keystore)."""
    return protection_of(profile) is Protection.PASSPHRASE
