"""Hostile input from outside, over TLS, against a real relay on each backend (hypothesis).

One relay per backend (SQLite, then PostgreSQL: a NUL that SQLite stores and PostgreSQL
refuses is what a single backend would miss) takes, example after example:

- random and malformed frames before and after authentication, and text frames;
- frames that parse but hold hostile values, made with app/protocol's encoders: text
  with NUL, newlines, escapes, C1 controls, odd Unicode, invalid UTF-8 and lengths
  that lie, as a directory query or an account id, also inside device certificates that
  the trusted authority key signed (so they reach the store); device ids,
  prekey ids, expiry times at and past the edges of their types; prekey and ack lists
  with duplicates;
- HTTP requests through aiohttp's client, and raw bytes on a TLS stream for what that
  client refuses to send: mangled request lines, header names and values with odd
  bytes, Content-Length that lies, broken chunked bodies, a Content-Encoding the body
  does not have, with and without a valid upload token;
- bytes on the TLS port instead of, or before, a ClientHello; truncated and mangled
  handshakes.

Every example checks the relay's log (no traceback, no client address) and, where there
is an answer, that it is not the relay's own failure (HTTP 500 or more, INTERNAL_ERROR).
After each test an honest pair of new devices still enrols and exchanges an envelope.

A slow client (a body shorter than its Content-Length, a handshake left unfinished
while the connection stays open) is not fuzzed here: the relay waits for it by design,
and its deadlines are tested on their own.

The count is bounded for ``./test.sh`` (60 examples a test); for a longer run::

    ENCLAVE_FUZZ_EXAMPLES=5000 ./test.sh tests/server/test_fuzz_relay.py
"""

from __future__ import annotations

import asyncio
import gzip
import os
import time
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.utils import random

from app.base.limits import SIGNATURE_BYTES
from app.crypto.certificate import CERTIFICATE_VERSION
from app.crypto.keys import IdentityKeyPair, SignedPreKey
from app.crypto.primitives import SIGN_CONTEXT_DEVICE_CERTIFICATE, SIGN_CONTEXT_RELAY_AUTH
from app.protocol.envelope import ENVELOPE_ID_BYTES, Envelope
from app.protocol.frames import (
    FRAME_VERSION,
    MAX_ACKS_PER_FRAME,
    MAX_FRAME_BYTES,
    MAX_PREKEYS_PER_UPLOAD,
    Ack,
    DirectoryLookup,
    FetchBundles,
    FrameType,
    Send,
    SignedPreKeyUpload,
    Status,
    UploadedPreKey,
    UploadPreKeys,
    auth_message,
)
from tests.conftest import require
from tests.server.fuzzing import FuzzedRelay, client_hello, raw_https, raw_tcp
from tests.server.stores import drop_schema
from tests.support.relay import TEST_AUTHORITY, RelayProcess, TestDevice, certificate_for, new_account

EXAMPLES = int(os.environ.get("ENCLAVE_FUZZ_EXAMPLES", "60"))
pytestmark = pytest.mark.timeout(300 + EXAMPLES // 4)
"""A longer run may take longer than the suite's 300 s a test."""

REQUEST_TYPES = [t for t in FrameType if t < FrameType.CHALLENGE]
ROUTES = ["/v1/ws", "/v1/attachments", "/v1/attachments/x", "/health", "/", "/v1/attachments/" + "A" * 40]
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def fuzzed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, postgres_unavailable: str | None
) -> Iterator[FuzzedRelay]:
    """The relay of this backend, shared by the module's tests; a schema of its own on PostgreSQL."""
    schema = None
    if request.param == "postgres":
        require(postgres_unavailable is None, postgres_unavailable or "")
        schema = "t_" + uuid.uuid4().hex[:12]
    target = FuzzedRelay(tmp_path_factory.mktemp(f"fuzz-{request.param}") / "relay", schema)
    yield target
    target.close()
    if schema is not None:
        asyncio.run(drop_schema(schema))


@pytest.fixture
def honest_after(fuzzed: FuzzedRelay) -> Iterator[None]:
    """After the test: two new devices still enrol and exchange an envelope, and nothing the
    test made the relay log holds a traceback or an address."""
    since = fuzzed.mark()
    yield
    fuzzed.run(_honest_exchange(fuzzed.relay))
    fuzzed.assert_clean(since)


