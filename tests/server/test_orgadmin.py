"""enclave-admin org init, config sign and config verify, run as the admin runs them; and enrol,
against a real relay and the data folder of the run's real enrolment authority."""

from __future__ import annotations

import shutil
import stat
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from nacl.utils import random

from app.base.tools import EXIT_REFUSED
from app.crypto.keys import IdentityKeyPair
from app.provisioning.accept import Candidate, Origin, check_candidate
from app.provisioning.keyfile import KeyFileError, Role, open_key_file, seal_key
from authority.store import AuthorityStore
from tests.support.adminkey import admin_files
from tests.support.authority import AUTHORITY_PASSPHRASE, AuthorityProcess
from tests.support.cli import CliUser, pairs, passphrase_file
from tests.support.deployment import KEY_FILE, deployment
from tests.support.organisation import (
    EXAMPLE,
    EXAMPLE_ADMIN,
    EXAMPLE_AUTHORITY,
    EXAMPLE_LOG_KEY,
    EXAMPLE_ROOT,
)
from tests.support.relay import TEST_AUTHORITY, RelayProcess, admin, new_account

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
    assert f"\nlog key: {EXAMPLE_LOG_KEY}\n" in verified.stdout
    assert f"\nadmins: {EXAMPLE_ADMIN[0]} ({EXAMPLE_ADMIN[1]})\n" in verified.stdout
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
    lines = EXAMPLE.read_text().splitlines()
    line = next(n for n, text in enumerate(lines, 1) if text.startswith("idle_lock_minutes = 15 "))
    assert bad.returncode == 1 and f"at policy.recommended.idle_lock_minutes (line {line})" in bad.stderr
    assert not (tmp_path / "enclave.toml.sig").exists()
    relay_usage = _admin("stats")
    assert relay_usage.returncode == 2 and "--data" in relay_usage.stderr


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    """A real relay trusting the run's authority key, given as ``--authority-key``: the key enrol
    compares a config's with (the relay records it in its folder)."""
    process = RelayProcess(tmp_path_factory.mktemp("relay")).start()
    yield process
    process.stop()


def _enrol(
    relay: RelayProcess, account_id: str, config: Path, authority_data: Path
) -> subprocess.CompletedProcess[str]:
    return admin(
        relay.data_dir, "enrol", account_id, "--config", str(config), "--authority-data", str(authority_data)
    )


def _codes(authority: AuthorityProcess) -> list[tuple[object, ...]]:
    """The rows of the ``codes`` table in ``authority``'s data folder."""
    return authority.rows()[0]


def _refused_issuing_no_code(
    relay: RelayProcess, account_id: str, config: Path, authority_data: Path, says: str
) -> None:
    """enrol exits 1 with one line containing ``says`` and prints nothing; the run's authority holds
    the codes it held before, and the relay's admin log records no code for the account."""
    before = _codes(deployment().authority())
    done = _enrol(relay, account_id, config, authority_data)
    assert (done.returncode, done.stdout) == (EXIT_REFUSED, ""), done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith("enclave-admin: ") and says in line, line
    assert _codes(deployment().authority()) == before
    assert f'"account": "{account_id}", "expires_at"' not in admin(relay.data_dir, "log", "show").stdout


def test_enrol_issues_a_code_at_the_authority_that_enrols_a_profile_by_itself(
    relay: RelayProcess, tmp_path: Path
) -> None:
    """Test that enrol issues one unspent code in the authority's store for the account, under its
    name and department, and prints it with what the user needs from the config; and that a
    profile with the config imported enrols with enclave-cli enrol --code CODE alone, spending
    the code, as a device the relay lists."""
    authority = deployment().authority()
    account_id = new_account(relay.data_dir, "mia.moss", "Mia Moss")
    config = deployment().install(tmp_path / "enclave.toml", relay)
    before = _codes(authority)
    done = _enrol(relay, account_id, config, authority.data_dir)
    assert done.returncode == 0, done.stderr
    sheet = pairs(done.stdout)
    assert (sheet["account"], sheet["organisation"]) == (account_id, "Ministry of Examples")
    assert (sheet["relay"], sheet["pins"]) == (relay.https, relay.pin)
    assert sheet["run"] == f"enclave-cli enrol --code {sheet['code']}"
    [issued] = [row for row in _codes(authority) if row not in before]
    code_id, _, owner, _, spent_at, name, department = issued
    assert (owner, spent_at, name, department) == (account_id, None, "Mia Moss", "Tests")

    user = CliUser(account_id, tmp_path / "mia", passphrase_file(tmp_path))
    imported = user.run("policy", "--import", str(config))
    assert imported.returncode == 0, imported.stderr
    enrolled = user.run("enrol", "--code", sheet["code"])
    assert enrolled.returncode == 0, enrolled.stderr
    device = pairs(enrolled.stdout)
    assert device["account"] == account_id
    listed = admin(relay.data_dir, "device", "list", "--account", account_id)
    assert [row.split("\t")[:3] for row in listed.stdout.splitlines()[1:]] == [
        [device["device"], account_id, "active"]
    ]
    [spent] = [row for row in _codes(authority) if row[0] == code_id]
    assert spent[4] is not None


