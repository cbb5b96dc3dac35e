"""How fast the relay moves envelopes between devices, next to Mosquitto on the same machine.

N devices (10 to 500) in pairs on 127.0.0.1: each device sends ``--messages`` envelopes of
1 KiB sealed bytes to its partner, one at a time, each after the relay has answered that
the one before is stored (as a device's outbox does), and acknowledges each push. All N
send at once. Measured per backend and N: envelopes delivered per second (from the first
send to the last push) and the latency from send to push, p50 and p99. The sealed bytes
start with the send time, so the relay sees nothing but an opaque blob.

Each relay backend is measured twice, each time on a fresh relay: with every envelope sent by
``SEND`` on the device's authenticated WebSocket (``sqlite``, ``postgres``), and with every
envelope sent by ``DELIVER`` on the unidentified path (``sqlite (unidentified)``, ...): each
device registers a random 16-byte delivery key (``SET_DELIVERY_KEY`` after it authenticates)
and sends to its partner, with the partner's key, over a second WebSocket of its own to
``/v1/deliver``, one request at a time as before; pushes and acks stay on the authenticated
socket. The load and the measures are the same, and the report gives DELIVER's as ratios of
SEND's on the same backend and N. What DELIVER adds on the relay is the key check (a store
read of the recipient's key hash, SHA-256 of the presented key) and the per-key rate limit;
the bench raises that limit (``deliveries_per_key_per_minute``) in the relay's config, and
the per-address connection cap with it, so that neither caps the measurement.

The same run drives the same load through the Mosquitto broker already on the machine
(127.0.0.1:1883, MQTT 3.1.1, QoS 1): one client per device, subscribed to a topic of its
own, publishing 1 KiB payloads to its partner's topic, each after the broker's PUBACK.
Mosquitto is native code and the reference; the relay's numbers are printed as ratios of
its numbers, and absolute rates say little, since they move with the machine and its load.

What differs, on purpose or not:

- The relay is a real ``enclave-server`` process with TLS and a real database; an
  envelope is durably stored (SQLite ``synchronous = FULL``, PostgreSQL commit) before
  the sender hears OK. Mosquitto runs without TLS and keeps QoS 1 messages in memory
  (its persistence file is written every ``autosave_interval``, not per message).
- Mosquitto runs with the machine's configuration, which leaves ``set_tcp_nodelay``
  off: about one delivery in a hundred waits for TCP's delayed acknowledgement (some
  40 ms), and that shows in its p99. The clients here turn Nagle off, as aiohttp does.
- The clients are Python (aiohttp WebSockets, paho-mqtt) in this one process, on one
  event loop; the server, the database and the clients share the machine's cores, so at
  large N the clients are part of what is measured, for both transports alike.
- Accounts are made with the real admin CLI, ``server.admin.main``, called in this
  process: a process per call (about a second each) would dominate the run at N = 500.
  Device certificates are signed in this process with an authority key made for the run,
  the one the relay is given (``--authority-key``), as the enrolment authority signs them.
  Devices enrol (on a connection of its own: ENROL spends the challenge) and then
  authenticate over the WebSocket as the app does. None of this set-up is timed.
- A DELIVER's answer is read straight off the unidentified socket (one request at a time),
  where the app has a reader task for it (app/sync/link.py); a SEND's answer goes through
  the authenticated socket's reader task, which also takes the pushes. A DELIVER pays no
  TLS or WebSocket set-up in the timed run: its socket is opened before, and the app too
  keeps its own open between deliveries.

Run as ``.venv/bin/python bench/server.py [--devices 10,50,200] [--messages 20]
[--backends sqlite,postgres] [--quick]``. Nothing here asserts on speed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import math
import os
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import aiohttp
import asyncpg
import paho.mqtt.client as mqtt
from nacl.utils import random
from paho.mqtt.reasoncodes import ReasonCode

from app.base.limits import DELIVERY_KEY_BYTES
from app.crypto.certificate import DeviceCertificate
from app.crypto.keys import IdentityKeyPair, SignedPreKey
from app.crypto.primitives import SIGN_CONTEXT_RELAY_AUTH
from app.protocol.envelope import Envelope
from app.protocol.frames import (
    MAX_FRAME_BYTES,
    Ack,
    Authenticate,
    Challenge,
    Closing,
    Deliver,
    Enrol,
    Frame,
    FrameType,
    Notice,
    NoticeKind,
    Response,
    Send,
    SetDeliveryKey,
    SignedPreKeyUpload,
    Status,
    auth_message,
    delivery_key_hash,
)

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
PAYLOAD_BYTES = 1024
STAMP = struct.Struct(">Q")
"""The send time in nanoseconds (``time.perf_counter_ns``) at the start of each payload."""

SQLITE = "sqlite"
POSTGRES = "postgres"
MOSQUITTO = "mosquitto"
BACKENDS = (SQLITE, POSTGRES)
UNIDENTIFIED = " (unidentified)"
"""Appended to a backend's name for the relay on it with every envelope sent by DELIVER."""

