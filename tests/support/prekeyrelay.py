"""An in-memory stand-in for the relay's prekey uploads, for unit tests of ``PreKeys``.

Like ``tests.support.transport``'s stand-ins it is a real object keeping the promise
``PreKeys`` relies on of ``RelayLink.call`` (an answer, ``RelayRefusedError`` for any
status but OK, ``OfflineError`` when not connected), not a mock. It answers
``UPLOAD_PREKEYS`` as the relay does, checking a signed prekey's signature against the
device's identity key, and keeps what it accepted; it can be offline, refuse, or hold
its answers until the test lets them go. The relay itself is tested through a real
``RelayProcess`` (tests/services/test_prekeys.py has one such test).
"""

from __future__ import annotations

import asyncio

from app.base.errors import OfflineError, RelayRefusedError
from app.crypto.keys import PreKeyBundle
from app.protocol.frames import Count, FrameType, Response, SignedPreKeyUpload, Status, UploadPreKeys


class InMemoryPreKeyRelay:
    """The relay's side of ``UPLOAD_PREKEYS`` for one device with ``identity_key``."""

    def __init__(self, identity_key: bytes, *, online: bool = True) -> None:
        self.identity_key = identity_key
        self.online = online
        self.refusal: Status | None = None
        """Answer uploads with this status (not OK) instead of accepting them."""
        self.asked = 0
        """Uploads asked for, accepted or not."""
        self.signed: list[SignedPreKeyUpload] = []
        """The signed prekeys accepted, in order: the last is what the relay hands out."""
        self._open = asyncio.Event()
        self._open.set()

    def hold(self) -> None:
        """Keep the next answers until ``release``."""
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    async def call(self, frame_type: FrameType, body: bytes) -> Response:
        if not self.online or frame_type != FrameType.UPLOAD_PREKEYS:
            raise OfflineError("the in-memory relay is offline")
        request = UploadPreKeys.parse(body)
        self.asked += 1
        await self._open.wait()
        if self.refusal is not None:
            raise RelayRefusedError(self.refusal.name, "refused by the test")
        spk = request.signed_prekey
        if spk is not None:
            PreKeyBundle(self.identity_key, spk.key_id, spk.public, spk.signature).verify()
            self.signed.append(spk)
        return Response(Status.OK, "", Count(len(request.one_time_prekeys)).encode())
