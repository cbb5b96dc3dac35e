"""The typed refusals of the use cases, each with a message a user can act on."""

from __future__ import annotations

from app.base.errors import EnclaveError, PolicyError


class NotEnrolledError(EnclaveError):
    """This profile has no identity yet: enrol with a code from IT first."""


class AlreadyEnrolledError(EnclaveError):
    """This profile already belongs to an enrolled device."""


class IdentityChangedError(EnclaveError):
    """A contact's key changed; sending in the conversation waits until the user accepts the new key."""

    def __init__(self, account_id: str) -> None:
        super().__init__(
            f"{account_id}'s security key changed: compare safety numbers, then accept the new key to send"
        )
        self.account_id = account_id


class SecretChatError(PolicyError):
    """Secret chat messages cannot be forwarded, exported or saved."""


class NoDeviceError(EnclaveError):
    """The colleague has no active device, so nothing can be encrypted for them."""


class FileAccessError(EnclaveError):
    """A file to send cannot be read, or a file cannot be saved where asked (missing, a folder,
    not allowed)."""
