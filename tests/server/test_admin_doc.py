"""docs/ADMIN.md stays true: its settings table lists every relay setting with its default, and its
walk-through from ``org init`` to two enrolled users runs as written."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import MISSING, fields
from pathlib import Path

from server.config import ServerConfig

ADMIN_DOC = (Path(__file__).resolve().parents[2] / "docs" / "ADMIN.md").read_text(encoding="utf-8")


def test_every_setting_is_documented_with_its_default() -> None:
    """Test that each ServerConfig setting has a row in ADMIN.md showing its real default."""
    for setting in fields(ServerConfig):
        if setting.default is MISSING:
            continue
        default = setting.default
        shown = (f"`{default}`" if default else "") if isinstance(default, str) else str(default)
        assert f"| `{setting.name}` | {shown}" in ADMIN_DOC, setting.name


WALK_THROUGH_MARK = "<!-- walk-through: tests/server/test_admin_doc.py runs this block with bash -->\n```sh\n"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_walk_through_from_org_init_to_two_enrolled_users_runs_as_written(tmp_path: Path) -> None:
    """Test that ADMIN.md's walk-through, run by bash as written on an empty folder, starts the
    enrolment authority and the relay and ends with two users enrolled by the code alone, one
    reading what the other wrote; and that the relay's folder holds no copy of the authority key."""
    start = ADMIN_DOC.index(WALK_THROUGH_MARK) + len(WALK_THROUGH_MARK)
    script = ADMIN_DOC[start : ADMIN_DOC.index("```\n", start)]
    work = tmp_path / "admin"
    work.mkdir()
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=work,
        env={
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "HOST": "127.0.0.1",
            "RELAY_PORT": str(free_port()),
            "AUTHORITY_PORT": str(free_port()),
        },
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "account: a.ivanova" in lines and "account: b.petrov" in lines
    assert any("a.ivanova" in line and "Добрый день, Борис" in line for line in lines), done.stdout
    sealed = (work / "ministry" / "authority" / "authority.key").read_bytes()
    relay_files = [f for f in (work / "relay-data").rglob("*") if f.is_file()]
    assert relay_files and all(sealed not in f.read_bytes() for f in relay_files)
    assert not (work / "relay-data" / "signing.key").exists()
