"""``enclave-admin``: the IT admin's tool. It works on the relay's data folder (its config
and database), never through the public port, and signs every change it makes with the
acting admin's own key into the key log (server/adminkey.py), in the transaction that makes
the change.

    enclave-admin --data DIR account create ID --name NAME [--department DEPT]
    enclave-admin --data DIR account disable|enable|revoke ID
    enclave-admin --data DIR enrol ID --config CONFIG --authority-data DIR2   (a code and what the user needs)
    enclave-admin --data DIR publish CONFIG [--expect-root HEX]   (devices fetch it from the relay)
    enclave-admin --data DIR device list [--account ID]
    enclave-admin --data DIR device revoke DEVICE_ID
    enclave-admin --data DIR stats
    enclave-admin --data DIR log show | log audit [--head FILE] | log verify --head FILE
        [--config CONFIG] [--log-key HEX] [--authority-key HEX]
    (a change takes --admin-key FILE --admin-name NAME [--admin-passphrase-file F])
    enclave-admin --version | --help
    enclave-admin org init | config sign | config verify   (no --data: server/orgadmin.py)
    enclave-admin authority code|revoke ... --authority-data DIR   (authority/admin.py)

Exit status: 0 done; 1 refused (unknown account, broken log, an admin key that does not
open...) or failed (the database); 2 bad usage (argparse's) or a bad config (``server.toml``).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from app.base.accountid import AccountIdError, canonical_account_id, skeleton
from app.base.errors import EnclaveError
from app.base.limits import MAX_ACCOUNT_ID_BYTES
from app.base.tools import EXIT_DONE, EXIT_REFUSED, EXIT_USAGE, ToolParser
from app.crypto.primitives import ed25519_keypair_from_seed
from app.protocol.frames import MAX_DEPARTMENT_BYTES, MAX_DISPLAY_NAME_BYTES, control_character
from authority import admin as authority_admin
from server import logaudit, orgadmin
from server.adminkey import (
    KEY_VARIABLE,
    NAME_VARIABLE,
    PASSPHRASE_VARIABLE,
    ActingAdmin,
    acting_admin,
    check_listed,
    published_config,
)
from server.backends import make_store
from server.config import PUBLISHED_CONFIG, load_config, trusted_authority_key
from server.keys import LOG_KEY_FILE, LOG_PUBLIC_FILE, log_public_key
from server.store.base import Account, AccountState, DuplicateError, RelayStore


class Refused(EnclaveError):
    """The admin asked for something that cannot be done; the message says why."""


class UsageError(EnclaveError):
    """The command line is wrong in a way argparse cannot see (exit status 2)."""


TEXT_ARGUMENTS = {
    "account_id": ("account id", 1, MAX_ACCOUNT_ID_BYTES),
    "account": ("account id", 1, MAX_ACCOUNT_ID_BYTES),
    "name": ("display name", 0, MAX_DISPLAY_NAME_BYTES),
    "department": ("department", 0, MAX_DEPARTMENT_BYTES),
}
"""The arguments that become directory entries and certificates, and the sizes in UTF-8 bytes
that frames and certificates take (a certificate names a non-empty account id)."""


def check_text_arguments(args: argparse.Namespace) -> None:
    """Refuse a name, department or account id that a frame could not carry.

    Stored, it would break every directory answer that lists it and every certificate
    naming it, since frames refuse control characters and text past their limits
    (app/protocol/frames.py); an id nobody can hold is refused rather than looked up.
    """
    for attribute, (field, least, most) in TEXT_ARGUMENTS.items():
        value = getattr(args, attribute, None)
        if value is None:
            continue
        bad = control_character(value)
        if bad is not None:
            raise Refused(
                f"the {field} {value!r} holds the control character {bad}, which Enclave does not carry"
            )
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError as e:  # bytes that were not UTF-8 on the command line
            raise Refused(f"the {field} {value!r} is not valid UTF-8") from e
        if not least <= size <= most:
            raise Refused(f"the {field} is {size} bytes in UTF-8; it must be {least} to {most}")


def _parser() -> argparse.ArgumentParser:
    parser = ToolParser(prog="enclave-admin", description="Administer an Enclave relay.").add_version()
    parser.add_argument("--data", type=Path, default=None, help="the relay's data folder (not org, config)")
    parser.add_argument(
        "--admin-key", type=Path, default=None, metavar="FILE", help=f"your admin key (or ${KEY_VARIABLE})"
    )
    parser.add_argument(
        "--admin-name", default=None, help=f"your name as the config lists it (or ${NAME_VARIABLE})"
    )
    parser.add_argument(
        "--admin-passphrase-file",
        type=Path,
        default=None,
        metavar="FILE",
        help=f"its passphrase, first line; - for standard input (or ${PASSPHRASE_VARIABLE}; else asked)",
    )
    commands = parser.add_subparsers(dest="group", required=True)

    account = commands.add_parser("account", help="create, disable, enable, revoke").add_subparsers(
        dest="action", required=True
    )
    create = account.add_parser("create", help="a new account (the id is folded to lower case)")
    create.add_argument("account_id")
    create.add_argument("--name", required=True, help="the display name colleagues see")
    create.add_argument("--department", default="", help="shown beside the name")
    for action in ("disable", "enable", "revoke"):
        account.add_parser(action, help=f"{action} the account").add_argument("account_id")

    device = commands.add_parser("device", help="list and revoke devices").add_subparsers(
        dest="action", required=True
    )
    device.add_parser("list", help="every device, or one account's").add_argument(
        "--account", default=None, help="only this account's devices"
    )
    device.add_parser("revoke", help="revoke one device").add_argument("device_id", type=int)

    publish = commands.add_parser(
        "publish",
        help="put a signed organisation config on the relay, for devices to fetch when they connect",
    )
    publish.add_argument("config", type=Path, help="the signed config (.sig beside it)")
    publish.add_argument("--expect-root", default=None, metavar="HEX", help="as for config verify")
    commands.add_parser("stats", help="counts only")
    log = commands.add_parser("log", help="the key log, admin actions included").add_subparsers(
        dest="action", required=True
    )
    log.add_parser("show", help="every entry, one a line")
    audit = log.add_parser("audit", help="replay the whole log (docs/PROTOCOL.md section 19)")
    verify = log.add_parser("verify", help="replay the whole log, and check it extends a head someone kept")
    for replay in (audit, verify):
        replay.add_argument(
            "--head", type=Path, default=None, required=replay is verify, metavar="FILE", help="a kept head"
        )
        replay.add_argument(
            "--config", type=Path, default=None, help="the config whose admins to check (else the published)"
        )
        replay.add_argument("--log-key", default=None, metavar="HEX", help="if not the data folder's log key")
        replay.add_argument(
            "--authority-key", default=None, metavar="HEX", help="if not the relay's authority_key"
        )
    orgadmin.add_commands(commands)
    authority_admin.add_commands(commands)
    return parser


async def _new_account_id(store: RelayStore, typed: str) -> str:
    """The stored form of a new id (app/base/accountid.py), refused if it or a look-alike exists."""
    try:
        account_id = canonical_account_id(typed)
    except AccountIdError as e:
        raise Refused(str(e)) from e
    shape = skeleton(account_id)
    for existing in await store.account_ids():
        if existing == account_id:
            raise Refused(f"account {account_id!r} already exists")
        if skeleton(existing) == shape:
            raise Refused(
                f"the account id {account_id!r} looks like the existing account {existing!r};"
                " choose one that cannot be taken for it"
            )
    return account_id


async def _existing_account(store: RelayStore, typed: str) -> Account | None:
    """The account ``typed`` names: as stored (ids from before the account id rule keep working
    as they were made), else in the rule's form (``A.Ivanova`` finds ``a.ivanova``)."""
    account = await store.get_account(typed)
    if account is not None:
        return account
    try:
        canonical = canonical_account_id(typed)
    except AccountIdError:
        return None
    return await store.get_account(canonical) if canonical != typed else None


