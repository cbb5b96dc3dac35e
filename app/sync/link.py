"""The thin asyncio driver of ``machine.Connection``: one TLS WebSocket to the relay, kept up.

``RelayLink`` is the first ``transport.Transport``: it connects, checks the relay's
public-key pin (any of the relay's pins, at the first of its addresses that answers)
before a single frame is sent, authenticates, and hands what the relay
says to its ``LinkListener``: pushed envelopes one at a time and in order (the listener
acks each once its store has committed it), notices, and state changes. Beside the
transport it offers what only the relay has: requests (directory, prekey bundles),
attachment upload and download, and certificate renewal by reconnecting. When the
connection drops it reconnects after a jittered back-off (``machine.Backoff``); when
the relay refuses the device (revoked, disabled) it stops for good and says why.

Why the pin is checked after the handshake and not by the TLS library: the relay's
certificate is self-signed and renewable, so the pin is the SHA-256 of its public key
(SPKI), which ``ssl`` cannot verify itself. The WebSocket upgrade request that precedes
the check carries nothing (no credential, no identity); the first frame we send, the
signed challenge, goes only to a relay that holds the pinned key.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import hashlib
import logging
import random as _random
import ssl
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from http import HTTPStatus
from typing import Protocol

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from app.base.errors import (
    OfflineError,
    PinMismatchError,
    RelayRefusedError,
    RemoteProtocolError,
    TransportError,
)
from app.protocol.envelope import Envelope
from app.protocol.frames import (
    MAX_FRAME_BYTES,
    Ack,
    Authenticated,
    Deliver,
    Enrol,
    FrameType,
    Notice,
    Response,
    Send,
    Status,
)
from app.sync.machine import (
    Answered,
    Backoff,
    Challenged,
    Closed,
    Connection,
    Event,
    Noticed,
    Online,
    Pushed,
    Refused,
    Signer,
    State,
)
from app.sync.transport import EnvelopeReceiver, SendOutcome, TransportState

log = logging.getLogger(__name__)

CONNECT_SECONDS = 15.0
REQUEST_SECONDS = 30.0
HEARTBEAT_SECONDS = 30.0
DELIVERY_IDLE_SECONDS = 20.0
"""How long the unidentified socket stays open with nothing to deliver. Every envelope handed in
on one socket is plainly one sender's; closed when idle, a socket ties together one burst of
envelopes (a conversation's exchange, a batch of receipts), not a whole day of them."""
UPLOAD_SCHEME = "Enclave-Upload "
DELIVER_SCHEME = "Enclave-Deliver "
DOWNLOAD_CHUNK_BYTES = 64 * 1024


def spki_pin(certificate_der: bytes) -> str:
    """``sha256/<base64>`` of a certificate's SubjectPublicKeyInfo, as the relay prints it."""
    spki = (
        x509.load_der_x509_certificate(certificate_der)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return "sha256/" + base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")


@dataclass(frozen=True, slots=True)
class RelayAddress:
    """Where the relay is and the public keys it may present.

    Several addresses (one relay behind several names, or several relays sharing one
    database) are tried in order until one answers with a pinned key. Several pins let the
    relay's key be rotated: the organisation lists the next key's pin beside the current
    one, the relay changes key, and a later config drops the old pin; a relay presenting a
    key that matches none is refused before the first frame.
    """

    urls: tuple[str, ...]
    """``https://host:port`` each, in the order they are tried."""
    pins: tuple[str, ...]
    """``sha256/<base64 of the SPKI digest>`` each."""

    def __post_init__(self) -> None:
        if not self.urls or not self.pins:
            raise ValueError("a relay address needs at least one URL and one pin")


DEVICE_PATH = "/v1/ws"
UNIDENTIFIED_PATH = "/v1/deliver"


def websocket_url(url: str, path: str = DEVICE_PATH) -> str:
    """The WebSocket endpoint ``path`` (the device connection's by default) at the relay's HTTPS
    address ``url``."""
    return url.replace("https://", "wss://", 1).rstrip("/") + path


def unverified_tls() -> ssl.SSLContext:
    """TLS whose certificate check is the SPKI pin (see the module docstring), not a CA."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def why(error: BaseException) -> str:
    """A failure to connect in a few words a user can act on (no object reprs)."""
    if isinstance(error, aiohttp.ClientConnectorError):
        return error.os_error.strerror or type(error.os_error).__name__
    if isinstance(error, TimeoutError):
        return "no answer in time"
    return str(error) or type(error).__name__


@dataclass(frozen=True, slots=True)
class _Started:
    """What ``RelayLink.start`` was given: where to connect, as whom, and who hears it."""

    address: RelayAddress
    device_id: int
    signer: Signer
    certificate: Callable[[], bytes]
    listener: LinkListener


BUSY = frozenset({Status.MAILBOX_FULL, Status.RATE_LIMITED, Status.INTERNAL_ERROR})
"""The relay's answers to a SEND that mean "not now" rather than "never"."""


def send_outcome(status: Status) -> SendOutcome:
    """What the relay's answer to a SEND means for the envelope."""
    if status == Status.OK:
        return SendOutcome.STORED
    if status == Status.NOT_FOUND:
        return SendOutcome.GONE
    if status in BUSY:
        log.info("the relay is busy (%s); the outbox waits", status.name)
        return SendOutcome.BUSY
    log.warning("the relay refused an envelope: %s", status.name)
    return SendOutcome.REFUSED


class LinkListener(EnvelopeReceiver, Protocol):
    """An ``EnvelopeReceiver`` that also hears what only the relay says."""

    async def on_online(self, authenticated: Authenticated) -> None: ...

    async def on_notice(self, notice: Notice) -> None: ...


class _Socket:
    """One pinned WebSocket and the machine that speaks over it."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        ws: aiohttp.ClientWebSocketResponse,
        url: str,
        der: bytes,
        *,
        unidentified: bool,
    ) -> None:
        self.http, self.ws, self.url, self.certificate_der = http, ws, url, der
        self.machine = Connection(unidentified=unidentified)

    @classmethod
    async def open(cls, address: RelayAddress, *, unidentified: bool = False) -> _Socket:
        """The first of ``address.urls`` that answers with a pinned key, each tried for
        ``CONNECT_SECONDS``. None did: ``PinMismatchError`` if one answered with another key
        (it matters more than an address that is down), else the last address's failure."""
        mismatch: PinMismatchError | None = None
        failure: BaseException | None = None
        for url in address.urls:
            try:
                async with asyncio.timeout(CONNECT_SECONDS):
                    return await cls._open_one(url, address.pins, unidentified=unidentified)
            except PinMismatchError as e:
                mismatch = e
            except (aiohttp.ClientError, OSError, TimeoutError) as e:
                failure = e
                log.info("a relay address cannot be reached (%s); trying the next", why(e))
        raise mismatch or failure or OfflineError("the relay has no address to try")

    @classmethod
    async def _open_one(cls, url: str, pins: tuple[str, ...], *, unidentified: bool) -> _Socket:
        http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, connect=CONNECT_SECONDS))
        try:
            ws = await http.ws_connect(
                websocket_url(url, UNIDENTIFIED_PATH if unidentified else DEVICE_PATH),
                ssl=unverified_tls(),
                max_msg_size=MAX_FRAME_BYTES,
                heartbeat=HEARTBEAT_SECONDS,
            )
            ssl_object = ws.get_extra_info("ssl_object")
            der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
            if der is None or spki_pin(der) not in pins:
                await ws.close()
                raise PinMismatchError(
                    f"the relay's TLS key at {url} matches no pinned key; the connection was dropped "
                    "before anything was sent (an interception, or the relay's key changed: ask IT)"
                )
        except BaseException:
            await http.close()
            raise
        return cls(http, ws, url, der, unidentified=unidentified)

    async def receive(self, timeout: float | None = None) -> list[Event]:
        message = await self.ws.receive(timeout=timeout)
        if message.type != aiohttp.WSMsgType.BINARY:
            self.machine.connection_lost()
            return []
        return self.machine.receive(message.data)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()
        await self.http.close()


