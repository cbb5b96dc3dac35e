"""The detached signature of an organisation config (``CONFIG.sig``): its format, making it,
checking it.

The signature is Ed25519 over ``SIGN_CONTEXT_ORG_CONFIG || the config file's exact bytes``:
the bytes on disk, not a re-encoding of what they parse to, so what the admin reviewed is
what was signed and no TOML library's quirks stand between them. The file names the key
that made it, so a config of another organisation is told apart from a damaged one
without parsing the unsigned TOML first. docs/PROTOCOL.md, "Organisation config", gives
the bytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.base.errors import InvalidSignatureError
from app.base.limits import KEY_BYTES, SIGNATURE_BYTES
from app.crypto.primitives import SIGN_CONTEXT_ORG_CONFIG, ed25519_sign, ed25519_verify
from app.provisioning.errors import BadSignatureError

SIGNATURE_FORMAT = 1
SIGNATURE_SUFFIX = ".sig"
_FILE = re.compile(
    rb"enclave-config-signature (\d+)\nroot ([0-9a-f]{64})\nsignature ([0-9a-f]{128})\n", re.ASCII
)
MAX_SIGNATURE_FILE_BYTES = 256


@dataclass(frozen=True, slots=True)
class ConfigSignature:
    root_key: bytes
    """The public key that made the signature (the organisation's root, if it is genuine)."""
    signature: bytes

    def encode(self) -> bytes:
        return (
            f"enclave-config-signature {SIGNATURE_FORMAT}\n"
            f"root {self.root_key.hex()}\n"
            f"signature {self.signature.hex()}\n"
        ).encode("ascii")


def untrusted_signature(untrusted: bytes, *, source: str) -> ConfigSignature:
    """The signature file's contents, or ``BadSignatureError`` naming ``source``."""
    if len(untrusted) > MAX_SIGNATURE_FILE_BYTES:
        raise BadSignatureError(f"{source} is not an Enclave config signature (too long)")
    match = _FILE.fullmatch(untrusted)
    if match is None:
        raise BadSignatureError(f"{source} is not an Enclave config signature")
    if int(match.group(1)) != SIGNATURE_FORMAT:
        raise BadSignatureError(
            f"{source} has signature format {int(match.group(1))}; this Enclave reads {SIGNATURE_FORMAT}"
        )
    return ConfigSignature(bytes.fromhex(match.group(2).decode()), bytes.fromhex(match.group(3).decode()))


def sign_config(config: bytes, *, root_public: bytes, root_secret: bytes) -> ConfigSignature:
    """Sign a config's exact bytes with the root key (libsodium's 64-byte secret key)."""
    if len(root_public) != KEY_BYTES:
        raise ValueError("the root public key must be 32 bytes")
    signature = ed25519_sign(secret_key=root_secret, context=SIGN_CONTEXT_ORG_CONFIG, message=config)
    return ConfigSignature(root_public, signature)


def verify_config(config: bytes, signature: ConfigSignature, *, source: str) -> None:
    """Raise ``BadSignatureError`` unless ``signature`` holds over ``config``'s exact bytes."""
    if len(signature.signature) != SIGNATURE_BYTES:
        raise BadSignatureError(f"the signature of {source} has the wrong length")
    try:
        ed25519_verify(
            public_key=signature.root_key,
            context=SIGN_CONTEXT_ORG_CONFIG,
            message=config,
            signature=signature.signature,
        )
    except InvalidSignatureError as e:
        raise BadSignatureError(
            f"the signature of {source} does not verify: the file was changed after it was signed, "
            "or the signature belongs to another file"
        ) from e