def test_enrol_refuses_a_config_that_does_not_verify(relay: RelayProcess, tmp_path: Path) -> None:
    """Test that enrol with a config whose signature does not verify exits 1 saying why, and issues
    no code."""
    account_id = new_account(relay.data_dir, "lee", "Lee Lane")
    config = deployment().install(tmp_path / "enclave.toml", relay)
    config.write_bytes(config.read_bytes().replace(b"Ministry of Examples", b"Ministry of Elsewhere"))
    _refused_issuing_no_code(relay, account_id, config, deployment().authority().data_dir, "does not verify")


def test_enrol_refuses_a_config_naming_another_authority_key_than_the_relays(
    relay: RelayProcess, tmp_path: Path
) -> None:
    """Test that enrol refuses, issuing no code, a config the organisation's root signed that names
    another authority key than the one the relay was started with: the relay would refuse its
    certificates."""
    account_id = new_account(relay.data_dir, "noa", "Noa North")
    other = IdentityKeyPair.generate(random).public.hex()
    text = deployment().config(relay).replace(TEST_AUTHORITY.public.hex().encode(), other.encode())
    config = deployment().signer.write(tmp_path / "enclave.toml", text)
    says = f"names the authority key {other[:16]}…, but this relay trusts {TEST_AUTHORITY.public.hex()[:16]}…"
    _refused_issuing_no_code(relay, account_id, config, deployment().authority().data_dir, says)


def test_enrol_refuses_a_config_naming_another_log_key_than_the_relays(
    relay: RelayProcess, tmp_path: Path
) -> None:
    """Test that enrol refuses, issuing no code, a config the organisation's root signed that names
    another log key than the one the relay signs its key log with: the device would refuse its log."""
    account_id = new_account(relay.data_dir, "ria", "Ria Reed")
    other = IdentityKeyPair.generate(random).public
    config = deployment().install(tmp_path / "enclave.toml", relay, log_key=other)
    says = (
        f"names the log key {other.hex()[:16]}…, but this relay signs its key log with"
        f" {relay.log_key.hex()[:16]}… (log.pub in its data folder); no code was issued"
    )
    _refused_issuing_no_code(relay, account_id, config, deployment().authority().data_dir, says)


def test_publish_takes_a_config_naming_the_relays_log_key_and_refuses_another(
    relay: RelayProcess, tmp_path: Path
) -> None:
    """Test that publish puts a config naming this relay's log key where devices fetch it, and
    refuses one naming another log key, exit 1, leaving what was published as it was."""
    published = relay.data_dir / "organisation.toml"
    try:
        good = deployment().install(tmp_path / "good" / "enclave.toml", relay, version=3)
        done = admin(relay.data_dir, "publish", str(good))
        assert done.returncode == 0, done.stderr
        other = IdentityKeyPair.generate(random).public
        bad = deployment().install(tmp_path / "bad" / "enclave.toml", relay, version=4, log_key=other)
        refused = admin(relay.data_dir, "publish", str(bad))
        assert (refused.returncode, refused.stdout) == (EXIT_REFUSED, "")
        assert f"names the log key {other.hex()[:16]}…" in refused.stderr
        assert "nothing was published" in refused.stderr
        assert published.read_bytes() == good.read_bytes()
        assert (
            published.with_name("organisation.toml.sig").read_bytes()
            == good.with_name("enclave.toml.sig").read_bytes()
        )
        assert '"version": 4' not in admin(relay.data_dir, "log", "show").stdout
    finally:
        published.unlink(missing_ok=True)
        published.with_name("organisation.toml.sig").unlink(missing_ok=True)


def test_enrol_refuses_an_authority_folder_sealing_another_key(relay: RelayProcess, tmp_path: Path) -> None:
    """Test that enrol refuses, issuing no code there nor at the run's authority, an authority folder
    whose authority.key seals another key than the config's authority key."""
    account_id = new_account(relay.data_dir, "oli", "Oli Oak")
    config = deployment().install(tmp_path / "enclave.toml", relay)
    folder = tmp_path / "other-authority"
    folder.mkdir(mode=0o700)
    sealed, _ = seal_key(Role.AUTHORITY, AUTHORITY_PASSPHRASE, random(32), random=random)
    (folder / KEY_FILE).write_bytes(sealed)
    AuthorityStore.open(folder).close()
    _refused_issuing_no_code(relay, account_id, config, folder, "holds the authority key")
    assert _codes(AuthorityProcess(folder, tmp_path / "unused.pass")) == []


def test_enrol_refuses_a_folder_with_no_authority_database(relay: RelayProcess, tmp_path: Path) -> None:
    """Test that enrol refuses, issuing no code and making no database, a folder that holds the
    authority's sealed key but no authority database (the authority never started there)."""
    account_id = new_account(relay.data_dir, "pat", "Pat Pine")
    config = deployment().install(tmp_path / "enclave.toml", relay)
    folder = tmp_path / "never-started"
    folder.mkdir(mode=0o700)
    shutil.copy2(deployment().authority().data_dir / KEY_FILE, folder / KEY_FILE)
    _refused_issuing_no_code(relay, account_id, config, folder, "no authority database")
    assert sorted(path.name for path in folder.iterdir()) == [KEY_FILE]


