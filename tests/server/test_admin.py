"""``enclave-admin`` refuses names, departments and account ids that a frame could not carry
(a control character, text past the frame limits, bytes that are not UTF-8), on each backend:
one line saying why, exit status 1, and nothing stored."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from nacl.utils import random

from app.protocol.logentry import AdminAction, parse_entry
from app.provisioning.keyfile import MINIMUM, Role, seal_key
from server.admin import main
from server.adminkey import KEY_VARIABLE, NAME_VARIABLE, PASSPHRASE_VARIABLE
from server.store.base import RelayStore
from tests.server.stores import PostgresBackend, StoreBackend, run_with
from tests.support.adminkey import ADMIN_NAME, ADMIN_PUBLIC, admin_arguments, admin_files

HOSTILE = ["al\x00ice", "al\nice", "al\x1b[2J", "al\x7fice", "al\x85ice"]
ACCOUNT = ["account", "create", "a.ivanova", "--name", "Анна Иванова", "--department", "Legal"]
FIELDS = {"account id": 2, "display name": 4, "department": 6}
"""Where each field is in ``ACCOUNT``."""


@dataclass
class Folder:
    """A relay's data folder and its database, as ``enclave-admin`` finds them."""

    path: Path
    backend: StoreBackend
    capsys: pytest.CaptureFixture[str]

    def admin(self, *args: str) -> tuple[int, str]:
        status = main(["--data", str(self.path), *admin_arguments(), *args])
        return status, self.capsys.readouterr().err

    def accounts(self) -> int:
        async def count(_: object) -> int:
            return int((await self.backend.sql("SELECT COUNT(*) FROM accounts"))[0][0])

        return run_with(self.backend.new_store(), count)


@pytest.fixture
def folder(backend: StoreBackend, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Folder:
    """The data folder of a relay on this backend, its database made as a first start makes it."""
    if isinstance(backend, PostgresBackend):
        settings = {"backend": "postgres", "postgres_dsn": backend.dsn, "postgres_schema": backend.schema}
        lines = [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
        (tmp_path / "server.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")

    async def nothing(_: object) -> None:
        return None

    run_with(backend.new_store(), nothing)
    return Folder(tmp_path, backend, capsys)


def _account(field: str, text: str) -> list[str]:
    args = list(ACCOUNT)
    args[FIELDS[field]] = text
    return args


@pytest.mark.parametrize("text", HOSTILE)
@pytest.mark.parametrize("field", FIELDS)
def test_a_control_character_is_refused_in_one_line(folder: Folder, field: str, text: str) -> None:
    """Test that a control character in an account id, display name or department is refused,
    exit 1, with one line naming the field and the character, and no account is made."""
    status, err = folder.admin(*_account(field, text))
    assert status == 1
    assert err.count("\n") == 1
    assert err.startswith(
        f"enclave-admin: the {field} {text!r} holds the control character U+{ord(text[2]):04X}"
    )
    assert folder.accounts() == 0


@pytest.mark.parametrize(
    ("field", "text", "reason"),
    [
        ("account id", "", "the account id is 0 bytes in UTF-8; it must be 1 to 64"),
        ("account id", "a" * 65, "the account id is 65 bytes in UTF-8; it must be 1 to 64"),
        ("display name", "Ж" * 65, "the display name is 130 bytes in UTF-8; it must be 0 to 128"),
        ("department", "d" * 129, "the department is 129 bytes in UTF-8; it must be 0 to 128"),
        ("display name", "al\udc80ice", "the display name 'al\\udc80ice' is not valid UTF-8"),
    ],
)
def test_text_a_frame_could_not_carry_is_refused(folder: Folder, field: str, text: str, reason: str) -> None:
    """Test that an empty or overlong account id, an overlong name or department, and bytes that
    were not UTF-8 on the command line are refused, exit 1, saying why, and nothing is stored."""
    assert folder.admin(*_account(field, text)) == (1, f"enclave-admin: {reason}\n")
    assert folder.accounts() == 0


@pytest.mark.parametrize(
    "args", [["account", "disable"], ["account", "revoke"], ["device", "list", "--account"]], ids=" ".join
)
def test_an_account_id_no_account_can_have_is_refused_before_any_look_up(
    folder: Folder, args: list[str]
) -> None:
    """Test that account disable and revoke and device list refuse an id with a newline in one
    line, exit 1, before looking it up (a NUL made PostgreSQL fail: exit 2)."""
    status, err = folder.admin(*args, "al\nice")
    assert status == 1
    assert err == (
        "enclave-admin: the account id 'al\\nice' holds the control character U+000A,"
        " which Enclave does not carry\n"
    )


def test_names_in_any_script_are_taken(folder: Folder) -> None:
    """Test that names and departments in Cyrillic or with accents, up to the limit, are stored."""
    assert folder.admin(*ACCOUNT) == (0, "")
    name = "Zoë Ørsted" + "ø" * 58
    assert len(name.encode()) == 128
    assert folder.admin("account", "create", "z.orsted", "--name", name, "--department", "Ед")[0] == 0
    assert folder.accounts() == 2


def _log(folder: Folder) -> list[list[str]]:
    """``log show``'s entries, each as its tab-separated fields (leaf, time, action, ...); a read
    needs no admin key."""
    status = main(["--data", str(folder.path), "log", "show"])
    out = folder.capsys.readouterr().out
    assert status == 0
    return [line.split("\t") for line in out.splitlines() if line]


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        ("Bad Name!", "holds ' ' (U+0020 SPACE)"),
        ("a.ivanova ", "holds ' ' (U+0020 SPACE)"),
        ("A.IVANOVA", "account 'a.ivanova' already exists"),
        ("a_ivanova", "looks like the existing account 'a.ivanova'"),
        ("á.ivanova", "looks like the existing account 'a.ivanova'"),
        ("a.ivan0va", "looks like the existing account 'a.ivanova'"),
        ("a.ivan\u043eva", "mixes Cyrillic and Latin letters"),  # one Cyrillic o
    ],
)
def test_bad_and_look_alike_account_ids_are_refused(folder: Folder, typed: str, reason: str) -> None:
    """Test that an id with a space or punctuation, another case of an existing id, or a look-alike
    of it is refused, exit 1, saying why, and no account is added."""
    assert folder.admin(*ACCOUNT) == (0, "")
    status, err = folder.admin("account", "create", typed, "--name", "Someone")
    assert status == 1
    assert reason in err and err.count("\n") == 1
    assert folder.accounts() == 1


