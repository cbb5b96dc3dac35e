"""enclave-admin authority code and revoke, run as programs against a real authority's folder."""

from __future__ import annotations

import re
from pathlib import Path

from nacl.utils import random

from app.crypto.keys import IdentityKeyPair
from app.protocol import enrolment
from app.protocol.authority import CertifyRequest
from tests.support.authority import AuthorityProcess, run_admin


def _admin(authority: AuthorityProcess, *args: str) -> tuple[int, str, str]:
    done = run_admin("authority", *args, "--authority-data", str(authority.data_dir))
    return done.returncode, done.stdout, done.stderr


def test_code_prints_a_code_once_and_stores_only_its_derivations(authority: AuthorityProcess) -> None:
    """Test that authority code prints a code in the relay's format, for the account in its
    stored form, and that the store holds code_id and code_key but not the code."""
    status, out, _ = _admin(authority, "code", "A.Kozlova", "--valid-hours", "1")
    assert status == 0
    code = out.strip()
    assert re.fullmatch(r"[A-Z2-7]{4}(-[A-Z2-7]{4}){5}", code)
    codes, _ = authority.rows()
    row = next(r for r in codes if r[0] == enrolment.code_id(code))
    assert row[1:3] == (enrolment.code_key(code), "a.kozlova")
    assert code.encode() not in (authority.data_dir / "authority.sqlite3").read_bytes()


def test_code_refuses_bad_accounts_and_hours(authority: AuthorityProcess) -> None:
    """Test that an invalid account id or --valid-hours out of 1..720 is exit 1 and stores nothing."""
    before = authority.rows()
    for args in (
        ("code", "Bad Name!"),
        ("code", ""),
        ("code", "ok.name", "--valid-hours", "0"),
        ("code", "ok.name", "--valid-hours", "721"),
    ):
        status, _, err = _admin(authority, *args)
        assert status == 1, args
        assert err.startswith("enclave-admin: ")
    assert authority.rows() == before


def test_revoke_twice_is_refused_the_second_time(authority: AuthorityProcess) -> None:
    """Test that revoke marks a certified device revoked once; a second revoke, or one of an
    unknown device, is exit 1 and changes nothing."""
    status, code, _ = _admin(authority, "code", "v.revoke")
    request = CertifyRequest.make(
        code=code.strip(), account_id="v.revoke", device_id=9, identity=IdentityKeyPair.generate(random)
    )
    assert authority.client().post("/v1/certify", request.encode())[0] == 200
    assert _admin(authority, "revoke", "v.revoke", "9")[0] == 0
    before = authority.rows()
    status, _, err = _admin(authority, "revoke", "v.revoke", "9")
    assert status == 1
    assert "revoked already; nothing was changed" in err
    status, _, err = _admin(authority, "revoke", "v.revoke", "10")
    assert status == 1
    assert "no device 10" in err
    assert authority.rows() == before


def test_a_folder_without_an_authority_is_a_usage_error(tmp_path: Path) -> None:
    """Test that the commands refuse a folder where no authority ever ran (exit 2), making nothing."""
    done = run_admin("authority", "code", "a.b", "--authority-data", str(tmp_path))
    assert done.returncode == 2
    assert "start enclave-authority there first" in done.stderr
    assert list(tmp_path.iterdir()) == []
