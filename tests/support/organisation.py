"""An organisation for tests: a root and an authority key, configs made from the shipped
example with changes, signed as ``enclave-admin config sign`` signs them. A config names the
example's log key and admin unless told a relay's log key (``Deployment.config`` tells it
its relay's) and other admins."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import nacl.utils

from app.crypto.primitives import ed25519_keypair_from_seed
from app.provisioning.signature import SIGNATURE_SUFFIX, sign_config

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "packaging" / "provisioning" / "example.toml"
EXAMPLE_ROOT = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
EXAMPLE_AUTHORITY = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c"
EXAMPLE_LOG_KEY = "c4f536b0c574969c6289db22f3165f981eee53b27f095ed3df0de298da03849f"
EXAMPLE_ADMIN = ("Anna Admin", "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025")
FAR_FUTURE = "2099-01-01T00:00:00Z"


def _listed(section: str, urls: tuple[str, ...] | None, pins: tuple[str, ...] | None) -> str:
    """``section`` of the example with its ``urls`` and ``pins`` replaced where given."""
    if urls is not None:
        section = re.sub(r"(?m)^urls = \[.*\]$", f"urls = {json.dumps(list(urls))}", section)
    if pins is not None:
        section = re.sub(r"(?ms)^pins = \[.*?\]$", f"pins = {json.dumps(list(pins))}", section)
    return section


def _transparency(section: str, log_key: bytes | None, admins: tuple[tuple[str, bytes], ...] | None) -> str:
    """The example's ``[transparency]`` with its log key and its admins replaced where given."""
    if log_key is not None:
        section = section.replace(EXAMPLE_LOG_KEY, log_key.hex())
    if admins is not None:
        listed = "".join(
            f"    {{ name = {json.dumps(name)}, key = {json.dumps(key.hex())} }},\n" for name, key in admins
        )
        section = re.sub(r"(?ms)^admins = \[.*?^\]$", lambda _: f"admins = [\n{listed}]", section)
    return section


def _keypair() -> tuple[bytes, bytes]:
    return ed25519_keypair_from_seed(seed=nacl.utils.random(32))


@dataclass
class Organisation:
    root: tuple[bytes, bytes] = field(default_factory=_keypair)
    authority: tuple[bytes, bytes] = field(default_factory=_keypair)

    @property
    def root_public(self) -> bytes:
        return self.root[0]

    def config(
        self,
        *,
        version: int = 1,
        expires: str = FAR_FUTURE,
        mandatory: str | None = None,
        recommended: str | None = None,
        relay_urls: tuple[str, ...] | None = None,
        relay_pins: tuple[str, ...] | None = None,
        authority_urls: tuple[str, ...] | None = None,
        authority_pins: tuple[str, ...] | None = None,
        log_key: bytes | None = None,
        admins: tuple[tuple[str, bytes], ...] | None = None,
    ) -> bytes:
        """The example config with this organisation's keys, ``version`` and ``expires``; the
        policy tables replaced by the given TOML bodies, the relay's and the enrolment
        authority's addresses and pins, the log key and the admins (name, public key) by the
        given ones, where given."""
        text = EXAMPLE.read_text(encoding="utf-8")
        text = text.replace(EXAMPLE_ROOT, self.root[0].hex()).replace(
            EXAMPLE_AUTHORITY, self.authority[0].hex()
        )
        text = re.sub(r"(?m)^version = 1 ", f"version = {version} ", text)
        text = re.sub(r"(?m)^expires = \S+", f"expires = {expires}", text)
        relay, rest = text.split("\n[enrolment]\n", 1)
        enrolment, rest = rest.split("\n[transparency]\n", 1)
        transparency, policy = rest.split("\n[policy.mandatory]\n", 1)
        relay = _listed(relay, relay_urls, relay_pins)
        enrolment = _listed(enrolment, authority_urls, authority_pins)
        transparency = _transparency(transparency, log_key, admins)
        text = (
            f"{relay}\n[enrolment]\n{enrolment}\n[transparency]\n{transparency}\n[policy.mandatory]\n{policy}"
        )
        if mandatory is not None or recommended is not None:
            text = text[: text.index("\n[policy.mandatory]\n") + 1]
            text += f"[policy.mandatory]\n{mandatory or ''}\n[policy.recommended]\n{recommended or ''}\n"
        return text.encode("utf-8")

    def sign(self, config: bytes) -> bytes:
        return sign_config(config, root_public=self.root[0], root_secret=self.root[1]).encode()

    def write(self, path: Path, config: bytes, *, signed: bool = True) -> Path:
        """``config`` at ``path`` with its signature beside it (unless not ``signed``)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(config)
        if signed:
            path.with_name(path.name + SIGNATURE_SUFFIX).write_bytes(self.sign(config))
        return path
