"""server/guard.py's count of open connections per address, on its own."""

from __future__ import annotations

from server.guard import AddressCounts


def test_an_address_is_counted_up_to_its_cap_and_forgotten_at_zero() -> None:
    """Test that an address gets at most cap connections, others are apart, and one at zero is dropped."""
    counts = AddressCounts(2)
    assert counts.acquire("192.0.2.1") and counts.acquire("192.0.2.1")
    assert not counts.acquire("192.0.2.1")
    assert counts.acquire("2001:db8::1")
    assert len(counts) == 2
    counts.release("192.0.2.1")
    assert counts.acquire("192.0.2.1")
    for _ in range(2):
        counts.release("192.0.2.1")
    counts.release("2001:db8::1")
    assert len(counts) == 0
