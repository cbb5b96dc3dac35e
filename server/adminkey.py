"""Who acts in ``enclave-admin``: an admin's own key, which signs each change the admin makes
into the key log (docs/PROTOCOL.md section 19.2, kind 3), so the log says which admin acted
and nobody else, the relay's operator included, can write an entry in that admin's name.

The key is a sealed key file of role ADMIN (``enclave-admin admin init``, app/provisioning/
keyfile.py); the organisation config lists each admin's name and public key
(``[transparency] admins``), and every reader of the log checks an admin entry against that
list. The tool checks it too where it can: with a config published on the relay, an admin
key or name it does not list is refused before anything changes. Before the first config
is published (a new relay) the entry is written all the same, and readers flag it if the
config they trust does not list it.

This module opens key files and reads the published config, as server/orgadmin.py does:
pyproject's import contract allows both to use ``app.provisioning``; no relay module
imports either.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from app.base.errors import EnclaveError
from app.protocol.logentry import MAX_ADMIN_NAME_BYTES, AdminAction
from app.provisioning.config import OrgConfig, untrusted_config
from app.provisioning.keyfile import Role, SigningKey, open_key_file, untrusted_public_key
from server.orgadmin import MAX_KEY_FILE_BYTES, passphrase

KEY_VARIABLE = "ENCLAVE_ADMIN_KEY"
NAME_VARIABLE = "ENCLAVE_ADMIN_NAME"
PASSPHRASE_VARIABLE = "ENCLAVE_ADMIN_PASSPHRASE_FILE"  # noqa: S105 - a variable's name


class AdminKeyError(EnclaveError):
    """No admin key was given, it does not open, or the published config does not list it."""


@dataclass(frozen=True, slots=True)
class ActingAdmin:
    name: str
    key: SigningKey

    def entry(self, action: str, details: Mapping[str, object]) -> bytes:
        """The key log entry of ``action`` by this admin, signed now."""
        return AdminAction.sign(
            at=int(time.time()),
            admin=self.name,
            admin_public=self.key.public_key,
            admin_secret=self.key.secret_key,
            action=action,
            details=json.dumps(details, sort_keys=True, ensure_ascii=False),
        ).encode()


def acting_admin(
    key_path: Path | None, name: str | None, passphrase_path: Path | None, environ: Mapping[str, str]
) -> ActingAdmin:
    """The admin whose key file (``--admin-key``, else ``$ENCLAVE_ADMIN_KEY``) opens with the
    passphrase (``--admin-passphrase-file``, else ``$ENCLAVE_ADMIN_PASSPHRASE_FILE``, else
    asked at the terminal), under the name the config lists it by (``--admin-name``, else
    ``$ENCLAVE_ADMIN_NAME``)."""
    key_path = key_path or _path(environ.get(KEY_VARIABLE))
    name = name or environ.get(NAME_VARIABLE)
    if key_path is None or not name:
        raise AdminKeyError(
            "every change is signed with the acting admin's own key: give --admin-key FILE and"
            f" --admin-name NAME (or set ${KEY_VARIABLE} and ${NAME_VARIABLE}); enclave-admin admin"
            " init makes the key"
        )
    if len(name.encode("utf-8", errors="replace")) > MAX_ADMIN_NAME_BYTES:
        raise AdminKeyError(f"an admin's name is at most {MAX_ADMIN_NAME_BYTES} bytes in UTF-8")
    try:
        sealed = key_path.read_bytes()[:MAX_KEY_FILE_BYTES]
    except OSError as e:
        raise AdminKeyError(f"cannot read the admin key {key_path}: {e.strerror}") from e
    untrusted_public_key(sealed, role=Role.ADMIN, source=str(key_path))  # a wrong file before a passphrase
    secret = passphrase(passphrase_path or _path(environ.get(PASSPHRASE_VARIABLE)), "admin", confirm=False)
    return ActingAdmin(name, open_key_file(sealed, secret, role=Role.ADMIN, source=str(key_path)))


def check_listed(admin: ActingAdmin, published: Path) -> None:
    """Refuse an admin the config published on the relay (at ``published``) does not list by this
    name and key; with no config published yet, nothing is checked."""
    config = published_config(published)
    if config is None:
        return
    if (admin.name, admin.key.public_key) not in {(a.name, a.key) for a in config.admins}:
        raise AdminKeyError(
            f"the config published on this relay (version {config.version}) does not list the admin"
            f" {admin.name!r} with the key {admin.key.public_key.hex()[:16]}…; nothing was changed"
            " (add the admin to [transparency] admins, sign and publish it first)"
        )


def published_config(published: Path) -> OrgConfig | None:
    """The config published on the relay (its signature was checked when it was published), or None."""
    try:
        return untrusted_config(published.read_bytes(), source=str(published))
    except FileNotFoundError:
        return None


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None
