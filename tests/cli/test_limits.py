"""Out-of-range numbers on ``enclave-cli``'s command line: refused at argument parsing
(exit 2, the range named), never a store's ValueError and its traceback."""

from __future__ import annotations

import pytest

from app.base.limits import MAX_TIMER_SECONDS
from app.services.types import MAX_PAGE_SIZE
from tests.cli.conftest import Pair

BAD_USAGE = 2


@pytest.mark.parametrize("limit", [str(MAX_PAGE_SIZE + 1), "0", "-3", "many"])
def test_history_refuses_a_limit_out_of_range(pair: Pair, limit: str) -> None:
    """Test that ``history --limit`` outside 1..MAX_PAGE_SIZE is bad usage naming the range."""
    done = pair.alice.run("history", "bob", "--limit", limit)
    assert done.returncode == BAD_USAGE, done.stderr
    assert "Traceback" not in done.stderr
    assert f"1..{MAX_PAGE_SIZE}" in done.stderr.strip().splitlines()[-1]


def test_history_takes_the_largest_page(pair: Pair) -> None:
    """Test that ``history --limit MAX_PAGE_SIZE`` prints the conversation."""
    sent = pair.alice.run("send", "bob", "a page of one")
    assert sent.returncode == 0, sent.stderr
    done = pair.alice.run("history", "bob", "--limit", str(MAX_PAGE_SIZE))
    assert done.returncode == 0, done.stderr
    assert "a page of one" in done.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("timer", "bob", str(MAX_TIMER_SECONDS + 1)),
        ("secret", "bob", "--timer", str(MAX_TIMER_SECONDS + 1)),
        ("listen", "--count", "0"),
        ("listen", "--wait", "-1"),
        ("history", "--conversation", str(2**63)),
    ],
)
def test_other_numbers_out_of_range_are_bad_usage(pair: Pair, args: tuple[str, ...]) -> None:
    """Test that a timer, count, wait or id out of range is bad usage, not a traceback."""
    done = pair.alice.run(*args)
    assert done.returncode == BAD_USAGE, done.stderr
    assert "Traceback" not in done.stderr
    assert "range" in done.stderr or "0 or more" in done.stderr or "0.." in done.stderr
