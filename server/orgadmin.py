"""``enclave-admin org``, ``config`` and ``enrol``: the organisation's root and enrolment-authority
keys, signing and checking the organisation config, and a user's enrolment code with what the
config says about the relay.

    enclave-admin org init --out DIR [--passphrase-file F] [--authority-passphrase-file F]
    (a passphrase file ``-`` is a line of standard input: the root's first, then the authority's)
    enclave-admin config sign CONFIG --root-key DIR/root/root.key [--passphrase-file F]
    enclave-admin config verify CONFIG [--expect-root HEX]
    enclave-admin admin init --name NAME --out DIR [--passphrase-file F]   (an admin's own key)
    enclave-admin --data DIR enrol ACCOUNT --config CONFIG [--expect-root HEX] [--valid-hours 72]

The org and config commands never touch a relay's data folder, and they are not the relay's: the root
key belongs on an admin's machine, offline if possible, and the authority key apart from
the relay's data (a relay that held either could mint what clients trust, which is the
flaw issue 12 closes). They live beside ``server/admin.py`` only so that admins have one
tool, and they need no ``--data``. They use ``app.provisioning`` (the config parser, the
signature and key-file formats), which pyproject's import contract allows for this module
alone. ``enrol`` is the one that needs ``--data``: it issues the code in the relay's
database (``server/admin.py`` runs it) and prints, for the user, what the signed config
says about the relay, checked first as ``config verify`` checks it.
Exit status: 0 done, 1 refused (a malformed config, a wrong passphrase), 2 usage.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
from pathlib import Path

import nacl.utils

from app.base.errors import EnclaveError
from app.protocol.frames import control_character
from app.protocol.logentry import MAX_ADMIN_NAME_BYTES
from app.provisioning.accept import Candidate, Origin, check_candidate, fingerprint
from app.provisioning.config import OrgConfig, untrusted_config
from app.provisioning.errors import ConfigFileError
from app.provisioning.keyfile import Role, new_key_file, open_key_file, untrusted_public_key
from app.provisioning.locations import read_candidate
from app.provisioning.signature import SIGNATURE_SUFFIX, sign_config
from authority import admin as authority_admin
from authority.admin import MAX_VALID_HOURS
from authority.main import KEY_FILE as AUTHORITY_KEY_FILE
from authority.store import STORE_FILE as AUTHORITY_STORE_FILE
from authority.store import AuthorityStore
from server.store.base import Account

KEY_FOLDERS = {Role.ROOT: "root", Role.AUTHORITY: "authority"}
ADMIN_KEY_FILE = "admin.key"
STDIN = Path("-")
MAX_KEY_FILE_BYTES = 4096


class OrgRefused(EnclaveError):
    """The admin asked for something that cannot be done; the message says why."""


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``org`` and ``config`` on enclave-admin's subcommands; each runs through ``run``."""
    org = commands.add_parser("org", help="the organisation's root and authority keys").add_subparsers(
        dest="action", required=True
    )
    init = org.add_parser("init", help="make the root key and the enrolment-authority key")
    init.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="makes DIR/root and DIR/authority"
    )
    init.add_argument(
        "--passphrase-file", type=Path, default=None, help="the root key's passphrase (first line)"
    )
    init.add_argument(
        "--authority-passphrase-file", type=Path, default=None, help="the authority key's passphrase"
    )
    config = commands.add_parser("config", help="sign and check organisation configs").add_subparsers(
        dest="action", required=True
    )
    sign = config.add_parser("sign", help="write CONFIG.sig with the root key")
    sign.add_argument("config", type=Path)
    sign.add_argument("--root-key", type=Path, required=True, metavar="FILE")
    sign.add_argument("--passphrase-file", type=Path, default=None)
    verify = config.add_parser("verify", help="check a config's signature, schema and expiry")
    verify.add_argument("config", type=Path)
    verify.add_argument(
        "--expect-root", default=None, metavar="HEX", help="the root public key it must be signed by"
    )
    admin = commands.add_parser("admin", help="an admin's own key, which signs that admin's actions")
    admin_init = admin.add_subparsers(dest="action", required=True).add_parser(
        "init", help="make DIR/admin.key (sealed) and DIR/admin.pub, and print the config's line"
    )
    admin_init.add_argument("--name", required=True, help="the name the config lists the admin by")
    admin_init.add_argument("--out", type=Path, required=True, metavar="DIR")
    admin_init.add_argument("--passphrase-file", type=Path, default=None, help="the key's passphrase")
    for parser in (init, sign, verify, admin_init):
        parser.set_defaults(offline=run)
    # enrol works on the relay's data too (it issues the code there), so it runs through
    # enclave-admin's own commands (server/admin.py), using the two functions below.
    enrol = commands.add_parser(
        "enrol", help="issue an enrolment code and print what its user needs, from the signed config"
    )
    enrol.add_argument("account_id")
    enrol.add_argument(
        "--config", type=Path, required=True, help="the signed config the user's machine has (.sig beside it)"
    )
    enrol.add_argument(
        "--authority-data",
        type=Path,
        required=True,
        metavar="DIR",
        help="the enrolment authority's data folder, where the code is issued",
    )
    enrol.add_argument("--expect-root", default=None, metavar="HEX", help="as for config verify")
    enrol.add_argument("--valid-hours", type=int, default=72, help="1 to 720")


