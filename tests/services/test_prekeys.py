"""PreKeys: what the store keeps of this device's prekeys, and a refill that cannot reach the relay."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.base.errors import OfflineError
from app.crypto.keys import PreKeyBundle
from app.services import prekeys
from app.services.prekeys import REFILL_ONE_TIME_PREKEYS, SIGNED_PREKEY_ID, PreKeys
from storage.records import PreKeyKind
from tests.support.devices import Bench, Device

ENROLLED = 4
"""One-time prekeys the bench's enrolment made (ids 1..4)."""


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Bench]:
    opened = Bench(tmp_path)
    yield opened
    opened.close()


@pytest.fixture
def alice(bench: Bench) -> Device:
    return bench.device("alice", one_time_prekeys=ENROLLED)


def _one_time_ids(device: Device) -> list[int]:
    return [k.key_id for k in device.store.prekeys.list(PreKeyKind.ONE_TIME)]


def test_refills_never_reuse_an_id_even_when_the_upload_fails(bench: Bench, alice: Device) -> None:
    """Test that each refill continues the id counter, and a failed upload does not block the next one."""
    part = PreKeys(alice.store, relay=alice.relay, random=bench.random)
    for _ in range(2):
        with pytest.raises(OfflineError):
            bench.run(part.refill())
    expected = list(range(1, ENROLLED + 2 * REFILL_ONE_TIME_PREKEYS + 1))
    assert _one_time_ids(alice) == expected
    assert prekeys.next_one_time_id(alice.store) == expected[-1] + 1


def test_the_signed_prekey_comes_back_from_the_store_as_it_was_made(alice: Device) -> None:
    """Test that the stored signed prekey is the one enrolment made, and a bundle built from it verifies."""
    stored = prekeys.signed_prekey(alice.store, SIGNED_PREKEY_ID)
    made = alice.signed_prekey
    assert (stored.key_id, stored.keypair, stored.signature) == (made.key_id, made.keypair, made.signature)
    PreKeyBundle(alice.identity.public, stored.key_id, stored.keypair.public, stored.signature).verify()