async def _honest_exchange(relay: RelayProcess) -> None:
    tag = os.urandom(4).hex()
    sender = await TestDevice(relay).join(new_account(relay.data_dir, f"s{tag}"))
    recipient = await TestDevice(relay).join(new_account(relay.data_dir, f"r{tag}"))
    try:
        response, envelope = await sender.send(recipient.device_id, b"\x01" * 64)
        assert response.status == Status.OK
        assert (await recipient.next_push()).envelope_id == envelope.envelope_id
    finally:
        await sender.disconnect()
        await recipient.disconnect()


@pytest.fixture(scope="module")
def enrolled(fuzzed: FuzzedRelay) -> TestDevice:
    """One enrolled device whose every connection is authenticated afresh before it misbehaves."""
    device = TestDevice(fuzzed.relay, identity=FUZZER_IDENTITY, device_id=FUZZER_DEVICE_ID)
    device.account_id = new_account(fuzzed.relay.data_dir, "fuzzer")
    device.certificate = certificate_for(device.account_id, FUZZER_DEVICE_ID, FUZZER_IDENTITY.public)
    fuzzed.run(device.connect())
    response = fuzzed.run(device.enrol())
    assert response.status == Status.OK, response.reason
    fuzzed.run(device.disconnect())
    return device


FUZZER_IDENTITY = IdentityKeyPair.from_seed(b"\x07" * 32)
"""The enrolled device's identity, fixed so that strategies can sign its prekeys."""
FUZZER_DEVICE_ID = 7_000_007
"""The enrolled device's id, fixed so that strategies can authenticate as it."""


async def _throw(relay: RelayProcess, messages: list[bytes | str], device: TestDevice | None = None) -> None:
    """Send ``messages`` on one new WebSocket (authenticated as ``device`` if given)."""
    if device is None:
        device = TestDevice(relay)
        await device.connect()
    else:
        response = await device.reconnect()
        assert response.status == Status.OK, response.reason
    ws = device.ws
    assert ws is not None
    try:
        for message in messages:
            if ws.closed:
                break
            if isinstance(message, str):
                await ws.send_str(message)
            else:
                await ws.send_bytes(message)
        if not ws.closed:
            await ws.ping()
    except (aiohttp.ClientError, ConnectionError):
        pass
    finally:
        await device.disconnect()


def _frames() -> st.SearchStrategy[bytes]:
    structured = st.builds(
        lambda version, kind, request_id, body: bytes([version, kind]) + request_id.to_bytes(4, "big") + body,
        st.sampled_from([FRAME_VERSION, FRAME_VERSION, 0, 2, 255]),
        st.sampled_from([int(t) for t in REQUEST_TYPES] + [0, 0x80, 0x84, 0xFF]),
        st.integers(0, 2**32 - 1),
        st.binary(max_size=400),
    )
    return st.one_of(structured, st.binary(max_size=200))


@FUZZ
@given(messages=st.lists(st.one_of(_frames(), st.text(max_size=50)), min_size=1, max_size=4))
def test_hostile_frames_before_authentication(
    fuzzed: FuzzedRelay, honest_after: None, messages: list[bytes | str]
) -> None:
    """Test that random and malformed frames from an unauthenticated socket leave the relay serving."""
    since = fuzzed.mark()
    fuzzed.run(_throw(fuzzed.relay, messages))
    fuzzed.assert_clean(since)


@FUZZ
@given(messages=st.lists(_frames(), min_size=1, max_size=3))
def test_hostile_frames_after_authentication(
    fuzzed: FuzzedRelay, enrolled: TestDevice, honest_after: None, messages: list[bytes | str]
) -> None:
    """Test that malformed requests from an enrolled, authenticated device leave the relay serving."""
    since = fuzzed.mark()
    fuzzed.run(_throw(fuzzed.relay, messages, enrolled))
    fuzzed.assert_clean(since)


def test_an_oversized_frame_is_refused(fuzzed: FuzzedRelay, enrolled: TestDevice, honest_after: None) -> None:
    """Test that a frame over the limit closes only that connection."""
    oversized = bytes([FRAME_VERSION, FrameType.SEND]) + b"\x00" * 4 + random(MAX_FRAME_BYTES + 1)
    fuzzed.run(_throw(fuzzed.relay, [oversized], enrolled))


# Frames that parse, holding hostile values.