DEFAULT_DEVICES = (10, 50, 200, 500)
DEFAULT_MESSAGES = 20
QUICK_DEVICES = (10, 50)
QUICK_MESSAGES = 5
MAX_DEVICES = 500

POSTGRES_DSN = "postgresql://postgres@127.0.0.1:5432/test"
MQTT_HOST = "127.0.0.1"
MQTT_PORT = 1883
MQTT_KEEPALIVE_SECONDS = 60

STARTUP_SECONDS = 30.0
STOP_SECONDS = 15.0
READY_SECONDS = 120.0
EXCHANGE_SECONDS = 300.0
"""The whole load of one (transport, N) must arrive within this, or the run fails."""
CONNECT_CONCURRENCY = 32
WARMUP_MESSAGES = 2
"""Sent by every device before the timed run: connections, caches and code paths warm up."""
ENVELOPE_LIFETIME_SECONDS = 3600
CERTIFICATE_SECONDS = 3600
"""Long enough for any run: the relay refuses an expired certificate at ENROL."""


@dataclass(frozen=True, slots=True)
class Result:
    transport: str
    """``sqlite`` or ``postgres`` (the relay on that backend, envelopes by SEND), the same with
    ``UNIDENTIFIED`` appended (envelopes by DELIVER), or ``mosquitto``."""
    devices: int
    messages_per_device: int
    delivered: int
    seconds: float
    envelopes_per_second: float
    p50_ms: float
    p99_ms: float


# Measuring one exchange, whatever the transport.


@dataclass
class _Exchange:
    """Deliveries of one run: latencies, when the last one arrived, and the first failure."""

    expected: int
    latencies_ns: list[int] = field(default_factory=list)
    seen: set[bytes] = field(default_factory=set)
    """Payloads delivered so far: a redelivery is not counted twice."""
    started_ns: int = 0
    last_ns: int = 0
    error: BaseException | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def delivered(self, payload: bytes) -> None:
        now = time.perf_counter_ns()
        if payload in self.seen:
            return
        self.seen.add(payload)
        (sent,) = STAMP.unpack_from(payload)
        self.latencies_ns.append(now - sent)
        self.last_ns = now
        if len(self.latencies_ns) >= self.expected:
            self.done.set()

    def fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        self.done.set()

    async def guard(self, work: Awaitable[None]) -> None:
        """Run ``work``; a failure ends the exchange instead of leaving it waiting."""
        try:
            await work
        except Exception as e:
            self.fail(e)

    async def wait(self, label: str) -> None:
        try:
            await asyncio.wait_for(self.done.wait(), EXCHANGE_SECONDS)
        except TimeoutError as e:
            arrived = len(self.latencies_ns)
            raise RuntimeError(
                f"{label}: {arrived} of {self.expected} envelopes arrived in {EXCHANGE_SECONDS:.0f} s"
            ) from e
        if self.error is not None:
            raise RuntimeError(f"{label}: {self.error}") from self.error

    def result(self, transport: str, devices: int, messages: int) -> Result:
        seconds = (self.last_ns - self.started_ns) / 1e9
        ordered = sorted(self.latencies_ns)
        return Result(
            transport=transport,
            devices=devices,
            messages_per_device=messages,
            delivered=len(ordered),
            seconds=seconds,
            envelopes_per_second=len(ordered) / seconds,
            p50_ms=_percentile(ordered, 50) / 1e6,
            p99_ms=_percentile(ordered, 99) / 1e6,
        )