async def _ask(
    socket: _Socket,
    waiting: dict[int, asyncio.Future[Response]],
    frame_type: FrameType,
    body: bytes,
    timeout: float,
) -> Response:
    """Send a request on ``socket`` and wait for the answer its reader puts in ``waiting``;
    ``OfflineError`` if none comes within ``timeout`` or the socket fails."""
    request_id, frame = socket.machine.request(frame_type, body)
    future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
    waiting[request_id] = future
    try:
        await socket.ws.send_bytes(frame)
        async with asyncio.timeout(timeout):
            return await future
    except (ConnectionError, aiohttp.ClientError, TimeoutError) as e:
        raise OfflineError(f"the relay did not answer: {e}") from e
    finally:
        waiting.pop(request_id, None)


async def enrol(address: RelayAddress, request: Callable[[Connection], Enrol]) -> None:
    """Register this device with the relay over a fresh, pinned connection: ``request`` makes the
    ENROL (its certificate and the challenge signed, ``Connection.challenge_signature``) once
    the challenge is in. A refusal is ``RelayRefusedError``."""
    try:
        socket = await _Socket.open(address)
    except (aiohttp.ClientError, OSError, TimeoutError) as e:
        where = " or ".join(address.urls)
        raise OfflineError(f"the relay at {where} cannot be reached ({why(e)})") from e
    try:
        events = await socket.receive(CONNECT_SECONDS)
        if not any(isinstance(event, Challenged) for event in events):
            raise RemoteProtocolError("the relay did not open with a challenge")
        request_id, frame = socket.machine.request(FrameType.ENROL, request(socket.machine).encode())
        await socket.ws.send_bytes(frame)
        while True:
            for event in await socket.receive(REQUEST_SECONDS):
                if isinstance(event, Answered) and event.request_id == request_id:
                    if event.response.status != Status.OK:
                        raise RelayRefusedError(event.response.status.name, event.response.reason)
                    return
                if isinstance(event, Refused | Closed):
                    raise RelayRefusedError(event.status.name, event.reason)
            if socket.machine.state in (State.CLOSED, State.FAILED):
                raise OfflineError("the relay closed the connection during enrolment")
    except (aiohttp.ClientError, OSError, TimeoutError) as e:
        raise OfflineError(f"the connection to the relay failed during enrolment: {e}") from e
    finally:
        await socket.close()


