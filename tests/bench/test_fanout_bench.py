"""Smoke test of bench/fanout.py: a tiny run reports every scheme, and what it times opens as sent."""

from __future__ import annotations

import importlib
import math

import pytest

from app.base.errors import DecryptionError
from app.crypto.sealed import SEALED_SIZES, unseal

DEVICES = 5


def test_fanout_bench_reports_every_scheme(capsys: pytest.CaptureFixture[str]) -> None:
    """Test that main with 5 devices and 1 round prints a row for every scheme and the ratios."""
    bench = importlib.import_module("bench.fanout")
    bench.main(["--devices", str(DEVICES), "--rounds", "1"])
    rows = capsys.readouterr().out.splitlines()
    for scheme in bench.MEASURED:
        assert any(row.split()[:1] == [str(DEVICES)] and f" {scheme} " in row for row in rows), scheme
    assert any("pairwise/floor" in row and "messages per removal" in row for row in rows)


def test_every_scheme_seals_one_envelope_per_device_that_opens_to_the_message() -> None:
    """Test that each scheme seals one envelope per recipient device (the re-key one for each but
    the removed device), of a size the relay accepts, and that an envelope of each scheme, unsealed
    by its recipient and decrypted, gives the text or the new key that was sent; and that another
    device's key does not open it."""
    bench = importlib.import_module("bench.fanout")
    run = bench.run([DEVICES], rounds=1)
    group, envelopes = run.group, run.last_envelopes
    assert len(group.members) == DEVICES
    for r in run.results:
        assert math.isfinite(r.seconds) and r.seconds > 0, r
    expected_recipients = {
        bench.PAIRWISE: list(range(DEVICES)),
        bench.SENDER_KEYS: list(range(DEVICES)),
        bench.SEAL_FLOOR: list(range(DEVICES)),
        bench.REKEY: list(range(1, DEVICES)),
    }
    recipients = {scheme: [e.recipient for e in sealed] for scheme, sealed in envelopes.items()}
    assert recipients == expected_recipients
    assert all(len(e.sealed) in SEALED_SIZES for sealed in envelopes.values() for e in sealed)

    text = bench.text_payload()
    assert bench.open_envelope(group, bench.PAIRWISE, envelopes[bench.PAIRWISE][2]) == text
    assert bench.open_envelope(group, bench.SENDER_KEYS, envelopes[bench.SENDER_KEYS][2]) == text
    new_keys = {bench.open_envelope(group, bench.REKEY, e) for e in envelopes[bench.REKEY][:2]}
    assert len(new_keys) == 1 and len(new_keys.pop()) == bench.NEW_KEY_BYTES
    floor = envelopes[bench.SEAL_FLOOR][2]
    unsealed = unseal(
        recipient=group.members[2].device.identity,
        untrusted=floor.sealed,
        envelope_id=floor.envelope_id,
        trust_root=group.trust_root,
        now=bench.NOW,
    )
    assert unsealed.sender == group.certificate

    sent_to_2 = envelopes[bench.SENDER_KEYS][2]
    misaddressed = bench.Envelope(3, sent_to_2.envelope_id, sent_to_2.sealed)
    with pytest.raises(DecryptionError):
        bench.open_envelope(group, bench.SENDER_KEYS, misaddressed)
