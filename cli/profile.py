"""Where the CLI keeps its data, and how it unlocks a profile.

The data folder is ``$ENCLAVE_HOME`` if set, else the platform's per-user data folder:
``%APPDATA%\\Enclave`` on Windows, ``~/Library/Application Support/Enclave`` on macOS,
``$XDG_DATA_HOME/enclave`` or ``~/.local/share/enclave`` elsewhere. Profiles default to
``<data>/profiles/default``.

A profile's key comes from a passphrase file when one is given (its first line), else
from the OS keystore. Where the profile needs a passphrase (it was made with one, no
keystore exists to make it with, or the organisation's policy requires one for a new
profile) and the caller may prompt, the passphrase is typed.
"""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path

from app.services.profiles import (
    KeySource,
    Keystore,
    Passphrase,
    keystore_available,
    needs_passphrase,
    new_profile_rules,
    profile_exists,
)
from cli.errors import CliError

HOME_VARIABLE = "ENCLAVE_HOME"


def data_home() -> Path:
    """The folder holding this user's profiles and the local workspace's relay."""
    override = os.environ.get(HOME_VARIABLE)
    if override:
        return Path(override).expanduser()
    if sys.platform == "win32":
        appdata = os.environ.get("APPDATA")
        return (Path(appdata) if appdata else Path.home() / "AppData" / "Roaming") / "Enclave"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "Enclave"
    xdg = os.environ.get("XDG_DATA_HOME", "")
    # The XDG spec says to ignore a relative path.
    return (Path(xdg) if Path(xdg).is_absolute() else Path.home() / ".local" / "share") / "enclave"


def default_profile() -> Path:
    return data_home() / "profiles" / "default"


def key_source(profile: Path, passphrase_file: Path | None, *, prompt: bool) -> KeySource:
    """The key of ``profile`` (to open, or to create it with if it does not exist yet)."""
    if passphrase_file is not None:
        return Passphrase(read_passphrase(passphrase_file))
    creating = not profile_exists(profile)
    required = creating and new_profile_rules().passphrase_required
    wants_passphrase = (required or not keystore_available()) if creating else needs_passphrase(profile)
    if not wants_passphrase:
        return Keystore()
    if not prompt:
        reason = (
            "your organisation's policy (passphrase_required) protects a new profile by a passphrase"
            if required
            else "no system keystore is available to protect a new profile"
            if creating
            else "this profile is protected by a passphrase"
        )
        raise CliError(f"{reason}: give it with --passphrase-file")
    return Passphrase(_ask(profile, confirm=creating))


def read_passphrase(path: Path) -> str:
    """The first line of ``path``, without its line ending."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise CliError(f"cannot read the passphrase file {path}: {e}") from e
    if not lines or not lines[0]:
        raise CliError(f"the passphrase file {path} has an empty first line")
    return lines[0]


def _ask(profile: Path, *, confirm: bool) -> str:
    secret = getpass.getpass(f"Passphrase for the profile in {profile}: ")
    if not secret:
        raise CliError("a passphrase must not be empty")
    if confirm and getpass.getpass("The same passphrase again: ") != secret:
        raise CliError("the two passphrases differ; nothing was created")
    return secret
