"""Smoke test of bench/groups.py: a tiny run measures every row, and every member stores the texts."""

from __future__ import annotations

import importlib
import math

import pytest

MEMBERS = 4


def test_groups_bench_reports_every_row_and_every_member_stores_the_text(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Test that main with a group of 4 and 1 round prints every measured row and the targets, with
    positive finite times, one envelope per other member for each text, and the text stored by all."""
    bench = importlib.import_module("bench.groups")
    run = bench.main(["--members", str(MEMBERS), "--rounds", "1"])
    rows = capsys.readouterr().out.splitlines()
    for name in bench.MEASURED:
        assert any(row.split()[:1] == [str(MEMBERS)] and f" {name} " in row for row in rows), name
    assert any("group/1:1" in row and "after change, s" in row for row in rows)
    assert any(row.split()[:1] == [str(MEMBERS)] and ("MET" in row or "MISSED" in row) for row in rows)

    [result] = run.results
    assert (result.members, result.recipients) == (MEMBERS, MEMBERS - 1)
    assert result.stored_by == MEMBERS - 1, "every member stored the group text"
    for name, row in result.rows.items():
        assert math.isfinite(row.seconds) and row.seconds > 0, name
    others = MEMBERS - 1
    assert result.rows[bench.GROUP_SENDER].envelopes == others
    assert result.rows[bench.DIRECT_SENDER].envelopes == others
    assert result.rows[bench.AFTER_REMOVE_WORST].envelopes == others - 1, "the removed member gets none"
    # The change goes to the members before and after it: the one removed is told, the one added
    # gets the group's log instead.
    assert result.rows[bench.REMOVE_SENDER].envelopes == others
    assert result.rows[bench.ADD_SENDER].envelopes == others
    assert result.rows[bench.ADD_SENDER].bytes > result.rows[bench.REMOVE_SENDER].bytes
