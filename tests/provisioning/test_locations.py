"""Where the client looks for the system config on each OS, and reading a config with its signature."""

from __future__ import annotations

from pathlib import Path, PurePosixPath, PureWindowsPath

import pytest

from app.provisioning.accept import Origin
from app.provisioning.errors import ConfigFileError
from app.provisioning.locations import read_candidate, system_config_path


def test_the_system_location_of_each_os() -> None:
    """Test /etc/enclave, %ProgramData%\\Enclave (or Group Policy's path), /Library/Application Support."""
    assert system_config_path("linux", {}) == PurePosixPath("/etc/enclave/enclave.toml")
    assert system_config_path("freebsd14", {}) == PurePosixPath("/etc/enclave/enclave.toml")
    assert system_config_path("darwin", {}) == PurePosixPath(
        "/Library/Application Support/Enclave/enclave.toml"
    )
    windows = system_config_path("win32", {"ProgramData": r"D:\Data"}, lambda: None)
    assert windows == PureWindowsPath(r"D:\Data\Enclave\enclave.toml")
    assert system_config_path("win32", {}, lambda: None) == PureWindowsPath(
        r"C:\ProgramData\Enclave\enclave.toml"
    )
    chosen = system_config_path("win32", {}, lambda: r"\\server\share\enclave.toml")
    assert chosen == PureWindowsPath(r"\\server\share\enclave.toml")


def test_reading_a_config_with_and_without_its_signature(tmp_path: Path) -> None:
    """Test that a missing config is None, a missing signature is left to the check, and an
    unreadable or oversized file is a ConfigFileError naming it."""
    path = tmp_path / "enclave.toml"
    assert read_candidate(path, Origin.SYSTEM) is None
    path.write_bytes(b"format = 1\n")
    candidate = read_candidate(path, Origin.SYSTEM)
    assert candidate is not None and candidate.signature is None and candidate.config == b"format = 1\n"
    (tmp_path / "enclave.toml.sig").write_bytes(b"sig")
    assert read_candidate(path, Origin.USER).signature == b"sig"  # type: ignore[union-attr]
    path.write_bytes(b"#" * (256 * 1024 + 1))
    with pytest.raises(ConfigFileError, match="larger than"):
        read_candidate(path, Origin.USER)
    path.unlink()
    path.mkdir()
    with pytest.raises(ConfigFileError, match=f"cannot read {path}"):
        read_candidate(path, Origin.USER)
