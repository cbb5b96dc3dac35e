"""``enclave-admin``: the IT admin's tool. It works on the relay's data folder (its config
and database), never through the public port, and writes every change it makes to the
hash-chained admin log.

    enclave-admin --data DIR account create ID --name NAME [--department DEPT]
    enclave-admin --data DIR account disable|enable|revoke ID
    enclave-admin --data DIR code issue ID [--valid-hours 72]
    enclave-admin --data DIR device list [--account ID]
    enclave-admin --data DIR device revoke DEVICE_ID
    enclave-admin --data DIR stats
    enclave-admin --data DIR log show | log verify [--expect-head HEX]
    enclave-admin org init | config sign | config verify   (no --data: server/orgadmin.py)

Exit status: 0 done, 1 refused (unknown account, broken log...), 2 bad usage or config.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import getpass
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from nacl.utils import random

from app.base.errors import EnclaveError
from app.base.limits import MAX_ACCOUNT_ID_BYTES
from app.protocol.frames import MAX_DEPARTMENT_BYTES, MAX_DISPLAY_NAME_BYTES, control_character
from server import orgadmin
from server.adminlog import verify
from server.backends import make_store
from server.config import load_config
from server.relay import enrolment_code_hash
from server.store.base import AccountState, DuplicateError, RelayStore

CODE_BYTES = 15
"""120 bits: 24 base32 characters, typed in groups of four."""


class Refused(EnclaveError):
    """The admin asked for something that cannot be done; the message says why."""


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


def new_enrolment_code() -> str:
    raw = base64.b32encode(random(CODE_BYTES)).decode("ascii")
    return "-".join(raw[i : i + 4] for i in range(0, len(raw), 4))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="enclave-admin", description="Administer an Enclave relay.")
    parser.add_argument("--data", type=Path, default=None, help="the relay's data folder (not org, config)")
    parser.add_argument("--actor", default=None, help="who is acting (default: the login name)")
    commands = parser.add_subparsers(dest="group", required=True)

    account = commands.add_parser("account").add_subparsers(dest="action", required=True)
    create = account.add_parser("create")
    create.add_argument("account_id")
    create.add_argument("--name", required=True)
    create.add_argument("--department", default="")
    for action in ("disable", "enable", "revoke"):
        account.add_parser(action).add_argument("account_id")

    code = commands.add_parser("code").add_subparsers(dest="action", required=True)
    issue = code.add_parser("issue")
    issue.add_argument("account_id")
    issue.add_argument("--valid-hours", type=int, default=72)

    device = commands.add_parser("device").add_subparsers(dest="action", required=True)
    device.add_parser("list").add_argument("--account", default=None)
    device.add_parser("revoke").add_argument("device_id", type=int)

    commands.add_parser("stats")
    log = commands.add_parser("log").add_subparsers(dest="action", required=True)
    log.add_parser("show")
    log.add_parser("verify").add_argument(
        "--expect-head", default=None, help="the head hash recorded earlier"
    )
    orgadmin.add_commands(commands)
    return parser


async def _logged(store: RelayStore, actor: str, action: str, details: dict[str, object]) -> None:
    await store.append_admin_log(int(time.time()), actor, action, json.dumps(details, sort_keys=True))


async def _account(store: RelayStore, args: argparse.Namespace, actor: str) -> str:
    if args.action == "create":
        try:
            await store.create_account(args.account_id, args.name, args.department)
        except DuplicateError as e:
            raise Refused(f"account {args.account_id!r} already exists") from e
        await _logged(store, actor, "account.create", {"account": args.account_id})
        return f"account {args.account_id} created"
    state = {"disable": AccountState.DISABLED, "enable": AccountState.ACTIVE, "revoke": AccountState.REVOKED}
    current = await store.get_account(args.account_id)
    if current is None:
        raise Refused(f"no account {args.account_id!r}")
    if current.state == AccountState.REVOKED:
        raise Refused(f"account {args.account_id!r} is revoked; revocation is final")
    await store.set_account_state(args.account_id, state[args.action])
    await _logged(store, actor, f"account.{args.action}", {"account": args.account_id})
    return f"account {args.account_id} {state[args.action].value}"


async def _code(store: RelayStore, args: argparse.Namespace, actor: str) -> str:
    account = await store.get_account(args.account_id)
    if account is None or account.state != AccountState.ACTIVE:
        raise Refused(f"no active account {args.account_id!r}")
    if not 1 <= args.valid_hours <= 24 * 30:
        raise Refused("--valid-hours must be between 1 and 720")
    code = new_enrolment_code()
    expires_at = int(time.time()) + args.valid_hours * 3600
    await store.add_enrolment_code(enrolment_code_hash(code), args.account_id, expires_at)
    await _logged(store, actor, "code.issue", {"account": args.account_id, "expires_at": expires_at})
    return code


async def _device(store: RelayStore, args: argparse.Namespace, actor: str) -> str:
    if args.action == "list":
        devices = await store.list_devices(args.account)
        lines = [
            f"{d.device_id}\t{d.account_id}\t{'revoked' if d.revoked else 'active'}\t{d.identity_key.hex()}"
            for d in devices
        ]
        return "\n".join(["device\taccount\tstate\tidentity key", *lines])
    if not await store.revoke_device(args.device_id):
        raise Refused(f"no device {args.device_id}")
    await _logged(store, actor, "device.revoke", {"device": args.device_id})
    return f"device {args.device_id} revoked; its mailbox is deleted"


async def _stats(store: RelayStore, args: argparse.Namespace, actor: str) -> str:
    return "\n".join(f"{name}\t{count}" for name, count in (await store.statistics()).items())


async def _log(store: RelayStore, args: argparse.Namespace, actor: str) -> str:
    entries = await store.admin_log()
    if args.action == "show":
        return "\n".join(
            "\t".join(
                (
                    str(e.sequence),
                    time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(e.at)),
                    e.actor,
                    e.action,
                    e.details,
                )
            )
            for e in entries
        )
    problems = verify(entries)
    head = entries[-1].entry_hash.hex() if entries else "0" * 64
    if args.expect_head is not None and args.expect_head.lower() != head:
        problems.append(
            f"the head is {head}, not the {args.expect_head} recorded earlier (entries lost or rewritten)"
        )
    if problems:
        raise Refused("the admin log was tampered with:\n" + "\n".join(problems))
    return f"admin log intact: {len(entries)} entries, head {head}"


COMMANDS: dict[str, Callable[[RelayStore, argparse.Namespace, str], Awaitable[str]]] = {
    "account": _account,
    "code": _code,
    "device": _device,
    "stats": _stats,
    "log": _log,
}


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if hasattr(args, "offline"):
        return int(args.offline(args))
    if args.data is None:
        parser.error("the following arguments are required: --data")
    actor = args.actor or getpass.getuser()
    try:
        config = load_config(args.data)
    except EnclaveError as e:
        print(f"enclave-admin: {e}", file=sys.stderr)
        return 2
    if config.backend == "sqlite" and not config.database_path.exists():
        print(
            f"enclave-admin: no relay database in {args.data}; start enclave-server there first",
            file=sys.stderr,
        )
        return 2

    async def run() -> str:
        check_text_arguments(args)
        store = make_store(config)
        await store.open()
        try:
            return await COMMANDS[args.group](store, args, actor)
        finally:
            await store.close()

    try:
        print(asyncio.run(run()))
    except Refused as e:
        print(f"enclave-admin: {e}", file=sys.stderr)
        return 1
    except EnclaveError as e:
        print(f"enclave-admin: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