HOSTILE_TEXT = st.one_of(
    st.sampled_from(
        [
            "",
            " ",
            "%",
            "_",
            "\\",
            "'",
            '"',
            "%_\\'",
            "\x00",
            "fu\x00zzer",
            "\n",
            "\r\n",
            "\t",
            "\x1b[2J",
            "\x7f",
            "\x85",
            "\x9b",
            "\u2028",
            "\u202e",
            "\ufeff",
            "\ufffd",
            "ß",
            "İ",
            "ﬃ",
            "\U0001d518",
            "\U0010ffff",
            "fuzzer",
            "Test User",
            "tests",
        ]
    ),
    st.text(max_size=40),
    st.text(st.characters(max_codepoint=0x9F), max_size=40),
    st.text(min_size=40, max_size=200),
)
"""Text for a text field: control characters (C0, DEL, C1), LIKE and quoting metacharacters,
Unicode that case-folds to more characters, the last code point, text past the limits."""


def _text16(raw: bytes, declared: int | None = None) -> bytes:
    """A ``text16`` field (u16 byte length, then the bytes) whose length may lie."""
    return (len(raw) if declared is None else declared).to_bytes(2, "big") + raw


TEXT_FIELDS = st.one_of(
    HOSTILE_TEXT.map(lambda text: _text16(text.encode("utf-8"))),
    st.binary(max_size=40).map(_text16),
    st.builds(
        lambda text, declared: _text16(text.encode("utf-8"), declared),
        HOSTILE_TEXT,
        st.sampled_from([0, 1, 127, 128, 129, 0xFFFF]),
    ),
)
"""Hostile text as a frame carries it: as UTF-8, as bytes that are not UTF-8, with a lying length."""


def _with_text(encoded: bytes, field: bytes) -> bytes:
    """A body that app/protocol's encoder made around an empty leading text field, with
    ``field`` in that field's place: the encoder itself refuses most of what is sent here."""
    assert encoded[:2] == b"\x00\x00"
    return field + encoded[2:]


U32S = st.one_of(
    st.sampled_from([0, 1, 2, 3, 2**31 - 1, 2**31, 2**32 - 2, 2**32 - 1]), st.integers(0, 2**32 - 1)
)
"""Device and key ids: the edges of a u32, of a signed 32-bit column, and small ids that exist."""
U64S = st.one_of(
    st.sampled_from([0, 1, 2**31, 2**32, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1]),
    st.integers(-5, 10**6).map(lambda delta: int(time.time()) + delta),
    st.integers(0, 2**64 - 1),
)
"""Expiry times: past, just now, soon, and the edges of signed and unsigned 64-bit columns."""
KEYS = st.one_of(st.just(b"\x00" * 32), st.just(b"\xff" * 32), st.binary(min_size=32, max_size=32))


def _signed_prekey(identity: IdentityKeyPair, key_id: int, seed: bytes, genuine: bool) -> SignedPreKeyUpload:
    spk = SignedPreKey.generate(identity, key_id, lambda n: seed[:n])
    signature = spk.signature if genuine else bytes(64)
    return SignedPreKeyUpload(spk.key_id, spk.keypair.public, signature)


def _one_time_prekeys(max_size: int) -> st.SearchStrategy[tuple[UploadedPreKey, ...]]:
    """Up to ``max_size`` prekeys, often with the same id twice."""
    prekey = st.builds(UploadedPreKey, st.one_of(st.integers(0, 3), U32S), KEYS)
    return st.lists(prekey, max_size=max_size).map(tuple)


def _with_one_time(body: bytes, one_time: tuple[UploadedPreKey, ...]) -> bytes:
    """``body`` (encoded with no one-time prekeys: it ends in a zero count) carrying ``one_time``,
    written by hand so that ids the encoder refuses (0xFFFFFFFF, "none") reach the relay too."""
    assert body.endswith(b"\x00\x00")
    entries = b"".join(key.key_id.to_bytes(4, "big") + key.public for key in one_time)
    return body[:-2] + len(one_time).to_bytes(2, "big") + entries


@dataclass(frozen=True)
class Hostile:
    """A request before authentication whose challenge signature is made once the connection's
    nonce is known: ``signer`` signs it for ``device_id`` into the 64 bytes at ``at`` of ``body``,
    so that what follows the signature check (the certificate, the store) is reached too."""

    frame_type: FrameType
    body: bytes
    signer: IdentityKeyPair | None = None
    device_id: int = 0
    at: int = 0

    def encode(self, nonce: bytes) -> bytes:
        if self.signer is None:
            return self.body
        signature = self.signer.sign(
            context=SIGN_CONTEXT_RELAY_AUTH, message=auth_message(nonce, self.device_id)
        )
        return self.body[: self.at] + signature + self.body[self.at + SIGNATURE_BYTES :]


