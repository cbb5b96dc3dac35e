"""The profile settings the core keeps in the encrypted store, by name."""

from __future__ import annotations

from dataclasses import dataclass

from app.sync.link import RelayAddress
from storage.store import Store

RELAY_URLS = "relay.url"
RELAY_PINS = "relay.pin"
"""The relay's addresses and pins, each list joined by single spaces (neither a URL nor a pin
holds one). The names are from when a profile kept one of each; such a value reads as a list
of one, so profiles enrolled before keep working unchanged."""
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
    urls, pins, root = (store.settings.get(k) for k in (RELAY_URLS, RELAY_PINS, TRUST_ROOT))
    if not urls or not pins or root is None:
        return None
    return RelaySettings(RelayAddress(tuple(urls.split()), tuple(pins.split())), bytes.fromhex(root))


def save_relay(store: Store, relay: RelaySettings) -> None:
    save_relay_address(store, relay.address)
    store.settings.set(TRUST_ROOT, relay.trust_root.hex())


def save_relay_address(store: Store, address: RelayAddress) -> None:
    store.settings.set(RELAY_URLS, " ".join(address.urls))
    store.settings.set(RELAY_PINS, " ".join(address.pins))


def read_receipts_enabled(store: Store) -> bool:
    return store.settings.get(READ_RECEIPTS, "on") == "on"
