"""The enrolment authority over HTTPS: certify a new device, renew a certificate.

Each is one POST (docs/PROTOCOL.md §18) to the first of the config's authority addresses
that answers with a pinned key. The authority's certificate is self-signed, so, as for the
relay, its public key's SHA-256 pin is what is trusted: a first TLS connection only reads
the certificate and checks its pin, and the request goes over a second one that accepts
exactly that certificate (``link.pinned_https``). No byte of a request, which carries the
proof of an enrolment code, reaches a server without a pinned key.

What comes back is the certificate's bytes, unchecked: the caller checks it against the
authority key of the organisation config (``credentials.own_certificate``), so a server
with a pinned TLS key still cannot give this device a certificate no colleague accepts.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import urlsplit

import aiohttp

from app.base.errors import AuthorityRefusedError, OfflineError, PinMismatchError
from app.sync.link import CONNECT_SECONDS, pinned_https, spki_pin, unverified_tls, why

log = logging.getLogger(__name__)

CERTIFY_PATH = "/v1/certify"
RENEW_PATH = "/v1/renew"
MAX_ANSWER_BYTES = 4096
"""A certificate is at most 175 bytes and a refusal one line; more is not read."""
MAX_REASON_CHARS = 300
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


@dataclass(frozen=True, slots=True)
class AuthorityAddress:
    """Where the enrolment authority is, the TLS keys it may present, and its signing key."""

    urls: tuple[str, ...]
    """``https://host:port`` each, in the order they are tried."""
    pins: tuple[str, ...]
    key: bytes
    """The authority's Ed25519 public key: the trust root of every device certificate."""

    def __post_init__(self) -> None:
        if not self.urls or not self.pins:
            raise ValueError("an authority address needs at least one URL and one pin")


async def certify(address: AuthorityAddress, request: bytes) -> bytes:
    """POST a certify request (app/protocol/authority.py); the certificate's bytes."""
    return await _post(address, CERTIFY_PATH, request)


async def renew(address: AuthorityAddress, request: bytes) -> bytes:
    """POST a renew request; the fresh certificate's bytes."""
    return await _post(address, RENEW_PATH, request)


async def _post(address: AuthorityAddress, path: str, body: bytes) -> bytes:
    """The answer of the first address that presents a pinned key; ``AuthorityRefusedError`` if it
    refuses, ``PinMismatchError`` if an address answered with another key and none with a
    pinned one, else ``OfflineError``."""
    mismatch: PinMismatchError | None = None
    failure = "no address to try"
    for url in address.urls:
        try:
            certificate_der = await _pinned_certificate(url, address.pins)
        except PinMismatchError as e:
            mismatch = e
            continue
        except (OSError, TimeoutError, ssl.SSLError, ValueError) as e:
            failure = why(e)
            log.info("an enrolment authority address cannot be reached (%s); trying the next", failure)
            continue
        headers = {"Content-Type": "application/octet-stream"}
        async with (
            pinned_https(certificate_der) as http,
            http.post(url.rstrip("/") + path, data=body, headers=headers) as response,
        ):
            answer = await response.content.read(MAX_ANSWER_BYTES)
            if response.status == HTTPStatus.OK:
                return answer
            raise AuthorityRefusedError(response.status, _reason(answer))
    if mismatch is not None:
        raise mismatch
    raise OfflineError(
        f"the enrolment authority at {' or '.join(address.urls)} cannot be reached ({failure})"
    )


async def _pinned_certificate(url: str, pins: tuple[str, ...]) -> bytes:
    """The certificate the server at ``url`` presents, once its key is seen to be pinned."""
    parts = urlsplit(url)
    if parts.scheme != "https" or parts.hostname is None:
        raise ValueError(f"{url} is not an https:// address")
    async with asyncio.timeout(CONNECT_SECONDS):
        reader, writer = await asyncio.open_connection(
            parts.hostname, parts.port or 443, ssl=unverified_tls(), server_hostname=parts.hostname
        )
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (OSError, ssl.SSLError, aiohttp.ClientError):
            log.debug("the probe connection did not close cleanly")
    del reader
    if der is None or spki_pin(der) not in pins:
        raise PinMismatchError(
            f"the enrolment authority's TLS key at {url} matches no pinned key; nothing was sent "
            "(an interception, or the authority's key changed: ask IT)"
        )
    return der


def _reason(answer: bytes) -> str:
    """The authority's one-line refusal, safe to show: control characters replaced, cut short."""
    text = _CONTROL.sub("\ufffd", answer.decode("utf-8", errors="replace")).strip()
    return text[:MAX_REASON_CHARS] or "no reason given"
