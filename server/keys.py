"""The relay's own keys, made on first start and kept in the data folder (mode 0600).

- ``tls.key`` / ``tls.crt``: a self-signed ECDSA P-256 certificate (app/base/tlsfiles.py,
  shared with the enrolment authority). Clients trust it by the SHA-256 pin of its public
  key, which the provisioning config carries, not by a certificate authority. The pin is
  printed on first start.
- ``upload.key``: 32 random bytes from which the key of attachment upload tokens is derived.
  It is the relay's only secret besides its TLS key, and nothing a client checks is signed
  with it: device certificates come from the enrolment authority (docs/ADMIN.md §10). A
  ``signing.key`` left by a relay from before that is read by nothing; delete it.
- ``log.key``: the 32-byte Ed25519 seed of the key that signs the heads of the key log this
  relay keeps (server/keylog.py); its public half is printed at every start, for the config's
  ``[transparency] log_key``. It vouches for no binding (each entry carries the authority's
  certificate): whoever holds it can sign a head of a rewritten or forked log, and readers
  who compare heads catch that (docs/PROTOCOL.md, "Key log").
- ``log.pub``: that public half in 64 hex digits and a newline (mode 0644), written at every
  start where it is missing or is not ``log.key``'s, so that ``enclave-admin`` and the local
  workspace check a config's ``log_key`` against it without reading the secret seed.

Several relay processes sharing one PostgreSQL database must share these files too.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from pathlib import Path

from nacl.utils import random

from app.base.tlsfiles import load_or_create_tls, write_public, write_secret
from app.crypto.primitives import ed25519_keypair_from_seed
from server.config import ConfigError

UPLOAD_KEY_FILE = "upload.key"
LOG_KEY_FILE = "log.key"
LOG_PUBLIC_FILE = "log.pub"
UPLOAD_TOKEN_KEY_LABEL = b"enclave:v1:upload-token-key"


@dataclass(frozen=True)
class RelayKeys:
    tls_key_path: Path
    tls_cert_path: Path
    pin: str
    upload_token_key: bytes = field(repr=False)
    log_public: bytes
    log_secret: bytes = field(repr=False)
    """The log key as libsodium holds it (64 bytes, seed and public key)."""
    created: bool
    """Whether this start made the keys (the pin is then printed for the admin)."""


def load_or_create_keys(data_dir: Path, host: str) -> RelayKeys:
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    tls = load_or_create_tls(data_dir, host, "Enclave relay")
    created = tls.created
    seeds = {}
    for name in (UPLOAD_KEY_FILE, LOG_KEY_FILE):
        path = data_dir / name
        if not path.exists():
            write_secret(path, random(32))
            created = True
        seeds[name] = path.read_bytes()
        if len(seeds[name]) != 32:
            raise ConfigError(f"{path} is damaged (not 32 bytes); restore it from a backup")
    upload_token_key = hmac.digest(seeds[UPLOAD_KEY_FILE], UPLOAD_TOKEN_KEY_LABEL, "sha256")
    log_public, log_secret = ed25519_keypair_from_seed(seed=seeds[LOG_KEY_FILE])
    if log_public_key(data_dir) != log_public:
        write_public(data_dir / LOG_PUBLIC_FILE, log_public.hex().encode("ascii") + b"\n")
    return RelayKeys(tls.key_path, tls.cert_path, tls.pin, upload_token_key, log_public, log_secret, created)


def log_public_key(data_dir: Path) -> bytes | None:
    """The log key written in ``log.pub`` in ``data_dir``; None if there is none or it is not a key
    (a relay that never started there, or one from before ``log.pub``, which writes it next start)."""
    try:
        written = bytes.fromhex((data_dir / LOG_PUBLIC_FILE).read_text(encoding="ascii").strip())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return written if len(written) == 32 else None
