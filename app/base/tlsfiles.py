"""A server's TLS key and self-signed certificate, made on first start in its data folder.

Shared by the relay (``server/keys.py``) and the enrolment authority (``authority/``),
which may import nothing of ``server/``. Clients trust either server by the SHA-256 pin
of its public key, not by a certificate authority, so the certificate is self-signed
(ECDSA P-256) and lives ten years; the pin is what an admin copies into a config.
Files are written atomically and durably, with mode 0600 (0644 for a public key).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

TLS_KEY_FILE = "tls.key"
TLS_CERT_FILE = "tls.crt"
CERTIFICATE_YEARS = 10


def write_secret(path: Path, data: bytes) -> None:
    """Write atomically and durably with mode 0600: temp file, fsync, rename, fsync folder."""
    _write_durably(path, data, 0o600)


def write_public(path: Path, data: bytes) -> None:
    """Write as ``write_secret`` does, with mode 0644: a public key that others may read."""
    _write_durably(path, data, 0o644)


def _write_durably(path: Path, data: bytes, mode: int) -> None:
    temp = path.with_name(path.name + ".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(temp, mode)  # whatever the umask, and before the file has its name
    os.replace(temp, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def public_key_pin(certificate_pem: bytes) -> str:
    """``sha256/<base64>`` of the certificate's SubjectPublicKeyInfo, as clients pin it."""
    certificate = x509.load_pem_x509_certificate(certificate_pem)
    spki = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256/" + base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")


def self_signed(host: str, common_name: str = "Enclave relay") -> tuple[bytes, bytes]:
    """(key PEM, certificate PEM) for ``host``, ``localhost`` and 127.0.0.1."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    alt_names: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    try:
        alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
    except ValueError:
        alt_names.append(x509.DNSName(host))
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365 * CERTIFICATE_YEARS))
        .add_extension(x509.SubjectAlternativeName(list(dict.fromkeys(alt_names))), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, certificate.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class TlsFiles:
    key_path: Path
    cert_path: Path
    pin: str
    created: bool
    """Whether this call made them (the pin is then printed for the admin)."""


def load_or_create_tls(data_dir: Path, host: str, common_name: str) -> TlsFiles:
    """``tls.key`` and ``tls.crt`` in ``data_dir``, made now if either is missing."""
    key_path, cert_path = data_dir / TLS_KEY_FILE, data_dir / TLS_CERT_FILE
    created = not (key_path.exists() and cert_path.exists())
    if created:
        key_pem, cert_pem = self_signed(host, common_name)
        write_secret(key_path, key_pem)
        write_secret(cert_path, cert_pem)
    return TlsFiles(key_path, cert_path, public_key_pin(cert_path.read_bytes()), created)