def _percentile(ordered: Sequence[int], percent: int) -> float:
    """Nearest rank: the smallest value with at least ``percent`` % of values at or below it."""
    return float(ordered[max(0, math.ceil(percent / 100 * len(ordered)) - 1)])


def _payload(filler: bytes) -> bytes:
    return STAMP.pack(time.perf_counter_ns()) + filler


class _Device(Protocol):
    exchange: _Exchange

    async def send_all(self, messages: int) -> None: ...


async def _exchange(devices: Sequence[_Device], messages: int, label: str) -> _Exchange:
    """Every device sends ``messages`` to its partner, all at once; wait for every delivery."""
    exchange = _Exchange(expected=len(devices) * messages)
    for device in devices:
        device.exchange = exchange
    exchange.started_ns = time.perf_counter_ns()
    senders = asyncio.gather(*(exchange.guard(device.send_all(messages)) for device in devices))
    try:
        await exchange.wait(label)
    except BaseException:
        senders.cancel()
        raise
    await senders
    return exchange


# The relay: a server process, the admin CLI, WebSocket devices.


class _RelayProcess:
    """``python -m server.main`` on 127.0.0.1, a free port, over ``data_dir``."""

    def __init__(self, data_dir: Path, authority: IdentityKeyPair) -> None:
        self.data_dir = data_dir
        self.authority = authority
        """The enrolment authority key the relay trusts; the bench signs certificates with it."""
        self.log_path = data_dir / "relay.log"
        self.process: subprocess.Popen[str] | None = None
        self.port = 0

    def start(self) -> None:
        command = [sys.executable, "-m", "server.main", "--data", str(self.data_dir), "--port", "0"]
        command += ["--authority-key", self.authority.public.hex()]
        with self.log_path.open("w", encoding="utf-8") as log:
            self.process = subprocess.Popen(
                command,
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        deadline = time.monotonic() + STARTUP_SECONDS
        stdout = self.process.stdout
        if stdout is None:
            raise RuntimeError("the relay's output is not readable")
        while time.monotonic() < deadline:
            line = stdout.readline()
            if not line:
                raise RuntimeError("the relay exited during start-up:\n" + self.log_path.read_text())
            if line.startswith("enclave-server listening on https://"):
                self.port = int(line.rsplit(":", 1)[1])
                return
        raise RuntimeError(f"the relay did not start within {STARTUP_SECONDS:.0f} s")

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.process = None

    @property
    def url(self) -> str:
        return f"wss://127.0.0.1:{self.port}/v1/ws"

    @property
    def deliver_url(self) -> str:
        return f"wss://127.0.0.1:{self.port}/v1/deliver"

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.data_dir / "tls.crt"))


BENCH_ADMIN = "Bench Admin"
BENCH_ADMIN_PASSPHRASE = "bench admin"


def _admin_key(data_dir: Path) -> list[str]:
    """The options that make a throwaway admin the acting one (its key sealed at the least cost
    beside the relay's folder, made at the first call): every account the bench makes is signed
    into the key log, as an admin's would be."""
    from app.provisioning.keyfile import MINIMUM, Role, new_key_file  # noqa: PLC0415 - see the end

    key, passphrase = data_dir.with_name("bench-admin.key"), data_dir.with_name("bench-admin.pass")
    if not key.exists():
        key.write_bytes(new_key_file(Role.ADMIN, BENCH_ADMIN_PASSPHRASE, random=random, cost=MINIMUM)[0])
        passphrase.write_text(BENCH_ADMIN_PASSPHRASE + "\n", encoding="utf-8")
    return ["--admin-key", str(key), "--admin-name", BENCH_ADMIN, "--admin-passphrase-file", str(passphrase)]


def bench_admin_public(data_dir: Path) -> bytes:
    """The public key of the bench's admin of the relay in ``data_dir``, for a config to list it."""
    from app.provisioning.keyfile import Role, untrusted_public_key  # noqa: PLC0415 - see the end

    _admin_key(data_dir)
    key = data_dir.with_name("bench-admin.key")
    return untrusted_public_key(key.read_bytes(), role=Role.ADMIN, source=str(key))