class UploadUnauthorisedError(OfflineError):
    """The relay took neither the upload token nor the delivery key the upload showed (HTTP 401)."""


def upload_token_authorization(upload_token: bytes) -> str:
    """The ``Authorization`` of an upload that names this device (its upload token)."""
    return UPLOAD_SCHEME + upload_token.hex()


def delivery_key_authorization(device_id: int, delivery_key: bytes) -> str:
    """The ``Authorization`` of an upload for ``device_id`` that names nobody (its delivery key)."""
    return f"{DELIVER_SCHEME}{device_id}.{delivery_key.hex()}"


async def upload_blob(relay_url: str, certificate_der: bytes, blob: bytes, authorization: str) -> str:
    """POST an attachment blob to ``relay_url`` over HTTPS pinned to ``certificate_der``; returns its id.

    It asks for no expiry: the relay keeps every upload the same whole number of days, so that it
    learns no message's timer from it (docs/PROTOCOL.md section 10).
    """
    headers = {"Authorization": authorization}
    url = relay_url.rstrip("/") + "/v1/attachments"
    async with pinned_https(certificate_der) as http, http.post(url, data=blob, headers=headers) as response:
        answer = await response.json(content_type=None)
        if response.status == HTTPStatus.UNAUTHORIZED:
            raise UploadUnauthorisedError(
                "the relay refused the upload token or delivery key; a new token comes with the next"
                " connection"
            )
        if response.status == HTTPStatus.TOO_MANY_REQUESTS:
            # The device's hourly share is spent: the file waits, like one offline, until it refills.
            raise OfflineError(f"the relay defers the upload: {answer.get('error', '')}")
        if response.status != HTTPStatus.CREATED:
            raise RelayRefusedError(f"HTTP {response.status}", str(answer.get("error", "")))
        return str(answer["attachment_id"])