def _certificate(
    field: bytes, device_id: int, identity: IdentityKeyPair, expires_at: int, genuine: bool
) -> bytes:
    """A device certificate written by hand around a hostile account id ``field`` (so that what
    its encoder refuses is sent too), signed by the key the relay trusts if ``genuine``."""
    body = (
        bytes([CERTIFICATE_VERSION])
        + field
        + device_id.to_bytes(4, "big")
        + identity.public
        + (expires_at % 2**64).to_bytes(8, "big")
    )
    issuer = TEST_AUTHORITY if genuine else IdentityKeyPair.from_seed(b"\x09" * 32)
    return body + issuer.sign(context=SIGN_CONTEXT_DEVICE_CERTIFICATE, message=body)


def _enrol(
    certificate: tuple[bytes, int, int, bool],
    seed: bytes,
    key_id: int,
    genuine: bool,
    one_time: tuple[UploadedPreKey, ...],
) -> Hostile:
    """An enrolment with a hostile certificate (account id, device id, expiry, issuer) whose
    challenge and prekeys are signed with the identity key it names, so it reaches the store."""
    field, device_id, expires_at, certified = certificate
    identity = IdentityKeyPair.from_seed(seed)
    raw = _certificate(field, device_id, identity, expires_at, certified)
    prekeys = UploadPreKeys(_signed_prekey(identity, key_id, seed, genuine), ()).encode()
    body = len(raw).to_bytes(2, "big") + raw + bytes(SIGNATURE_BYTES) + _with_one_time(prekeys, one_time)
    return Hostile(FrameType.ENROL, body, identity, device_id, at=2 + len(raw))


def _authenticate(device_id: int, certificate: tuple[bytes, int, int, bool], signed: bool) -> Hostile:
    """An authentication as ``device_id`` (the fuzzer's own id among them) presenting a hostile
    certificate, its challenge signed with the fuzzer's key if ``signed``, else left as zeros."""
    field, _, expires_at, certified = certificate
    raw = _certificate(field, device_id, FUZZER_IDENTITY, expires_at, certified)
    body = device_id.to_bytes(4, "big") + bytes(SIGNATURE_BYTES) + len(raw).to_bytes(2, "big") + raw
    return Hostile(FrameType.AUTHENTICATE, body, FUZZER_IDENTITY if signed else None, device_id, at=4)


MOSTLY = st.sampled_from([True, True, True, False])
"""Whether a signature is genuine: mostly, so that most requests get past the signature checks."""
CERTIFICATES = st.tuples(TEXT_FIELDS, U32S, U64S, MOSTLY)
"""A certificate's hostile account id, device id and expiry, and whether the trusted key signed it."""
BEFORE_AUTHENTICATION = st.one_of(
    st.builds(
        _enrol,
        CERTIFICATES,
        st.binary(min_size=32, max_size=32),
        U32S,
        MOSTLY,
        _one_time_prekeys(8),
    ),
    st.builds(
        _authenticate,
        st.one_of(st.sampled_from([FUZZER_DEVICE_ID]), U32S),
        CERTIFICATES,
        MOSTLY,
    ),
    st.builds(
        lambda device_id, signature, certificate: Hostile(
            FrameType.AUTHENTICATE, device_id.to_bytes(4, "big") + signature + _text16(certificate)
        ),
        U32S,
        st.binary(min_size=64, max_size=64),
        st.binary(max_size=200),
    ),
)


def _send(recipient: int, expires_at: int, envelope_id: bytes, sealed: bytes) -> tuple[FrameType, bytes]:
    return FrameType.SEND, Send(recipient, Envelope(envelope_id, expires_at, sealed)).encode()


def _upload(
    key_id: int | None, seed: bytes, genuine: bool, one_time: tuple[UploadedPreKey, ...]
) -> tuple[FrameType, bytes]:
    signed = None if key_id is None else _signed_prekey(FUZZER_IDENTITY, key_id, seed, genuine)
    return FrameType.UPLOAD_PREKEYS, _with_one_time(UploadPreKeys(signed, ()).encode(), one_time)


