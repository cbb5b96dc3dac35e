"""What a face may know about a relay before it enrols: the key pin it must present."""

from __future__ import annotations

from app.sync.link import spki_pin

__all__ = ["relay_pin"]


def relay_pin(certificate_der: bytes) -> str:
    """``sha256/<base64>`` of a relay certificate's public key, as ``enclave-server`` prints it."""
    return spki_pin(certificate_der)
