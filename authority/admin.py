"""``enclave-admin authority``: enrolment codes and revocations in the authority's data folder.

    enclave-admin authority code ACCOUNT --authority-data DIR [--name NAME] [--department DEPT]
        [--valid-hours 72]
    enclave-admin authority revoke ACCOUNT DEVICE --authority-data DIR

They write the authority's database directly, as the relay's admin commands write the
relay's (WAL lets them do so while the authority serves), and so run as the authority's
service user, on its machine. A code is printed once and stored only as two derivations
of it (app/protocol/enrolment.py); ``issue_code`` does the same for a command that holds
the store open itself. A revoked device renews no more; the certificates it holds stay
valid until they expire (docs/ADMIN.md states the bound). enclave-admin (server/admin.py)
registers these commands so that admins have one tool (its ``enrol`` issues the code with the
name and department of the relay's account, which the device's certificates then carry);
nothing of the relay imports this module (pyproject.toml's import contract).
Exit status: 0 done, 1 refused, 2 usage.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import time
from pathlib import Path

from nacl.utils import random

from app.base.accountid import canonical_account_id
from app.base.errors import EnclaveError
from app.base.tools import EXIT_DONE, EXIT_REFUSED, EXIT_USAGE
from app.crypto.certificate import name_refusal
from app.protocol import enrolment
from authority.store import STORE_FILE, AuthorityStore

MAX_VALID_HOURS = 24 * 30


class Refused(EnclaveError):
    """The admin asked for something that cannot be done; the message says why."""


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``authority code`` and ``authority revoke`` on enclave-admin's subcommands."""
    group = commands.add_parser(
        "authority", help="enrolment codes and revocations of the enrolment authority (--authority-data)"
    ).add_subparsers(dest="action", required=True)
    code = group.add_parser("code", help="print a one-time enrolment code for ACCOUNT (shown once)")
    code.add_argument("account")
    code.add_argument("--name", default="", help="the display name the certificates carry")
    code.add_argument("--department", default="", help="the department the certificates carry")
    code.add_argument("--valid-hours", type=int, default=72, help=f"1 to {MAX_VALID_HOURS}")
    revoke = group.add_parser("revoke", help="revoke a device: it renews its certificate no more")
    revoke.add_argument("account")
    revoke.add_argument("device", type=int)
    for parser in (code, revoke):
        parser.add_argument(
            "--authority-data", type=Path, required=True, metavar="DIR", help="the authority's data folder"
        )
        parser.set_defaults(offline=run)


def run(args: argparse.Namespace) -> int:
    folder: Path = args.authority_data
    if not (folder / STORE_FILE).exists():
        print(
            f"enclave-admin: no authority database in {folder}; start enclave-authority there first",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        account_id = canonical_account_id(args.account)
        store = AuthorityStore.open(folder)
        try:
            if args.action == "code":
                print(
                    issue_code(
                        store,
                        account_id,
                        args.valid_hours,
                        now=int(time.time()),
                        display_name=args.name,
                        department=args.department,
                    )
                )
            else:
                print(_revoke(store, account_id, args))
        finally:
            store.close()
    except (EnclaveError, sqlite3.Error) as e:  # AccountIdError, Refused, the database
        print(f"enclave-admin: {e}", file=sys.stderr)
        return EXIT_REFUSED
    return EXIT_DONE


def issue_code(
    store: AuthorityStore,
    account_id: str,
    valid_hours: int,
    *,
    now: int,
    display_name: str = "",
    department: str = "",
) -> str:
    """Store a new one-time code for ``account_id``, valid ``valid_hours`` from ``now``, and return it.

    The code itself is returned once and never stored. Other commands call this with a
    store they opened (the relay's ``enclave-admin enrol`` issues its code here, into the
    authority's store); ``Refused`` or ``AccountIdError`` if the hours, the id or a name are not
    valid. The device the code enrols gets certificates carrying ``display_name`` and
    ``department``: what its colleagues show for it, asking nobody.
    """
    if not 1 <= valid_hours <= MAX_VALID_HOURS:
        raise Refused(f"--valid-hours must be between 1 and {MAX_VALID_HOURS}")
    for value, field in ((display_name, "name"), (department, "department")):
        refusal = name_refusal(value)
        if refusal is not None:
            raise Refused(f"the {field} {refusal}; no code was issued")
    account_id = canonical_account_id(account_id)
    code = enrolment.new_enrolment_code(random)
    store.add_code(
        code_id=enrolment.code_id(code),
        code_key=enrolment.code_key(code),
        account_id=account_id,
        expires_at=now + valid_hours * 3600,
        display_name=display_name,
        department=department,
    )
    return code


def _revoke(store: AuthorityStore, account_id: str, args: argparse.Namespace) -> str:
    device = store.device(account_id, args.device)
    if device is None:
        raise Refused(f"the authority has no device {args.device} of {account_id}")
    if device.revoked or not store.revoke(account_id, args.device):
        raise Refused(f"device {args.device} of {account_id} is revoked already; nothing was changed")
    return (
        f"device {args.device} of {account_id} revoked: it renews no more; its certificate expires by itself"
    )
