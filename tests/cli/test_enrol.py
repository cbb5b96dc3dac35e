"""Enrolment as an admin and a user do it with the organisation's config: ``enclave-admin enrol``
issues a code at the enrolment authority and prints what the user needs, and ``enclave-cli enrol
--code`` alone does the rest where the config is in force (the system location, or imported).
What goes wrong is one line; what reaches nobody spends no code, and an enrolment the authority
certified but the relay did not register yet is finished later without a new code."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from app.base.tools import EXIT_REFUSED
from tests.support.cli import CliUser, import_organisation, pairs, passphrase_file
from tests.support.deployment import deployment
from tests.support.relay import REPO, RelayProcess, admin, new_account
from tests.support.systemconfig import with_system_folder

NEXT_PIN = "sha256/" + "N" * 43 + "="
"""The pin of a key the relay does not have yet, listed beside its current one for a rotation."""
CLOSED_URL = "https://127.0.0.1:9"


def _with_system(upper: Path, command: list[str]) -> subprocess.CompletedProcess[str]:
    """``command`` where /etc/enclave/ holds what ``upper/enclave/`` holds."""
    return subprocess.run(
        with_system_folder(command, upper), cwd=REPO, capture_output=True, text=True, timeout=90, check=False
    )


def _install(upper: Path, relay: RelayProcess, **changes: object) -> Path:
    """The organisation's config for ``relay`` in ``upper/enclave/``, with ``changes``."""
    return deployment().install(upper / "enclave" / "enclave.toml", relay, **changes)


def _code_for(relay: RelayProcess, account_id: str, config: Path) -> dict[str, str]:
    """A new account at the relay and what ``enclave-admin enrol`` prints for it."""
    new_account(relay.data_dir, account_id, account_id.title())
    authority = str(deployment().authority().data_dir)
    done = admin(relay.data_dir, "enrol", account_id, "--config", str(config), "--authority-data", authority)
    assert done.returncode == 0, done.stderr
    return pairs(done.stdout)


def _authority_rows() -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    """The run's authority's codes and devices, to show what a refused enrolment left alone."""
    return deployment().authority().rows()


def _one_line(done: subprocess.CompletedProcess[str], says: str) -> None:
    assert done.returncode == EXIT_REFUSED, done.stdout
    assert done.stderr.splitlines() == [done.stderr.strip()] and says in done.stderr, done.stderr


def test_admin_enrol_prints_what_the_user_needs_and_the_code_alone_enrols(
    relay: RelayProcess, tmp_path: Path
) -> None:
    """Test that enclave-admin enrol prints the code with the organisation, the relay's address and
    pins from the signed config and the command to run; and that the command, run where the config
    is in the system location, enrols and the two users' messages go through the relay."""
    upper = tmp_path / "upper"
    config = _install(upper, relay, relay_pins=(relay.pin, NEXT_PIN))
    users = {}
    for account_id in ("ivy", "jo"):
        sheet = _code_for(relay, account_id, config)
        assert sheet["account"] == account_id
        assert sheet["organisation"] == "Ministry of Examples"
        assert sheet["relay"] == relay.https
        assert sheet["pins"] == f"{relay.pin} {NEXT_PIN}"
        assert sheet["run"] == f"enclave-cli enrol --code {sheet['code']}"
        assert "enclave-cli policy --import enclave.toml" in sheet["install"]
        user = CliUser(account_id, tmp_path / account_id, passphrase_file(tmp_path))
        enrolled = _with_system(upper, user.command(*sheet["run"].split()[1:]))
        assert enrolled.returncode == 0, enrolled.stderr
        assert pairs(enrolled.stdout)["account"] == account_id
        users[account_id] = user

    listening = users["jo"].start("listen", "--count", "1", "--wait", "60")
    sent = users["ivy"].run("send", "jo", "enrolled with the code alone")
    assert sent.returncode == 0, sent.stderr
    assert "status: sent" in sent.stdout
    out, err = listening.communicate(timeout=90)
    assert listening.returncode == 0, err
    assert "enrolled with the code alone" in out


