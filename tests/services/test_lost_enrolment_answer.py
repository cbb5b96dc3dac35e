"""An ENROL the relay registered but whose answer never reached the device: the device's next
enrolment (with the pending certificate) must leave the relay holding the prekeys the device
keeps, or colleagues' first messages would be sealed to keys nobody holds."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from app.base.errors import OfflineError
from app.crypto.certificate import DeviceCertificate
from app.services.events import MessageArrived
from tests.support.clients import WAIT_SECONDS, enrolled_client, import_organisation, open_client
from tests.support.deployment import deployment
from tests.support.relay import RelayProcess, TestDevice, new_account


def test_a_first_message_arrives_after_an_enrolment_whose_answer_was_lost(tmp_path: Path) -> None:
    """Test that when the relay registered a device with one set of prekeys (its answer lost) and
    the device then enrols again with the pending certificate and new prekeys, a colleague's first
    message to it arrives and opens."""
    relay = RelayProcess(tmp_path / "relay").start()
    try:
        alice = enrolled_client(relay, tmp_path, "l.alice", "Alice")
        new_account(relay.data_dir, "l.newcomer", "Newcomer")
        newcomer = open_client(tmp_path / "newcomer", create=True)
        import_organisation(newcomer, relay, tmp_path / "newcomer.config" / "enclave.toml")
        relay.stop()
        with pytest.raises(OfflineError):  # certified at the authority, not registered: pending
            newcomer.enclave.enrol(None, None, deployment().code("l.newcomer")).result(WAIT_SECONDS)
        relay.start()
        # What the lost attempt left at the relay: this device, with prekeys the profile never kept.
        # (The pending enrolment is read through the engine's worker, as only it may touch the store.)
        identity, certificate = newcomer.enclave._run(lambda c: c.credentials.pending_enrolment()).result(5)
        lost = TestDevice(relay, identity=identity)
        parsed = DeviceCertificate.parse(certificate)
        lost.certificate, lost.device_id, lost.account_id = certificate, parsed.device_id, parsed.account_id

        async def register_lost() -> int:
            await lost.connect()
            try:
                return int((await lost.enrol()).status)
            finally:
                await lost.disconnect()

        assert asyncio.run(register_lost()) == 0
        newcomer.enclave.enrol(None, None, "no code needed any more").result(WAIT_SECONDS)
        assert newcomer.enclave.wait_online(WAIT_SECONDS).result(WAIT_SECONDS + 5)
        alice.enclave.add_contact("l.newcomer", "Newcomer").result(WAIT_SECONDS)
        conversation = alice.enclave.start_conversation("l.newcomer").result(WAIT_SECONDS)
        alice.enclave.send_text(conversation.id, "welcome").result(WAIT_SECONDS)
        assert newcomer.wait_for(MessageArrived).message.body == "welcome"
        for client in (alice, newcomer):
            client.close()
    finally:
        relay.stop()