def _admin(data_dir: Path, *args: str) -> str:
    """Run the admin CLI's ``main`` on ``data_dir``; what it printed, or an error."""
    from server.admin import main as admin_main  # noqa: PLC0415 - see the end of this file

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
        status = admin_main(["--data", str(data_dir), *_admin_key(data_dir), *args])
    if status != 0:
        raise RuntimeError(f"enclave-admin {' '.join(args[:2])} failed: {printed.getvalue().strip()}")
    return printed.getvalue().strip()


def _write_config(data_dir: Path, backend: str, postgres_dsn: str, schema: str) -> None:
    settings: dict[str, object] = {
        # Every device enrols and connects from 127.0.0.1; per-address limits are for real networks.
        # A device holds two connections when it sends by DELIVER, and briefly a third to enrol.
        "enrolment_attempts_per_minute": 1_000_000,
        "connections_per_address": 3 * MAX_DEVICES,
        # Every DELIVER to a device shows its one key; the per-key limit must not cap the rate.
        "deliveries_per_key_per_minute": 1_000_000,
    }
    if backend == POSTGRES:
        settings |= {"backend": POSTGRES, "postgres_dsn": postgres_dsn, "postgres_schema": schema}
    lines = [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
    (data_dir / "server.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")


class _RelayDevice:
    """One device's WebSocket: enrol, authenticate, send to its partner, acknowledge pushes.

    With ``unidentified`` the device registers a delivery key (SET_DELIVERY_KEY) and sends by
    DELIVER with its partner's key on a second WebSocket, to ``/v1/deliver``; pushes and acks
    stay on the authenticated one."""

    def __init__(self, *, unidentified: bool) -> None:
        self.unidentified = unidentified
        self.delivery_key = random(DELIVERY_KEY_BYTES)
        self.partner_key = b""
        """The partner's delivery key, for DELIVER."""
        self.deliver_ws: aiohttp.ClientWebSocketResponse | None = None
        self.exchange = _Exchange(expected=0)
        self.identity = IdentityKeyPair.generate(random)
        self.filler = random(PAYLOAD_BYTES - STAMP.size)
        self.device_id = 0
        self.partner = 0
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.reader: asyncio.Task[None] | None = None
        self.next_request = 0
        self.waiting: dict[int, asyncio.Future[Response]] = {}
        self.acks: set[int] = set()
        self.drained = asyncio.Event()

    async def connect(
        self, session: aiohttp.ClientSession, relay: _RelayProcess, account_id: str, device_id: int
    ) -> None:
        """Take a certificate from the relay's authority key, enrol on one connection, then
        authenticate on the one this device keeps, and wait until its (empty) queue is drained."""
        self.device_id = device_id
        certificate = DeviceCertificate.issue(
            relay.authority,
            account_id=account_id,
            device_id=device_id,
            identity_key=self.identity.public,
            expires_at=int(time.time()) + CERTIFICATE_SECONDS,
        ).encode()
        tls = relay.ssl_context()
        async with session.ws_connect(relay.url, ssl=tls, max_msg_size=MAX_FRAME_BYTES) as enrolling:
            signed = SignedPreKey.generate(self.identity, 1, random)
            enrol = Enrol(
                certificate,
                self._sign(await _challenge(enrolling)),
                SignedPreKeyUpload(signed.key_id, signed.keypair.public, signed.signature),
                (),
            )
            await enrolling.send_bytes(Frame(FrameType.ENROL, 1, enrol.encode()).encode())
            answer = Frame.parse(await enrolling.receive_bytes())
            enrolled = Response.parse(answer.body)
            if answer.type != FrameType.RESPONSE or enrolled.status != Status.OK:
                raise RuntimeError(f"the relay refused the enrolment: {enrolled.reason}")
        self.ws = await session.ws_connect(relay.url, ssl=tls, max_msg_size=MAX_FRAME_BYTES)
        nonce = await _challenge(self.ws)
        self.reader = asyncio.create_task(self._read())
        await self.request(
            FrameType.AUTHENTICATE, Authenticate(self.device_id, self._sign(nonce), certificate).encode()
        )
        await self.drained.wait()
        if self.unidentified:
            await self.request(
                FrameType.SET_DELIVERY_KEY, SetDeliveryKey(delivery_key_hash(self.delivery_key)).encode()
            )
            self.deliver_ws = await session.ws_connect(
                relay.deliver_url, ssl=tls, max_msg_size=MAX_FRAME_BYTES
            )

    def _sign(self, nonce: bytes) -> bytes:
        return self.identity.sign(
            context=SIGN_CONTEXT_RELAY_AUTH, message=auth_message(nonce, self.device_id)
        )

    async def request(self, frame_type: FrameType, body: bytes) -> bytes:
        if self.ws is None:
            raise RuntimeError("not connected")
        self.next_request += 1
        answer = asyncio.get_running_loop().create_future()
        self.waiting[self.next_request] = answer
        await self.ws.send_bytes(Frame(frame_type, self.next_request, body).encode())
        response: Response = await answer
        if response.status != Status.OK:
            raise RuntimeError(
                f"the relay answered {frame_type.name} with {response.status.name}: {response.reason}"
            )
        return response.body

    async def send_all(self, messages: int) -> None:
        for _ in range(messages):
            envelope = Envelope.create(
                sealed=_payload(self.filler),
                expires_at=int(time.time()) + ENVELOPE_LIFETIME_SECONDS,
                random=random,
            )
            if self.unidentified:
                await self._deliver(Deliver(self.partner, self.partner_key, envelope))
            else:
                await self.request(FrameType.SEND, Send(self.partner, envelope).encode())

    async def _deliver(self, deliver: Deliver) -> None:
        """One DELIVER on the unidentified socket and its answer: one request at a time, so the
        next frame on that socket is the answer, read here rather than by a task of its own."""
        if self.deliver_ws is None:
            raise RuntimeError("the unidentified socket is not open")
        await self.deliver_ws.send_bytes(Frame(FrameType.DELIVER, 1, deliver.encode()).encode())
        answer = Frame.parse(await self.deliver_ws.receive_bytes())
        if answer.type == FrameType.CLOSING:
            reason = Closing.parse(answer.body).reason
            raise RuntimeError(f"the relay closed the unidentified socket: {reason}")
        response = Response.parse(answer.body)
        if answer.type != FrameType.RESPONSE or response.status != Status.OK:
            raise RuntimeError(f"the relay answered DELIVER with {response.status.name}: {response.reason}")

    async def _read(self) -> None:
        try:
            if self.ws is None:
                raise RuntimeError("not connected")
            async for message in self.ws:
                if message.type != aiohttp.WSMsgType.BINARY:
                    raise RuntimeError(f"the relay closed the connection ({message.type.name})")
                await self._handle(Frame.parse(message.data))
        except Exception as e:
            self.exchange.fail(e)
            for answer in self.waiting.values():
                if not answer.done():
                    answer.set_exception(e)

    async def _handle(self, frame: Frame) -> None:
        if frame.type == FrameType.RESPONSE:
            response = Response.parse(frame.body)
            if frame.request_id in self.acks:
                self.acks.discard(frame.request_id)
                if response.status != Status.OK:
                    raise RuntimeError(f"the relay refused an ACK: {response.reason}")
            else:
                self.waiting.pop(frame.request_id).set_result(response)
        elif frame.type == FrameType.PUSH:
            envelope = Envelope.parse(frame.body)
            self.exchange.delivered(envelope.sealed)
            if self.ws is not None:
                self.next_request += 1
                self.acks.add(self.next_request)
                await self.ws.send_bytes(
                    Frame(FrameType.ACK, self.next_request, Ack((envelope.envelope_id,)).encode()).encode()
                )
        elif frame.type == FrameType.NOTICE:
            if Notice.parse(frame.body).kind == NoticeKind.QUEUE_DRAINED:
                self.drained.set()
        elif frame.type == FrameType.CLOSING:
            raise RuntimeError(f"the relay closed the connection: {Closing.parse(frame.body).reason}")

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.reader
        if self.ws is not None:
            await self.ws.close()
        if self.deliver_ws is not None:
            await self.deliver_ws.close()


async def _challenge(ws: aiohttp.ClientWebSocketResponse) -> bytes:
    """The nonce of the CHALLENGE a relay connection opens with."""
    first = Frame.parse(await ws.receive_bytes())
    if first.type != FrameType.CHALLENGE:
        raise RuntimeError(f"the relay opened with {first.type.name}, not CHALLENGE")
    return Challenge.parse(first.body).nonce


async def _relay_exchange(
    relay: _RelayProcess, accounts: Sequence[str], messages: int, *, unidentified: bool = False
) -> _Exchange:
    """Bare devices on ``accounts`` exchange ``messages`` each, by SEND or (``unidentified``) by
    DELIVER; bench/e2e.py takes its raw peer from here, by SEND."""
    devices = [_RelayDevice(unidentified=unidentified) for _ in accounts]
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def connect(device: _RelayDevice, account_id: str, device_id: int) -> None:
            async with gate:
                await device.connect(session, relay, account_id, device_id)

        try:
            await asyncio.wait_for(
                asyncio.gather(
                    *(
                        connect(device, account_id, index + 1)
                        for index, (device, account_id) in enumerate(zip(devices, accounts, strict=True))
                    )
                ),
                READY_SECONDS,
            )
            for first, second in zip(devices[::2], devices[1::2], strict=True):
                first.partner, second.partner = second.device_id, first.device_id
                first.partner_key, second.partner_key = second.delivery_key, first.delivery_key
            label = f"relay with {len(devices)} devices" + (UNIDENTIFIED if unidentified else "")
            await _exchange(devices, WARMUP_MESSAGES, label + " (warm-up)")
            return await _exchange(devices, messages, label)
        finally:
            await asyncio.gather(*(device.close() for device in devices))


@contextlib.contextmanager
def _relay(backend: str, devices: int, postgres_dsn: str) -> Iterator[tuple[_RelayProcess, list[str]]]:
    """A fresh relay on ``backend``, trusting an authority key made for it, with ``devices`` accounts."""
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with tempfile.TemporaryDirectory(prefix="enclave-bench-") as folder:
        data_dir = Path(folder)
        _write_config(data_dir, backend, postgres_dsn, schema)
        relay = _RelayProcess(data_dir, IdentityKeyPair.generate(random))
        try:
            relay.start()
            accounts = []
            for index in range(devices):
                account = f"bench{index}"
                _admin(data_dir, "account", "create", account, "--name", f"Bench Device {index}")
                accounts.append(account)
            yield relay, accounts
        finally:
            relay.stop()
            if backend == POSTGRES:
                asyncio.run(_drop_schema(postgres_dsn, schema))


async def _drop_schema(dsn: str, schema: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await connection.close()


def _measure_relay(
    backend: str, devices: int, messages: int, postgres_dsn: str, *, unidentified: bool
) -> Result:
    with _relay(backend, devices, postgres_dsn) as (relay, accounts):
        exchange = asyncio.run(_relay_exchange(relay, accounts, messages, unidentified=unidentified))
    return exchange.result(backend + (UNIDENTIFIED if unidentified else ""), devices, messages)


# Mosquitto: paho-mqtt clients driven by the same asyncio loop (no thread per client).


class _MqttDevice:
    def __init__(self, topic: str, run_id: str) -> None:
        self.exchange = _Exchange(expected=0)
        self.topic = topic
        self.partner_topic = ""
        self.filler = random(PAYLOAD_BYTES - STAMP.size)
        self.loop = asyncio.get_running_loop()
        self.connected = self.loop.create_future()
        self.subscribed = self.loop.create_future()
        self.disconnected = self.loop.create_future()
        self.published: dict[int, asyncio.Future[None]] = {}
        self.misc: asyncio.Task[None] | None = None
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"{run_id}-{topic.rsplit('/', 1)[1]}"
        )
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = lambda _c, _u, sock: self.loop.remove_reader(sock)
        client.on_socket_register_write = lambda c, _u, sock: self.loop.add_writer(sock, c.loop_write)
        client.on_socket_unregister_write = lambda _c, _u, sock: self.loop.remove_writer(sock)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_publish = self._on_publish
        client.on_message = lambda _c, _u, message: self.exchange.delivered(message.payload)
        client.on_disconnect = lambda *_args: _settle(self.disconnected, None)
        self.client = client

    def _on_socket_open(self, client: mqtt.Client, _userdata: object, sock: socket.socket) -> None:
        # As aiohttp does for the relay's clients: no Nagle delay on small request/answer packets.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.loop.add_reader(sock, client.loop_read)

    def _on_connect(
        self, _client: mqtt.Client, _userdata: object, _flags: object, reason: ReasonCode, _p: object
    ) -> None:
        if reason.is_failure:
            self.connected.set_exception(RuntimeError(f"Mosquitto refused the connection: {reason}"))
        else:
            _settle(self.connected, None)

    def _on_subscribe(
        self, _client: mqtt.Client, _userdata: object, _mid: int, reasons: list[ReasonCode], _p: object
    ) -> None:
        if any(reason.is_failure for reason in reasons):
            self.subscribed.set_exception(RuntimeError(f"Mosquitto refused the subscription: {reasons}"))
        else:
            _settle(self.subscribed, None)

    def _on_publish(
        self, _client: mqtt.Client, _userdata: object, mid: int, _reason: object, _p: object
    ) -> None:
        _settle(self.published.pop(mid), None)

    async def connect(self) -> None:
        self.client.connect(MQTT_HOST, MQTT_PORT, keepalive=MQTT_KEEPALIVE_SECONDS)
        self.misc = asyncio.create_task(self._misc())
        await self.connected
        self.client.subscribe(self.topic, qos=1)
        await self.subscribed

    async def _misc(self) -> None:
        while True:
            await asyncio.sleep(1)
            self.client.loop_misc()

    async def send_all(self, messages: int) -> None:
        for _ in range(messages):
            info = self.client.publish(self.partner_topic, _payload(self.filler), qos=1)
            acknowledged = self.loop.create_future()
            self.published[info.mid] = acknowledged
            await acknowledged

    async def close(self) -> None:
        if self.client.is_connected():
            self.client.disconnect()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.disconnected, STOP_SECONDS)
        if self.misc is not None:
            self.misc.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.misc