ENVELOPE_IDS = st.one_of(
    st.sampled_from([b"\x00" * ENVELOPE_ID_BYTES, b"\xff" * ENVELOPE_ID_BYTES]),
    st.binary(min_size=ENVELOPE_ID_BYTES, max_size=ENVELOPE_ID_BYTES),
)
AFTER_AUTHENTICATION = st.one_of(
    TEXT_FIELDS.map(lambda f: (FrameType.DIRECTORY_LOOKUP, _with_text(DirectoryLookup("").encode(), f))),
    TEXT_FIELDS.map(lambda f: (FrameType.FETCH_BUNDLES, _with_text(FetchBundles("").encode(), f))),
    st.builds(
        _send, st.one_of(st.integers(0, 8), U32S), U64S, ENVELOPE_IDS, st.binary(min_size=1, max_size=200)
    ),
    st.lists(ENVELOPE_IDS, min_size=1, max_size=MAX_ACKS_PER_FRAME).map(
        lambda ids: (FrameType.ACK, Ack(tuple(ids)).encode())
    ),
    st.builds(
        _upload,
        st.one_of(st.none(), U32S),
        st.binary(min_size=32, max_size=32),
        st.booleans(),
        _one_time_prekeys(MAX_PREKEYS_PER_UPLOAD),
    ),
)


async def _ask(
    device: TestDevice, requests: list[tuple[FrameType, bytes]] | list[Hostile], *, authenticate: bool
) -> None:
    """Send each request on one new connection; none may be answered with the relay's own failure."""
    if authenticate:
        response = await device.reconnect()
        assert response.status == Status.OK, response.reason
    else:
        await device.connect()
    try:
        for request in requests:
            if isinstance(request, Hostile):
                frame_type, body = request.frame_type, request.encode(device.nonce)
            else:
                frame_type, body = request
            if device.closing is not None:
                break  # refused (an authentication that failed): the relay hangs up
            try:
                response = await device.request(frame_type, body)
            except ConnectionError:
                assert not authenticate, f"the relay hung up on a {frame_type.name} that parses"
                break
            assert response.status != Status.INTERNAL_ERROR, (frame_type.name, response.reason)
    finally:
        await device.disconnect()


@FUZZ
@given(requests=st.lists(BEFORE_AUTHENTICATION, min_size=1, max_size=3))
def test_hostile_values_before_authentication(
    fuzzed: FuzzedRelay, enrolled: TestDevice, honest_after: None, requests: list[Hostile]
) -> None:
    """Test that enrolments and authentications whose certificates hold hostile account ids, device
    ids and expiry times, signed by the trusted key or not, with the challenge signed, are answered
    without the relay failing (no INTERNAL_ERROR, no traceback), on each backend."""
    since = fuzzed.mark()
    fuzzed.run(_ask(TestDevice(fuzzed.relay), requests, authenticate=False))
    fuzzed.assert_clean(since)


@FUZZ
@given(requests=st.lists(AFTER_AUTHENTICATION, min_size=1, max_size=3))
def test_hostile_values_after_authentication(
    fuzzed: FuzzedRelay, enrolled: TestDevice, honest_after: None, requests: list[tuple[FrameType, bytes]]
) -> None:
    """Test that look-ups, key fetches, sends, acks and prekey uploads holding hostile values are
    answered without the relay failing (no INTERNAL_ERROR, no traceback), on each backend."""
    since = fuzzed.mark()
    fuzzed.run(_ask(enrolled, requests, authenticate=True))
    fuzzed.assert_clean(since)


# HTTP.

HEADER_NAMES = st.sampled_from(
    [
        "Content-Encoding",
        "Content-Length",
        "Enclave-Expires-At",
        "Authorization",
        "Transfer-Encoding",
        "Connection",
        "Upgrade",
        "Content-Type",
        "X-Anything",
    ]
)
HEADER_VALUES = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x2FFF, exclude_categories=("Cs",)), max_size=40
)


