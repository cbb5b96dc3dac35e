"""Why an organisation config was refused, one type per cause, and the policy's refusals.

Every refusal of a config is a ``ProvisioningError`` whose message names the file and the
cause, so an admin or a user can act on it without a traceback. A refused config changes
nothing: the checks all run before anything is written (``app.provisioning.accept``).
"""

from __future__ import annotations

from app.base.errors import PolicyError, ProvisioningError


class ConfigFileError(ProvisioningError):
    """The config or its signature file cannot be read (missing folder, permissions, too large)."""


class UnsignedConfigError(ProvisioningError):
    """The config has no signature file beside it (``CONFIG.sig``)."""


class BadSignatureError(ProvisioningError):
    """The signature file is malformed, or its signature does not verify over the config's bytes,
    or it was made by a key other than the root key the config names."""


class MalformedConfigError(ProvisioningError):
    """The config is not valid TOML or breaks a rule of the schema; ``key`` and ``line`` say where."""

    def __init__(self, source: str, problem: str, *, key: str = "", line: int | None = None) -> None:
        where = ""
        if key:
            where = f" at {key}" + (f" (line {line})" if line is not None else "")
        elif line is not None:
            where = f" at line {line}"
        super().__init__(f"{source} is malformed{where}: {problem}")
        self.source = source
        self.problem = problem
        self.key = key
        self.line = line


class DowngradedConfigError(ProvisioningError):
    """The config's version is older than one already accepted (no downgrade), or it reuses the
    version in force with other content."""


class ExpiredConfigError(ProvisioningError):
    """The config's ``expires`` time has passed."""


class ForeignConfigError(ProvisioningError):
    """The config is signed by another organisation's root key than the one this profile trusts."""


class OtherRelayConfigError(ForeignConfigError):
    """A first config imported into a profile already enrolled at a relay names none of that
    relay's keys: it is not this device's organisation's config (the user was handed another
    organisation's file), and accepting it would move the device to another relay."""


class MandatoryPolicyError(PolicyError):
    """The user tried to change a policy key that the organisation made mandatory."""


class InvalidPolicyValueError(PolicyError):
    """A policy key the user tried to set does not exist, or the value is not one it allows."""
