"""The profile settings the core keeps in the encrypted store, by name."""

from __future__ import annotations

from dataclasses import dataclass

from app.sync.link import RelayAddress
from storage.store import Store

RELAY_URL = "relay.url"
RELAY_PIN = "relay.pin"
TRUST_ROOT = "relay.certificate_issuer"
CERTIFICATE = "relay.certificate"
"""This device's latest certificate, so messages composed offline after a restart can be sealed."""
NEXT_PREKEY_ID = "prekeys.next_id"
READ_RECEIPTS = "receipts.read"


@dataclass(frozen=True, slots=True)
class RelaySettings:
    address: RelayAddress
    trust_root: bytes
    """The key that signs device certificates (the relay's, until the signed org config names it)."""


def load_relay(store: Store) -> RelaySettings | None:
    url, pin, root = (store.settings.get(k) for k in (RELAY_URL, RELAY_PIN, TRUST_ROOT))
    if url is None or pin is None or root is None:
        return None
    return RelaySettings(RelayAddress(url, pin), bytes.fromhex(root))


def save_relay(store: Store, relay: RelaySettings) -> None:
    store.settings.set(RELAY_URL, relay.address.url)
    store.settings.set(RELAY_PIN, relay.address.pin)
    store.settings.set(TRUST_ROOT, relay.trust_root.hex())


def read_receipts_enabled(store: Store) -> bool:
    return store.settings.get(READ_RECEIPTS, "on") == "on"
