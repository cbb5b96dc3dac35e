"""A profile folder that ``enclave-cli``'s user may not read: one line naming the file and the
cause, never a raw ``[Errno 13]`` and never "not an Enclave store" (issue 11, item 7)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.keys import Passphrase
from storage.store import KEY_HEADER_NAME, Store
from tests.support.cli import PASSPHRASE, RUN_SECONDS, passphrase_file
from tests.support.otheruser import as_other_user, shared_folder
from tests.support.relay import REPO


@pytest.fixture
def root_only_profile() -> Iterator[tuple[Path, Path]]:
    """A profile only root may enter, and a passphrase file anyone may read."""
    with shared_folder() as folder:
        profile = folder / "profile"
        Store.create(profile, Passphrase(PASSPHRASE)).close()
        profile.chmod(0o700)
        secret = passphrase_file(folder)
        secret.chmod(0o644)
        yield profile, secret


@pytest.mark.parametrize("command", [["history", "carol"], ["conversations"], ["listen", "--count", "1"]])
def test_an_unreadable_profile_folder_is_named_with_the_cause(
    root_only_profile: tuple[Path, Path], command: list[str]
) -> None:
    """Test that enclave-cli, run as a user who may not enter the profile folder, says so in one line."""
    profile, secret = root_only_profile
    cli = [sys.executable, "-m", "cli.main", "--profile", str(profile), "--passphrase-file", str(secret)]
    done = subprocess.run(
        as_other_user([*cli, *command]),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=RUN_SECONDS,
        check=False,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "Errno" not in done.stderr
    assert "not an Enclave" not in done.stderr
    assert f"Cannot open {profile / KEY_HEADER_NAME}: permission denied" in done.stderr
    assert "Your messages and key are not damaged" in done.stderr
