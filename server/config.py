"""The relay's settings: a TOML file in the data folder, overridden by command-line flags.

Every setting has a safe default, so a first start needs nothing but a data folder.
A file with an unknown key or a value of the wrong type is refused with a message that
names the key, and the relay does not start.
"""

from __future__ import annotations

import re
import socket
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from app.base.errors import EnclaveError

CONFIG_FILENAME = "server.toml"
AUTHORITY_RECORD = "authority.pub"
"""The ``authority_key`` the relay last started with, for ``enclave-admin`` to check configs and
codes against when it was given as a flag (written at every start; the relay never reads it)."""
PUBLISHED_CONFIG = "organisation.toml"
"""Where ``enclave-admin publish`` puts the organisation's signed config for devices to fetch
(with its ``.sig`` beside it); the relay serves it as it is and cannot change it unseen."""
AUTHORITY_KEY = re.compile("[0-9a-f]{64}")
DAY = 24 * 3600


class ConfigError(EnclaveError):
    """The relay's configuration is unreadable or holds a bad value."""


@dataclass(frozen=True, slots=True)
class ServerConfig:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8443
    backend: str = "sqlite"
    """``sqlite`` (a file in the data folder) or ``postgres`` (``postgres_dsn``)."""
    postgres_dsn: str = ""
    postgres_schema: str = "enclave"
    """The schema holding the relay's tables; several relays may share one database."""
    authority_key: str = ""
    """The enrolment authority's public key in 64 hex digits, the organisation config's
    ``[enrolment] authority_key``: the relay registers a device only with a certificate it
    signed. Required; the relay holds no key of its own that certifies anything."""
    retention_seconds: int = 30 * DAY
    """An undelivered envelope is dropped after this, or its own expiry if sooner."""
    mailbox_max_envelopes: int = 10_000
    mailbox_max_bytes: int = 256 * 1024 * 1024
    attachment_max_bytes: int = 100 * 1024 * 1024
    attachment_retention_seconds: int = 30 * DAY
    attachment_bytes_per_hour: int = 1024 * 1024 * 1024
    """What one device may upload in an hour (at least ``attachment_max_bytes``); in memory only."""
    enrolment_attempts_per_minute: int = 10
    bundle_fetches_per_minute: int = 60
    one_time_prekeys_per_hour: int = 60
    """Colleagues' one-time prekeys one device may take in an hour (in memory only); past it,
    bundles come without one, so that one insider cannot drain a colleague's."""
    directory_lookups_per_minute: int = 30
    deliveries_per_key_per_minute: int = 600
    """Unidentified envelopes one delivery key (one recipient device) takes in a minute, from all
    senders together (in memory only): a contact who holds the key cannot flood the mailbox."""
    certificate_lifetime_seconds: int = 7 * DAY
    sweep_interval_seconds: int = 60
    prekeys_low_threshold: int = 20
    one_time_prekeys_max_held: int = 1000
    """One-time prekeys the relay holds for one device at most: an upload past it is refused."""
    tls_handshake_seconds: int = 10
    """A connection whose TLS handshake has not finished by then is closed."""
    request_head_seconds: int = 30
    """A connection must send a whole request head this soon after its handshake or the
    previous response, or it is closed: a slow or silent client, or an idle keep-alive."""
    authentication_seconds: int = 10
    """A WebSocket must authenticate (it may enrol first) this soon after its challenge."""
    connections_per_address: int = 256
    """Open connections from one network address, counted from TCP accept; past it a new
    one is closed at once. Generous because many workstations may share one NAT address."""
    connections_total: int = 8192
    """Open connections from all addresses together (about 300 KiB each while open)."""

    def __post_init__(self) -> None:
        if self.backend not in ("sqlite", "postgres"):
            raise ConfigError(f"backend must be 'sqlite' or 'postgres', not {self.backend!r}")
        if self.backend == "postgres" and not self.postgres_dsn:
            raise ConfigError("backend 'postgres' needs postgres_dsn")
        if not self.postgres_schema.isidentifier():
            raise ConfigError(f"postgres_schema {self.postgres_schema!r} must be a plain identifier")
        if not self.host or self.host != self.host.strip() or any(ch.isspace() for ch in self.host):
            raise ConfigError(f"host {self.host!r} is not an address or name (spaces are not stripped)")
        if self.authority_key and not AUTHORITY_KEY.fullmatch(self.authority_key):
            raise ConfigError("authority_key must be an Ed25519 public key in 64 lower-case hex digits")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port {self.port} is out of range")
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type == "int" and value <= 0 and f.name != "port":
                raise ConfigError(f"{f.name} must be positive, not {value}")
        if self.attachment_bytes_per_hour < self.attachment_max_bytes:
            raise ConfigError(
                "attachment_bytes_per_hour must be at least attachment_max_bytes (else the largest"
                " attachment could never be uploaded)"
            )

    @property
    def database_path(self) -> Path:
        return self.data_dir / "relay.sqlite3"

    @property
    def authority_public_key(self) -> bytes:
        return bytes.fromhex(self.authority_key)


def load_config(data_dir: Path, overrides: dict[str, Any] | None = None) -> ServerConfig:
    """The config of ``data_dir`` (its ``server.toml`` if present) with ``overrides`` on top."""
    values: dict[str, Any] = {}
    path = data_dir / CONFIG_FILENAME
    try:
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        pass
    except NotADirectoryError as e:
        raise ConfigError(f"the data folder {data_dir} is not a folder") from e
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path} is not valid TOML: {e}") from e
    except OSError as e:
        reason = e.strerror or str(e)
        raise ConfigError(f"cannot read {path}: {reason}; check its owner and permissions") from e
    values.update({key: value for key, value in (overrides or {}).items() if value is not None})
    known = {f.name: f.type for f in fields(ServerConfig)}
    for key, value in values.items():
        if key not in known or key == "data_dir":
            raise ConfigError(f"{path}: unknown setting {key!r}")
        expected = int if known[key] == "int" else str
        if type(value) is not expected:
            raise ConfigError(f"{path}: {key} must be {'a whole number' if expected is int else 'text'}")
    config = replace(ServerConfig(data_dir=data_dir), **values)
    try:
        socket.getaddrinfo(config.host, config.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise ConfigError(f"host {config.host!r} does not resolve to an address: {e}") from e
    return config


def require_authority_key(config: ServerConfig) -> None:
    """A relay does not start without the enrolment authority's key: it could register no device
    (the admin tool, which never registers one, works without it)."""
    if not config.authority_key:
        raise ConfigError(
            f"set authority_key in {config.data_dir / CONFIG_FILENAME} (or --authority-key): the "
            "[enrolment] authority_key of the organisation's config, as enclave-admin org init printed it"
        )


def record_authority_key(config: ServerConfig) -> None:
    """Write the authority key this start uses where ``trusted_authority_key`` finds it."""
    record = config.data_dir / AUTHORITY_RECORD
    if not record.exists() or record.read_text(encoding="ascii").strip() != config.authority_key:
        temporary = record.with_name(record.name + ".tmp")
        temporary.write_text(config.authority_key + "\n", encoding="ascii")
        temporary.replace(record)


def trusted_authority_key(data_dir: Path) -> str:
    """The authority key the relay of ``data_dir`` trusts: its setting in ``server.toml``, else the
    one it last started with; "" if neither is known (a relay that never started)."""
    configured = load_config(data_dir).authority_key
    if configured:
        return configured
    try:
        return (data_dir / AUTHORITY_RECORD).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return ""