Acting = Callable[[], ActingAdmin]
"""The acting admin, asked for only by a command that changes something (a read needs no key)."""


async def _account(store: RelayStore, args: argparse.Namespace, acting: Acting) -> str:
    if args.action == "create":
        account_id = await _new_account_id(store, args.account_id)
        entry = acting().entry("account.create", {"account": account_id})
        try:
            await store.create_account(account_id, args.name, args.department, admin_entry=entry)
        except DuplicateError as e:
            raise Refused(f"account {account_id!r} already exists") from e
        return f"account {account_id} created"
    state = {"disable": AccountState.DISABLED, "enable": AccountState.ACTIVE, "revoke": AccountState.REVOKED}
    current = await _existing_account(store, args.account_id)
    if current is None:
        raise Refused(f"no account {args.account_id!r}")
    account_id = current.account_id
    if current.state == AccountState.REVOKED:
        raise Refused(f"account {account_id!r} is revoked; revocation is final")
    if current.state == state[args.action]:
        raise Refused(f"account {account_id!r} is {current.state.value} already; nothing was changed")
    entry = acting().entry(f"account.{args.action}", {"account": account_id})
    if not await store.set_account_state(account_id, state[args.action], admin_entry=entry):
        raise Refused(f"no account {account_id!r}")
    return f"account {account_id} {state[args.action].value}"


