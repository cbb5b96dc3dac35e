"""What a face may know about a relay before it enrols, and where enrolment goes.

A face may show the key pin a relay must present (``relay_pin``). Where to enrol is the
organisation's signed config's relay (``enrolment_address``): with no config in force there
is no enrolment authority to trust either, so no address a user types is enough.
"""

from __future__ import annotations

from app.services.errors import RelayConflictError
from app.sync.link import RelayAddress, spki_pin

__all__ = ["enrolment_address", "relay_pin"]


def relay_pin(certificate_der: bytes) -> str:
    """``sha256/<base64>`` of a relay certificate's public key, as ``enclave-server`` prints it."""
    return spki_pin(certificate_der)


def enrolment_address(organisation: RelayAddress, relay_url: str | None, pin: str | None) -> RelayAddress:
    """The relay to enrol with: the organisation config's (``organisation``).

    A given URL or pin must be among the config's, and then the config's whole address is
    used (every URL and pin, so a later rotation needs nothing from the user); one that is
    not is ``RelayConflictError``.
    """
    given = []
    if relay_url is not None and relay_url.rstrip("/") not in organisation.urls:
        given.append(relay_url)
    if pin is not None and pin not in organisation.pins:
        given.append(pin)
    if given:
        raise RelayConflictError(
            f"the organisation's config names the relay {' or '.join(organisation.urls)} and its "
            f"pins; {' and '.join(given)} is not among them, so nothing was sent: enrol with the "
            "code alone, or ask IT"
        )
    return organisation
