"""enclave-admin authority code and revoke, run as programs against a real authority's folder."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from nacl.utils import random

from app.base.accountid import AccountIdError
from app.crypto.certificate import DeviceCertificate
from app.crypto.keys import IdentityKeyPair
from app.protocol import enrolment
from app.protocol.authority import CertifyRequest
from authority.admin import Refused, issue_code
from authority.store import AuthorityStore
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


def _certified_device(authority: AuthorityProcess, code: str) -> int:
    request = CertifyRequest.make(code=code, identity=IdentityKeyPair.generate(random))
    status, body = authority.client().post("/v1/certify", request.encode())
    assert status == 200, body
    return DeviceCertificate.parse(body).device_id


def test_revoke_twice_is_refused_the_second_time(authority: AuthorityProcess) -> None:
    """Test that revoke marks a certified device revoked once; a second revoke, one of an unknown
    device, or one naming the device's id with another account is exit 1 and changes nothing."""
    _, code, _ = _admin(authority, "code", "v.revoke")
    device = _certified_device(authority, code.strip())
    assert _admin(authority, "revoke", "v.revoke", str(device))[0] == 0
    before = authority.rows()
    status, _, err = _admin(authority, "revoke", "v.revoke", str(device))
    assert status == 1
    assert "revoked already; nothing was changed" in err
    unknown = next(i for i in range(1, 100) if i not in {row[0] for row in before[1]})
    for account, device_id in (("v.revoke", unknown), ("v.someone-else", device)):
        status, _, err = _admin(authority, "revoke", account, str(device_id))
        assert status == 1
        assert f"no device {device_id} of {account}" in err
    assert authority.rows() == before


def test_issue_code_into_an_open_store_gives_a_code_that_certifies(authority: AuthorityProcess) -> None:
    """Test that issue_code, called on a store another command opened while the authority serves,
    returns a code stored for the account in its stored form, which certifies a device of it."""
    store = AuthorityStore.open(authority.data_dir)
    try:
        code = issue_code(store, "I.Open", 2, now=int(time.time()))
    finally:
        store.close()
    codes, _ = authority.rows()
    row = next(r for r in codes if r[0] == enrolment.code_id(code))
    assert row[1:3] == (enrolment.code_key(code), "i.open")
    assert 2 * 3600 - 60 <= row[3] - time.time() <= 2 * 3600
    device = _certified_device(authority, code)
    _, devices = authority.rows()
    assert next(r for r in devices if r[0] == device)[1] == "i.open"


def test_issue_code_refuses_bad_hours_and_accounts(authority: AuthorityProcess) -> None:
    """Test that issue_code refuses hours out of 1..720 and an invalid account id, storing nothing."""
    before = authority.rows()
    store = AuthorityStore.open(authority.data_dir)
    try:
        for account, hours in (("ok.name", 0), ("ok.name", 721)):
            with pytest.raises(Refused, match="between 1 and 720"):
                issue_code(store, account, hours, now=int(time.time()))
        with pytest.raises(AccountIdError):
            issue_code(store, "Bad Name!", 1, now=int(time.time()))
    finally:
        store.close()
    assert authority.rows() == before


def test_a_folder_without_an_authority_is_a_usage_error(tmp_path: Path) -> None:
    """Test that the commands refuse a folder where no authority ever ran (exit 2), making nothing."""
    done = run_admin("authority", "code", "a.b", "--authority-data", str(tmp_path))
    assert done.returncode == 2
    assert "start enclave-authority there first" in done.stderr
    assert list(tmp_path.iterdir()) == []
