"""The link: the pin it computes is the relay's, the addresses it derives, and HTTPS pinned to the relay."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from app.base.errors import OfflineError, PinMismatchError
from app.sync.link import RelayAddress, download_blob, spki_pin, upload_blob
from server.keys import _self_signed, public_key_pin
from tests.support.relay import RelayProcess


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


def _der(relay: RelayProcess) -> bytes:
    return ssl.PEM_cert_to_DER_cert((relay.data_dir / "tls.crt").read_text(encoding="ascii"))


def test_attachments_go_only_to_the_certificate_the_pin_check_accepted(tmp_path: Path) -> None:
    """Test that upload and download refuse a server with another certificate, and reach the right one.

    Relay B answers at the address while the link had checked relay A's certificate: an
    interceptor. Unpinned HTTPS would reach B (an upload refused for its token, a
    download of nothing); pinned, not a byte goes to it.
    """
    first = RelayProcess(tmp_path / "a").start()
    second = RelayProcess(tmp_path / "b").start()
    try:
        address = RelayAddress(second.https, second.pin)
        with pytest.raises(PinMismatchError):
            asyncio.run(upload_blob(address, _der(first), b"ciphertext", b"\x00" * 32, None))
        with pytest.raises(PinMismatchError):
            asyncio.run(download_blob(address, _der(first), "some-attachment"))
        with pytest.raises(OfflineError, match="upload token"):
            asyncio.run(upload_blob(address, _der(second), b"ciphertext", b"\x00" * 32, None))
        assert asyncio.run(download_blob(address, _der(second), "some-attachment")) is None
    finally:
        first.stop()
        second.stop()