def _settle(future: asyncio.Future[None], value: None) -> None:
    if not future.done():
        future.set_result(value)


async def _mqtt_exchange(devices: int, messages: int) -> _Exchange:
    run_id = f"enclave-bench-{uuid.uuid4().hex[:8]}"
    clients = [_MqttDevice(f"{run_id}/device/{index}", run_id) for index in range(devices)]
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def connect(client: _MqttDevice) -> None:
        async with gate:
            await client.connect()

    try:
        await asyncio.wait_for(asyncio.gather(*(connect(c) for c in clients)), READY_SECONDS)
        for first, second in zip(clients[::2], clients[1::2], strict=True):
            first.partner_topic, second.partner_topic = second.topic, first.topic
        label = f"Mosquitto with {devices} clients"
        await _exchange(clients, WARMUP_MESSAGES, label + " (warm-up)")
        return await _exchange(clients, messages, label)
    finally:
        await asyncio.gather(*(client.close() for client in clients))


def _measure_mosquitto(devices: int, messages: int) -> Result:
    return asyncio.run(_mqtt_exchange(devices, messages)).result(MOSQUITTO, devices, messages)


# The run and its report.


def run(
    devices: Sequence[int] = DEFAULT_DEVICES,
    messages: int = DEFAULT_MESSAGES,
    backends: Sequence[str] = BACKENDS,
    postgres_dsn: str = POSTGRES_DSN,
    progress: Callable[[str], None] | None = None,
) -> list[Result]:
    """One result per (transport, N): Mosquitto first, then each relay backend by SEND and by
    DELIVER (each on a fresh relay), for each N."""
    for count in devices:
        if not 2 <= count <= MAX_DEVICES or count % 2:
            raise ValueError(f"device counts are even numbers from 2 to {MAX_DEVICES}, not {count}")
    unknown = set(backends) - set(BACKENDS)
    if unknown or messages < 1:
        raise ValueError(f"backends are {', '.join(BACKENDS)} and messages at least 1")
    results = []
    for count in devices:
        if progress:
            progress(f"{count} devices: {MOSQUITTO}")
        results.append(_measure_mosquitto(count, messages))
        for backend in backends:
            for unidentified in (False, True):
                if progress:
                    progress(f"{count} devices: relay on {backend}" + (UNIDENTIFIED if unidentified else ""))
                results.append(
                    _measure_relay(backend, count, messages, postgres_dsn, unidentified=unidentified)
                )
    return results


