"""The enrolment authority's HTTPS client (app/sync/authority.py) against the real authority,
a real relay (a TLS server with another key) and a small TLS server of the test's that
answers what a hostile or broken authority could."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from aiohttp import web
from nacl.utils import random

from app.base.errors import AuthorityRefusedError, OfflineError, PinMismatchError
from app.crypto.certificate import DeviceCertificate
from app.crypto.keys import IdentityKeyPair
from app.protocol.authority import CertifyRequest
from app.sync import authority
from app.sync.authority import AuthorityAddress
from tests.support.deployment import deployment
from tests.support.hostile import hostile_https
from tests.support.relay import TEST_AUTHORITY, RelayProcess

T = TypeVar("T")


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    process = RelayProcess(tmp_path_factory.mktemp("relay")).start()
    yield process
    process.stop()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def the_authority(*urls: str) -> AuthorityAddress:
    run = deployment()
    return AuthorityAddress(urls or (run.authority_url,), (run.authority().pin,), TEST_AUTHORITY.public)


def certify_request(code: str) -> tuple[IdentityKeyPair, bytes]:
    identity = IdentityKeyPair.generate(random)
    return identity, CertifyRequest.make(code=code, identity=identity).encode()


def test_a_certify_request_comes_back_as_the_authoritys_certificate() -> None:
    """Test that certify returns a certificate the authority key signed for the request's key and the
    code's account."""
    identity, request = certify_request(deployment().code("c.client"))
    certificate = DeviceCertificate.parse(asyncio.run(authority.certify(the_authority(), request)))
    certificate.verify(trust_root=TEST_AUTHORITY.public, now=0)
    assert (certificate.account_id, certificate.identity_key) == ("c.client", identity.public)


def test_an_address_that_does_not_answer_is_passed_over_for_the_next() -> None:
    """Test that with the first address closed, the request goes to the second and is answered."""
    _, request = certify_request(deployment().code("c.second"))
    first = f"https://127.0.0.1:{closed_port()}"
    answer = asyncio.run(authority.certify(the_authority(first, deployment().authority_url), request))
    assert DeviceCertificate.parse(answer).account_id == "c.second"


def test_a_server_with_another_key_gets_nothing_and_the_code_stays_good(relay: RelayProcess) -> None:
    """Test that an address answering with a key the config does not pin (here the relay's) is a
    PinMismatchError, and that the code, which the request proves, was not spent there."""
    code = deployment().code("c.pinned")
    _, request = certify_request(code)
    with pytest.raises(PinMismatchError, match="matches no pinned key"):
        asyncio.run(authority.certify(the_authority(relay.https), request))
    _, again = certify_request(code)
    assert (
        DeviceCertificate.parse(asyncio.run(authority.certify(the_authority(), again))).account_id
        == "c.pinned"
    )


def test_no_address_answering_is_offline_naming_them() -> None:
    """Test that when no address answers, the error is OfflineError naming the addresses."""
    url = f"https://127.0.0.1:{closed_port()}"
    with pytest.raises(OfflineError, match=url):
        asyncio.run(authority.certify(the_authority(url), b"\x01"))


def test_a_refused_code_is_the_authoritys_status_and_reason() -> None:
    """Test that a code the authority does not know is AuthorityRefusedError with status 403."""
    _, request = certify_request("AAAA-BBBB-CCCC-DDDD-EEEE-FFFF")
    with pytest.raises(AuthorityRefusedError) as refused:
        asyncio.run(authority.certify(the_authority(), request))
    assert refused.value.status == 403 and "refused" in refused.value.reason


async def refuse(request: web.Request) -> web.Response:
    """A hostile authority: a refusal with terminal escapes, an answer longer than a certificate."""
    if request.path == "/v1/renew":
        return web.Response(status=200, body=b"\x07" * 100_000)
    return web.Response(status=403, text="no\x1b[31m red\nsecond line" + "x" * 1000)


async def against_hostile(folder: Path, call: Callable[[AuthorityAddress], Awaitable[T]]) -> T:
    """``call`` with the address of a pinned TLS server of the test's own that answers as ``refuse``."""
    routes = [("POST", "/v1/certify", refuse), ("POST", "/v1/renew", refuse)]
    async with hostile_https(folder, routes) as server:
        return await call(AuthorityAddress((server.url,), (server.pin,), TEST_AUTHORITY.public))


def test_a_refusal_reason_is_made_safe_to_show(tmp_path: Path) -> None:
    """Test that a refusal's reason has its control characters replaced and is cut short."""
    with pytest.raises(AuthorityRefusedError) as refused:
        asyncio.run(against_hostile(tmp_path, lambda address: authority.certify(address, b"\x01")))
    reason = refused.value.reason
    assert "\x1b" not in reason and "\n" not in reason and "\ufffd[31m" in reason
    assert len(reason) <= authority.MAX_REASON_CHARS


def test_an_answer_is_read_only_up_to_its_limit(tmp_path: Path) -> None:
    """Test that an answer longer than any certificate is read no further than MAX_ANSWER_BYTES."""
    answer = asyncio.run(against_hostile(tmp_path, lambda address: authority.renew(address, b"\x01")))
    assert 0 < len(answer) <= authority.MAX_ANSWER_BYTES