async def _request(relay: RelayProcess, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
    async with aiohttp.ClientSession() as http:
        try:
            async with http.request(
                method, relay.https + path, headers=headers, data=body, ssl=relay.ssl_context()
            ) as response:
                assert response.status < 500, f"{method} {path} {headers!r}: HTTP {response.status}"
                await response.read()
        except (aiohttp.ClientError, ValueError, UnicodeError):
            pass  # the client library refused to send it, or the relay hung up on it


@FUZZ
@given(
    request=st.fixed_dictionaries(
        {
            "method": st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"]),
            "path": st.sampled_from(ROUTES),
            "headers": st.dictionaries(HEADER_NAMES, HEADER_VALUES, max_size=4),
            "body": st.binary(max_size=300),
        }
    )
)
def test_hostile_http_requests(fuzzed: FuzzedRelay, honest_after: None, request: dict[str, Any]) -> None:
    """Test that random HTTP requests to every route get an answer below 500, and no traceback."""
    since = fuzzed.mark()
    fuzzed.run(
        _request(fuzzed.relay, request["method"], request["path"], request["headers"], request["body"])
    )
    fuzzed.assert_clean(since)


@dataclass(frozen=True)
class RawRequest:
    """An HTTP/1 request as bytes, with the upload token put in when it is rendered."""

    line: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    framing: tuple[tuple[bytes, bytes], ...]
    """Content-Length, Transfer-Encoding and Content-Encoding, true or not."""
    body: bytes
    authorised: bool
    """Whether it carries the enrolled device's upload token (so the relay reads the body)."""

    def render(self, token: bytes) -> bytes:
        headers = [(b"Host", b"relay"), *self.headers, *self.framing]
        if self.authorised:
            headers.append((b"Authorization", b"Enclave-Upload " + token.hex().encode("ascii")))
        return (
            self.line + b"\r\n" + b"".join(n + b": " + v + b"\r\n" for n, v in headers) + b"\r\n" + self.body
        )


RAW_METHODS = st.one_of(
    st.sampled_from([b"GET", b"POST", b"PUT", b"HEAD", b"OPTIONS", b"CONNECT", b"PRI", b"post", b"G\x00T"]),
    st.binary(min_size=1, max_size=8),
)
RAW_TARGETS = st.one_of(
    st.sampled_from(
        [route.encode("ascii") for route in ROUTES]
        + [
            b"*",
            b"",
            b"//",
            b"/v1/attachments/%00",
            b"/../../etc/passwd",
            b"http://relay/health",
            b"/\xff\xfe",
        ]
    ),
    st.binary(max_size=60).map(lambda raw: b"/" + raw),
    st.integers(1000, 20_000).map(lambda n: b"/" + b"a" * n),
)
RAW_VERSIONS = st.sampled_from(
    [
        b"HTTP/1.1",
        b"HTTP/1.1",
        b"HTTP/1.0",
        b"HTTP/0.9",
        b"HTTP/2.0",
        b"HTTP/1.1x",
        b"",
        b"http/1.1",
        b"HTTP/1.1 x",
    ]
)
GOOD_LINES = st.builds(
    lambda method, route: method + b" " + route.encode("ascii") + b" HTTP/1.1",
    st.sampled_from([b"GET", b"POST", b"HEAD", b"PUT"]),
    st.sampled_from(ROUTES),
)
"""Request lines that parse, so that what follows them is what the relay sees."""
RAW_LINES = st.one_of(
    GOOD_LINES,
    st.builds(lambda m, t, v: m + b" " + t + b" " + v, RAW_METHODS, RAW_TARGETS, RAW_VERSIONS),
    st.binary(max_size=80).filter(lambda raw: b"\n" not in raw),
)
RAW_HEADER_NAMES = st.sampled_from(
    [
        b"Expect",
        b"Authorization",
        b"Connection",
        b"Upgrade",
        b"Sec-WebSocket-Key",
        b"Sec-WebSocket-Version",
        b"Content-Type",
        b"Host",
        b"Origin",
        b"X-Anything",
    ]
)
"""Headers that aiohttp or the relay reads."""
ODD_HEADER_NAMES = st.one_of(
    st.sampled_from([b"X Space", b"", b"\x00", b"\xff\xfe", b"Expect:"]),
    st.binary(min_size=1, max_size=12).filter(
        lambda raw: not raw.lower().startswith((b"content-", b"transfer"))
    ),
)
"""Names that are not tokens."""
OBS_TEXT = st.lists(st.integers(0x20, 0xFF).filter(lambda b: b != 0x7F), min_size=1, max_size=30).map(
    lambda raw: bytes(raw) + b"\x80"
)
"""Header values that parse (HTTP's obs-text) but are not UTF-8."""
RAW_HEADER_VALUES = st.one_of(
    OBS_TEXT,
    st.binary(max_size=40),
    st.text(max_size=20).map(lambda text: text.encode("utf-8")),
    st.sampled_from(
        [b"websocket", b"Upgrade", b"close", b"keep-alive", b"100-continue", b"13", b"\x00", b" "]
    ),
)
"""Values: not UTF-8 (aiohttp hands those on with surrogates in them), any bytes, any text."""
SOON = st.integers(1, 10**6).map(lambda delta: str(int(time.time()) + delta).encode("ascii"))
"""An expiry the relay takes, so that the body is read."""
EXPIRIES = st.one_of(
    st.sampled_from(
        ["²", "\u0663" * 10, "9" * 5000, "1e10", "+2000000000", "-1", "20 00", " 2000000000", "0x10"]
    ).map(lambda text: text.encode("utf-8")),
    st.text(st.characters(categories=("Nd", "No")), min_size=1, max_size=14).map(lambda t: t.encode("utf-8")),
    st.integers(-5, 0).map(lambda delta: str(int(time.time()) + delta).encode("ascii")),
    HOSTILE_TEXT.map(lambda text: text.encode("utf-8")),
)
"""Expiry headers to refuse: past, the forms ``int()`` takes or chokes on, digits beyond ASCII."""
DECODED = st.sampled_from([b"gzip", b"deflate", b"x-gzip"])
"""The encodings aiohttp decodes, so that a body which is not in one reaches the decoder."""
ENCODINGS = st.sampled_from(
    [b"gzip", b"deflate", b"br", b"x-gzip", b"gzip, gzip", b"identity", b"compress", b"\xff"]
)
PAYLOADS = st.one_of(
    st.binary(max_size=300),
    st.binary(min_size=1, max_size=300).map(gzip.compress),
    st.builds(
        lambda raw, cut: gzip.compress(raw)[:cut], st.binary(min_size=1, max_size=300), st.integers(0, 40)
    ),
    st.binary(min_size=1, max_size=300).map(zlib.compress),
)
"""Bodies: not compressed, compressed, compressed and cut short."""
GOOD_CHUNKS = st.lists(st.binary(min_size=1, max_size=60), max_size=4).map(
    lambda parts: b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in parts) + b"0\r\n\r\n"
)
BAD_CHUNKS = st.lists(
    st.one_of(
        st.binary(min_size=1, max_size=30).map(lambda part: b"%x\r\n%s\r\n" % (len(part), part)),
        st.binary(max_size=30),
        st.sampled_from(
            [b"0\r\n\r\n", b"zz\r\n", b"-1\r\n", b"ffffffffffffffffff\r\n", b"5;x=\xff\r\nabcde\r\n"]
        ),
    ),
    max_size=5,
).map(b"".join)


