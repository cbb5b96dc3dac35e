"""What the authority checks before it signs: the certify and renew requests, sans-I/O.

Bytes in (an untrusted request body), a certificate's bytes out, or a typed refusal whose
``status`` the HTTP face answers with. A refusal changes nothing: the only write is the
one transaction that spends a code and records its device (``AuthorityStore.spend_and_bind``).

An unauthenticated caller learns only that its code was refused, never whether the code
is unknown, spent, expired or for another account, nor whether the account's device is
bound, until it has proved it holds a valid code for that account.
"""

from __future__ import annotations

from collections.abc import Callable

from app.base.errors import CertificateError, EnclaveError, InvalidSignatureError, RemoteProtocolError
from app.crypto.certificate import DeviceCertificate
from app.crypto.keys import IdentityKeyPair
from app.protocol.authority import CertifyRequest, RenewRequest
from authority.store import AuthorityStore, Binding

TIMESTAMP_SKEW_SECONDS = 300
"""How far a renew request's timestamp may be from the authority's clock."""


class Refusal(EnclaveError):
    """A request the authority does not grant; ``status`` is the HTTP status for it."""

    status = 403


class MalformedRequest(Refusal):
    status = 400


class CodeRefused(Refusal):
    """Unknown, spent, expired, for another account, or a wrong proof: deliberately one answer."""

    status = 403


class BindingConflict(Refusal):
    """The account's device id is bound to another identity key, or is revoked."""

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
        lifetime_seconds: int,
        grace_seconds: int,
    ) -> None:
        self._issuer = issuer
        self._store = store
        self._clock = clock
        self._lifetime = lifetime_seconds
        self._grace = grace_seconds

    def _issue(self, account_id: str, device_id: int, identity_key: bytes, now: int) -> bytes:
        return DeviceCertificate.issue(
            self._issuer,
            account_id=account_id,
            device_id=device_id,
            identity_key=identity_key,
            expires_at=now + self._lifetime,
        ).encode()

    def certify(self, untrusted_body: bytes) -> bytes:
        """A certificate for the request's device, or a ``Refusal``."""
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
            or code.account_id != request.account_id
            or not request.mac_valid(code.code_key)
        ):
            raise CodeRefused("the enrolment code was refused; ask your admin for a new one")
        existing = self._store.device(request.account_id, request.device_id)
        if existing is not None and (existing.identity_key != request.identity_key or existing.revoked):
            raise BindingConflict(
                f"device {request.device_id} of {request.account_id} is bound to another identity key"
                " or revoked; nothing was changed"
            )
        outcome = self._store.spend_and_bind(
            code_id=request.code_id,
            account_id=request.account_id,
            device_id=request.device_id,
            identity_key=request.identity_key,
            now=now,
        )
        if outcome is Binding.CODE_GONE:
            raise CodeRefused("the enrolment code was refused; ask your admin for a new one")
        if outcome is Binding.CONFLICT:
            raise BindingConflict(f"device {request.device_id} of {request.account_id} is bound already")
        return self._issue(request.account_id, request.device_id, request.identity_key, now)

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
        return self._issue(certificate.account_id, certificate.device_id, certificate.identity_key, now)