async def download_blob(
    relay_url: str, certificate_der: bytes, attachment_id: str, max_bytes: int
) -> bytes | None:
    """GET an attachment blob from ``relay_url`` over HTTPS pinned to ``certificate_der``; None if the
    relay has none. Reads no more than ``max_bytes`` (the size the message declares): a longer
    answer is ``RemoteProtocolError`` once that many bytes have come, whatever it claims to be."""
    url = relay_url.rstrip("/") + "/v1/attachments/" + attachment_id
    async with pinned_https(certificate_der) as http, http.get(url) as response:
        if response.status == HTTPStatus.NOT_FOUND:
            return None
        if response.status != HTTPStatus.OK:
            raise RelayRefusedError(f"HTTP {response.status}", "the attachment download failed")
        if (response.content_length or 0) > max_bytes:
            raise RemoteProtocolError("the relay offers an attachment larger than its message says")
        blob = bytearray()
        async for chunk in response.content.iter_chunked(DOWNLOAD_CHUNK_BYTES):
            blob += chunk
            if len(blob) > max_bytes:
                raise RemoteProtocolError("the relay sent an attachment larger than its message says")
        return bytes(blob)


MAX_PUBLISHED_BYTES = 262144 + 1024
"""Read no more of a published config or its signature (a config is at most 262144 bytes)."""


async def download_published_config(
    relay_url: str, certificate_der: bytes, upload_token: bytes
) -> tuple[bytes, bytes] | None:
    """The organisation config published on the relay and its signature's bytes, over HTTPS pinned
    to ``certificate_der``; None if the relay publishes none. Unchecked: the caller checks them."""
    headers = {"Authorization": UPLOAD_SCHEME + upload_token.hex()}
    parts = []
    async with pinned_https(certificate_der) as http:
        for path in ("/v1/config", "/v1/config.sig"):
            async with http.get(relay_url.rstrip("/") + path, headers=headers) as response:
                if response.status == HTTPStatus.NOT_FOUND:
                    return None
                if response.status != HTTPStatus.OK:
                    raise RelayRefusedError(
                        f"HTTP {response.status}", "the organisation config was not given"
                    )
                parts.append(await response.content.read(MAX_PUBLISHED_BYTES))
    return parts[0], parts[1]


async def download_key_log(
    relay_url: str, certificate_der: bytes, upload_token: bytes, path: str, limit: int
) -> bytes:
    """One answer of the relay's key log (``path`` with its query, docs/PROTOCOL.md "The relay's
    log"), at most ``limit`` bytes, over HTTPS pinned to ``certificate_der``. Unchecked: the
    caller checks heads, entries and proofs (app/protocol/logview.py)."""
    headers = {"Authorization": UPLOAD_SCHEME + upload_token.hex()}
    async with (
        pinned_https(certificate_der) as http,
        http.get(relay_url.rstrip("/") + path, headers=headers) as response,
    ):
        if response.status != HTTPStatus.OK:
            raise RelayRefusedError(f"HTTP {response.status}", "the key log was not given")
        body = await response.content.read(limit + 1)
    if len(body) > limit:
        raise RemoteProtocolError(f"the key log's answer is longer than {limit} bytes")
    return body