def test_a_config_whose_relay_is_down_or_mis_pinned_is_one_line(relay: RelayProcess, tmp_path: Path) -> None:
    """Test that enclave-cli enrol --code under a config naming an address where nothing answers, or
    pins none of which the relay's key matches, exits 1 with one line saying so, and that the
    enrolment then finishes under the corrected config, the authority having certified it once."""
    code = _code_for(relay, "kit", _install(tmp_path / "good", relay))["code"]
    user = CliUser("kit", tmp_path / "kit", passphrase_file(tmp_path))
    before = _authority_rows()
    for version, urls, pins, says in (
        (2, (CLOSED_URL,), (relay.pin,), f"the relay at {CLOSED_URL} cannot be reached"),
        (3, (relay.https,), (NEXT_PIN,), "matches no pinned key"),
    ):
        upper = tmp_path / f"v{version}"
        _install(upper, relay, version=version, relay_urls=urls, relay_pins=pins)
        _one_line(_with_system(upper, user.command("enrol", "--code", code)), says)
    certified = _authority_rows()
    assert len(certified[1]) == len(before[1]) + 1
    fixed = tmp_path / "v4"
    _install(fixed, relay, version=4)
    done = _with_system(fixed, user.command("enrol", "--code", code))
    assert done.returncode == 0, done.stderr
    assert _authority_rows() == certified


def test_enrol_with_no_config_in_force_is_refused_and_spends_no_code(
    relay: RelayProcess, tmp_path: Path
) -> None:
    """Test that enclave-cli enrol --code with no organisation config in force exits 1 with one line
    saying to import the organisation's config, sending nothing to the authority, so that the same
    code enrols once the config is imported."""
    user = CliUser("lou", tmp_path / "lou", passphrase_file(tmp_path))
    code = deployment().code(new_account(relay.data_dir, "lou", "Lou Lark"))
    before = _authority_rows()
    _one_line(user.run("enrol", "--code", code), "import your organisation's config")
    assert _authority_rows() == before
    import_organisation(relay, user)
    done = user.run("enrol", "--code", code)
    assert done.returncode == 0, done.stderr
    assert pairs(done.stdout)["account"] == "lou"


def test_a_server_other_than_the_configs_is_refused_and_nothing_is_sent(
    relay: RelayProcess, tmp_path: Path
) -> None:
    """Test that enrol --server with an address the config does not name exits 1 with one line,
    connecting to neither that address nor the authority, so that the same code then enrols alone."""
    user = CliUser("max", tmp_path / "max", passphrase_file(tmp_path))
    code = deployment().code(new_account(relay.data_dir, "max", "Max Mint"))
    import_organisation(relay, user)
    before = _authority_rows()
    with socket.create_server(("127.0.0.1", 0)) as elsewhere:
        elsewhere.setblocking(False)
        url = f"https://127.0.0.1:{elsewhere.getsockname()[1]}"
        _one_line(user.run("enrol", "--server", url, "--pin", relay.pin, "--code", code), "is not among them")
        try:
            connection, _ = elsewhere.accept()
        except BlockingIOError:
            connection = None
        assert connection is None, "enrol connected to the address the config does not name"
    assert _authority_rows() == before
    done = user.run("enrol", "--code", code)
    assert done.returncode == 0, done.stderr


def test_an_enrolment_the_relay_missed_is_finished_with_no_new_code(tmp_path: Path) -> None:
    """Test that when the relay is down during enrol, the command exits 1 in one line after the
    authority certified the device (the code is spent), and that enrol once the relay is back
    registers that same device with the same code, the authority issuing and certifying nothing new."""
    relay = RelayProcess(tmp_path / "relay").start()
    try:
        user = CliUser("nia", tmp_path / "nia", passphrase_file(tmp_path))
        code = deployment().code(new_account(relay.data_dir, "nia", "Nia Nettle"))
        import_organisation(relay, user)
        before = _authority_rows()
        relay.stop()
        _one_line(user.run("enrol", "--code", code), f"the relay at {relay.https} cannot be reached")
        certified = _authority_rows()
        [spent] = [row for row in certified[0] if row not in before[0]]
        assert spent[2] == "nia" and spent[4] is not None
        [(device_id, account_id, *_)] = [row for row in certified[1] if row not in before[1]]
        assert account_id == "nia"
        relay.start()
        done = user.run("enrol", "--code", code)
        assert done.returncode == 0, done.stderr
        assert pairs(done.stdout) == {"account": "nia", "device": str(device_id)}
        assert _authority_rows() == certified
    finally:
        relay.stop()
