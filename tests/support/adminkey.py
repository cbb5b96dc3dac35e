"""The admin who acts in tests: a fixed admin key, sealed at libsodium's minimum Argon2id cost
(the real key-file format, opened by the real ``enclave-admin``, but quick to open: a test
suite runs the tool hundreds of times), written once per test process.

The configs the tests make list this admin (tests/support/deployment.py), so a published
config accepts its actions and a reader of the log finds them by an admin it knows.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import json
import shutil
import tempfile
from pathlib import Path

import nacl.utils

from app.crypto.primitives import ed25519_keypair_from_seed
from app.protocol.logentry import AdminAction
from app.provisioning.keyfile import MINIMUM, Role, seal_key

ADMIN_NAME = "Test Admin"
ADMIN_PASSPHRASE = "test admin passphrase"
ADMIN_SEED = hashlib.sha256(b"enclave test admin").digest()
ADMIN_PUBLIC = ed25519_keypair_from_seed(seed=ADMIN_SEED)[0]


@functools.cache
def admin_files() -> tuple[Path, Path]:
    """The sealed key file and its passphrase file (removed when the process ends)."""
    folder = Path(tempfile.mkdtemp(prefix="enclave-test-admin-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    sealed, _ = seal_key(Role.ADMIN, ADMIN_PASSPHRASE, ADMIN_SEED, random=nacl.utils.random, cost=MINIMUM)
    (folder / "admin.key").write_bytes(sealed)
    (folder / "admin.pass").write_text(ADMIN_PASSPHRASE + "\n", encoding="utf-8")
    return folder / "admin.key", folder / "admin.pass"


def admin_arguments() -> list[str]:
    """``enclave-admin``'s options that make this admin the acting one."""
    key, passphrase = admin_files()
    return ["--admin-key", str(key), "--admin-name", ADMIN_NAME, "--admin-passphrase-file", str(passphrase)]


def signed_action(action: str, details: dict[str, object] | None = None, at: int = 1_700_000_000) -> bytes:
    """A key log entry of ``action`` by this admin, as ``enclave-admin`` signs it (for the store's
    tests, which call the store without the tool)."""
    _, secret = ed25519_keypair_from_seed(seed=ADMIN_SEED)
    return AdminAction.sign(
        at=at,
        admin=ADMIN_NAME,
        admin_public=ADMIN_PUBLIC,
        admin_secret=secret,
        action=action,
        details=json.dumps(details or {}),
    ).encode()
