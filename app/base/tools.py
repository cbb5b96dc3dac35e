"""What every Enclave command-line tool shares: its version and a parser that shows defaults.

The version is pyproject.toml's, read from the installed package's metadata, so it is
written in one place. ``ToolParser`` is ``argparse.ArgumentParser`` with
``ArgumentDefaultsHelpFormatter`` for itself and every subcommand under it (argparse makes a
subcommand's parser of its parent's class, not with its formatter), and a ``--version``.

Every tool exits 0 when done, 1 when it refuses or fails (one line on stderr says why),
and 2 on bad usage (argparse's own status for a command line it cannot read).
"""

from __future__ import annotations

import argparse
from importlib.metadata import PackageNotFoundError, version
from typing import Any

DISTRIBUTION = "enclave"
EXIT_DONE = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2


def enclave_version() -> str:
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "unknown (the enclave package is not installed)"


class DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``(default: …)`` after each option's help, except where there is none to show (a required
    option, or one whose absence means "not given", whose help says what then happens)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.required or action.default is None:
            return action.help
        return super()._get_help_string(action)


class ToolParser(argparse.ArgumentParser):
    """A parser whose ``--help`` shows each option's default, and which has ``--version``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        super().__init__(*args, **kwargs)

    def add_version(self) -> ToolParser:
        self.add_argument("--version", action="version", version=f"%(prog)s {enclave_version()}")
        return self
