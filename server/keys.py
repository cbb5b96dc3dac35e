"""The relay's own keys, made on first start and kept in the data folder (mode 0600).

- ``tls.key`` / ``tls.crt``: a self-signed ECDSA P-256 certificate. Clients trust it by
  the SHA-256 pin of its public key, which the provisioning config carries, not by a
  certificate authority. The pin is printed on first start.
- ``signing.key``: the Ed25519 seed that signs device certificates (the trust root
  clients learn at enrolment) and, through a derived key, attachment upload tokens.

Several relay processes sharing one PostgreSQL database must share these files too.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from nacl.utils import random

from app.crypto.keys import IdentityKeyPair
from server.config import ConfigError

TLS_KEY_FILE = "tls.key"
TLS_CERT_FILE = "tls.crt"
SIGNING_KEY_FILE = "signing.key"
UPLOAD_TOKEN_KEY_LABEL = b"enclave:v1:upload-token-key"
CERTIFICATE_YEARS = 10


def write_secret(path: Path, data: bytes) -> None:
    """Write atomically and durably with mode 0600: temp file, fsync, rename, fsync folder."""
    temp = path.with_name(path.name + ".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
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


def _self_signed(host: str) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Enclave relay")])
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
class RelayKeys:
    tls_key_path: Path
    tls_cert_path: Path
    pin: str
    signing: IdentityKeyPair = field(repr=False)
    upload_token_key: bytes = field(repr=False)
    created: bool
    """Whether this start made the keys (the pin is then printed for the admin)."""


def load_or_create_keys(data_dir: Path, host: str) -> RelayKeys:
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    key_path, cert_path, signing_path = (
        data_dir / TLS_KEY_FILE,
        data_dir / TLS_CERT_FILE,
        data_dir / SIGNING_KEY_FILE,
    )
    created = False
    if not (key_path.exists() and cert_path.exists()):
        key_pem, cert_pem = _self_signed(host)
        write_secret(key_path, key_pem)
        write_secret(cert_path, cert_pem)
        created = True
    if not signing_path.exists():
        write_secret(signing_path, random(32))
        created = True
    seed = signing_path.read_bytes()
    if len(seed) != 32:
        raise ConfigError(f"{signing_path} is damaged (not a 32-byte key); restore it from a backup")
    signing = IdentityKeyPair.from_seed(seed)
    upload_token_key = hmac.digest(seed, UPLOAD_TOKEN_KEY_LABEL, "sha256")
    return RelayKeys(
        key_path, cert_path, public_key_pin(cert_path.read_bytes()), signing, upload_token_key, created
    )
