"""The link's pure parts: the pin it computes is the relay's, and the addresses it derives."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from app.sync.link import RelayAddress, spki_pin
from server.keys import _self_signed, public_key_pin


def test_the_client_pin_of_a_certificate_is_the_one_the_relay_prints() -> None:
    """Test that spki_pin over the DER form equals the relay's pin over the PEM form, and differs per key."""
    pem = _self_signed("127.0.0.1")[1]
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    assert spki_pin(der) == public_key_pin(pem)
    other = x509.load_pem_x509_certificate(_self_signed("127.0.0.1")[1]).public_bytes(
        serialization.Encoding.DER
    )
    assert spki_pin(other) != spki_pin(der)


def test_websocket_url_follows_the_https_address() -> None:
    """Test that the WebSocket endpoint is derived from the relay's HTTPS address."""
    assert RelayAddress("https://relay.ministry.local:8443/", "pin").websocket_url == (
        "wss://relay.ministry.local:8443/v1/ws"
    )
