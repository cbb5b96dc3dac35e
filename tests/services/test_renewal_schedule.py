"""When a certificate is renewed: three quarters into its life as this device received it, however
often the device connects in between (issue 12)."""

from __future__ import annotations

import time
from pathlib import Path

from app.services.account import RENEW_AT_FRACTION, renewal_delay
from tests.support.clients import Client, enrolled_client, open_client
from tests.support.relay import RelayProcess

WEEK = 7 * 24 * 3600


def test_the_renewal_time_does_not_move_with_each_connection() -> None:
    """Test that the renewal falls at the same moment whenever the device computes it (each
    authentication), three quarters into the certificate's life, and is due at once after it."""
    received, expires_at = 1_000_000.0, 1_000_000.0 + WEEK
    due = received + WEEK * RENEW_AT_FRACTION
    for now in (received, received + 3600, received + 3 * 24 * 3600, due - 1):
        assert now + renewal_delay(received=received, expires_at=expires_at, now=now) == due
    assert renewal_delay(received=received, expires_at=expires_at, now=due + 10) == 0.0


def received_at(client: Client) -> float:
    """What the engine reads (on its worker, the one thread that may touch the store)."""
    return client.enclave._run(lambda c: c.credentials.certificate_received_at(default=-1.0)).result(10)


def test_the_time_a_certificate_was_received_is_kept_with_it(relay: RelayProcess, tmp_path: Path) -> None:
    """Test that a profile knows no receiving time before it enrols, records it at enrolment (so
    the renewal is timed from it), and keeps it across a restart."""
    blank = open_client(tmp_path / "blank", create=True)
    try:
        assert received_at(blank) == -1.0
    finally:
        blank.close()
    before = time.time()
    client = enrolled_client(relay, tmp_path, "t.timed", "Timed")
    try:
        enrolled = received_at(client)
        assert int(before) <= enrolled <= time.time()
    finally:
        client.close()
    again = open_client(client.profile)
    try:
        assert received_at(again) == enrolled
    finally:
        again.close()
