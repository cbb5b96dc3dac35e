"""enclave-admin org init, config sign and config verify, run as the admin runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from app.provisioning.accept import Candidate, Origin, check_candidate
from tests.support.organisation import EXAMPLE, EXAMPLE_AUTHORITY, EXAMPLE_ROOT

REPO = Path(__file__).resolve().parents[2]


def _admin(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server.admin", *args],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_init_sign_verify_from_an_empty_folder(tmp_path: Path) -> None:
    """Test that org init makes two sealed keys apart, config sign signs a config naming them,
    config verify reports it, and a client-side check accepts the result."""
    (tmp_path / "pass").write_text("root passphrase\n")
    (tmp_path / "apass").write_text("authority passphrase\n")
    keys = tmp_path / "org"
    made = _admin(
        "org",
        "init",
        "--out",
        str(keys),
        "--passphrase-file",
        str(tmp_path / "pass"),
        "--authority-passphrase-file",
        str(tmp_path / "apass"),
    )
    assert made.returncode == 0, made.stderr
    root = (keys / "root" / "root.pub").read_text().strip()
    authority = (keys / "authority" / "authority.pub").read_text().strip()
    assert f'root_key = "{root}"' in made.stdout and root != authority
    assert (keys / "root" / "root.key").stat().st_mode & 0o777 == 0o600
    again = _admin("org", "init", "--out", str(keys), "--passphrase-file", str(tmp_path / "pass"))
    assert again.returncode == 1 and "already holds a key" in again.stderr

    config = tmp_path / "enclave.toml"
    text = EXAMPLE.read_text().replace(EXAMPLE_ROOT, root).replace(EXAMPLE_AUTHORITY, authority)
    config.write_text(text.replace("expires = 2026-06-01T09:00:00Z", "expires = 2099-01-01T00:00:00Z"))
    unsigned = _admin("config", "verify", str(config))
    assert unsigned.returncode == 1 and "is not signed" in unsigned.stderr
    wrong = tmp_path / "wrong"
    wrong.write_text("not it\n")
    refused = _admin(
        "config",
        "sign",
        str(config),
        "--root-key",
        str(keys / "root" / "root.key"),
        "--passphrase-file",
        str(wrong),
    )
    assert refused.returncode == 1 and "does not open" in refused.stderr
    assert not (tmp_path / "enclave.toml.sig").exists()
    signed = _admin(
        "config",
        "sign",
        str(config),
        "--root-key",
        str(keys / "root" / "root.key"),
        "--passphrase-file",
        str(tmp_path / "pass"),
    )
    assert signed.returncode == 0, signed.stderr
    verified = _admin("config", "verify", str(config), "--expect-root", root)
    assert verified.returncode == 0, verified.stderr
    assert "organisation: Ministry of Examples" in verified.stdout and "version: 1" in verified.stdout
    check_candidate(
        Candidate(Origin.SYSTEM, "c", config.read_bytes(), (tmp_path / "enclave.toml.sig").read_bytes()),
        trusted_root=bytes.fromhex(root),
        in_force=None,
        now=1.9e9,
    )
    foreign = _admin("config", "verify", str(config), "--expect-root", authority)
    assert foreign.returncode == 1 and "another organisation" in foreign.stderr
    config.write_text(config.read_text().replace("version = 1 ", "version = 2 "))
    changed = _admin("config", "verify", str(config))
    assert changed.returncode == 1 and "does not verify" in changed.stderr


def test_sign_refuses_a_malformed_config_and_a_config_of_another_root(tmp_path: Path) -> None:
    """Test that config sign never signs a config clients would refuse, nor one naming another root."""
    (tmp_path / "pass").write_text("p\n")
    keys = tmp_path / "org"
    assert (
        _admin(
            "org",
            "init",
            "--out",
            str(keys),
            "--passphrase-file",
            str(tmp_path / "pass"),
            "--authority-passphrase-file",
            str(tmp_path / "pass"),
        ).returncode
        == 0
    )
    config = tmp_path / "enclave.toml"
    config.write_text(EXAMPLE.read_text())
    other = _admin(
        "config",
        "sign",
        str(config),
        "--root-key",
        str(keys / "root" / "root.key"),
        "--passphrase-file",
        str(tmp_path / "pass"),
    )
    assert other.returncode == 1 and "nothing was signed" in other.stderr
    config.write_text(EXAMPLE.read_text().replace("idle_lock_minutes = 15", "idle_lock_minutes = -1"))
    bad = _admin("config", "sign", str(config), "--root-key", str(keys / "root" / "root.key"))
    assert bad.returncode == 1 and "at policy.recommended.idle_lock_minutes (line 69)" in bad.stderr
    assert not (tmp_path / "enclave.toml.sig").exists()
    relay_usage = _admin("stats")
    assert relay_usage.returncode == 2 and "--data" in relay_usage.stderr
