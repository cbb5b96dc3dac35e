"""Where the client finds organisation configs: the system location of each OS, and files
the user names.

The system location is the folder the machine's admins manage (writable only by them):
``/etc/enclave/`` on Linux and other Unix, ``%ProgramData%\\Enclave\\`` on Windows,
``/Library/Application Support/Enclave/`` on macOS, holding ``enclave.toml`` and
``enclave.toml.sig``. On Windows a Group Policy (``packaging/provisioning/enclave.admx``)
may point elsewhere through ``HKLM\\Software\\Policies\\Enclave\\ConfigPath``. The platform,
the environment and the registry read are parameters, so tests point at a folder of their
own and check every OS's answer on any OS.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath

from app.provisioning.accept import Candidate, Origin
from app.provisioning.config import MAX_CONFIG_BYTES
from app.provisioning.errors import ConfigFileError
from app.provisioning.signature import MAX_SIGNATURE_FILE_BYTES, SIGNATURE_SUFFIX

CONFIG_NAME = "enclave.toml"
POLICY_KEY = r"Software\Policies\Enclave"
POLICY_VALUE = "ConfigPath"
"""The registry value (under HKEY_LOCAL_MACHINE) that the Group Policy template sets."""


def windows_policy_path() -> str | None:
    """The config path Group Policy set, or None (not Windows, or no policy)."""
    if sys.platform != "win32":
        return None
    import winreg  # noqa: PLC0415 (exists on Windows only)

    try:
        with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, POLICY_KEY) as key:
            value, kind = winreg.QueryValueEx(key, POLICY_VALUE)
    except OSError:
        return None
    return value if kind in (winreg.REG_SZ, winreg.REG_EXPAND_SZ) and value else None


def system_config_path(
    platform: str = sys.platform,
    environ: Mapping[str, str] = os.environ,
    policy_path: Callable[[], str | None] = windows_policy_path,
) -> PurePath:
    """The system config file for ``platform`` (``sys.platform``'s values)."""
    if platform == "win32":
        chosen = policy_path()
        if chosen:
            return PureWindowsPath(chosen)
        return PureWindowsPath(environ.get("ProgramData") or r"C:\ProgramData", "Enclave", CONFIG_NAME)
    if platform == "darwin":
        return PurePosixPath("/Library/Application Support/Enclave", CONFIG_NAME)
    return PurePosixPath("/etc/enclave", CONFIG_NAME)


def _read(path: Path, limit: int) -> bytes:
    with path.open("rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ConfigFileError(f"{path} is larger than {limit} bytes: not an Enclave config")
    return data


def read_candidate(path: Path, origin: Origin) -> Candidate | None:
    """The config at ``path`` and its signature (``path`` + ``.sig``); None if there is no config.

    A missing signature is not an error here: the check refuses it as unsigned, by name.
    """
    signature_path = path.with_name(path.name + SIGNATURE_SUFFIX)
    try:
        config = _read(path, MAX_CONFIG_BYTES)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ConfigFileError(f"cannot read {path}: {e.strerror or e}") from e
    try:
        signature: bytes | None = _read(signature_path, MAX_SIGNATURE_FILE_BYTES)
    except FileNotFoundError:
        signature = None
    except OSError as e:
        raise ConfigFileError(f"cannot read {signature_path}: {e.strerror or e}") from e
    return Candidate(origin, str(path), config, signature)
