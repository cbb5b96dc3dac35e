"""Enrolment as an admin and a user do it with the organisation's config: ``enclave-admin enrol``
prints the code and what the user needs, and ``enclave-cli enrol --code`` alone does the rest on a
machine whose system location holds the config; what goes wrong is one line."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.cli import CliUser, pairs, passphrase_file
from tests.support.organisation import Organisation
from tests.support.relay import REPO, RelayProcess, admin
from tests.support.systemconfig import with_system_folder

NEXT_PIN = "sha256/" + "N" * 43 + "="
"""The pin of a key the relay does not have yet, listed beside its current one for a rotation."""
CLOSED_URL = "https://127.0.0.1:9"


def _with_system(upper: Path, command: list[str]) -> subprocess.CompletedProcess[str]:
    """``command`` where /etc/enclave/ holds what ``upper/enclave/`` holds."""
    return subprocess.run(
        with_system_folder(command, upper), cwd=REPO, capture_output=True, text=True, timeout=90, check=False
    )


def _install(
    org: Organisation, upper: Path, *, urls: tuple[str, ...], pins: tuple[str, ...], version: int = 1
) -> Path:
    config = org.config(version=version, relay_urls=urls, relay_pins=pins)
    return org.write(upper / "enclave" / "enclave.toml", config)


def _code_for(relay: RelayProcess, account_id: str, config: Path) -> dict[str, str]:
    created = admin(relay.data_dir, "account", "create", account_id, "--name", account_id.title())
    assert created.returncode == 0, created.stderr
    done = admin(relay.data_dir, "enrol", account_id, "--config", str(config))
    assert done.returncode == 0, done.stderr
    return pairs(done.stdout)


def test_admin_enrol_prints_what_the_user_needs_and_the_code_alone_enrols(
    relay: RelayProcess, tmp_path: Path
) -> None:
    """Test that enclave-admin enrol prints the code with the organisation, the relay's address and
    pins from the signed config and the command to run; that the command, run where the config is in
    the system location, enrols and the two users' messages go through the relay; and that an
    address given against the config is refused in one line, sending nothing."""
    org = Organisation()
    upper = tmp_path / "upper"
    config = _install(org, upper, urls=(relay.https,), pins=(relay.pin, NEXT_PIN))
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
        if account_id == "jo":
            steered = _with_system(
                upper, user.command("enrol", "--server", CLOSED_URL, "--code", sheet["code"])
            )
            assert steered.returncode == 1
            assert len(steered.stderr.splitlines()) == 1 and "is not among them" in steered.stderr
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
    pins none of which the relay's key matches, exits 1 with one line saying so, and that the code,
    never sent, then enrols under the corrected config."""
    org = Organisation()
    good = _install(org, tmp_path / "good", urls=(relay.https,), pins=(relay.pin,))
    code = _code_for(relay, "kit", good)["code"]
    user = CliUser("kit", tmp_path / "kit", passphrase_file(tmp_path))
    for version, urls, pins, says in (
        (1, (CLOSED_URL,), (relay.pin,), f"the relay at {CLOSED_URL} cannot be reached"),
        (2, (relay.https,), (NEXT_PIN,), "matches no pinned key"),
    ):
        upper = tmp_path / f"v{version}"
        _install(org, upper, urls=urls, pins=pins, version=version)
        done = _with_system(upper, user.command("enrol", "--code", code))
        assert done.returncode == 1
        assert done.stderr.splitlines() == [done.stderr.strip()] and says in done.stderr, done.stderr
    fixed = tmp_path / "v3"
    _install(org, fixed, urls=(relay.https,), pins=(relay.pin,), version=3)
    done = _with_system(fixed, user.command("enrol", "--code", code))
    assert done.returncode == 0, done.stderr


def test_admin_enrol_checks_the_config_before_it_issues_a_code(relay: RelayProcess, tmp_path: Path) -> None:
    """Test that enclave-admin enrol with a config whose signature does not verify exits 1 saying
    why, and issues no code (the admin log has no code.issue for the account)."""
    org = Organisation()
    config = _install(org, tmp_path / "upper", urls=(relay.https,), pins=(relay.pin,))
    config.write_bytes(config.read_bytes().replace(b"Ministry of Examples", b"Ministry of Elsewhere"))
    assert admin(relay.data_dir, "account", "create", "lee", "--name", "Lee").returncode == 0
    done = admin(relay.data_dir, "enrol", "lee", "--config", str(config))
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("enclave-admin: ")
    assert '"account": "lee", "expires_at"' not in admin(relay.data_dir, "log", "show").stdout
