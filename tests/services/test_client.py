"""Client: the wiring builds on a running loop, connects only an enrolled profile, and closes the store."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import nacl.utils
import pytest
from sqlcipher3 import dbapi2 as sqlcipher

from app.crypto.certificate import DeviceCertificate
from app.crypto.keys import IdentityKeyPair
from app.services.client import Client
from app.services.credentials import Credentials
from app.services.errors import NotEnrolledError
from app.services.events import ConnectionChanged, Event
from app.services.policy import Provisioning
from app.services.settings import RelaySettings
from app.sync.link import RelayAddress
from app.sync.machine import Backoff
from app.sync.transport import TransportState
from storage.records import ConversationKind
from storage.store import Store
from tests.support.clients import passphrase
from tests.support.organisation import Organisation
from tests.support.relay import TEST_AUTHORITY, certificate_for

WAIT_SECONDS = 10.0
CLOSED_PORT = RelayAddress(("https://127.0.0.1:9",), ("sha256/" + "A" * 43 + "=",))
"""A relay address where nothing listens (the discard port): a connection attempt fails at once."""
NO_RETRY = Backoff(base_seconds=3600.0, cap_seconds=3600.0)


@pytest.fixture
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as running:
        yield running


@pytest.fixture
def profile(tmp_path: Path) -> Path:
    return tmp_path / "profile"


@pytest.fixture
def store(profile: Path) -> Store:
    """A new profile's store; the client that is built on it closes it."""
    return Store.create(profile, passphrase())


def _build(runner: asyncio.Runner, store: Store, events: list[Event]) -> Client:
    async def building() -> Client:
        return Client.build(
            store,
            listener=events.append,
            clock=time.time,
            random=nacl.utils.random,
            backoff=NO_RETRY,
            system_config=store.profile_dir / "no-system-config.toml",
        )

    return runner.run(building())


def _start(runner: asyncio.Runner, client: Client) -> None:
    """``Client.start`` on the loop, where the worker calls it."""

    async def starting() -> None:
        client.start()
        await asyncio.sleep(0)

    runner.run(starting())


def _enrol(store: Store, folder: Path) -> None:
    """Save what enrolment would have left: the organisation's config imported, naming a relay
    where nothing listens, and a certificate its enrolment authority signed."""
    organisation = Organisation(authority=(TEST_AUTHORITY.public, b""))
    config = organisation.config(
        relay_urls=CLOSED_PORT.urls,
        relay_pins=CLOSED_PORT.pins,
        authority_urls=CLOSED_PORT.urls,
        authority_pins=CLOSED_PORT.pins,
        mandatory="",
        recommended="",
    )
    provisioning = Provisioning(store, system_config=folder / "no-system-config.toml", clock=time.time)
    provisioning.import_config(organisation.write(folder / "organisation" / "enclave.toml", config))
    identity = IdentityKeyPair.generate(nacl.utils.random)
    with store.transaction():
        Credentials(store, time.time, authority=provisioning.authority).save_enrolment(
            identity,
            DeviceCertificate.parse(certificate_for("alice", 1, identity.public)),
            RelaySettings(CLOSED_PORT),
        )


def test_the_wiring_builds_on_an_unenrolled_profile(runner: asyncio.Runner, store: Store) -> None:
    """Test that every part is built, and a use case needing an identity refuses with NotEnrolledError."""
    events: list[Event] = []
    client = _build(runner, store, events)
    try:
        assert client.store is store and client.credentials.account is None
        assert client.relay.state is TransportState.OFFLINE
        conversation = store.conversations.create(ConversationKind.DIRECT, peer_account_id="bob")
        with pytest.raises(NotEnrolledError):
            runner.run(client.sending.send_text(conversation.id, "hello"))
        assert store.messages.count() == 0 and client.conversations.summaries()[0].unread == 0
    finally:
        runner.run(client.close())


def test_start_on_an_unenrolled_profile_does_not_connect(runner: asyncio.Runner, store: Store) -> None:
    """Test that starting a profile with no identity leaves the link unstarted and says nothing."""
    events: list[Event] = []
    client = _build(runner, store, events)
    try:
        _start(runner, client)
        assert client.relay.address is None and client.relay.state is TransportState.OFFLINE
        assert runner.run(client.relay.wait_online(0.01)) is False
        assert events == []
    finally:
        runner.run(client.close())


def test_start_on_an_enrolled_profile_tries_its_relay(
    runner: asyncio.Runner, store: Store, tmp_path: Path
) -> None:
    """Test that an enrolled profile's start connects to its relay, and reports the failed attempt."""
    _enrol(store, tmp_path)
    events: list[Event] = []
    client = _build(runner, store, events)
    try:
        _start(runner, client)

        async def offline() -> None:
            async with asyncio.timeout(WAIT_SECONDS):
                while not any(isinstance(e, ConnectionChanged) and e.state == "offline" for e in events):
                    await asyncio.sleep(0.01)

        runner.run(offline())
        assert client.relay.address == CLOSED_PORT
        assert [e.state for e in events if isinstance(e, ConnectionChanged)] == ["connecting", "offline"]
    finally:
        runner.run(client.close())


def test_close_stops_the_link_and_closes_the_store(
    runner: asyncio.Runner, store: Store, profile: Path
) -> None:
    """Test that closing the client stops its link and closes its store, releasing the profile."""
    client = _build(runner, store, [])
    runner.run(client.close())
    assert client.relay.state is TransportState.STOPPED
    with pytest.raises(sqlcipher.ProgrammingError):
        store.messages.count()
    with Store.open(profile, passphrase()) as reopened:
        assert reopened.messages.count() == 0


def test_the_links_state_changes_reach_the_listener(runner: asyncio.Runner, store: Store) -> None:
    """Test that a transport's state change is told to the face as ConnectionChanged."""
    events: list[Event] = []
    client = _build(runner, store, events)
    try:
        client.on_state(client.relay, TransportState.REFUSED, "this device was revoked")
        assert events == [ConnectionChanged("refused", "this device was revoked")]
    finally:
        runner.run(client.close())
