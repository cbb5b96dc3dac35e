"""The link: the pin it computes is the relay's, the addresses it derives and tries in order, any of
several pins accepted and none else, and HTTPS pinned to the relay."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from nacl.utils import random

from app.base.errors import OfflineError, PinMismatchError, RelayRefusedError, RemoteProtocolError
from app.base.tlsfiles import public_key_pin, self_signed
from app.crypto.keys import IdentityKeyPair, SignedPreKey
from app.protocol.frames import Enrol, SignedPreKeyUpload
from app.sync.link import (
    RelayAddress,
    download_blob,
    enrol,
    spki_pin,
    upload_blob,
    upload_token_authorization,
    websocket_url,
)
from app.sync.machine import Connection
from tests.support.hostile import hostile_https
from tests.support.relay import RelayProcess, certificate_for

OTHER_PIN = "sha256/" + "A" * 43 + "="
ANOTHER_PIN = "sha256/" + "B" * 43 + "="
CLOSED_URL = "https://127.0.0.1:9"
"""The discard port: nothing listens on loopback, so connecting is refused at once."""


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[RelayProcess]:
    process = RelayProcess(tmp_path / "relay").start()
    yield process
    process.stop()


def test_the_client_pin_of_a_certificate_is_the_one_the_relay_prints() -> None:
    """Test that spki_pin over the DER form equals the relay's pin over the PEM form, and differs per key."""
    pem = self_signed("127.0.0.1")[1]
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    assert spki_pin(der) == public_key_pin(pem)
    other = x509.load_pem_x509_certificate(self_signed("127.0.0.1")[1]).public_bytes(
        serialization.Encoding.DER
    )
    assert spki_pin(other) != spki_pin(der)


def test_websocket_url_follows_the_https_address() -> None:
    """Test that the WebSocket endpoint is derived from the relay's HTTPS address."""
    assert websocket_url("https://relay.ministry.local:8443/") == "wss://relay.ministry.local:8443/v1/ws"


def _enrol_uncertified(address: RelayAddress) -> None:
    """``enrol`` with a certificate no enrolment authority the relay trusts signed: a relay that is
    reached refuses it (so a refusal shows the ENROL reached the relay)."""
    identity, stranger = IdentityKeyPair.generate(random), IdentityKeyPair.generate(random)
    signed = SignedPreKey.generate(identity, 1, random)
    certificate = certificate_for("mallory", 7, identity.public, issuer=stranger)

    def request(machine: Connection) -> Enrol:
        signature = machine.challenge_signature(
            7, lambda context, message: identity.sign(context=context, message=message)
        )
        return Enrol(
            certificate,
            signature,
            SignedPreKeyUpload(signed.key_id, signed.keypair.public, signed.signature),
            (),
        )

    asyncio.run(enrol(address, request))


def test_any_of_the_pins_is_accepted_and_none_matching_is_refused(relay: RelayProcess) -> None:
    """Test that a relay whose key is one of several pins is spoken to, and that one matching none
    of them is dropped before the first frame: the relay never sees the ENROL."""
    with pytest.raises(RelayRefusedError, match="UNAUTHENTICATED"):
        _enrol_uncertified(RelayAddress((relay.https,), (OTHER_PIN, relay.pin)))
    with pytest.raises(PinMismatchError, match="matches no pinned key"):
        _enrol_uncertified(RelayAddress((relay.https,), (OTHER_PIN, ANOTHER_PIN)))


def test_the_addresses_are_tried_in_order_until_one_answers(relay: RelayProcess) -> None:
    """Test that an address that is down is passed over for the next, and that when none answers
    the failure names every address."""
    with pytest.raises(RelayRefusedError, match="UNAUTHENTICATED"):
        _enrol_uncertified(RelayAddress((CLOSED_URL, relay.https), (relay.pin,)))
    with pytest.raises(OfflineError, match=f"{CLOSED_URL} or https://127.0.0.1:10 cannot be reached"):
        _enrol_uncertified(RelayAddress((CLOSED_URL, "https://127.0.0.1:10"), (relay.pin,)))


def test_an_address_with_another_key_is_passed_over_for_a_pinned_one(tmp_path: Path) -> None:
    """Test that the first address answering with an unpinned key is dropped unspoken-to and the
    next, with a pinned key, is used; and that a mismatch is the failure when no address works,
    since it matters more than an address that is down."""
    interceptor = RelayProcess(tmp_path / "interceptor").start()
    genuine = RelayProcess(tmp_path / "genuine").start()
    try:
        with pytest.raises(RelayRefusedError, match="UNAUTHENTICATED"):
            _enrol_uncertified(RelayAddress((interceptor.https, genuine.https), (genuine.pin,)))
        with pytest.raises(PinMismatchError):
            _enrol_uncertified(RelayAddress((interceptor.https, CLOSED_URL), (genuine.pin,)))
    finally:
        interceptor.stop()
        genuine.stop()


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
        address = second.https
        wrong_token = upload_token_authorization(b"\x00" * 32)
        with pytest.raises(PinMismatchError):
            asyncio.run(upload_blob(address, _der(first), b"ciphertext", wrong_token))
        with pytest.raises(PinMismatchError):
            asyncio.run(download_blob(address, _der(first), "some-attachment", 1024))
        with pytest.raises(OfflineError, match="upload token"):
            asyncio.run(upload_blob(address, _der(second), b"ciphertext", wrong_token))
        assert asyncio.run(download_blob(address, _der(second), "some-attachment", 1024)) is None
    finally:
        first.stop()
        second.stop()


BLOB = bytes(range(256)) * 64
"""What the hostile relay below serves: 16 KiB, in 1 KiB chunks with no length, or with its length."""


async def _serve(request: web.Request) -> web.StreamResponse:
    """A relay that serves more than a message declares: chunked (no length to refuse up front) for
    ``chunked``, else with its Content-Length."""
    if request.match_info["attachment_id"] == "chunked":
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(BLOB), 1024):
            await response.write(BLOB[start : start + 1024])
        await response.write_eof()
        return response
    return web.Response(body=BLOB)


async def _download_from_hostile(folder: Path, attachment_id: str, max_bytes: int) -> bytes | None:
    async with hostile_https(folder, [("GET", "/v1/attachments/{attachment_id}", _serve)]) as server:
        return await download_blob(server.url, server.certificate_der, attachment_id, max_bytes)


@pytest.mark.parametrize("attachment_id", ["chunked", "with-length"])
def test_a_download_stops_at_the_size_the_message_declares(tmp_path: Path, attachment_id: str) -> None:
    """Test that a relay serving more than the message declares is refused once that many bytes
    came (or at once, from its Content-Length), and that the same blob within the size is read."""
    with pytest.raises(RemoteProtocolError, match="larger than its message says"):
        asyncio.run(_download_from_hostile(tmp_path, attachment_id, len(BLOB) - 1))
    assert asyncio.run(_download_from_hostile(tmp_path, attachment_id, len(BLOB))) == BLOB
