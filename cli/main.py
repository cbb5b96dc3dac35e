"""``enclave-cli``: the headless client, for admins' smoke tests and for scripts.

    enclave-cli [--profile DIR] [--passphrase-file PATH] COMMAND ...

Output is one item per line, tab-separated (see ``cli.output`` for each command's
columns) or ``key: value``; notes for the person go to stderr. Exit status: 0 done,
1 refused or failed (one line on stderr says why), 2 bad usage, 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from app.base.limits import MAX_TIMER_SECONDS
from app.base.tools import ToolParser
from app.services.types import MAX_PAGE_SIZE
from cli.commands import COMMANDS
from cli.errors import CliError
from cli.profile import default_profile, key_source, profile_exists
from cli.session import opened, run_guarded

SEND_WAIT_SECONDS = 15.0
MAX_ROW_ID = 2**63 - 1
"""The largest conversation id the store can hold (an SQLite integer)."""
MAX_DEVICE_ID = 2**32 - 1
"""Device ids are u32 on the wire (docs/PROTOCOL.md)."""


def _whole(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number in ``low..high`` (no upper bound if ``high`` is None),
    so an out-of-range value is bad usage (exit 2) naming the range, not a failure deep inside."""
    span = f"{low}..{high}" if high is not None else f"at least {low}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number ({span})") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{value} is out of range: {span}")
        return value

    return parse


def _seconds(text: str) -> float:
    """An argparse type: a duration in seconds, not negative."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not a number of seconds (0 or more)")
    return value


def _targeted(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], name: str, summary: str, *rest: str
) -> argparse.ArgumentParser:
    """A command aimed at ``ACCOUNT`` or ``--conversation ID``, followed by the positionals ``rest``."""
    usage = " ".join(["enclave-cli", name, "(ACCOUNT | --conversation ID)", *(r.upper() for r in rest)])
    parser = commands.add_parser(name, help=summary, usage=usage + " [options]")
    parser.add_argument("words", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--conversation", type=_whole(1, MAX_ROW_ID), default=None, metavar="ID")
    parser.set_defaults(rest=rest, command_parser=parser)
    return parser


def _group_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``group ACTION ...``: create, change and read a group (its conversation id is ID)."""
    group = commands.add_parser("group", help="create a group, change it, or show it")
    actions = group.add_subparsers(dest="action", required=True, metavar="ACTION")
    conversation = _whole(1, MAX_ROW_ID)
    create = actions.add_parser("create", help="a new group with you as its admin")
    create.add_argument("name")
    create.add_argument("members", nargs="+", metavar="ACCOUNT")
    create.add_argument("--timer", type=_whole(0, MAX_TIMER_SECONDS), default=0, metavar="SECONDS")
    create.add_argument("--label", default="", help="its classification label")
    actions.add_parser("info", help="its name, members, admins and timer").add_argument(
        "id", type=conversation
    )
    rename = actions.add_parser("rename", help="give it a new name")
    rename.add_argument("id", type=conversation)
    rename.add_argument("name")
    add = actions.add_parser("add", help="add members")
    add.add_argument("id", type=conversation)
    add.add_argument("accounts", nargs="+", metavar="ACCOUNT")
    for name, summary in (
        ("remove", "remove a member"),
        ("promote", "make a member an admin"),
        ("demote", "an admin no more"),
    ):
        one = actions.add_parser(name, help=summary)
        one.add_argument("id", type=conversation)
        one.add_argument("account")
    actions.add_parser("leave", help="leave the group").add_argument("id", type=conversation)
    timer = actions.add_parser("timer", help="set its disappearing timer (0: off)")
    timer.add_argument("id", type=conversation)
    timer.add_argument("seconds", type=_whole(0, MAX_TIMER_SECONDS))
    receipts = actions.add_parser("receipts", help="how many members got and read one of your messages")
    receipts.add_argument("message", type=_whole(1, MAX_ROW_ID))


