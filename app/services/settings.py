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
CERTIFICATE = "relay.certificate"
"""This device's latest certificate, so messages composed offline after a restart can be sealed."""
CERTIFICATE_RECEIVED = "relay.certificate_received"
"""When this device received that certificate (Unix seconds), from which its renewal is timed."""
PENDING_ENROLMENT = "enrolment.pending"
"""An identity seed and the certificate the enrolment authority gave it, in hex and joined by a
space, kept from certification until the relay has registered the device: the code is spent
at the authority, so a relay that cannot be reached must not cost the user a new code."""
NEXT_PREKEY_ID = "prekeys.next_id"
READ_RECEIPTS = "receipts.read"


@dataclass(frozen=True, slots=True)
class RelaySettings:
    """The relay this device is enrolled with. Whom it trusts to certify devices is not kept
    here: it is the enrolment authority of the organisation config in force."""

    address: RelayAddress


def load_relay(store: Store) -> RelaySettings | None:
    urls, pins = (store.settings.get(k) for k in (RELAY_URLS, RELAY_PINS))
    if not urls or not pins:
        return None
    return RelaySettings(RelayAddress(tuple(urls.split()), tuple(pins.split())))


def save_relay(store: Store, relay: RelaySettings) -> None:
    save_relay_address(store, relay.address)


def save_relay_address(store: Store, address: RelayAddress) -> None:
    store.settings.set(RELAY_URLS, " ".join(address.urls))
    store.settings.set(RELAY_PINS, " ".join(address.pins))


def read_receipts_enabled(store: Store) -> bool:
    return store.settings.get(READ_RECEIPTS, "on") == "on"
