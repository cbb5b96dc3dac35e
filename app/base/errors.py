"""Every error Enclave raises on purpose descends from ``EnclaveError``.

The tree says whose fault a failure is, so callers can react without parsing text:

- ``ProtocolError``: bytes that do not follow docs/PROTOCOL.md.
  ``LocalProtocolError`` is our own mistake (we tried to build something invalid);
  ``RemoteProtocolError`` is bytes that came from outside (a peer, the server, a file);
  every strict parser raises it, and only it, for any input it refuses.
- ``CryptoError``: the bytes parsed but do not authenticate, repeat, or break a rule of
  the ratchet; session state that cannot be loaded.
- ``StorageError``, ``ProvisioningError``, ``PolicyError``: the roots for the store, the
  signed organisation config and the policy it carries.

Messages are written for the person who will see them; library exceptions are wrapped
with ``raise ... from e`` so the cause stays in the traceback but never in the UI.
"""

from __future__ import annotations


class EnclaveError(Exception):
    """Root of every error Enclave raises on purpose."""


class ProtocolError(EnclaveError):
    """Bytes that do not follow the wire or state format of docs/PROTOCOL.md."""


class LocalProtocolError(ProtocolError):
    """We were asked to build something the protocol does not allow (a programming error)."""


class RemoteProtocolError(ProtocolError):
    """Bytes from outside are malformed, too large, of an unknown version or have trailing data."""


class UnsupportedVersionError(RemoteProtocolError):
    """The bytes carry a format version this build does not read.

    ``known`` tells whether the version was ever defined (an old one we dropped) or is
    from the future (the sender runs a newer Enclave).
    """

    def __init__(self, what: str, version: int, *, known: bool) -> None:
        self.what = what
        self.version = version
        self.known = known
        hint = "no longer supported" if known else "newer than this Enclave understands; update it"
        super().__init__(f"{what} version {version} is {hint}")


class CryptoError(EnclaveError):
    """A cryptographic check failed or a cryptographic rule was broken."""


class DecryptionError(CryptoError):
    """The message did not authenticate: it was altered, truncated, or not meant for us."""


class DuplicateMessageError(DecryptionError):
    """The message was already decrypted once; its key is gone, so a replay is refused."""


class TooManySkippedMessagesError(DecryptionError):
    """The message claims more missing predecessors than we keep keys for."""


class SignedPreKeyGoneError(DecryptionError):
    """A first message names a signed prekey this device no longer has, or never had.

    Signed prekeys rotate weekly and a retired one is deleted 31 days later
    (docs/PROTOCOL.md, "Signed prekey rotation"): a first message sealed to it that
    arrives after that can no longer be opened. It is dropped like any message that does
    not decrypt; its sender's later messages open once that sender starts a new session.
    """


class EnvelopeIdMismatchError(DecryptionError):
    """An envelope's id is not the one its sender sealed inside it: someone (the relay) put the
    sealed bytes of another envelope under a new id, to have them opened a second time.

    The sealed layer opened, so the sender its certificate names is known and said.
    """

    def __init__(self, account_id: str, device_id: int) -> None:
        super().__init__(
            f"a message from {account_id}'s device {device_id} arrived under another envelope id"
            " than the one it was sealed with (replayed by the relay)"
        )
        self.account_id = account_id
        self.device_id = device_id


class InvalidSignatureError(CryptoError):
    """A signature (signed prekey, device certificate) does not verify."""


class InvalidProofError(CryptoError):
    """An inclusion or consistency proof does not lead to the root it should: the log is not
    what its signed head says."""


class CertificateError(CryptoError):
    """A sender's device certificate is expired, mis-signed or names another key."""


class InvalidKeyError(CryptoError):
    """A public key is malformed or weak (a Diffie-Hellman result of all zeros)."""


class SessionStateError(CryptoError):
    """Saved session state cannot be loaded."""


class UnsupportedStateVersionError(SessionStateError):
    """Saved session state was written by an Enclave whose format this build cannot read."""

    def __init__(self, version: int, *, known: bool) -> None:
        self.version = version
        self.known = known
        hint = "no longer supported" if known else "from a newer Enclave; update it"
        super().__init__(f"session state version {version} is {hint}")


class CorruptStateError(SessionStateError):
    """Saved session state is damaged: its checksum or structure is wrong."""


class StorageError(EnclaveError):
    """The local encrypted store failed."""


class ProvisioningError(EnclaveError):
    """The signed organisation config is missing, unsigned, mis-signed or malformed."""


class PolicyError(EnclaveError):
    """An action is forbidden by the organisation's policy."""


class TransportError(EnclaveError):
    """The relay could not be reached, or the connection to it failed."""


class OfflineError(TransportError):
    """The device is not connected to the relay; what needs it waits until it is."""


class PinMismatchError(TransportError):
    """The relay presented a TLS key other than the pinned one: possibly an interception."""


class RelayRefusedError(TransportError):
    """The relay refused the request or the device (revoked, disabled, code refused); ``status`` says why."""

    def __init__(self, status_name: str, reason: str) -> None:
        super().__init__(f"{status_name}: {reason}" if reason else status_name)
        self.status_name = status_name
        self.reason = reason


class AuthorityRefusedError(TransportError):
    """The enrolment authority refused a certify or renew request; ``status`` is its HTTP status
    (403: a code refused, or a device that may not renew; 409: a key certified already)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"the enrolment authority refused (HTTP {status}): {reason}")
        self.status = status
        self.reason = reason
