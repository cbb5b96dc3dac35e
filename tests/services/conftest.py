"""The two benches of the service tests: in-process devices on one organisation (``bench``,
``alice``, and ``bob`` who knows her), and a real relay on loopback with two enrolled clients
who know each other (``relay``, ``pair``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.clients import WAIT_SECONDS, Client, enrolled_client
from tests.support.devices import Bench, Device, introduce
from tests.support.relay import RelayProcess


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Bench]:
    opened = Bench(tmp_path)
    yield opened
    opened.close()


@pytest.fixture
def alice(bench: Bench) -> Device:
    return bench.device("alice")


@pytest.fixture
def bob(bench: Bench, alice: Device) -> Device:
    bob = bench.device("bob")
    introduce(alice, bob)
    return bob


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[RelayProcess]:
    process = RelayProcess(tmp_path / "relay").start()
    yield process
    process.stop()


@pytest.fixture
def pair(relay: RelayProcess, tmp_path: Path) -> Iterator[tuple[Client, Client]]:
    alice = enrolled_client(relay, tmp_path, "alice", "Alice Archer")
    bob = enrolled_client(relay, tmp_path, "bob", "Bob Baker")
    alice.enclave.add_contact("bob", "Bob Baker").result(WAIT_SECONDS)
    bob.enclave.add_contact("alice", "Alice Archer").result(WAIT_SECONDS)
    yield alice, bob
    for client in (alice, bob):
        client.close()