def test_ids_are_stored_folded_in_every_script(folder: Folder) -> None:
    """Test that Cyrillic, Persian and Hangul ids are accepted, and an id typed in capitals is stored
    and found in lower case."""
    for typed in ("Анна.Петрова", "علی.رضایی", "김민준", "J.Smith"):
        assert folder.admin("account", "create", typed, "--name", "Someone")[0] == 0
    assert folder.admin("account", "disable", "j.smith") == (0, "")
    assert folder.admin("device", "list", "--account", "Анна.ПЕТРОВА") == (0, "")
    created = [json.loads(fields[4])["account"] for fields in _log(folder) if fields[2] == "account.create"]
    assert created == ["анна.петрова", "علی.رضایی", "김민준", "j.smith"]
    disabled = [json.loads(fields[4])["account"] for fields in _log(folder) if fields[2] == "account.disable"]
    assert disabled == ["j.smith"]


def test_an_id_stored_before_the_rule_keeps_working(folder: Folder) -> None:
    """Test that an account whose id breaks today's rule (capitals, a space) is still found as it
    was stored: its devices are listed and it can be disabled."""

    async def insert(_: object) -> None:
        await folder.backend.sql("INSERT INTO accounts VALUES ('Old Style', 'Old', '', 'active', 'old')")

    run_with(folder.backend.new_store(), insert)
    assert folder.admin("device", "list", "--account", "Old Style") == (0, "")
    assert folder.admin("account", "disable", "Old Style") == (0, "")
    assert [fields[4] for fields in _log(folder)] == ['{"account": "Old Style"}']


def test_revoking_a_revoked_device_is_refused_and_not_logged(folder: Folder) -> None:
    """Test that a second revocation of a device exits 1 saying it is revoked already, with no second
    log entry; so does disabling a disabled account."""
    assert folder.admin(*ACCOUNT) == (0, "")

    async def device(_: object) -> int:
        rows = await folder.backend.sql(
            "INSERT INTO devices (device_id, account_id, identity_key, signed_prekey_id, signed_prekey,"
            " signed_prekey_signature, certificate) VALUES (77, 'a.ivanova', $1, 1, $2, $3, $4)"
            " RETURNING device_id",
            b"k" * 32,
            b"p" * 32,
            b"s" * 64,
            b"c" * 120,
        )
        return int(rows[0][0])

    device_id = str(run_with(folder.backend.new_store(), device))
    assert folder.admin("device", "revoke", device_id) == (0, "")
    assert folder.admin("device", "revoke", device_id) == (
        1,
        f"enclave-admin: device {device_id} is revoked already; nothing was changed\n",
    )
    assert folder.admin("account", "disable", "a.ivanova")[0] == 0
    assert folder.admin("account", "disable", "a.ivanova")[0] == 1
    actions = [fields[2] for fields in _log(folder)]
    assert actions == ["account.create", "device.revoke", "device.revoked", "account.disable"]


