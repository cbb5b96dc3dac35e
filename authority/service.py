"""What the authority checks before it signs: the certify and renew requests, sans-I/O.

Bytes in (an untrusted request body), a certificate's bytes out, or a typed refusal whose
``status`` the HTTP face answers with. A refusal changes nothing: the only write is the
one transaction that spends a code and records its device (``AuthorityStore.spend_and_add``).

A certify request names only its code and identity key: the account is the code's, and
the device id is drawn here from the injected random source, uniformly in
1..``MAX_DEVICE_ID`` (random, not sequential, so that an id does not tell how many
devices enrolled before it). An unauthenticated caller learns only that its code was
refused, never whether the code is unknown, spent or expired, nor whether its identity
key is recorded, until it has proved it holds a valid code.
"""

from __future__ import annotations

from collections.abc import Callable

from app.base.errors import CertificateError, EnclaveError, InvalidSignatureError, RemoteProtocolError
from app.crypto.certificate import DeviceCertificate
from app.crypto.keys import IdentityKeyPair
from app.crypto.primitives import RandomSource
from app.protocol.authority import CertifyRequest, RenewRequest
from authority.store import MAX_DEVICE_ID, Added, AuthorityStore, Device, NotAdded

TIMESTAMP_SKEW_SECONDS = 300
"""How far a renew request's timestamp may be from the authority's clock."""
CODE_REFUSED = "the enrolment code was refused; ask your admin for a new one"


class Refusal(EnclaveError):
    """A request the authority does not grant; ``status`` is the HTTP status for it."""

    status = 403


class MalformedRequest(Refusal):
    status = 400


class CodeRefused(Refusal):
    """Unknown, spent, expired, or a wrong proof: deliberately one answer."""

    status = 403


class KeyRecorded(Refusal):
    """The identity key is certified already (one identity key is one device)."""

    status = 409


class RenewRefused(Refusal):
    status = 403


class Authority:
    def __init__(
        self,
        *,
        issuer: IdentityKeyPair,
        store: AuthorityStore,
        clock: Callable[[], float],
        random: RandomSource,
        lifetime_seconds: int,
        grace_seconds: int,
    ) -> None:
        self._issuer = issuer
        self._store = store
        self._clock = clock
        self._random = random
        self._lifetime = lifetime_seconds
        self._grace = grace_seconds

    def _issue(self, device: Added | Device, identity_key: bytes, now: int) -> bytes:
        """A certificate naming the account, and the name and department its code was issued with."""
        return DeviceCertificate.issue(
            self._issuer,
            account_id=device.account_id,
            device_id=device.device_id,
            identity_key=identity_key,
            expires_at=now + self._lifetime,
            display_name=device.display_name,
            department=device.department,
        ).encode()

    def certify(self, untrusted_body: bytes) -> bytes:
        """A certificate for a new device of the code's account, or a ``Refusal``."""
        try:
            request = CertifyRequest.parse(untrusted_body)
        except RemoteProtocolError as e:
            raise MalformedRequest(str(e)) from e
        try:
            request.verify_possession()
        except InvalidSignatureError as e:
            raise MalformedRequest("the request is not signed by the identity key it names") from e
        now = int(self._clock())
        code = self._store.code(request.code_id)
        if (
            code is None
            or code.spent_at is not None
            or code.expires_at <= now
            or not request.mac_valid(code.code_key)
        ):
            raise CodeRefused(CODE_REFUSED)
        if self._store.key_recorded(request.identity_key):
            raise KeyRecorded("this identity key is certified already; nothing was changed")
        outcome = self._store.spend_and_add(
            code_id=request.code_id, identity_key=request.identity_key, now=now, new_device_id=self._device_id
        )
        if outcome is NotAdded.CODE_GONE:
            raise CodeRefused(CODE_REFUSED)
        if outcome is NotAdded.KEY_RECORDED:
            raise KeyRecorded("this identity key was certified meanwhile; nothing was changed")
        return self._issue(outcome, request.identity_key, now)

    def _device_id(self) -> int:
        """Uniform in 1..MAX_DEVICE_ID (2^31 - 1): 31 random bits, drawn again for 0."""
        while True:
            device_id = int.from_bytes(self._random(4), "big") & MAX_DEVICE_ID
            if device_id:
                return device_id

    def renew(self, untrusted_body: bytes) -> bytes:
        """A fresh certificate for the device of the request's certificate, or a ``Refusal``."""
        try:
            request = RenewRequest.parse(untrusted_body)
            certificate = DeviceCertificate.parse(request.certificate)
        except RemoteProtocolError as e:
            raise MalformedRequest(str(e)) from e
        now = int(self._clock())
        try:
            certificate.verify(trust_root=self._issuer.public, now=now - self._grace)
        except CertificateError as e:
            raise RenewRefused(
                "the certificate is not this authority's, or expired longer ago than renewal allows"
            ) from e
        device = self._store.device(certificate.account_id, certificate.device_id)
        if device is None or device.revoked or device.identity_key != certificate.identity_key:
            raise RenewRefused("this device is revoked or not recorded; it may not renew")
        if abs(request.timestamp - now) > TIMESTAMP_SKEW_SECONDS:
            raise RenewRefused(
                f"the request's time is more than {TIMESTAMP_SKEW_SECONDS} s from the authority's clock"
            )
        try:
            request.verify(certificate.identity_key)
        except InvalidSignatureError as e:
            raise RenewRefused("the request is not signed by the certificate's identity key") from e
        return self._issue(device, certificate.identity_key, now)
