"""Whether a config may replace the one in force: every refusal, checked before anything is kept.

A profile trusts one organisation: the root key of the first config it accepted, kept in
its encrypted store with the highest version accepted from each origin (the system
location, the user's import). ``check_candidate`` is a pure function of the candidate's
bytes, what the profile remembers and the time; it raises the refusal or returns what to
keep, and the caller writes that in one transaction, so a refused config changes nothing.

The checks, in order (the first that fails names the cause):

1. a signature file exists (``UnsignedConfigError``) and parses (``BadSignatureError``);
2. it was made by the root this profile trusts (``ForeignConfigError``), when it trusts one;
3. it verifies over the config's exact bytes (``BadSignatureError``); only now is the TOML
   parsed (``MalformedConfigError``), and the root key it names must be the signer;
4. it has not expired (``ExpiredConfigError``);
5. its version is not below the highest accepted from its origin, and the same version
   means the same bytes (``DowngradedConfigError``).

The issue date is not compared with the clock: a workstation whose clock is behind would
refuse every fresh config. Expiry bounds how long a config signed long ago stays usable.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from app.provisioning.config import OrgConfig, untrusted_config
from app.provisioning.errors import (
    BadSignatureError,
    DowngradedConfigError,
    ExpiredConfigError,
    ForeignConfigError,
    UnsignedConfigError,
)
from app.provisioning.signature import SIGNATURE_SUFFIX, untrusted_signature, verify_config


class Origin(enum.Enum):
    SYSTEM = "system"
    """The machine's system location, managed by its admins."""
    USER = "user"
    """A config the user imported (or that came later through the relay)."""


@dataclass(frozen=True, slots=True)
class Candidate:
    origin: Origin
    source: str
    """The file it came from, for messages."""
    config: bytes
    signature: bytes | None
    """The signature file's bytes; None if there was none."""


@dataclass(frozen=True, slots=True)
class InForce:
    """What a profile remembers of one origin: the config bytes it accepted last."""

    version: int
    config: bytes


@dataclass(frozen=True, slots=True)
class Accepted:
    candidate: Candidate
    config: OrgConfig
    signature: bytes
    changed: bool
    """False when the candidate is the config already in force (nothing to write)."""


def fingerprint(key: bytes) -> str:
    """A key as people compare it in messages: its first 16 hex digits."""
    return key.hex()[:16]


def check_candidate(
    candidate: Candidate, *, trusted_root: bytes | None, in_force: InForce | None, now: float
) -> Accepted:
    """The candidate, checked (module docstring); raises the ``ProvisioningError`` of the first
    check that fails. ``now`` is unix seconds."""
    source = candidate.source
    if candidate.signature is None:
        raise UnsignedConfigError(
            f"{source} is not signed: there is no {source}{SIGNATURE_SUFFIX} beside it "
            "(enclave-admin config sign makes one)"
        )
    signature = untrusted_signature(candidate.signature, source=source + SIGNATURE_SUFFIX)
    if trusted_root is not None and signature.root_key != trusted_root:
        raise ForeignConfigError(
            f"{source} is signed by another organisation's root key ({fingerprint(signature.root_key)}…); "
            f"this profile belongs to the organisation of root key {fingerprint(trusted_root)}…"
        )
    verify_config(candidate.config, signature, source=source)
    config = untrusted_config(candidate.config, source=source)
    if config.root_key != signature.root_key:
        raise BadSignatureError(
            f"{source} names the root key {fingerprint(config.root_key)}… but was signed by "
            f"{fingerprint(signature.root_key)}…"
        )
    if now >= config.expires.timestamp():
        raise ExpiredConfigError(
            f"{source} (version {config.version}) expired on {config.expires.isoformat()}; "
            "ask your administrator for a current one"
        )
    changed = True
    if in_force is not None:
        if config.version < in_force.version:
            raise DowngradedConfigError(
                f"{source} is version {config.version}, older than version {in_force.version} "
                f"already in force ({candidate.origin.value} config): a config is never downgraded"
            )
        if config.version == in_force.version:
            if candidate.config != in_force.config:
                raise DowngradedConfigError(
                    f"{source} is version {config.version}, the version in force, with other content: "
                    "a changed config needs a higher version"
                )
            changed = False
    return Accepted(candidate, config, candidate.signature, changed)