def _build_parser() -> argparse.ArgumentParser:
    parser = ToolParser(prog="enclave-cli", description="The headless Enclave client.").add_version()
    parser.add_argument(
        "--profile", type=Path, metavar="DIR", help="profile folder (default: <data folder>/profiles/default)"
    )
    parser.add_argument(
        "--passphrase-file", type=Path, metavar="PATH", help="read the passphrase from this file's first line"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    enrol = commands.add_parser(
        "enrol",
        help="register this profile with your organisation, using a code from IT",
        description="Enrol with the code alone: the enrolment authority certifies this device and "
        "the relay registers it, both where the organisation's config says (installed in the "
        "system location, or imported first with enclave-cli policy --import). A --server or "
        "--pin given must agree with the config.",
    )
    enrol.add_argument("--server", default=None, help="https://HOST:PORT (default: the config's relay)")
    enrol.add_argument("--pin", default=None, help="the relay's key pin, sha256/... (default: the config's)")
    enrol.add_argument("--code", required=True, help="the one-time enrolment code")

    contacts = commands.add_parser("contacts", help="list contacts, or search the directory and add matches")
    contacts.add_argument("--search", default=None, metavar="QUERY", help="also search the directory")
    commands.add_parser("conversations", help="list conversations")

    for name, what in (("send", "text"), ("send-file", "path")):
        send = _targeted(commands, name, f"send a {'file' if what == 'path' else 'text'}", what)
        send.add_argument(
            "--wait",
            type=_seconds,
            default=SEND_WAIT_SECONDS,
            metavar="SECONDS",
            help="how long to wait for the relay to store it",
        )
        if what == "path":
            send.add_argument("--caption", default="", help="text sent with the file")

    secret = commands.add_parser("secret", help="start a secret chat and print its conversation id")
    secret.add_argument("account")
    secret.add_argument("--timer", type=_whole(0, MAX_TIMER_SECONDS), required=True, metavar="SECONDS")

    listen = commands.add_parser("listen", help="print arriving messages")
    listen.add_argument("--wait", type=_seconds, default=None, metavar="SECONDS", help="stop after this long")
    listen.add_argument("--count", type=_whole(1), default=None, metavar="N", help="stop after N messages")
    listen.add_argument("--mark-read", action="store_true", help="mark them read (sends read receipts)")
    listen.add_argument("--save-files", type=Path, default=None, metavar="DIR", help="save received files")

    history = _targeted(commands, "history", "print a conversation's messages, oldest first")
    history.add_argument(
        "--limit",
        type=_whole(1, MAX_PAGE_SIZE),
        default=50,
        metavar="N",
        help=f"1..{MAX_PAGE_SIZE}",
    )
    _targeted(commands, "timer", "set a conversation's disappearing timer (0: off)", "seconds")

    _group_parser(commands)

    safety = commands.add_parser("safety-number", help="the safety numbers of a colleague's devices")
    safety.add_argument("account")
    safety.add_argument(
        "--verify", type=_whole(0, MAX_DEVICE_ID), default=None, metavar="DEVICE_ID", help="mark it compared"
    )
    safety.add_argument("--accept", action="store_true", help="accept the colleague's changed key")

    devices = commands.add_parser(
        "devices", help="this account's devices as the organisation's key log states them"
    )
    devices.add_argument(
        "--save-head", type=Path, default=None, metavar="FILE", help="also save the key log head checked"
    )

    commands.add_parser("chat", help="an interactive session")

    policy = commands.add_parser(
        "policy", help="the organisation's policy: each key, its value and its source"
    )
    change = policy.add_mutually_exclusive_group()
    change.add_argument(
        "--import",
        dest="import_config",
        type=Path,
        default=None,
        metavar="CONFIG",
        help="accept a signed organisation config (CONFIG.sig beside it) for this profile",
    )
    change.add_argument(
        "--set",
        dest="set_value",
        default=None,
        metavar="KEY=VALUE",
        help="your own value of a key not mandatory",
    )
    change.add_argument("--unset", default=None, metavar="KEY", help="forget your own value of a key")
    return parser


def _resolve_target(args: argparse.Namespace) -> None:
    """Split ``words`` into ACCOUNT (unless ``--conversation``) and the command's other positionals."""
    if not hasattr(args, "words"):
        return
    rest: tuple[str, ...] = args.rest
    words: list[str] = args.words
    names = (["ACCOUNT"] if args.conversation is None else []) + [r.upper() for r in rest]
    if len(words) != len(names):
        args.command_parser.error(f"expected {' '.join(names) or 'no more'} arguments, got {len(words)}")
    args.account = words.pop(0) if args.conversation is None else None
    for name, value in zip(rest, words, strict=True):
        setattr(args, name, value)
    if "seconds" in rest:
        if not args.seconds.isdigit() or int(args.seconds) > MAX_TIMER_SECONDS:
            args.command_parser.error(
                f"SECONDS must be a whole number 0..{MAX_TIMER_SECONDS}, not {args.seconds!r}"
            )
        args.seconds = int(args.seconds)
    if "path" in rest:
        args.path = Path(args.path)


def _run(args: argparse.Namespace) -> int:
    profile: Path = args.profile or default_profile()
    creating = not profile_exists(profile)
    # Importing the organisation's config may come before enrolment: it names the relay.
    may_create = args.command == "enrol" or (args.command == "policy" and args.import_config is not None)
    if creating and not may_create:
        raise CliError(f"no profile in {profile}: enrol first (enclave-cli --profile {profile} enrol ...)")
    key = key_source(profile, args.passphrase_file, prompt=sys.stdin.isatty())
    with opened(profile, key, create=creating, holder=f"enclave-cli {args.command}") as session:
        try:
            return COMMANDS[args.command](session, args)
        except ValueError as e:
            # The store refuses an out-of-range value with ValueError; the arguments are
            # range-checked above, so this is a backstop that keeps it to one line.
            raise CliError(f"refused: {e}") from e


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    _resolve_target(args)
    return run_guarded("enclave-cli", lambda: _run(args))


if __name__ == "__main__":
    sys.exit(main())
