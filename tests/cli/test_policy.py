"""enclave-cli policy as a person runs it: import, show with sources, set and unset, refusals; and
the commands a policy refuses, which say the rule in one line."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.cli.conftest import Pair
from tests.support.cli import CliUser, passphrase_file, rows
from tests.support.deployment import deployment
from tests.support.organisation import Organisation
from tests.support.relay import REPO, RelayProcess
from tests.support.systemconfig import with_system_folder


def _cli(user: CliUser, system: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``enclave-cli`` where /etc/enclave/ holds ``system`` (``<upper>/enclave/enclave.toml``)."""
    return subprocess.run(
        with_system_folder(user.command(*args), system.parent.parent),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def _run(user: CliUser, system: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return _cli(user, system, "policy", *args)


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


def test_a_refused_send_and_timer_name_the_rule_in_one_line(
    pair: Pair, relay: RelayProcess, tmp_path: Path
) -> None:
    """Test that where the system config's policy forbids it, send-file of a type not permitted and a
    timer below the minimum each exit 1 with one line naming the rule and what it allows, sending
    nothing, while a permitted text still leaves. The config is the pair's organisation's, a newer
    version of the one they imported, naming the relay they enrolled with: a profile follows the
    relay its organisation's config names."""
    system = deployment().install(
        tmp_path / "etc" / "enclave" / "enclave.toml",
        relay,
        version=2,
        mandatory="timer_default_seconds = 3600\ntimer_minimum_seconds = 3600\n"
        'timer_maximum_seconds = 86400\nattachment_types = ["image/*"]',
    )
    report = tmp_path / "report.pdf"
    report.write_bytes(b"%PDF-1.7")

    file_refused = _cli(pair.alice, system, "send-file", "bob", str(report))
    timer_refused = _cli(pair.alice, system, "timer", "bob", "60")
    for done, rule, allowed in (
        (file_refused, "attachment_types", "files of type image/*; application/pdf is refused"),
        (timer_refused, "timer_minimum_seconds", "timers from 3600 s to 86400 s; 60 s is refused"),
    ):
        assert done.returncode == 1, done.stderr
        assert done.stderr.splitlines() == [f"enclave-cli: refused by the policy's {rule}: {allowed}"]
        assert done.stdout == ""
    sent = _cli(pair.alice, system, "send", "bob", "within the rules")
    assert sent.returncode == 0, sent.stderr
    assert "status: sent" in sent.stdout