async def _enrol(store: RelayStore, args: argparse.Namespace, acting: Acting) -> str:
    """A code issued in the enrolment authority's store for an active account of this relay, with
    what its user needs from the signed config (server/orgadmin.py).

    The config, the account and the authority's key are checked first, so a bad one issues no
    code: the config must name the authority key this relay trusts (``authority_key``) and the
    one sealed in the authority's folder, else the device would be certified by a key the relay
    or its colleagues refuse; and this relay's log key, else the device would refuse its log.
    """
    config = orgadmin.checked_config(args.config, args.expect_root)
    account = await _existing_account(store, args.account_id)
    if account is None or account.state != AccountState.ACTIVE:
        raise Refused(f"no active account {args.account_id!r}")
    _check_relay_keys(args, config.authority_key, config.log_key, "no code was issued")
    admin = acting()
    code, expires_at = orgadmin.issue_authority_code(
        args.authority_data, account, config.authority_key, args.valid_hours
    )
    await store.append_admin_entry(
        admin.entry("code.issue", {"account": account.account_id, "expires_at": expires_at})
    )
    return "\n".join(orgadmin.enrolment_lines(config, args.config, account.account_id, code))


async def _publish(store: RelayStore, args: argparse.Namespace, acting: Acting) -> str:
    """Put the signed config where the relay serves it to devices (``GET /v1/config``), once it is
    checked as a client checks it, names the authority key this relay trusts and its log key,
    and lists the acting admin (who must not publish a config that would disown them)."""
    config = orgadmin.checked_config(args.config, args.expect_root)
    _check_relay_keys(args, config.authority_key, config.log_key, "nothing was published")
    admin = acting()
    if (admin.name, admin.key.public_key) not in {(a.name, a.key) for a in config.admins}:
        raise Refused(
            f"{args.config} does not list the admin {admin.name!r} with this key in [transparency]"
            " admins: the log would show this publication as by nobody the organisation names;"
            " nothing was published"
        )
    await store.append_admin_entry(admin.entry("config.publish", {"version": config.version}))
    orgadmin.copy_signed(args.config, args.data / PUBLISHED_CONFIG)
    return f"published {args.config} (version {config.version}): devices take it when they next connect"


def _check_relay_keys(args: argparse.Namespace, authority_key: bytes, log_key: bytes, undone: str) -> None:
    """Refuse a config (``args.config``, naming ``authority_key`` and ``log_key``) made for another
    relay: one naming another authority key than this relay trusts, or another log key than the
    one this relay signs its key log's heads with. A key the relay does not know yet (it never
    started) is not compared. ``undone`` says what the refusal left undone."""
    relay_trusts = trusted_authority_key(args.data)
    if relay_trusts and authority_key.hex() != relay_trusts:
        raise Refused(
            f"{args.config} names the authority key {authority_key.hex()[:16]}…, but this relay"
            f" trusts {relay_trusts[:16]}… (its authority_key); {undone}"
        )
    relay_log = _relay_log_key(args.data)
    if relay_log is not None and log_key != relay_log:
        raise Refused(
            f"{args.config} names the log key {log_key.hex()[:16]}…, but this relay signs its key log"
            f" with {relay_log.hex()[:16]}… ({LOG_PUBLIC_FILE} in its data folder); {undone}"
        )


def _relay_log_key(data_dir: Path) -> bytes | None:
    """The public key of the key log of the relay of ``data_dir``: its ``log.pub``, else the public
    half of its ``log.key`` (a relay from before ``log.pub`` writes that at its next start); None
    if it has neither (it never started)."""
    written = log_public_key(data_dir)
    if written is not None:
        return written
    seed_path = data_dir / LOG_KEY_FILE
    return ed25519_keypair_from_seed(seed=seed_path.read_bytes())[0] if seed_path.exists() else None


