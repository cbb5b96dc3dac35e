"""Every Enclave command-line tool, run as a program: ``--version`` says pyproject.toml's version,
``--help`` shows the options' defaults, and the exit status is 0 done, 1 refused, 2 bad usage
(README.md, docs/ADMIN.md)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from app.base.tools import EXIT_DONE, EXIT_REFUSED, EXIT_USAGE
from server.store.sqlite import SQLiteStore
from tests.support.adminkey import admin_arguments

REPO = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
TOOLS = {
    "enclave-admin": ["-m", "server.admin"],
    "enclave-server": ["-m", "server.main"],
    "enclave-authority": ["-m", "authority.main"],
    "enclave-cli": ["-m", "cli.main"],
    "run.sh": ["main.py"],
}
"""Each tool's name and how its entry point is run (run.sh execs main.py once .venv exists)."""
DEFAULT_SHOWN = {
    "enclave-admin": (["enrol", "--help"], "1 to 720 (default: 72)"),
    "enclave-server": (["--help"], "(built in: 8443"),
    "enclave-authority": (["--help"], "(default: 8444)"),
    "enclave-cli": (["send", "--help"], "(default: 15.0)"),
    "run.sh": (["--help"], "(default: 8743)"),
}
"""A command's help and an option's default it must show."""


def _run(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, *TOOLS[tool], *args]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("tool", TOOLS)
def test_every_tool_says_its_version(tool: str) -> None:
    """Test that `TOOL --version` prints the tool's name and pyproject.toml's version, exit 0."""
    done = _run(tool, "--version")
    assert (done.returncode, done.stdout) == (EXIT_DONE, f"{tool} {VERSION}\n")


@pytest.mark.parametrize("tool", TOOLS)
def test_every_tool_shows_its_defaults_in_help(tool: str) -> None:
    """Test that --help exits 0 and shows the default of an option that has one."""
    args, shown = DEFAULT_SHOWN[tool]
    done = _run(tool, *args)
    assert done.returncode == EXIT_DONE
    assert shown in " ".join(done.stdout.split())


@pytest.mark.parametrize("tool", TOOLS)
def test_bad_usage_exits_2(tool: str) -> None:
    """Test that an option no tool has is bad usage: exit 2, with argparse's line saying what is wrong."""
    done = _run(tool, "--no-such-option")
    assert done.returncode == EXIT_USAGE
    assert f"{tool}: error: " in done.stderr


@pytest.fixture
def relay_data(tmp_path: Path) -> Path:
    """A relay's data folder holding its database, as a first start leaves it."""

    async def make() -> None:
        store = SQLiteStore(tmp_path / "relay.sqlite3")
        await store.open()
        await store.close()

    asyncio.run(make())
    return tmp_path


def test_enclave_admin_refuses_with_1_and_a_verify_without_a_head_is_usage(relay_data: Path) -> None:
    """Test that enclave-admin exits 1 for an unknown account and 2 for log verify without the kept
    head it checks against."""
    data = ["--data", str(relay_data), *admin_arguments()]
    refused = _run("enclave-admin", *data, "account", "disable", "nobody")
    assert (refused.returncode, refused.stderr) == (EXIT_REFUSED, "enclave-admin: no account 'nobody'\n")
    usage = _run("enclave-admin", *data, "log", "verify")
    assert usage.returncode == EXIT_USAGE and "--head" in usage.stderr


def test_enclave_server_refuses_a_bad_setting_as_usage(tmp_path: Path) -> None:
    """Test that enclave-server exits 2 on a setting of the wrong type, as ADMIN.md §1 says."""
    (tmp_path / "server.toml").write_text('port = "eighty"\n', encoding="utf-8")
    done = _run("enclave-server", "--data", str(tmp_path))
    assert done.returncode == EXIT_USAGE and done.stderr.startswith("enclave-server: ")


@pytest.mark.parametrize("tool", ["enclave-cli", "run.sh"])
def test_the_clients_refuse_with_1_in_one_line(tool: str, tmp_path: Path) -> None:
    """Test that enclave-cli and the workspace exit 1 with one line when they cannot go on."""
    command = ["contacts"] if tool == "enclave-cli" else []
    done = _run(tool, "--profile", str(tmp_path / "p"), "--passphrase-file", str(tmp_path / "none"), *command)
    assert done.returncode == EXIT_REFUSED
    assert done.stderr.count("\n") == 1