Header = tuple[bytes, bytes]
LIES = st.one_of(st.sampled_from([b"-1", b"+5", b" 5", b"5 5", b"0x10", b"\xb2"]), st.binary(max_size=8))
BAD_CODINGS = st.sampled_from([b"chunked", b"gzip, chunked", b"chunked, x"])


def _length(n: int) -> Header:
    return b"Content-Length", str(n).encode("ascii")


def _framings(body: bytes) -> dict[str, st.SearchStrategy[tuple[list[Header], bytes]]]:
    """Each way to frame ``body``: the Content-Length or Transfer-Encoding headers, and the
    body as it is then sent."""
    return {
        "exact": st.just(([_length(len(body))], body)),
        "short": st.just(([_length(len(body) // 2)], body)),
        "huge": st.integers(10**9, 10**20).map(lambda n: ([_length(n)], body)),
        "chunked": GOOD_CHUNKS.map(lambda chunks: ([(b"Transfer-Encoding", b"chunked")], chunks)),
        "lying": LIES.map(lambda lie: ([(b"Content-Length", lie)], body)),
        "bad chunks": st.tuples(BAD_CODINGS, BAD_CHUNKS).map(
            lambda t: ([(b"Transfer-Encoding", t[0])], t[1])
        ),
        "both": st.just(([_length(len(body)), (b"Transfer-Encoding", b"chunked")], body)),
        "none": st.just(([], body)),
    }


def _framed(draw: st.DrawFn, ways: list[str]) -> tuple[list[Header], bytes]:
    return draw(_framings(draw(PAYLOADS))[draw(st.sampled_from(ways))])


@st.composite
def raw_requests(draw: st.DrawFn) -> RawRequest:
    """A request with no valid token whose every part may be hostile, its framing too (the
    relay refuses it before it reads a body, so a body that never ends is no reason to wait)."""
    headers = draw(st.lists(st.tuples(RAW_HEADER_NAMES, RAW_HEADER_VALUES), max_size=3))
    if draw(st.sampled_from([False, False, True])):
        headers.append((draw(ODD_HEADER_NAMES), draw(RAW_HEADER_VALUES)))
    if draw(st.booleans()):
        token = st.one_of(st.binary(max_size=80).map(lambda raw: raw.hex().encode("ascii")), OBS_TEXT)
        headers.append((b"Authorization", b"Enclave-Upload " + draw(token)))
    if draw(st.booleans()):
        headers.append((b"Content-Encoding", draw(ENCODINGS)))
    framing, body = _framed(
        draw, ["exact", "short", "huge", "chunked", "lying", "bad chunks", "both", "none"]
    )
    line = draw(st.one_of(GOOD_LINES, RAW_LINES))
    return RawRequest(line, tuple(headers), tuple(framing), body, authorised=False)


@st.composite
def raw_uploads(draw: st.DrawFn) -> RawRequest:
    """An upload with a valid token, so the relay reads its body: hostile expiry, encoding,
    body and headers, framed so that the whole body is there (or more than the relay takes)."""
    headers = draw(st.lists(st.tuples(RAW_HEADER_NAMES, RAW_HEADER_VALUES), max_size=2))
    if draw(st.sampled_from([True, True, False])):
        headers.append((b"Enclave-Expires-At", draw(st.one_of(EXPIRIES, SOON))))
    if draw(st.sampled_from([True, True, True, False])):
        headers.append((b"Content-Encoding", draw(st.one_of(DECODED, ENCODINGS))))
    framing, body = _framed(draw, ["exact", "short", "huge", "chunked"])
    line = draw(st.sampled_from([b"POST /v1/attachments HTTP/1.1", b"POST /v1/attachments HTTP/1.0"]))
    return RawRequest(line, tuple(headers), tuple(framing), body, authorised=True)


@pytest.fixture(scope="module")
def upload_token(enrolled: TestDevice) -> bytes:
    return enrolled.upload_token


@FUZZ
@given(request=raw_requests())
def test_raw_http_requests_over_tls(
    fuzzed: FuzzedRelay, upload_token: bytes, honest_after: None, request: RawRequest
) -> None:
    """Test that malformed HTTP written straight on a TLS stream gets an answer below 500 (or a
    hang-up), and no traceback."""
    since = fuzzed.mark()
    status = fuzzed.loop.run_until_complete(raw_https(fuzzed.relay, request.render(upload_token)))
    assert status < 500
    fuzzed.assert_clean(since)


@FUZZ
@given(request=raw_uploads())
def test_raw_uploads_with_a_valid_token(
    fuzzed: FuzzedRelay, upload_token: bytes, honest_after: None, request: RawRequest
) -> None:
    """Test that an authorised upload with a hostile expiry, encoding or body gets an answer below
    500, and no traceback."""
    since = fuzzed.mark()
    status = fuzzed.loop.run_until_complete(raw_https(fuzzed.relay, request.render(upload_token)))
    assert status < 500
    fuzzed.assert_clean(since)


# The TLS port before any handshake.


@pytest.fixture(scope="module")
def hello(fuzzed: FuzzedRelay) -> bytes:
    return client_hello(fuzzed.relay.ssl_context())


@st.composite
def handshakes(draw: st.DrawFn, hello: bytes) -> bytes:
    """Bytes where a ClientHello belongs: random, a real one cut short or with bytes changed,
    garbage before a real one, plain HTTP, a TLS record claiming to be huge."""
    kind = draw(st.sampled_from(["random", "cut", "changed", "prefixed", "http", "record"]))
    if kind == "random":
        return draw(st.binary(min_size=1, max_size=600))
    if kind == "cut":
        return hello[: draw(st.integers(1, len(hello) - 1))]
    if kind == "changed":
        changed = bytearray(hello)
        for at, value in draw(
            st.lists(st.tuples(st.integers(0, len(hello) - 1), st.integers(0, 255)), max_size=6)
        ):
            changed[at] = value
        return bytes(changed)
    if kind == "prefixed":
        return draw(st.binary(min_size=1, max_size=40)) + hello
    if kind == "http":
        return b"GET /health HTTP/1.1\r\nHost: relay\r\n\r\n"
    return b"\x16\x03\x01" + draw(st.binary(min_size=2, max_size=2)) + draw(st.binary(max_size=100))


@FUZZ
@given(data=st.data())
def test_garbage_on_the_tls_port(
    fuzzed: FuzzedRelay, hello: bytes, honest_after: None, data: st.DataObject
) -> None:
    """Test that bytes other than a good ClientHello on the TLS port end that connection only,
    with nothing logged but a line about a bad request."""
    since = fuzzed.mark()
    fuzzed.run(raw_tcp(fuzzed.relay, data.draw(handshakes(hello))))
    fuzzed.assert_clean(since)
