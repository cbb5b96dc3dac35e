"""Attachment upload tokens: stateless, so any relay process behind a balancer accepts them.

``token = u32 device_id || u64 expires_at || HMAC-SHA256(upload_token_key, those 12 bytes)``.
"""

from __future__ import annotations

import hmac
import struct

_BODY = struct.Struct(">IQ")
TOKEN_BYTES = _BODY.size + 32


def issue_upload_token(key: bytes, device_id: int, expires_at: int) -> bytes:
    body = _BODY.pack(device_id, expires_at)
    return body + hmac.digest(key, body, "sha256")


def check_upload_token(key: bytes, untrusted_token: bytes, now: int) -> int | None:
    """The device id the token was issued to, or None if it is forged, damaged or expired."""
    if len(untrusted_token) != TOKEN_BYTES:
        return None
    body, mac = untrusted_token[: _BODY.size], untrusted_token[_BODY.size :]
    if not hmac.compare_digest(mac, hmac.digest(key, body, "sha256")):
        return None
    device_id, expires_at = _BODY.unpack(body)
    return device_id if now < expires_at else None
