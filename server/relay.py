"""The relay: one WebSocket per connected device, mailboxes, prekeys, the directory.

A connection starts with a ``CHALLENGE``. Before it authenticates, a device may only
``ENROL`` (spend a code, register its keys) or ``AUTHENTICATE`` (sign the challenge with
its identity key). A challenge is good for one attempt; a failed one closes the
connection, and so does not authenticating within ``authentication_seconds`` of the
challenge. After that, each request gets one ``RESPONSE``, and envelopes for the
device are pushed as soon as they are stored, on this process or, with PostgreSQL, on
any other. What bounds a connection's memory is listed in server/guard.py.

Bad input from one device never hurts another: a frame that does not parse closes that
connection with a ``CLOSING`` frame saying why; a request whose body is malformed gets
a ``BAD_REQUEST`` response. Nothing here logs per message, and nothing logs an address
next to an account or device.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import ClassVar

from aiohttp import WSMessage, WSMsgType, web

from app.base.errors import CertificateError, CryptoError, EnclaveError, RemoteProtocolError
from app.base.ratelimit import HOUR_SECONDS, RateLimiter
from app.crypto.certificate import DeviceCertificate
from app.crypto.keys import NO_ONE_TIME_PREKEY, PreKeyBundle
from app.crypto.primitives import SIGN_CONTEXT_RELAY_AUTH, RandomSource, ed25519_verify
from app.protocol.envelope import Envelope
from app.protocol.frames import (
    CHALLENGE_BYTES,
    MAX_DEVICES_PER_ACCOUNT,
    MAX_DIRECTORY_RESULTS,
    MAX_FRAME_BYTES,
    Ack,
    Authenticate,
    Authenticated,
    Bundles,
    Challenge,
    Closing,
    Count,
    DeviceBundle,
    DirectoryEntry,
    DirectoryLookup,
    DirectoryResults,
    Enrol,
    FetchBundles,
    Frame,
    FrameType,
    Notice,
    NoticeKind,
    Response,
    Send,
    SetDeliveryKey,
    SignedPreKeyUpload,
    Status,
    UploadPreKeys,
    auth_message,
    control_character,
    delivery_key_hash,
)
from app.protocol.lifetime import relay_expiry
from server.config import ServerConfig
from server.keylog import KeyLog
from server.keys import RelayKeys
from server.store.base import (
    AccountInactiveError,
    AccountState,
    AccountUnknownError,
    Device,
    DeviceGoneError,
    DuplicateError,
    MailboxFullError,
    NewDevice,
    OneTimePreKey,
    Quota,
    RelayStore,
    SignedPreKey,
    StoreError,
    TooManyDevicesError,
)
from server.tokens import issue_upload_token
from server.unidentified import UnidentifiedConnection

log = logging.getLogger(__name__)

PUSH_BATCH = 100
MIN_DIRECTORY_QUERY = 2
REVOKED = "This device was revoked by your organisation's administrator."
ACCOUNT_DISABLED = "Your account is disabled. Contact your organisation's administrator."
NOT_CERTIFIED = "the certificate is not this device's, signed by the organisation's enrolment authority"
REGISTER_REFUSALS: dict[type[StoreError], Response] = {
    AccountUnknownError: Response(
        Status.NOT_FOUND,
        "This relay has no account for your certificate. Ask your administrator to create it.",
    ),
    AccountInactiveError: Response(Status.ACCOUNT_DISABLED, ACCOUNT_DISABLED),
    DeviceGoneError: Response(Status.REVOKED, REVOKED),
    DuplicateError: Response(Status.BAD_REQUEST, "this device id or identity key is another device's"),
    TooManyDevicesError: Response(
        Status.BAD_REQUEST,
        f"Your account has {MAX_DEVICES_PER_ACCOUNT} devices already, the most it may have. Ask your"
        " administrator to revoke one you no longer use.",
    ),
}


@dataclass
class Relay:
    config: ServerConfig
    store: RelayStore
    keys: RelayKeys
    random: RandomSource
    clock: Callable[[], float] = time.time
    connections: dict[int, Connection] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.enrolment_limiter = RateLimiter(self.config.enrolment_attempts_per_minute, self.clock)
        self.bundle_limiter = RateLimiter(self.config.bundle_fetches_per_minute, self.clock)
        self.one_time_prekey_budget = RateLimiter(
            self.config.one_time_prekeys_per_hour, self.clock, window_seconds=HOUR_SECONDS
        )
        self.directory_limiter = RateLimiter(self.config.directory_lookups_per_minute, self.clock)
        self.delivery_limiter = RateLimiter(self.config.deliveries_per_key_per_minute, self.clock)
        self.quota = Quota(self.config.mailbox_max_envelopes, self.config.mailbox_max_bytes)
        self.key_log = KeyLog(self.store, log_public=self.keys.log_public, log_secret=self.keys.log_secret)

    def now(self) -> int:
        return int(self.clock())

    def checked_certificate(self, untrusted: bytes) -> DeviceCertificate:
        """``untrusted`` once it parses, is signed by the enrolment authority and unexpired;
        ``CryptoError`` (a ``CertificateError``) otherwise."""
        try:
            certificate = DeviceCertificate.parse(untrusted)
        except RemoteProtocolError as e:
            raise CertificateError(f"the certificate does not parse: {e}") from e
        certificate.verify(trust_root=self.config.authority_public_key, now=self.now())
        return certificate

    async def wake(self, device_id: int) -> None:
        connection = self.connections.get(device_id)
        if connection is not None:
            connection.wake.set()

    def register(self, device_id: int, connection: Connection) -> Connection | None:
        """Make ``connection`` the device's one live connection; return the one it replaces."""
        previous = self.connections.get(device_id)
        self.connections[device_id] = connection
        return previous

    def unregister(self, device_id: int, connection: Connection) -> None:
        if self.connections.get(device_id) is connection:
            del self.connections[device_id]

    async def takes_delivery_key(self, device_id: int, delivery_key: bytes) -> bool:
        """Whether ``delivery_key`` is the one ``device_id`` registered (SET_DELIVERY_KEY): what
        proves "a contact of this device" on the unidentified path and for an upload to it."""
        kept = await self.store.delivery_key(device_id)
        return kept is not None and hmac.compare_digest(kept, delivery_key_hash(delivery_key))

    async def store_envelope(self, recipient_device: int, envelope: Envelope) -> Response:
        """Store ``envelope`` in the recipient's mailbox: the answer to a SEND or a DELIVER alike.

        One expiry for every envelope, on a whole day, whatever the sender asked: stored and
        pushed alike, it tells neither kind, timer nor the second it came (PROTOCOL section 9).
        """
        now = self.now()
        if envelope.expires_at <= now:
            return Response(Status.BAD_REQUEST, "the envelope has already expired")
        expires_at = relay_expiry(now, self.config.retention_seconds)
        try:
            # enqueue refuses a revoked or unknown recipient itself, atomically with storing.
            await self.store.enqueue(
                recipient_device,
                envelope.envelope_id,
                replace(envelope, expires_at=expires_at).encode(),
                expires_at,
                self.quota,
            )
        except MailboxFullError as e:
            return Response(Status.MAILBOX_FULL, str(e))
        except DeviceGoneError:
            return Response(Status.NOT_FOUND, "that device does not exist or was revoked")
        except DuplicateError:
            return Response(Status.OK)
        return Response(Status.OK)

    async def sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.sweep_interval_seconds)
            try:
                await self.store.drop_expired(self.now())
            except StoreError:
                log.exception("sweeping expired envelopes failed; will retry")

    async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=MAX_FRAME_BYTES, heartbeat=30.0)
        await ws.prepare(request)
        connection = Connection(self, ws, peer=request.remote or "")
        try:
            await connection.run()
        except ConnectionError:
            # The device hung up while we answered it: normal, and nothing to log above debug.
            log.debug("a device hung up during a request")
        finally:
            await connection.stop()
        return ws

    async def handle_unidentified_websocket(self, request: web.Request) -> web.WebSocketResponse:
        """``/v1/deliver``: envelopes from nobody in particular (server/unidentified.py)."""
        ws = web.WebSocketResponse(max_msg_size=MAX_FRAME_BYTES, heartbeat=30.0)
        await ws.prepare(request)
        try:
            await UnidentifiedConnection(self, ws).run()
        except ConnectionError:
            log.debug("a connection hung up during a delivery")
        return ws


