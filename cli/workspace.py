"""The local workspace: what ``./run.sh`` does while no organisation relay is configured.

    ./run.sh [--name NAME] [--profile DIR] [--port PORT] [--passphrase-file PATH]

It starts an embedded relay on 127.0.0.1 (or uses the one another terminal started),
enrols the profile there if it is not enrolled yet, and opens an interactive session
(``cli.chat``). A second terminal with another ``--profile`` joins the same relay as
another colleague, so two terminals can chat within a minute of cloning:

    ./run.sh                        # you, named after your login, in <data>/profiles/default
    ./run.sh --profile /tmp/bob     # "bob" (the folder's name) in a second terminal

The data folder (``cli.profile.data_home``) holds ``local-relay/`` (the relay's SQLite
database, keys and log) and ``profiles/``. The profile is protected by the OS keystore
where one exists, else by a passphrase typed at start (or read from --passphrase-file).
"""

from __future__ import annotations

import argparse
import getpass
import re
from pathlib import Path

from app.base.tools import ToolParser
from cli.chat import Chat
from cli.localrelay import LocalRelay, local_relay
from cli.output import clean, note
from cli.profile import data_home, default_profile, key_source, profile_exists
from cli.session import Session, opened, run_guarded

DEFAULT_PORT = 8743
RELAY_FOLDER = "local-relay"
_NOT_IN_ACCOUNT_ID = re.compile(r"[^\w.-]+")


def _parser() -> argparse.ArgumentParser:
    parser = ToolParser(
        prog="run.sh", description="Enclave's local workspace: a relay on this machine and a chat session."
    ).add_version()
    parser.add_argument("--name", help="your name at enrolment (default: the login or folder name)")
    parser.add_argument(
        "--profile", type=Path, metavar="DIR", help="profile folder (default: <data folder>/profiles/default)"
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="the local relay's port")
    parser.add_argument(
        "--passphrase-file", type=Path, metavar="PATH", help="read the passphrase from this file's first line"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return run_guarded("enclave", lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    profile: Path = args.profile or default_profile()
    key = key_source(profile, args.passphrase_file, prompt=True)
    relay_dir = data_home() / RELAY_FOLDER
    with local_relay(relay_dir, args.port) as relay:
        if relay.started:
            print(
                f"Started the local relay on {relay.url} (data in {relay_dir}); "
                "it stops when the last session using it ends."
            )
        else:
            print(f"Joined the local relay on {relay.url} that another session started.")
        with opened(profile, key, create=not profile_exists(profile), holder="run.sh") as session:
            if session.enclave.account is None:
                _enrol(session, relay, args.name or _default_name(profile))
            account = session.enrolled()
            print(
                f"Signed in as {clean(account.account_id)}, device {account.device_id} (profile {profile})."
            )
            return Chat(session).run()


def _enrol(session: Session, relay: LocalRelay, name: str) -> None:
    """Do what an IT admin and a new colleague would: an account, a code, the enrolment."""
    account_id = account_id_for(name)
    if not relay.create_account(account_id, name):
        note(
            f"The account {account_id} exists on the local relay already: this profile becomes a new device."
        )
    session.call(session.enclave.enrol(relay.url, relay.pin, relay.issue_code(account_id)))


def _default_name(profile: Path) -> str:
    """The login name for the default profile; the folder's name for any other."""
    if profile.resolve() != default_profile().resolve():
        return profile.resolve().name
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in the environment or the password database
        return "me"


def account_id_for(name: str) -> str:
    """A plain account id for a display name: ``Anna Ivanova`` becomes ``anna-ivanova``, ``Анна`` ``анна``."""
    return _NOT_IN_ACCOUNT_ID.sub("-", name.casefold()).strip("-.") or "me"