def test_enrol_refuses_a_disabled_account(relay: RelayProcess, tmp_path: Path) -> None:
    """Test that enrol refuses, issuing no code, an account that is disabled at the relay."""
    account_id = new_account(relay.data_dir, "quinn", "Quinn Quill")
    config = deployment().install(tmp_path / "enclave.toml", relay)
    disabled = admin(relay.data_dir, "account", "disable", account_id)
    assert disabled.returncode == 0, disabled.stderr
    says = f"no active account {account_id!r}"
    _refused_issuing_no_code(relay, account_id, config, deployment().authority().data_dir, says)


def _admin_init(out: Path, name: str, secret: Path) -> subprocess.CompletedProcess[str]:
    return _admin("admin", "init", "--name", name, "--out", str(out), "--passphrase-file", str(secret))


def test_admin_init_makes_a_sealed_admin_key_and_the_line_the_config_takes(tmp_path: Path) -> None:
    """Test that admin init writes a 0600 key file of role admin that opens with the passphrase to
    the key admin.pub names, and prints the TOML line listing it; that it refuses to overwrite a
    key, and a name no entry could carry, making nothing."""
    secret = tmp_path / "irina.pass"
    secret.write_text("Irina's passphrase\n", encoding="utf-8")
    out = tmp_path / "irina"
    made = _admin_init(out, "Ирина Петрова", secret)
    assert made.returncode == 0, made.stderr
    public = bytes.fromhex((out / "admin.pub").read_text(encoding="ascii"))
    sealed = (out / "admin.key").read_bytes()
    assert stat.S_IMODE((out / "admin.key").stat().st_mode) == 0o600
    key = open_key_file(sealed, "Irina's passphrase", role=Role.ADMIN, source="admin.key")
    assert key.public_key == public
    with pytest.raises(KeyFileError, match="not the organisation root key"):
        open_key_file(sealed, "Irina's passphrase", role=Role.ROOT, source="admin.key")
    [line] = [line.strip() for line in made.stdout.splitlines() if line.strip().startswith("admins = ")]
    assert tomllib.loads(line) == {"admins": [{"name": "Ирина Петрова", "key": public.hex()}]}

    again = _admin_init(out, "Ирина Петрова", secret)
    assert again.returncode == 1 and "exists already; nothing was made" in again.stderr
    assert (out / "admin.key").read_bytes() == sealed
    for name in ("Irina\x1b[2J", "I" * 129):
        bad = _admin_init(tmp_path / "bad", name, secret)
        assert bad.returncode == 1 and "no control character" in bad.stderr, bad.stderr
    assert not (tmp_path / "bad").exists()


def test_a_published_config_refuses_every_change_by_an_admin_it_does_not_list(
    relay: RelayProcess, tmp_path: Path
) -> None:
    """Test that publish refuses a config not listing the admin who publishes it; and that with a
    config published, a change by an admin key it does not list (made by admin init), or by a
    listed key under another name, exits 1 changing and logging nothing, while the listed
    admin's goes through."""
    published = relay.data_dir / "organisation.toml"
    try:
        unlisting = deployment().install(tmp_path / "unlisting" / "enclave.toml", relay, version=7, admins=())
        refused = admin(relay.data_dir, "publish", str(unlisting))
        assert refused.returncode == EXIT_REFUSED and "does not list the admin" in refused.stderr
        assert not published.exists()
        listing = deployment().install(tmp_path / "listing" / "enclave.toml", relay, version=7)
        done = admin(relay.data_dir, "publish", str(listing))
        assert done.returncode == 0, done.stderr

        secret = tmp_path / "other.pass"
        secret.write_text("another admin\n", encoding="utf-8")
        assert _admin_init(tmp_path / "other", "Other Admin", secret).returncode == 0
        other_key = [
            "--admin-key",
            str(tmp_path / "other" / "admin.key"),
            "--admin-passphrase-file",
            str(secret),
        ]
        key, passphrase = admin_files()
        renamed = ["--admin-key", str(key), "--admin-passphrase-file", str(passphrase)]
        log = admin(relay.data_dir, "log", "show").stdout
        create = ["account", "create", "mallory", "--name", "Mallory"]
        for options in (
            [*other_key, "--admin-name", "Other Admin"],
            [*renamed, "--admin-name", "Someone Else"],
        ):
            stopped = _admin("--data", str(relay.data_dir), *options, *create)
            assert stopped.returncode == EXIT_REFUSED, stopped.stderr
            assert "(version 7) does not list the admin" in stopped.stderr
            assert "nothing was changed" in stopped.stderr
        assert admin(relay.data_dir, "log", "show").stdout == log
        created = admin(relay.data_dir, *create)  # mallory did not exist: "already exists" otherwise
        assert created.returncode == 0, created.stderr
    finally:
        published.unlink(missing_ok=True)
        published.with_name("organisation.toml.sig").unlink(missing_ok=True)