class Connection:
    """One device's WebSocket, from challenge to close."""

    def __init__(self, relay: Relay, ws: web.WebSocketResponse, peer: str) -> None:
        self.relay = relay
        self.ws = ws
        self.peer = peer
        self.nonce: bytes | None = None
        self.device: Device | None = None
        self.wake = asyncio.Event()
        self.in_flight: set[bytes] = set()
        """Ids of envelopes pushed on this connection and not yet acked: not pushed again on it."""
        self.acked: set[bytes] = set()
        """Ids acked since the delivery loop last read the mailbox: a read made before their ack
        was stored may still hold them, and they must not be pushed again."""
        self.delivery: asyncio.Task[None] | None = None
        self.closing: Closing | None = None
        """Set by a handler that refuses the device; sent after its response, then the socket closes."""

    async def send(self, frame_type: FrameType, request_id: int, body: bytes) -> None:
        await self.ws.send_bytes(Frame(frame_type, request_id, body).encode())

    async def close(self, status: Status, reason: str) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.send(FrameType.CLOSING, 0, Closing(status, reason).encode())
        await self.ws.close()

    async def run(self) -> None:
        """Challenge, then answer frames one at a time until either side closes.

        Until it has authenticated, the device has ``authentication_seconds`` from the
        challenge (enrolling in between counts against it); then it gets ``CLOSING`` with
        ``UNAUTHENTICATED``. The deadline is checked while waiting for a frame, never
        while answering one, so a store call is not cut off half-way.
        """
        self.nonce = self.relay.random(CHALLENGE_BYTES)
        await self.send(FrameType.CHALLENGE, 0, Challenge(self.nonce, self.relay.now()).encode())
        allowed = self.relay.config.authentication_seconds
        deadline = asyncio.get_running_loop().time() + allowed
        while True:
            message = await self._receive(deadline)
            if message is None:
                await self.close(Status.UNAUTHENTICATED, f"not authenticated within {allowed} seconds")
                return
            if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                return
            if message.type != WSMsgType.BINARY:
                await self.close(Status.BAD_REQUEST, "frames must be binary")
                return
            try:
                frame = Frame.parse(message.data)
            except RemoteProtocolError as e:
                await self.close(Status.BAD_REQUEST, str(e))
                return
            response = await self.dispatch(frame)
            # Let the event loop see a hang-up before answering: a client that sends many
            # frames and resets the connection must not make us write each answer into it.
            await asyncio.sleep(0)
            if response is not None and not self.ws.closed:
                await self.send(FrameType.RESPONSE, frame.request_id, response.encode())
            if self.closing is not None:
                await self.close(self.closing.status, self.closing.reason)
                return

    async def _receive(self, deadline: float) -> WSMessage | None:
        """The next message; None if the device is still unauthenticated at ``deadline``."""
        if self.device is not None:
            return await self.ws.receive()
        wait = deadline - asyncio.get_running_loop().time()
        if wait <= 0:
            return None
        try:
            return await self.ws.receive(timeout=wait)
        except TimeoutError:
            return None

    async def stop(self) -> None:
        if self.delivery is not None:
            self.delivery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.delivery
        if self.device is not None:
            self.relay.unregister(self.device.device_id, self)

    async def dispatch(self, frame: Frame) -> Response | None:
        handlers = self.AUTHENTICATED if self.device is not None else self.UNAUTHENTICATED
        handler = handlers.get(frame.type)
        if handler is None:
            if self.device is None:
                return Response(Status.UNAUTHENTICATED, "authenticate first")
            return Response(Status.BAD_REQUEST, f"a device does not send {frame.type.name}")
        try:
            return await handler(self, frame.body)
        except RemoteProtocolError as e:
            return Response(Status.BAD_REQUEST, str(e))
        except StoreError:
            log.exception("the store failed while answering a request")
            return Response(Status.INTERNAL_ERROR, "the relay could not complete the request; try again")

    # Before authentication.

    async def on_enrol(self, body: bytes) -> Response:
        """Register a device from its certificate: the relay checks, it never certifies.

        The certificate must be the enrolment authority's (``authority_key``) and unexpired;
        the challenge must be signed with the identity key it names, and the signed prekey
        too. The challenge is spent: the device authenticates on its next connection.
        """
        if not self.relay.enrolment_limiter.allow(self.peer):
            return Response(Status.RATE_LIMITED, "too many enrolment attempts; wait a minute")
        request = Enrol.parse(body)
        nonce, self.nonce = self.nonce, None
        if nonce is None:
            return Response(Status.UNAUTHENTICATED, "the challenge was used already; connect again")
        try:
            certificate = self.relay.checked_certificate(request.certificate)
            ed25519_verify(
                public_key=certificate.identity_key,
                context=SIGN_CONTEXT_RELAY_AUTH,
                message=auth_message(nonce, certificate.device_id),
                signature=request.signature,
            )
        except CryptoError:
            return Response(Status.UNAUTHENTICATED, NOT_CERTIFIED)
        spk = request.signed_prekey
        try:
            PreKeyBundle(certificate.identity_key, spk.key_id, spk.public, spk.signature).verify()
        except CryptoError as e:
            return Response(Status.BAD_REQUEST, f"the device keys are invalid: {e}")
        new = NewDevice(
            certificate.device_id,
            certificate.account_id,
            certificate.identity_key,
            request.certificate,
            SignedPreKey(spk.key_id, spk.public, spk.signature),
            tuple(OneTimePreKey(k.key_id, k.public) for k in request.one_time_prekeys),
            self.relay.now(),
        )
        try:
            if control_character(certificate.account_id) is not None:
                # No account holds one (enclave-admin refuses them), and PostgreSQL takes no NUL.
                raise AccountUnknownError("the certificate's account id holds a control character")
            await self.relay.store.register(new)
        except (
            AccountUnknownError,
            AccountInactiveError,
            DeviceGoneError,
            DuplicateError,
            TooManyDevicesError,
        ) as e:
            return REGISTER_REFUSALS[type(e)]
        await self._tell_siblings(certificate.account_id, certificate.device_id)
        return Response(Status.OK)

    async def _tell_siblings(self, account_id: str, device_id: int) -> None:
        """The account's connected devices hear at once that a device was added to it, so each
        reads the key log now and its user sees a device they did not enrol at once, not at the
        next hourly check. Only a hint: the log, not this notice, is what a device believes."""
        for sibling in await self.relay.store.list_devices(account_id):
            owner = self.relay.connections.get(sibling.device_id)
            if sibling.device_id == device_id or owner is None:
                continue
            with contextlib.suppress(ConnectionError, RuntimeError):
                await owner.send(FrameType.NOTICE, 0, Notice(NoticeKind.DEVICE_ADDED, device_id).encode())

    async def on_authenticate(self, body: bytes) -> Response:
        request = Authenticate.parse(body)
        nonce, self.nonce = self.nonce, None
        device = await self.relay.store.get_device(request.device_id)
        if nonce is None or device is None:
            return self._refuse(Status.UNAUTHENTICATED, "unknown device or challenge already used")
        try:
            ed25519_verify(
                public_key=device.identity_key,
                context=SIGN_CONTEXT_RELAY_AUTH,
                message=auth_message(nonce, device.device_id),
                signature=request.signature,
            )
        except CryptoError:
            return self._refuse(Status.UNAUTHENTICATED, "the signature does not match this device")
        refusal = await self._refusal(device)
        if refusal is not None:
            return self._refuse(refusal.status, refusal.reason)
        if not await self._keep_certificate(device, request.certificate):
            return self._refuse(Status.UNAUTHENTICATED, NOT_CERTIFIED)
        self.device = device
        previous = self.relay.register(device.device_id, self)
        if previous is not None:
            await previous.close(Status.UNAUTHENTICATED, "this device connected again elsewhere")
        expires = self.relay.now() + self.relay.config.certificate_lifetime_seconds
        token = issue_upload_token(self.relay.keys.upload_token_key, device.device_id, expires)
        self.delivery = asyncio.create_task(self._deliver())
        return Response(Status.OK, body=Authenticated(token).encode())

    def _refuse(self, status: Status, reason: str) -> Response:
        self.closing = Closing(status, reason)
        return Response(status, reason)

    async def _refusal(self, device: Device) -> Response | None:
        if device.revoked:
            return Response(Status.REVOKED, REVOKED)
        account = await self.relay.store.get_account(device.account_id)
        if account is None or account.state == AccountState.REVOKED:
            return Response(Status.REVOKED, REVOKED)
        if account.state == AccountState.DISABLED:
            return Response(Status.ACCOUNT_DISABLED, ACCOUNT_DISABLED)
        return None

    async def _keep_certificate(self, device: Device, untrusted: bytes) -> bool:
        """Whether ``untrusted`` is the authority's certificate for ``device``; kept (and served
        in bundles from now on) if it is unexpired and expires later than the one kept.

        An expired one still authenticates: the device may receive while it cannot renew,
        and its colleagues refuse what it sends by their own check of the certificate.
        """
        try:
            certificate = DeviceCertificate.parse(untrusted)
            certificate.verify(trust_root=self.relay.config.authority_public_key, now=0)
        except (RemoteProtocolError, CryptoError):
            return False
        if (certificate.account_id, certificate.device_id, certificate.identity_key) != (
            device.account_id,
            device.device_id,
            device.identity_key,
        ):
            return False
        kept = DeviceCertificate.parse(device.certificate).expires_at
        if kept < certificate.expires_at and self.relay.now() < certificate.expires_at:
            await self.relay.store.set_certificate(device.device_id, untrusted)
        return True

    # After authentication.

    @property
    def device_id(self) -> int:
        if self.device is None:
            raise RuntimeError("not authenticated")
        return self.device.device_id

    async def on_send(self, body: bytes) -> Response:
        request = Send.parse(body)
        # Revoking or disabling works on the database (enclave-admin), not on live
        # connections: a device connected at that moment would otherwise go on sending
        # until it reconnects. So every SEND looks at its sender again (one indexed read).
        sender = await self.relay.store.get_device(self.device_id)
        refusal = await self._refusal(sender) if sender is not None else Response(Status.REVOKED, REVOKED)
        if refusal is not None:
            return self._refuse(refusal.status, refusal.reason)
        return await self.relay.store_envelope(request.recipient_device, request.envelope)

    async def on_set_delivery_key(self, body: bytes) -> Response:
        """Keep the hash of this device's delivery key: a DELIVER to it must now hold that key."""
        request = SetDeliveryKey.parse(body)
        await self.relay.store.set_delivery_key(self.device_id, request.key_hash)
        return Response(Status.OK)

    async def on_ack(self, body: bytes) -> Response:
        request = Ack.parse(body)
        await self.relay.store.acknowledge(self.device_id, list(request.envelope_ids))
        self.in_flight.difference_update(request.envelope_ids)
        self.acked.update(request.envelope_ids)
        return Response(Status.OK)

    async def on_fetch_bundles(self, body: bytes) -> Response:
        if not self.relay.bundle_limiter.allow(self.device_id):
            return Response(Status.RATE_LIMITED, "too many key requests; wait a minute")
        request = FetchBundles.parse(body)
        # A device takes at most its hourly share of colleagues' one-time prekeys; past it the
        # bundles carry none (X3DH runs on the signed prekey alone), so no one drains them.
        budget = self.relay.one_time_prekey_budget
        taken = await self.relay.store.take_bundles(
            request.account_id, one_time_limit=int(budget.available(self.device_id))
        )
        if not taken:
            return Response(Status.NOT_FOUND, "no such colleague, or they have no active device")
        budget.allow(self.device_id, cost=sum(1 for _, one_time in taken if one_time is not None))
        bundles = []
        for device, one_time in taken:
            bundle = PreKeyBundle(
                device.identity_key,
                device.signed_prekey_id,
                device.signed_prekey,
                device.signed_prekey_signature,
                one_time.key_id if one_time else NO_ONE_TIME_PREKEY,
                one_time.public if one_time else None,
            )
            bundles.append(DeviceBundle(device.device_id, bundle.to_bytes(), device.certificate))
            await self._notify_if_low(device.device_id)
        return Response(Status.OK, body=Bundles(tuple(bundles)).encode())

    async def _notify_if_low(self, device_id: int) -> None:
        owner = self.relay.connections.get(device_id)
        if owner is None:
            return
        left = await self.relay.store.count_one_time_prekeys(device_id)
        if left < self.relay.config.prekeys_low_threshold:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await owner.send(FrameType.NOTICE, 0, Notice(NoticeKind.PREKEYS_LOW, left).encode())

    async def on_upload_prekeys(self, body: bytes) -> Response:
        request = UploadPreKeys.parse(body)
        device = self.device
        if device is None:
            raise RuntimeError("not authenticated")
        held = await self.relay.store.count_one_time_prekeys(device.device_id)
        limit = self.relay.config.one_time_prekeys_max_held
        if held + len(request.one_time_prekeys) > limit:
            return Response(
                Status.TOO_LARGE,
                f"the relay holds at most {limit} one-time prekeys of a device, and {held} of this one",
            )
        if request.signed_prekey is not None:
            spk: SignedPreKeyUpload = request.signed_prekey
            try:
                PreKeyBundle(device.identity_key, spk.key_id, spk.public, spk.signature).verify()
            except CryptoError as e:
                return Response(Status.BAD_REQUEST, f"the signed prekey is invalid: {e}")
            await self.relay.store.set_signed_prekey(
                device.device_id, SignedPreKey(spk.key_id, spk.public, spk.signature)
            )
        left = await self.relay.store.add_one_time_prekeys(
            device.device_id, [OneTimePreKey(k.key_id, k.public) for k in request.one_time_prekeys]
        )
        return Response(Status.OK, body=Count(left).encode())

    async def on_directory_lookup(self, body: bytes) -> Response:
        if not self.relay.directory_limiter.allow(self.device_id):
            return Response(Status.RATE_LIMITED, "too many look-ups; wait a minute")
        query = DirectoryLookup.parse(body).query.strip()
        if len(query) < MIN_DIRECTORY_QUERY:
            return Response(Status.BAD_REQUEST, f"type at least {MIN_DIRECTORY_QUERY} characters")
        accounts = await self.relay.store.search_directory(query, MAX_DIRECTORY_RESULTS)
        entries = tuple(DirectoryEntry(a.account_id, a.display_name, a.department) for a in accounts)
        return Response(Status.OK, body=DirectoryResults(entries).encode())

    async def _deliver(self) -> None:
        """Push every stored envelope, oldest first, then each new one as it is stored.

        What was pushed is remembered by id, not by sequence: a mailbox numbers its envelopes one
        above its highest, so an emptied mailbox starts again at 1 (server/store).
        """
        device_id, pushed, drained = self.device_id, 0, False
        try:
            while not self.ws.closed:
                self.wake.clear()
                self.acked.clear()  # acked before this read: deleted, so the read will not hold them
                limit = PUSH_BATCH + len(self.in_flight)
                batch = await self.relay.store.pending(device_id, 0, self.relay.now(), limit)
                for queued in batch:
                    if queued.envelope_id in self.in_flight or queued.envelope_id in self.acked:
                        continue
                    self.in_flight.add(queued.envelope_id)
                    await self.send(FrameType.PUSH, 0, queued.blob)
                    pushed += 1
                if len(batch) == limit:
                    continue
                if not drained:
                    drained = True
                    await self.send(FrameType.NOTICE, 0, Notice(NoticeKind.QUEUE_DRAINED, pushed).encode())
                    await self._notify_if_low(device_id)
                await self.wake.wait()
        except (ConnectionError, RuntimeError, EnclaveError):
            log.debug("delivery stopped", exc_info=True)

    Handler = Callable[["Connection", bytes], Awaitable[Response]]
    UNAUTHENTICATED: ClassVar[dict[FrameType, Handler]] = {
        FrameType.ENROL: on_enrol,
        FrameType.AUTHENTICATE: on_authenticate,
    }
    AUTHENTICATED: ClassVar[dict[FrameType, Handler]] = {
        FrameType.SEND: on_send,
        FrameType.ACK: on_ack,
        FrameType.FETCH_BUNDLES: on_fetch_bundles,
        FrameType.UPLOAD_PREKEYS: on_upload_prekeys,
        FrameType.DIRECTORY_LOOKUP: on_directory_lookup,
        FrameType.SET_DELIVERY_KEY: on_set_delivery_key,
    }
