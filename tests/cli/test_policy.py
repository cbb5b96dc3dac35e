"""enclave-cli policy as a person runs it: import, show with sources, set and unset, refusals."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.cli import CliUser, passphrase_file, rows
from tests.support.organisation import Organisation
from tests.support.relay import REPO
from tests.support.systemconfig import with_system_folder


def _run(user: CliUser, system: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``enclave-cli policy`` where /etc/enclave/ holds ``system`` (``<upper>/enclave/enclave.toml``)."""
    return subprocess.run(
        with_system_folder(user.command("policy", *args), system.parent.parent),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def _shown(done: subprocess.CompletedProcess[str]) -> dict[str, list[str]]:
    assert done.returncode == 0, done.stderr
    return {row[0]: row[1:] for row in rows(done.stdout)}


def test_policy_shows_each_value_and_its_source(tmp_path: Path) -> None:
    """Test that the system's mandatory values beat an imported config and the user, that a user value
    beats recommended ones, that a mandatory key cannot be set, and that a refused import changes nothing."""
    org = Organisation()
    system = org.write(
        tmp_path / "etc" / "enclave" / "enclave.toml",
        org.config(version=2, mandatory="secret_chats_only = true", recommended="idle_lock_minutes = 10"),
    )
    mine = org.write(
        tmp_path / "mine.toml",
        org.config(
            version=1,
            mandatory="read_receipts_allowed = false\nsecret_chats_only = false",
            recommended="notification_previews = false",
        ),
    )
    user = CliUser("a", tmp_path / "profile", passphrase_file(tmp_path))
    missing = _run(user, system)
    assert missing.returncode == 1 and "no profile" in missing.stderr
    imported = _run(user, system, "--import", str(mine))
    shown = _shown(imported)
    assert shown["secret_chats_only"] == ["true", "system mandatory"]
    assert shown["read_receipts_allowed"] == ["false", "imported mandatory"]
    assert shown["idle_lock_minutes"] == ["10", "system recommended"]
    assert shown["notification_previews"] == ["false", "imported recommended"]
    assert shown["attachment_types"] == ['["*/*"]', "default"]
    assert "system location: /etc/enclave/enclave.toml" in imported.stderr

    _shown(_run(user, system, "--set", "idle_lock_minutes=25"))
    _shown(_run(user, system, "--set", "notification_previews=true"))
    shown = _shown(_run(user, system))
    assert shown["idle_lock_minutes"] == ["25", "user"]
    assert shown["notification_previews"] == ["true", "user"]
    refused = _run(user, system, "--set", "secret_chats_only=false")
    assert refused.returncode == 1 and "set by your organisation (system mandatory)" in refused.stderr

    before = _run(user, system).stdout
    old = org.write(tmp_path / "old.toml", org.config(version=1, recommended="idle_lock_minutes = 1"))
    downgrade = _run(user, system, "--import", str(old))
    assert downgrade.returncode == 1 and "the version in force" in downgrade.stderr
    foreign = Organisation()
    other = foreign.write(tmp_path / "other.toml", foreign.config(version=5))
    assert "another organisation" in _run(user, system, "--import", str(other)).stderr
    assert _run(user, system).stdout == before
    shown = _shown(_run(user, system, "--unset", "idle_lock_minutes"))
    assert shown["idle_lock_minutes"] == ["10", "system recommended"]
