"""The local workspace: what ``./run.sh`` does while no organisation relay is configured.

    ./run.sh [--name NAME] [--profile DIR] [--port PORT] [--passphrase-file PATH]

It runs the trust model of a real deployment on this machine: on its first start it makes
a local organisation (a root, an enrolment authority key and a config the root signs,
``cli.localorg``), then starts the enrolment authority and a relay on 127.0.0.1 (or uses
the ones another terminal started, ``cli.localservices``), imports the organisation's
config into the profile, enrols the profile with a code if it is not enrolled yet, and
opens an interactive session (``cli.chat``). A second terminal with another ``--profile``
joins as another colleague, so two terminals can chat within a minute of cloning:

    ./run.sh                        # you, named after your login, in <data>/profiles/default
    ./run.sh --profile /tmp/bob     # "bob" (the folder's name) in a second terminal

The data folder (``cli.profile.data_home``) holds ``local-organisation/`` (the keys and
the signed config), ``local-authority/`` and ``local-relay/`` (each service's data, keys
and log) and ``profiles/``. The profile is protected by the OS keystore where one exists,
else by a passphrase typed at start (or read from --passphrase-file); the organisation's
keys likewise (``localorg.Secrets``).
"""

from __future__ import annotations

import argparse
import getpass
import re
from pathlib import Path

from app.base.tools import ToolParser
from cli.chat import Chat
from cli.localorg import Secrets, local_organisation
from cli.localservices import LocalServices, local_services
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
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="the local relay's port (the authority's is the next)"
    )
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
    home = data_home()
    relay_dir = home / RELAY_FOLDER
    secrets = Secrets(home, args.passphrase_file)
    organisation = local_organisation(home, secrets)
    with local_services(relay_dir, args.port, organisation, secrets) as services:
        if services.started:
            print(
                f"Started the local relay on {services.url} and its enrolment authority on "
                f"{services.authority.url} (data in {home}); they stop when the last session using "
                "them ends."
            )
        else:
            print(f"Joined the local relay on {services.url} that another session started.")
        with opened(profile, key, create=not profile_exists(profile), holder="run.sh") as session:
            session.call(session.enclave.import_config(organisation.config))
            if session.enclave.account is None:
                _enrol(session, services, args.name or _default_name(profile))
            account = session.enrolled()
            print(
                f"Signed in as {clean(account.account_id)}, device {account.device_id} (profile {profile})."
            )
            return Chat(session).run()


def _enrol(session: Session, services: LocalServices, name: str) -> None:
    """Do what an IT admin and a new colleague would: an account, a code, the enrolment with it."""
    account_id = account_id_for(name)
    if not services.create_account(account_id, name):
        note(
            f"The account {account_id} exists on the local relay already: this profile becomes a new device."
        )
    session.call(session.enclave.enrol(None, None, services.issue_code(account_id)))


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
