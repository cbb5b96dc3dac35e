"""A real relay in a subprocess, the real admin CLI, and a minimal device client for tests.

``RelayProcess`` runs ``python -m server.main`` on 127.0.0.1 with TLS on a free port and
reads the port and pin from its output; a restart binds the same port again, as a
restarted production relay would keep its address. ``TestDevice`` speaks the frames of
app/protocol/frames.py over a real TLS WebSocket; it is the smallest client the server
tests need, not the product's sync engine.

The relay trusts ``TEST_AUTHORITY``'s public key (``--authority-key``), and a
``TestDevice`` has its certificate signed with it here, in the test process: the relay
sees the same bytes a real enrolment authority (tests/support/authority.py) would sign,
and the server tests need no authority process. Tests of the authority itself run the
real service.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from nacl.utils import random

from app.crypto.certificate import DeviceCertificate
from app.crypto.keys import IdentityKeyPair, OneTimePreKey, SignedPreKey
from app.crypto.primitives import SIGN_CONTEXT_RELAY_AUTH
from app.protocol.envelope import Envelope
from app.protocol.frames import (
    MAX_FRAME_BYTES,
    Ack,
    Authenticate,
    Authenticated,
    Challenge,
    Closing,
    Enrol,
    Frame,
    FrameType,
    Notice,
    Response,
    Send,
    SignedPreKeyUpload,
    Status,
    UploadedPreKey,
    auth_message,
)
from app.protocol.lifetime import envelope_expiry
from tests.support.adminkey import admin_arguments
from tests.support.services import Banner, collect, start_service, stop_service

REPO = Path(__file__).resolve().parents[2]
REPLY_SECONDS = 10
TEST_AUTHORITY = IdentityKeyPair.generate(random)
"""The enrolment authority key the test relays trust (one per test process)."""
CERTIFICATE_SECONDS = 7 * 24 * 3600
MAX_DEVICE_ID = 2**31 - 1
LOG_KEY_LINE = "Relay log key for the provisioning config:"
RELAY_BANNER = Banner("relay", "Relay public-key pin", "enclave-server listening on")


class RelayProcess:
    """``enclave-server`` on 127.0.0.1:<free port> over ``data_dir``; restartable and killable."""

    def __init__(
        self,
        data_dir: Path,
        *extra_args: str,
        env: Mapping[str, str] | None = None,
        authority_key: bytes | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.authority_key = TEST_AUTHORITY.public if authority_key is None else authority_key
        """The enrolment authority's public key this relay trusts (``--authority-key``)."""
        self.extra_args = extra_args
        self.env = dict(env or {})
        """Added to this process's environment for the relay's (glibc's ``MALLOC_*`` tunables, say)."""
        self.process: subprocess.Popen[str] | None = None
        self.port = 0
        self.pin = ""
        self.output: list[str] = []

    def start(self) -> RelayProcess:
        command = [
            sys.executable,
            "-m",
            "server.main",
            "--data",
            str(self.data_dir),
            "--port",
            str(self.port),
            "--authority-key",
            self.authority_key.hex(),
            *self.extra_args,
        ]
        self.process, self.pin, self.port = start_service(
            command, RELAY_BANNER, self.output, cwd=REPO, env={**os.environ, **self.env}
        )
        return self

    def stop(self) -> None:
        stop_service(self.process, self.output)
        self.process = None

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash or power cut of the process."""
        if self.process is not None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()
            collect(self.process, self.output)
        self.process = None

    @property
    def url(self) -> str:
        return f"wss://127.0.0.1:{self.port}/v1/ws"

    @property
    def log_key(self) -> bytes:
        """The public key of the key log this relay keeps, as it printed it at its last start."""
        lines = [line for line in self.output if line.startswith(LOG_KEY_LINE)]
        if not lines:
            raise RuntimeError("the relay printed no log key")
        return bytes.fromhex(lines[-1].rsplit(" ", 1)[1].strip())

    @property
    def https(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.data_dir / "tls.crt"))


def admin(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the real ``enclave-admin`` CLI against ``data_dir``, as the tests' admin."""
    return subprocess.run(
        [sys.executable, "-m", "server.admin", "--data", str(data_dir), *admin_arguments(), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def new_account(data_dir: Path, account_id: str, name: str = "Test User") -> str:
    """Create an account with the admin CLI; its id as stored."""
    created = admin(data_dir, "account", "create", account_id, "--name", name, "--department", "Tests")
    if created.returncode != 0:
        raise RuntimeError(created.stderr)
    return created.stdout.split()[1]


def certificate_for(
    account_id: str,
    device_id: int,
    identity_key: bytes,
    *,
    issuer: IdentityKeyPair = TEST_AUTHORITY,
    expires_at: int | None = None,
) -> bytes:
    """A device certificate as the enrolment authority signs it (by default with the key the
    test relays trust, valid for a week)."""
    return DeviceCertificate.issue(
        issuer,
        account_id=account_id,
        device_id=device_id,
        identity_key=identity_key,
        expires_at=int(time.time()) + CERTIFICATE_SECONDS if expires_at is None else expires_at,
    ).encode()


@dataclass
class TestDevice:
    """A device's keys and one connection to the relay."""

    __test__ = False

    relay: RelayProcess
    identity: IdentityKeyPair = field(default_factory=lambda: IdentityKeyPair.generate(random))
    device_id: int = 0
    account_id: str = ""
    certificate: bytes = b""
    upload_token: bytes = b""
    session: aiohttp.ClientSession | None = None
    ws: aiohttp.ClientWebSocketResponse | None = None
    nonce: bytes = b""
    pushes: asyncio.Queue[Envelope] = field(default_factory=asyncio.Queue)
    notices: asyncio.Queue[Notice] = field(default_factory=asyncio.Queue)
    closing: Closing | None = None
    _waiting: dict[int, asyncio.Future[Response]] = field(default_factory=dict)
    _next_request: int = 0
    _reader: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        self.session = aiohttp.ClientSession()
        self.ws = await self.session.ws_connect(
            self.relay.url, ssl=self.relay.ssl_context(), max_msg_size=MAX_FRAME_BYTES, autoping=True
        )
        first = Frame.parse((await self.ws.receive(timeout=REPLY_SECONDS)).data)
        assert first.type == FrameType.CHALLENGE
        self.nonce = Challenge.parse(first.body).nonce
        self.closing = None
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.ws is not None
        async for message in self.ws:
            if message.type != aiohttp.WSMsgType.BINARY:
                break
            frame = Frame.parse(message.data)
            if frame.type == FrameType.RESPONSE:
                future = self._waiting.pop(frame.request_id, None)
                if future is not None and not future.done():
                    future.set_result(Response.parse(frame.body))
            elif frame.type == FrameType.PUSH:
                self.pushes.put_nowait(Envelope.parse(frame.body))
            elif frame.type == FrameType.NOTICE:
                self.notices.put_nowait(Notice.parse(frame.body))
            elif frame.type == FrameType.CLOSING:
                self.closing = Closing.parse(frame.body)
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(ConnectionError("the relay closed the connection"))
        self._waiting.clear()

    async def request(self, frame_type: FrameType, body: bytes) -> Response:
        assert self.ws is not None
        self._next_request += 1
        future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._waiting[self._next_request] = future
        await self.ws.send_bytes(Frame(frame_type, self._next_request, body).encode())
        return await asyncio.wait_for(future, REPLY_SECONDS)

    def certify(self, account_id: str, *, issuer: IdentityKeyPair = TEST_AUTHORITY) -> bytes:
        """Take a certificate for ``account_id`` and a fresh random device id, as the enrolment
        authority would give this device; kept as this device's and returned."""
        self.account_id = account_id
        self.device_id = 1 + int.from_bytes(random(4), "big") % MAX_DEVICE_ID
        self.certificate = certificate_for(account_id, self.device_id, self.identity.public, issuer=issuer)
        return self.certificate

    def enrolment(self, prekeys: int = 5, *, certificate: bytes | None = None) -> bytes:
        """An ENROL body with this device's certificate (or ``certificate``), its challenge
        signature, a signed prekey and ``prekeys`` one-time prekeys."""
        spk = SignedPreKey.generate(self.identity, 1, random)
        one_time = [OneTimePreKey.generate(i, random) for i in range(prekeys)]
        return Enrol(
            certificate=self.certificate if certificate is None else certificate,
            signature=self.challenge_signature(),
            signed_prekey=SignedPreKeyUpload(spk.key_id, spk.keypair.public, spk.signature),
            one_time_prekeys=tuple(UploadedPreKey(k.key_id, k.keypair.public) for k in one_time),
        ).encode()

    async def enrol(self, prekeys: int = 5) -> Response:
        """Register this device (certified first with ``certify``) on the current connection,
        which spends its challenge: ``authenticate`` needs a new connection (``reconnect``)."""
        return await self.request(FrameType.ENROL, self.enrolment(prekeys))

    def challenge_signature(self) -> bytes:
        return self.identity.sign(
            context=SIGN_CONTEXT_RELAY_AUTH, message=auth_message(self.nonce, self.device_id)
        )

    def authentication(self) -> bytes:
        return Authenticate(self.device_id, self.challenge_signature(), self.certificate).encode()

    async def authenticate(self) -> Response:
        response = await self.request(FrameType.AUTHENTICATE, self.authentication())
        if response.status == Status.OK:
            self.upload_token = Authenticated.parse(response.body).upload_token
        return response

    async def join(self, account_id: str) -> TestDevice:
        """Certify for ``account_id``, connect, enrol, connect again and authenticate; raise
        unless all succeed."""
        self.certify(account_id)
        await self.connect()
        response = await self.enrol()
        if response.status == Status.OK:
            response = await self.reconnect()
        if response.status != Status.OK:
            raise RuntimeError(f"{response.status.name}: {response.reason}")
        return self

    async def reconnect(self) -> Response:
        await self.disconnect()
        await self.connect()
        return await self.authenticate()

    async def send(self, recipient: int, sealed: bytes) -> tuple[Response, Envelope]:
        """Send ``sealed`` with the expiry every envelope gets, which the relay stores and pushes."""
        envelope = Envelope.create(sealed=sealed, expires_at=envelope_expiry(time.time()), random=random)
        response = await self.request(FrameType.SEND, Send(recipient, envelope).encode())
        return response, envelope

    async def next_push(self, timeout: float = REPLY_SECONDS) -> Envelope:
        return await asyncio.wait_for(self.pushes.get(), timeout)

    async def ack(self, *envelopes: Envelope) -> Response:
        return await self.request(FrameType.ACK, Ack(tuple(e.envelope_id for e in envelopes)).encode())

    async def disconnect(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, REPLY_SECONDS)
        if self.session is not None:
            await self.session.close()
        self.ws, self.session, self._reader = None, None, None
        self.pushes = asyncio.Queue()
        self.notices = asyncio.Queue()
