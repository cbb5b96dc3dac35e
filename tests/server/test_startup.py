"""What an admin sees when the relay cannot start: one line naming the cause, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.relay import REPO

START_SECONDS = 60


def _start(data: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server.main", "--data", str(data), "--port", "0"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=START_SECONDS,
        check=False,
    )


def test_a_host_with_a_trailing_space_is_refused_naming_the_setting(tmp_path: Path) -> None:
    """Test that host = "0.0.0.0 " in server.toml stops the relay with one line naming host and the value."""
    (tmp_path / "server.toml").write_text('host = "0.0.0.0 "\n', encoding="utf-8")
    done = _start(tmp_path)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert "host '0.0.0.0 '" in done.stderr
    assert not (tmp_path / "tls.key").exists()


def test_a_host_that_does_not_resolve_is_refused_naming_the_setting(tmp_path: Path) -> None:
    """Test that a host name that does not resolve (.invalid, RFC 2606) stops the relay naming host."""
    (tmp_path / "server.toml").write_text('host = "relay.invalid"\n', encoding="utf-8")
    done = _start(tmp_path)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert "host 'relay.invalid' does not resolve" in done.stderr
    assert not (tmp_path / "tls.key").exists()