def _report(results: Sequence[Result]) -> None:
    by_key = {(r.transport, r.devices): r for r in results}
    counts = sorted({r.devices for r in results})
    transports = list(dict.fromkeys(r.transport for r in results))
    width = max(len(transport) for transport in transports)
    for count in counts:
        reference = by_key[MOSQUITTO, count]
        print()
        print(
            f"N = {count} devices, {reference.messages_per_device} envelopes of {PAYLOAD_BYTES} bytes each"
            f" ({reference.delivered} delivered per transport)"
        )
        print(
            f"{'transport':<{width}} {'envelopes/s':>12} {'p50 ms':>8} {'p99 ms':>8}"
            f" {'rate / mosquitto':>17} {'p50 / mosquitto':>16} {'p99 / mosquitto':>16}"
        )
        for transport in transports:
            r = by_key[transport, count]
            print(
                f"{transport:<{width}} {r.envelopes_per_second:>12,.0f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f}"
                f" {r.envelopes_per_second / reference.envelopes_per_second:>16.2f}x"
                f" {r.p50_ms / reference.p50_ms:>15.2f}x {r.p99_ms / reference.p99_ms:>15.2f}x"
            )
    backends = [t for t in transports if t != MOSQUITTO and not t.endswith(UNIDENTIFIED)]
    print()
    print("DELIVER (unidentified) against SEND on the same backend, same N:")
    print(f"{'backend':<10} {'N':>5} {'rate / send':>12} {'p50 / send':>11} {'p99 / send':>11}")
    for backend in backends:
        for count in counts:
            send, deliver = by_key[backend, count], by_key[backend + UNIDENTIFIED, count]
            print(
                f"{backend:<10} {count:>5} {deliver.envelopes_per_second / send.envelopes_per_second:>11.2f}x"
                f" {deliver.p50_ms / send.p50_ms:>10.2f}x {deliver.p99_ms / send.p99_ms:>10.2f}x"
            )
    if len(counts) > 1:
        print()
        print(f"Throughput as N grows (envelopes/s, and relative to N = {counts[0]}):")
        for transport in transports:
            first = by_key[transport, counts[0]].envelopes_per_second
            steps = "  ".join(
                f"N={count}: {by_key[transport, count].envelopes_per_second:,.0f}"
                f" ({by_key[transport, count].envelopes_per_second / first:.2f}x)"
                for count in counts
            )
            print(f"  {transport:<{width}} {steps}")


