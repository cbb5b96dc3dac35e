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


class UnloggedKeyError(EnclaveError):
    """A colleague's device presented a key the organisation's key log does not hold (or holds
    as revoked): whoever registered it did so without the log seeing it, so it is not used."""

    def __init__(self, account_id: str, device_id: int) -> None:
        super().__init__(
            f"{account_id}'s device {device_id} is not in the organisation's key log, so its key was"
            " refused: tell security"
        )
        self.account_id = account_id
        self.device_id = device_id


class LogForkedError(EnclaveError):
    """The organisation's key log showed two histories that cannot both be true: sending stops
    until security has looked at it (this device kept both heads as evidence)."""

    def __init__(self, reason: str) -> None:
        super().__init__(
            "sending is stopped: the organisation's key log was rewritten or shows different people"
            f" different logs ({reason}); tell security"
        )
        self.reason = reason


class SecretChatError(PolicyError):
    """Secret chat messages cannot be forwarded, exported or saved."""


class GroupError(EnclaveError):
    """A group change this device's own rules would ignore (not an admin, the last admin leaving,
    not a member), or a group this device does not hold; nothing was sent."""


class NoDeviceError(EnclaveError):
    """The colleague has no active device, so nothing can be encrypted for them."""


class FileAccessError(EnclaveError):
    """A file to send cannot be read, or a file cannot be saved where asked (missing, a folder,
    not allowed)."""


class PolicyRefusedError(PolicyError):
    """The organisation's policy forbids this action; ``key`` names the rule, the message what it allows.

    Raised before anything is stored, sealed or sent, so a refused call changes nothing.
    """

    def __init__(self, key: str, allowed: str, refused: str) -> None:
        super().__init__(f"refused by the policy's {key}: {allowed}; {refused}")
        self.key = key


class TimerNotAllowedError(PolicyRefusedError):
    """A disappearing timer outside the policy's ``timer_minimum_seconds..timer_maximum_seconds``."""


class DirectChatNotAllowedError(PolicyRefusedError):
    """The policy allows secret chats only (``secret_chats_only``)."""


class FileNotAllowedError(PolicyRefusedError):
    """Files are not allowed, or this one is too large or of a type not permitted."""


class DirectoryNotAllowedError(PolicyRefusedError):
    """The policy does not allow looking colleagues up in the directory; local contacts still work."""


class VerificationRequiredError(PolicyRefusedError):
    """The conversation's label sends only to verified keys, and a key of the colleague is not verified:
    compare safety numbers with them (in person or by phone) and mark the key verified first."""

    def __init__(self, key: str, allowed: str, refused: str, *, account_id: str) -> None:
        super().__init__(key, allowed, refused)
        self.account_id = account_id


class ProfileProtectionError(PolicyRefusedError):
    """A new profile must be protected by a passphrase (not the keystore), or a longer one."""


class AuthorityUnknownError(EnclaveError):
    """No organisation config is in force, so this device knows no enrolment authority: it can
    neither enrol nor check a certificate. Install or import the organisation's config."""


class RelayConflictError(PolicyError):
    """The relay given for enrolment is not one the organisation's signed config names.

    Refused rather than overridden: the signed config is what this machine trusts, so an
    address or pin that differs is a stale instruction or someone steering the device to
    their own relay, and saying so beats enrolling quietly somewhere else.
    """
