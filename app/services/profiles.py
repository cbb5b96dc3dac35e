"""Opening a profile from a face: where its key comes from, and whether a folder holds one.

A face chooses the key source (the OS keystore, or a passphrase the person types) and
hands it to ``Enclave.open``; it never touches the key header or the database itself.
Before it makes a profile it asks ``new_profile_rules`` whether the organisation requires a
passphrase and how long, so it offers only what ``Enclave.open`` will accept.
"""

from __future__ import annotations

import time
from pathlib import Path

import nacl.utils

from app.services.policy import system_location, system_rules
from app.services.rules import PolicyRules
from storage import keys
from storage.keyheader import Protection
from storage.keys import KeySource, Keystore, Passphrase, keystore_available
from storage.store import profile_present, protection_of

__all__ = [
    "KeySource",
    "Keystore",
    "Passphrase",
    "kept_secret",
    "keystore_available",
    "needs_passphrase",
    "new_profile_rules",
    "profile_exists",
]


def kept_secret(name: str) -> str:
    """A random secret the OS keystore keeps as ``name``, made on first use (``storage.keys``); a
    ``StorageError`` when the keystore cannot be used."""
    return keys.kept_secret(name, nacl.utils.random)


def profile_exists(profile: Path) -> bool:
    """Whether ``profile`` holds an Enclave profile, whole or damaged (``storage.store.profile_present``)."""
    return profile_present(profile)


def needs_passphrase(profile: Path) -> bool:
    """Whether the existing profile in ``profile`` is protected by a passphrase (not the keystore)."""
    return protection_of(profile) is Protection.PASSPHRASE


def new_profile_rules(system_config: Path | None = None) -> PolicyRules:
    """The policy a profile made now must follow: the machine's system config alone (a profile's
    own imports come after it exists). ``system_config`` as for ``Enclave.open``."""
    return system_rules(system_location(system_config), clock=time.time)
