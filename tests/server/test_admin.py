"""``enclave-admin`` refuses names, departments and account ids that a frame could not carry
(a control character, text past the frame limits, bytes that are not UTF-8), on each backend:
one line saying why, exit status 1, and nothing stored."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from server.admin import main
from tests.server.stores import PostgresBackend, StoreBackend, run_with

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
        status = main(["--data", str(self.path), "--actor", "test-admin", *args])
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
    "args", [["code", "issue"], ["account", "disable"], ["device", "list", "--account"]], ids=" ".join
)
def test_an_account_id_no_account_can_have_is_refused_before_any_look_up(
    folder: Folder, args: list[str]
) -> None:
    """Test that code issue, account disable and device list refuse an id with a newline in one
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