async def _device(store: RelayStore, args: argparse.Namespace, acting: Acting) -> str:
    if args.action == "list":
        account = None if args.account is None else await _existing_account(store, args.account)
        if args.account is not None and account is None:
            raise Refused(f"no account {args.account!r}")
        devices = await store.list_devices(None if account is None else account.account_id)
        lines = [
            f"{d.device_id}\t{d.account_id}\t{'revoked' if d.revoked else 'active'}\t{d.identity_key.hex()}"
            for d in devices
        ]
        return "\n".join(["device\taccount\tstate\tidentity key", *lines])
    device = await store.get_device(args.device_id)
    if device is None:
        raise Refused(f"no device {args.device_id}")
    if device.revoked:
        raise Refused(f"device {args.device_id} is revoked already; nothing was changed")
    entry = acting().entry("device.revoke", {"account": device.account_id, "device": args.device_id})
    if not await store.revoke_device(args.device_id, admin_entry=entry):
        raise Refused(f"device {args.device_id} is revoked already; nothing was changed")
    return f"device {args.device_id} revoked; its mailbox is deleted"


async def _stats(store: RelayStore, args: argparse.Namespace, acting: Acting) -> str:
    return "\n".join(f"{name}\t{count}" for name, count in (await store.statistics()).items())


async def _log(store: RelayStore, args: argparse.Namespace, acting: Acting) -> str:
    if args.action == "show":
        return "\n".join(logaudit.entry_lines(await store.log_entries(0, await store.log_size())))
    return await _audit(store, args)


def _hex_key(typed: str | None, fallback: bytes | None, what: str) -> bytes:
    try:
        key = fallback if typed is None else bytes.fromhex(typed)
    except ValueError:
        key = b""
    if key is None or len(key) != 32:
        raise UsageError(f"give {what} as 64 hex digits")
    return key


async def _audit(store: RelayStore, args: argparse.Namespace) -> str:
    """``log audit``: the key log replayed from its first leaf (server/logaudit.py)."""
    own = _relay_log_key(args.data)
    log_key = _hex_key(args.log_key, own, "--log-key (this folder has no log.key)")
    trusted = trusted_authority_key(args.data)
    authority_key = _hex_key(
        args.authority_key, bytes.fromhex(trusted) if trusted else None, "--authority-key"
    )
    try:
        kept = None if args.head is None else args.head.read_bytes()
    except OSError as e:
        raise Refused(f"cannot read {args.head}: {e.strerror}") from e
    config = (
        orgadmin.checked_config(args.config, None)
        if args.config is not None
        else published_config(args.data / PUBLISHED_CONFIG)
    )
    admins = None if config is None else {admin.key: admin.name for admin in config.admins}
    result = await logaudit.audit(
        store, log_key=log_key, authority_key=authority_key, kept_head=kept, admins=admins
    )
    summary = (
        f"{result.size} entries ({result.added} devices added, {result.revoked} revoked,"
        f" {result.admin_actions} admin actions), root {result.root.hex()}"
    )
    if result.problems:
        raise Refused("the key log does not hold up:\n" + "\n".join(result.problems) + f"\n{summary}")
    checked = "" if args.head is None else f"; it extends the head in {args.head}"
    unchecked = "; admin keys not checked (no config published; give --config)" if admins is None else ""
    return f"key log intact: {summary}{checked}{unchecked}"


COMMANDS: dict[str, Callable[[RelayStore, argparse.Namespace, Acting], Awaitable[str]]] = {
    "account": _account,
    "enrol": _enrol,
    "publish": _publish,
    "device": _device,
    "stats": _stats,
    "log": _log,
}


def _acting(args: argparse.Namespace) -> ActingAdmin:
    """The admin who signs this change, once the key opened and the published config lists them."""
    admin = acting_admin(args.admin_key, args.admin_name, args.admin_passphrase_file, os.environ)
    check_listed(admin, args.data / PUBLISHED_CONFIG)
    return admin


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if hasattr(args, "offline"):
        return int(args.offline(args))
    if args.data is None:
        parser.error("the following arguments are required: --data")
    try:
        config = load_config(args.data)
    except EnclaveError as e:
        print(f"enclave-admin: {e}", file=sys.stderr)
        return EXIT_USAGE
    if config.backend == "sqlite" and not config.database_path.exists():
        print(
            f"enclave-admin: no relay database in {args.data}; start enclave-server there first",
            file=sys.stderr,
        )
        return EXIT_USAGE

    async def run() -> str:
        check_text_arguments(args)
        store = make_store(config)
        await store.open()
        try:
            return await COMMANDS[args.group](store, args, functools.partial(_acting, args))
        finally:
            await store.close()

    try:
        print(asyncio.run(run()))
    except UsageError as e:
        print(f"enclave-admin: {e}", file=sys.stderr)
        return EXIT_USAGE
    except EnclaveError as e:  # Refused, or the database failing
        print(f"enclave-admin: {e}", file=sys.stderr)
        return EXIT_REFUSED
    return EXIT_DONE


if __name__ == "__main__":
    sys.exit(main())