@contextlib.asynccontextmanager
async def pinned_https(certificate_der: bytes) -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTPS session that talks only to a server presenting exactly ``certificate_der``.

    A pin check accepted that certificate (the WebSocket's, or the enrolment authority's
    probe, app/sync/authority.py); any other one (an interceptor answering for the address)
    is a ``PinMismatchError`` before a byte is sent.
    """
    fingerprint = aiohttp.Fingerprint(hashlib.sha256(certificate_der).digest())
    try:
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=fingerprint),
            timeout=aiohttp.ClientTimeout(total=None, connect=CONNECT_SECONDS, sock_read=REQUEST_SECONDS),
        ) as http:
            yield http
    except aiohttp.ServerFingerprintMismatch as e:
        raise PinMismatchError("the server's TLS certificate changed since it was checked") from e
    except (aiohttp.ClientError, OSError, TimeoutError) as e:
        raise OfflineError(f"the server cannot be reached: {e}") from e


class RelayLink:
    """Keeps one authenticated connection to the relay up from ``start`` until stopped or refused.

    Made before the device is enrolled (the engine's parts hold it from the start) and
    started once it is: ``start`` names the relay, the device and who hears the link.
    """

    def __init__(
        self, *, backoff: Backoff | None = None, unit_random: Callable[[], float] = _random.random
    ) -> None:
        self._started: _Started | None = None
        self._backoff = backoff or Backoff()
        self._unit_random = unit_random
        self._state = TransportState.OFFLINE
        self._reason = ""
        self._pinned: tuple[str, bytes] | None = None
        """The relay URL and certificate last seen with a right pin (HTTPS requests pin it exactly)."""
        self._socket: _Socket | None = None
        self._waiting: dict[int, asyncio.Future[Response]] = {}
        self._online = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._renewing = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._unidentified: _Socket | None = None
        """The socket of the unidentified path, opened at the first envelope that can take it."""
        self._unidentified_lock = asyncio.Lock()
        self._unidentified_waiting: dict[int, asyncio.Future[Response]] = {}
        self._unidentified_idle: asyncio.TimerHandle | None = None
        self.delivery_idle_seconds = DELIVERY_IDLE_SECONDS
        """``DELIVERY_IDLE_SECONDS``; tests shorten it to see the socket close."""

    @property
    def delivery_path_open(self) -> bool:
        """Whether the unidentified socket is open now (it opens at the first DELIVER, closes when idle)."""
        return self._unidentified is not None and not self._unidentified.ws.closed

    @property
    def state(self) -> TransportState:
        return self._state

    @property
    def reason(self) -> str:
        return self._reason

    @property
    def address(self) -> RelayAddress | None:
        """The relay this link was started for (None before ``start``)."""
        return self._started.address if self._started else None

    def start(
        self,
        address: RelayAddress,
        *,
        device_id: int,
        signer: Signer,
        certificate: Callable[[], bytes],
        listener: LinkListener,
    ) -> None:
        """Connect to ``address`` and keep the link up; each authentication presents the
        device's certificate as ``certificate()`` gives it then (renewals reach the relay)."""
        if self._task is None:
            self._started = _Started(address, device_id, signer, certificate, listener)
            self._task = asyncio.get_running_loop().create_task(self._run(), name="relay-link")

    async def readdress(self, address: RelayAddress) -> None:
        """Use ``address`` from the next connection on (a newer organisation config moved the relay
        or rotated its pins); a connection to a key it no longer pins is dropped at once."""
        if self._started is None or self._started.address == address:
            return
        self._started = dataclasses.replace(self._started, address=address)
        socket = self._socket
        if socket is not None and spki_pin(socket.certificate_der) not in address.pins:
            log.info("the relay's current key is no longer pinned; reconnecting")
            self._renewing = True
            await socket.ws.close()

    async def stop(self) -> None:
        task, self._task = self._task, None
        self._stopping = True
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        unidentified, self._unidentified = self._unidentified, None
        if self._unidentified_idle is not None:
            self._unidentified_idle.cancel()
        if unidentified is not None:
            await unidentified.close()
        self._set_state(TransportState.STOPPED, "")

    async def renew(self) -> None:
        """Drop the connection so the link authenticates again at once (e.g. for a fresh certificate)."""
        socket = self._socket
        if socket is not None:
            self._renewing = True
            await socket.ws.close()

    async def wait_online(self, timeout: float) -> bool:
        if self._task is None:
            return False
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._online.wait()
        return self._online.is_set()

    async def send(
        self, recipient_device: int, envelope: Envelope, delivery_key: bytes | None = None
    ) -> SendOutcome:
        """A SEND on the device's connection, or with the recipient's ``delivery_key`` a DELIVER on
        the unidentified path, which names no sender (``KEY_REFUSED`` if the key is not taken)."""
        if delivery_key is None:
            response = await self.request(FrameType.SEND, Send(recipient_device, envelope).encode())
            return send_outcome(response.status)
        response = await self._deliver(Deliver(recipient_device, delivery_key, envelope))
        if response.status == Status.UNAUTHENTICATED:
            log.info("a colleague's device no longer takes the delivery key we hold")
            return SendOutcome.KEY_REFUSED
        return send_outcome(response.status)

    async def _deliver(self, deliver: Deliver) -> Response:
        """DELIVER on the unidentified socket and its answer; ``OfflineError`` if it cannot be had.

        Only while the device's own connection is online: it is what says the relay is there
        and pinned, and a device that was refused must not go on sending by another way.
        """
        if self._state != TransportState.ONLINE:
            raise OfflineError("not connected to the relay")
        socket = await self._unidentified_socket()
        self._close_when_idle(socket)
        try:
            return await _ask(
                socket, self._unidentified_waiting, FrameType.DELIVER, deliver.encode(), REQUEST_SECONDS
            )
        finally:
            self._close_when_idle(socket)

    def _close_when_idle(self, socket: _Socket) -> None:
        """Close ``socket`` once ``delivery_idle_seconds`` pass with no delivery on it (counted again
        from now). No delivery can slip in between: the check and the close run in one callback,
        and ``_deliver`` registers its answer's future without yielding once it has the socket."""

        def close_if_idle() -> None:
            if self._unidentified_waiting:
                self._close_when_idle(socket)
                return
            if self._unidentified is socket:
                self._unidentified = None
            self._spawn(socket.close())

        if self._unidentified_idle is not None:
            self._unidentified_idle.cancel()
        self._unidentified_idle = asyncio.get_running_loop().call_later(
            self.delivery_idle_seconds, close_if_idle
        )

    async def _unidentified_socket(self) -> _Socket:
        """The open unidentified socket, opened (pinned like the device's) if there is none."""
        async with self._unidentified_lock:
            socket = self._unidentified
            if socket is not None and not socket.ws.closed:
                return socket
            if self._started is None:
                raise OfflineError("the link was not started")
            try:
                socket = await _Socket.open(self._started.address, unidentified=True)
            except (aiohttp.ClientError, OSError, TimeoutError, TransportError) as e:
                raise OfflineError(f"the relay's delivery path cannot be reached ({why(e)})") from e
            self._unidentified = socket
            self._spawn(self._read_unidentified(socket))
            return socket

    async def _read_unidentified(self, socket: _Socket) -> None:
        """Hand the unidentified socket's answers to their requests until it closes."""
        try:
            while socket.machine.state == State.UNIDENTIFIED:
                for event in await socket.receive():
                    if isinstance(event, Answered):
                        future = self._unidentified_waiting.get(event.request_id)
                        if future is not None and not future.done():
                            future.set_result(event.response)
        except (aiohttp.ClientError, RemoteProtocolError) as e:
            log.info("the relay's delivery path failed (%s)", why(e))
        finally:
            if self._unidentified is socket:
                self._unidentified = None
            for future in self._unidentified_waiting.values():
                if not future.done():
                    future.set_exception(OfflineError("the relay's delivery path closed"))
            await socket.close()

    async def ack(self, envelope_id: bytes) -> None:
        await self.send_only(FrameType.ACK, Ack((envelope_id,)).encode())

    async def call(self, frame_type: FrameType, body: bytes) -> Response:
        """A request whose every answer but OK is a ``RelayRefusedError``."""
        response = await self.request(frame_type, body)
        if response.status != Status.OK:
            raise RelayRefusedError(response.status.name, response.reason)
        return response

    async def request(self, frame_type: FrameType, body: bytes, timeout: float = REQUEST_SECONDS) -> Response:
        """Send a request and wait for its answer; ``OfflineError`` if not connected or the link drops."""
        socket = self._socket
        if socket is None or self._state != TransportState.ONLINE:
            raise OfflineError("not connected to the relay")
        return await _ask(socket, self._waiting, frame_type, body, timeout)

    async def send_only(self, frame_type: FrameType, body: bytes) -> None:
        """Send a request whose answer nobody waits for (an ACK: a lost one only means a redelivery)."""
        socket = self._socket
        if socket is None or self._state != TransportState.ONLINE:
            raise OfflineError("not connected to the relay")
        try:
            await socket.ws.send_bytes(socket.machine.request(frame_type, body)[1])
        except (ConnectionError, aiohttp.ClientError) as e:
            raise OfflineError(f"the relay connection failed: {e}") from e

    async def upload(
        self, blob: bytes, upload_token: bytes, delivery: tuple[int, bytes] | None = None
    ) -> str:
        """Store an attachment blob on the relay; returns its id.

        With ``delivery``, (a recipient device, its delivery key), the upload shows that key, as
        a DELIVER does, and names no uploader; if the relay does not take it, it goes again with
        this device's upload token, which names it (the refused key is forgotten when the
        envelope's DELIVER is refused too).
        """
        if self._pinned is None:
            raise OfflineError("not connected to the relay yet")
        url, certificate_der = self._pinned
        if delivery is not None:
            try:
                return await upload_blob(url, certificate_der, blob, delivery_key_authorization(*delivery))
            except UploadUnauthorisedError:
                log.info("the relay did not take a delivery key for an upload; it goes with the token")
        return await upload_blob(url, certificate_der, blob, upload_token_authorization(upload_token))

    async def download(self, attachment_id: str, max_bytes: int) -> bytes | None:
        """An attachment blob of at most ``max_bytes``, or None if the relay no longer has it
        (expired or never stored); ``RemoteProtocolError`` if it sends more."""
        if self._pinned is None:
            raise OfflineError("not connected to the relay yet")
        url, certificate_der = self._pinned
        return await download_blob(url, certificate_der, attachment_id, max_bytes)

    async def published_config(self, upload_token: bytes) -> tuple[bytes, bytes] | None:
        """The organisation config the relay publishes and its signature (unchecked), or None."""
        if self._pinned is None:
            raise OfflineError("not connected to the relay yet")
        url, certificate_der = self._pinned
        return await download_published_config(url, certificate_der, upload_token)

    async def key_log(self, path: str, upload_token: bytes, limit: int) -> bytes:
        """An answer of the relay's key log at ``path`` (unchecked), at most ``limit`` bytes."""
        if self._pinned is None:
            raise OfflineError("not connected to the relay yet")
        url, certificate_der = self._pinned
        return await download_key_log(url, certificate_der, upload_token, path, limit)

    def _set_state(self, state: TransportState, reason: str) -> None:
        if state == TransportState.ONLINE:
            self._online.set()
        else:
            self._online.clear()
        if (state, reason) != (self._state, self._reason):
            self._state, self._reason = state, reason
            if self._started is not None:
                self._started.listener.on_state(self, state, reason)

    async def _run(self) -> None:
        attempt = 0
        while not self._stopping and (started := self._started) is not None:
            # Read afresh each time: ``readdress`` may have changed where the relay is.
            self._set_state(TransportState.CONNECTING, "")
            reason = ""
            try:
                if await self._connect_once(started):
                    attempt = 0
                if self._renewing:
                    self._renewing = False
                    continue
                reason = "the relay closed the connection"
            except PinMismatchError as e:
                reason = str(e)
            except RelayRefusedError as e:
                self._set_state(TransportState.REFUSED, e.reason or e.status_name)
                return
            except (aiohttp.ClientError, OSError, TimeoutError, TransportError) as e:
                reason = f"the relay cannot be reached ({why(e)})"
            except RemoteProtocolError as e:
                reason = f"the relay broke the protocol: {e}"
            delay = self._backoff.delay(attempt, self._unit_random())
            attempt += 1
            self._set_state(TransportState.OFFLINE, reason)
            await asyncio.sleep(delay)

    async def _connect_once(self, started: _Started) -> bool:
        """One connection, until it ends; True if it got online. Raises RelayRefusedError if refused."""
        socket = await _Socket.open(started.address)
        self._pinned = socket.url, socket.certificate_der
        pushes: asyncio.Queue[Envelope | None] = asyncio.Queue()
        consumer = asyncio.get_running_loop().create_task(
            self._consume(pushes, started.listener), name="relay-pushes"
        )
        online = False
        try:
            while socket.machine.state not in (State.REFUSED, State.CLOSED, State.FAILED):
                for event in await socket.receive(None if online else CONNECT_SECONDS):
                    online = await self._handle(started, socket, event, pushes) or online
            return online
        finally:
            self._socket = None
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(OfflineError("the connection to the relay was lost"))
            pushes.put_nowait(None)
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer
            await socket.close()

    async def _handle(
        self, started: _Started, socket: _Socket, event: Event, pushes: asyncio.Queue[Envelope | None]
    ) -> bool:
        """Act on one event; True when it put the link online."""
        if isinstance(event, Challenged):
            frame = socket.machine.authenticate(started.device_id, started.signer, started.certificate())
            await socket.ws.send_bytes(frame)
        elif isinstance(event, Online):
            self._socket = socket
            self._set_state(TransportState.ONLINE, "")
            self._spawn(started.listener.on_online(event.authenticated))
            return True
        elif isinstance(event, Answered):
            future = self._waiting.get(event.request_id)
            if future is not None and not future.done():
                future.set_result(event.response)
        elif isinstance(event, Pushed):
            pushes.put_nowait(event.envelope)
        elif isinstance(event, Noticed):
            self._spawn(started.listener.on_notice(event.notice))
        elif isinstance(event, Refused):
            raise RelayRefusedError(event.status.name, event.reason)
        elif isinstance(event, Closed):
            log.info("the relay closed the connection: %s", event.status.name)
        return False

    async def _consume(self, pushes: asyncio.Queue[Envelope | None], listener: LinkListener) -> None:
        """Hand pushed envelopes to the listener one at a time, in the order the relay sent them.

        ``None`` ends it: a cancellation alone can be lost when it races a finishing
        ``await`` inside the listener (CPython before 3.12), and the task would wait forever.
        """
        while (envelope := await pushes.get()) is not None:
            try:
                await listener.on_envelope(envelope, self)
            except OfflineError:
                log.info("an envelope will be redelivered: the link dropped before its ack")
            except Exception:
                log.exception("processing a pushed envelope failed; the relay will redeliver it")

    def _spawn(self, coroutine: Coroutine[None, None, None]) -> None:
        task = asyncio.get_running_loop().create_task(self._guard(coroutine))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _guard(coroutine: Coroutine[None, None, None]) -> None:
        try:
            await coroutine
        except OfflineError:
            log.info("a task stopped: the link dropped")
        except Exception:
            log.exception("a relay event handler failed")