def _numbers(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--devices",
        type=_numbers,
        default=None,
        help=f"comma-separated device counts, even, up to {MAX_DEVICES}"
        f" (default {','.join(map(str, DEFAULT_DEVICES))})",
    )
    parser.add_argument(
        "--messages", type=int, default=None, help=f"envelopes each device sends (default {DEFAULT_MESSAGES})"
    )
    parser.add_argument(
        "--backends",
        type=lambda text: [part.strip() for part in text.split(",") if part.strip()],
        default=list(BACKENDS),
        help="relay backends to measure (default sqlite,postgres)",
    )
    parser.add_argument("--postgres-dsn", default=POSTGRES_DSN, help=f"(default {POSTGRES_DSN})")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{','.join(map(str, QUICK_DEVICES))} devices, {QUICK_MESSAGES} envelopes each",
    )
    args = parser.parse_args()
    devices = args.devices or (QUICK_DEVICES if args.quick else DEFAULT_DEVICES)
    messages = args.messages or (QUICK_MESSAGES if args.quick else DEFAULT_MESSAGES)
    try:
        results = run(devices, messages, args.backends, args.postgres_dsn, progress=_progress)
    except ValueError as e:
        parser.error(str(e))
    print(f"\non {os.cpu_count()} cores; clients, relay, database and broker share them")
    _report(results)


def _progress(text: str) -> None:
    print(f"measuring {text} ...", file=sys.stderr, flush=True)


if __name__ == "__main__":
    # Run as a script, this file's folder comes first on sys.path, and this file, server.py,
    # would shadow the ``server`` package that ``_admin`` imports.
    sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != BENCH_DIR]
    main()