def test_every_change_is_signed_by_the_acting_admins_own_key(folder: Folder) -> None:
    """Test that each change is a key log entry that names the admin and verifies under the admin's
    key, for every kind of change the tool makes here."""
    assert folder.admin(*ACCOUNT) == (0, "")
    assert folder.admin("account", "disable", "a.ivanova") == (0, "")
    assert folder.admin("account", "enable", "a.ivanova") == (0, "")

    async def entries(store: RelayStore) -> list[bytes]:
        return await store.log_entries(0, 100)

    actions = [parse_entry(e) for e in run_with(folder.backend.new_store(), entries)]
    assert [a.action for a in actions if isinstance(a, AdminAction)] == [
        "account.create",
        "account.disable",
        "account.enable",
    ]
    for action in actions:
        assert isinstance(action, AdminAction)
        assert (action.admin, action.admin_key) == (ADMIN_NAME, ADMIN_PUBLIC)
        action.verify()


def test_a_change_without_a_key_that_opens_is_refused_and_changes_nothing(
    folder: Folder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Test that a change with no admin key, with a passphrase that does not open it, or with
    another role's key file exits 1 saying why and leaves the accounts and the log as they
    were; a read (device list) needs no key; the key and name may come from the environment."""
    for variable in (KEY_VARIABLE, NAME_VARIABLE, PASSPHRASE_VARIABLE):
        monkeypatch.delenv(variable, raising=False)
    data = ["--data", str(folder.path)]
    assert main([*data, *ACCOUNT]) == 1
    assert "give --admin-key FILE and --admin-name NAME" in folder.capsys.readouterr().err
    key, _ = admin_files()
    wrong = tmp_path / "wrong.pass"
    wrong.write_text("not the passphrase\n", encoding="utf-8")
    named = ["--admin-key", str(key), "--admin-name", ADMIN_NAME]
    assert main([*data, *named, "--admin-passphrase-file", str(wrong), *ACCOUNT]) == 1
    assert "the passphrase does not open" in folder.capsys.readouterr().err
    other_role = tmp_path / "root.key"
    other_role.write_bytes(seal_key(Role.ROOT, "x", bytes(32), random=random, cost=MINIMUM)[0])
    assert main([*data, "--admin-key", str(other_role), "--admin-name", "Root", *ACCOUNT]) == 1
    assert "holds the organisation root key, not the admin key" in folder.capsys.readouterr().err
    assert folder.accounts() == 0 and _log(folder) == []
    assert main([*data, "device", "list"]) == 0
    folder.capsys.readouterr()

    _, passphrase = admin_files()
    monkeypatch.setenv(KEY_VARIABLE, str(key))
    monkeypatch.setenv(NAME_VARIABLE, ADMIN_NAME)
    monkeypatch.setenv(PASSPHRASE_VARIABLE, str(passphrase))
    assert main([*data, *ACCOUNT]) == 0
    folder.capsys.readouterr()
    assert [fields[2:4] for fields in _log(folder)] == [
        ["account.create", f"by {ADMIN_NAME} ({ADMIN_PUBLIC.hex()[:16]}…)"]
    ]


def test_code_issue_is_gone_a_usage_error_that_stores_nothing(folder: Folder) -> None:
    """Test that `enclave-admin code issue ACCOUNT`, which made the relay's own codes before the
    enrolment authority, is now a usage error (exit 2) naming the commands there are, and that
    it stores and logs nothing."""
    assert folder.admin(*ACCOUNT) == (0, "")
    before = run_with(folder.backend.new_store(), lambda _: folder.backend.snapshot())
    with pytest.raises(SystemExit) as exited:
        folder.admin("code", "issue", "a.ivanova")
    assert exited.value.code == 2
    err = folder.capsys.readouterr().err
    assert "invalid choice: 'code'" in err and "'enrol'" in err
    assert run_with(folder.backend.new_store(), lambda _: folder.backend.snapshot()) == before
    assert [fields[2] for fields in _log(folder)] == ["account.create"]