def run(args: argparse.Namespace) -> int:
    try:
        offline = {"init": _admin_init if args.group == "admin" else _init, "sign": _sign, "verify": _verify}
        for line in offline[args.action](args):
            print(line)
    except (EnclaveError, OSError) as e:
        print(f"enclave-admin: {e}", file=sys.stderr)
        return 1
    return 0


def passphrase(path: Path | None, what: str, *, confirm: bool) -> str:
    """The passphrase: the first line of ``path``; with ``-``, the next line of standard input (a
    program that keeps it in a keystore hands it over on a pipe, never in a file); with none,
    typed at the terminal."""
    if path == STDIN:
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise OrgRefused(f"no {what} passphrase on standard input")
        return line
    if path is not None:
        lines = path.read_text(encoding="utf-8").splitlines()
        if not lines or not lines[0]:
            raise OrgRefused(f"the passphrase file {path} has an empty first line")
        return lines[0]
    if not sys.stdin.isatty():
        raise OrgRefused(f"give the {what} passphrase with a passphrase file (no terminal to ask on)")
    secret = getpass.getpass(f"Passphrase for the {what} key: ")
    if not secret:
        raise OrgRefused("a passphrase must not be empty")
    if confirm and getpass.getpass("The same passphrase again: ") != secret:
        raise OrgRefused("the two passphrases differ; nothing was made")
    return secret


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` as a new 0600 file (never over an existing one), flushed to disk."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _init(args: argparse.Namespace) -> list[str]:
    out: Path = args.out
    folders = {role: out / name for role, name in KEY_FOLDERS.items()}
    for role, folder in folders.items():
        if (folder / f"{KEY_FOLDERS[role]}.key").exists():
            raise OrgRefused(f"{folder} already holds a key; nothing was made")
    root_secret = passphrase(args.passphrase_file, "organisation root", confirm=True)
    authority_secret = passphrase(args.authority_passphrase_file, "enrolment authority", confirm=True)
    lines = []
    for role, secret in ((Role.ROOT, root_secret), (Role.AUTHORITY, authority_secret)):
        folder, name = folders[role], KEY_FOLDERS[role]
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        data, key = new_key_file(role, secret, random=nacl.utils.random)
        _write_private(folder / f"{name}.key", data)
        (folder / f"{name}.pub").write_text(key.public_key.hex() + "\n", encoding="ascii")
        lines.append(f"{role.describe()} key: {folder / name}.key")
    root_public = untrusted_public_key(
        (folders[Role.ROOT] / "root.key").read_bytes(), role=Role.ROOT, source=""
    )
    authority_public = (folders[Role.AUTHORITY] / "authority.pub").read_text("ascii").strip()
    lines += [
        "for the config:",
        f'  [organisation] root_key = "{root_public.hex()}"',
        f'  [enrolment] authority_key = "{authority_public}"',
        '  [transparency] log_key: the "Relay log key" line enclave-server prints (its log.pub)',
        f"keep {folders[Role.ROOT]} offline, and {folders[Role.AUTHORITY]} apart from the relay's data",
    ]
    return lines


def _admin_init(args: argparse.Namespace) -> list[str]:
    """An admin's key: sealed in DIR/admin.key with the admin's passphrase, public in DIR/admin.pub,
    and the line the config's ``[transparency] admins`` takes to list it."""
    out: Path = args.out
    name: str = args.name
    size = len(name.encode("utf-8", errors="replace"))
    if not 1 <= size <= MAX_ADMIN_NAME_BYTES or control_character(name) is not None:
        raise OrgRefused(
            f"an admin's name is 1 to {MAX_ADMIN_NAME_BYTES} bytes of UTF-8, no control character"
        )
    if (out / ADMIN_KEY_FILE).exists():
        raise OrgRefused(f"{out / ADMIN_KEY_FILE} exists already; nothing was made")
    secret = passphrase(args.passphrase_file, "admin", confirm=True)
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    data, key = new_key_file(Role.ADMIN, secret, random=nacl.utils.random)
    _write_private(out / ADMIN_KEY_FILE, data)
    (out / "admin.pub").write_text(key.public_key.hex() + "\n", encoding="ascii")
    quoted = json.dumps(name, ensure_ascii=False)
    return [
        f"admin key of {name}: {out / ADMIN_KEY_FILE}",
        "for the config, in [transparency]:",
        f'  admins = [{{ name = {quoted}, key = "{key.public_key.hex()}" }}]',
        f"then act with --admin-key {out / ADMIN_KEY_FILE} --admin-name {quoted}"
        " (or set ENCLAVE_ADMIN_KEY and ENCLAVE_ADMIN_NAME)",
    ]


def _sign(args: argparse.Namespace) -> list[str]:
    path: Path = args.config
    try:
        config_bytes = path.read_bytes()
        key_bytes = args.root_key.read_bytes()[:MAX_KEY_FILE_BYTES]
    except OSError as e:
        raise ConfigFileError(f"cannot read {e.filename}: {e.strerror}") from e
    config = untrusted_config(config_bytes, source=str(path))  # never sign what clients would refuse
    public = untrusted_public_key(key_bytes, role=Role.ROOT, source=str(args.root_key))
    if config.root_key != public:
        raise OrgRefused(
            f"{path} names the root key {fingerprint(config.root_key)}…, but {args.root_key} holds "
            f"{fingerprint(public)}…; nothing was signed"
        )
    key = open_key_file(
        key_bytes,
        passphrase(args.passphrase_file, "organisation root", confirm=False),
        role=Role.ROOT,
        source=str(args.root_key),
    )
    signature = sign_config(config_bytes, root_public=key.public_key, root_secret=key.secret_key)
    target = path.with_name(path.name + SIGNATURE_SUFFIX)
    temporary = target.with_name(target.name + ".tmp")
    temporary.unlink(missing_ok=True)
    _write_private(temporary, signature.encode())
    temporary.chmod(0o644)  # a signature is public: clients read it beside the config
    temporary.replace(target)
    return [f"signed {path} (version {config.version}): {target}"]


def copy_signed(config: Path, target: Path) -> None:
    """Copy ``config`` and its signature to ``target`` and ``target.sig`` (0644), each replacing the
    old at once; the signature last, so a reader between the two sees a mismatch it refuses
    and fetches again, never a config with a signature it does not verify under."""
    for source, destination in (
        (config, target),
        (config.with_name(config.name + SIGNATURE_SUFFIX), target.with_name(target.name + SIGNATURE_SUFFIX)),
    ):
        temporary = destination.with_name(destination.name + ".tmp")
        temporary.unlink(missing_ok=True)
        _write_private(temporary, source.read_bytes())
        temporary.chmod(0o644)
        temporary.replace(destination)


def checked_config(path: Path, expect_root: str | None) -> OrgConfig:
    """The config at ``path`` once its signature, schema and expiry are checked as a new client
    checks them, and (with ``expect_root``, 64 hex digits) that it is signed by that root."""
    candidate: Candidate | None = read_candidate(path, Origin.SYSTEM)
    if candidate is None:
        raise ConfigFileError(f"there is no config at {path}")
    expected = None
    if expect_root is not None:
        try:
            expected = bytes.fromhex(expect_root)
        except ValueError:
            expected = b""
        if len(expected) != 32:
            raise OrgRefused("--expect-root takes a root public key in 64 hex digits (root.pub)")
    accepted = check_candidate(candidate, trusted_root=None, in_force=None, now=time.time())
    if expected is not None and accepted.config.root_key != expected:
        raise OrgRefused(
            f"{path} is signed by the root key {fingerprint(accepted.config.root_key)}…, "
            f"not by {fingerprint(expected)}… (--expect-root): another organisation's config"
        )
    return accepted.config


def _verify(args: argparse.Namespace) -> list[str]:
    path: Path = args.config
    config = checked_config(path, args.expect_root)
    return [
        f"{path}: valid, signed by its organisation's root",
        f"organisation: {config.organisation}",
        f"root key: {config.root_key.hex()}",
        f"version: {config.version}",
        f"issued: {config.issued.isoformat()}",
        f"expires: {config.expires.isoformat()}",
        f"relays: {', '.join(config.relay_urls)}",
        f"pins: {', '.join(config.relay_pins)}",
        f"enrolment authority: {config.authority_key.hex()}",
        f"log key: {config.log_key.hex()}",
        f"admins: {', '.join(f'{admin.name} ({admin.key.hex()})' for admin in config.admins) or 'none'}",
        f"mandatory: {', '.join(config.mandatory) or 'none'}",
        f"recommended: {', '.join(config.recommended) or 'none'}",
    ]


def issue_authority_code(
    folder: Path, account: Account, authority_key: bytes, valid_hours: int
) -> tuple[str, int]:
    """A new code for ``account`` in the authority's store in ``folder``, and when it expires; the
    device it enrols is certified under the account's name and department.

    Refused, issuing nothing, if the folder holds no authority database, or a sealed key that
    is not ``authority_key`` (the config's): that authority's certificates would be refused.
    """
    if not (folder / AUTHORITY_STORE_FILE).exists():
        raise OrgRefused(f"no authority database in {folder}; start enclave-authority there first")
    sealed = folder / AUTHORITY_KEY_FILE
    if sealed.exists():
        held = untrusted_public_key(
            sealed.read_bytes()[:MAX_KEY_FILE_BYTES], role=Role.AUTHORITY, source=str(sealed)
        )
        if held != authority_key:
            raise OrgRefused(
                f"{sealed} holds the authority key {fingerprint(held)}…, not the config's "
                f"{fingerprint(authority_key)}…; no code was issued"
            )
    if not 1 <= valid_hours <= MAX_VALID_HOURS:
        raise OrgRefused(f"--valid-hours must be between 1 and {MAX_VALID_HOURS}")
    now = int(time.time())
    store = AuthorityStore.open(folder)
    try:
        code = authority_admin.issue_code(
            store,
            account.account_id,
            valid_hours,
            now=now,
            display_name=account.display_name,
            department=account.department,
        )
    finally:
        store.close()
    return code, now + valid_hours * 3600


def enrolment_lines(config: OrgConfig, config_path: Path, account_id: str, code: str) -> list[str]:
    """What the user of a new code needs, one ``key: value`` line each: the code, where the relay
    is and its pins (from the signed config, so the user types no address or pin), how the
    config reaches their machine, and the one command to run."""
    return [
        f"account: {account_id}",
        f"code: {code}",
        f"organisation: {config.organisation}",
        f"relay: {' '.join(config.relay_urls)}",
        f"pins: {' '.join(config.relay_pins)}",
        f"config: {config_path} (version {config.version}) and {config_path.name}{SIGNATURE_SUFFIX}",
        "install: both files in the system location (/etc/enclave/, %ProgramData%\\Enclave\\, "
        "/Library/Application Support/Enclave/), or import them: "
        f"enclave-cli policy --import {config_path.name}",
        f"run: enclave-cli enrol --code {code}",
    ]
