"""Finding a key's line in a TOML text, which tomllib does not report."""

from __future__ import annotations

import tomllib

from app.provisioning.lines import key_lines, line_of

TRICKY = '''# a = 1
title = """
not = "a key"
[not.a.table]
"""
path = 'C:\\dir' # x = 2
"quoted.key" = 1
dotted . inner = true
when = 1979-05-27 07:32:00Z
list = [
  "a = b",  # c = d
  [1, 2],
  { e = 3 },
]
[server."alpha.one"]
inline = { port = 8443, host = "h" }
[[peers]]
name = "first"
[[peers]]
name = """second
still = "second" """
after = 1
'''


def test_keys_are_found_on_their_lines_and_values_are_never_taken_for_keys() -> None:
    """Test that multi-line strings, arrays, comments, quoted and dotted keys, inline tables,
    arrays of tables and a date-time with a space are all read as TOML reads them."""
    tomllib.loads(TRICKY)
    lines = key_lines(TRICKY)
    assert lines[("title",)] == 2
    assert lines[("path",)] == 6
    assert lines[("quoted.key",)] == 7
    assert lines[("dotted", "inner")] == 8 and lines[("dotted",)] == 8
    assert lines[("when",)] == 9
    assert lines[("list",)] == 10
    assert lines[("server", "alpha.one")] == 15 and lines[("server",)] == 15
    assert lines[("server", "alpha.one", "inline", "port")] == 16
    assert lines[("peers", "0", "name")] == 18
    assert lines[("peers", "1", "name")] == 20
    assert lines[("peers", "1", "after")] == 22
    found = set(lines)
    assert not {("not",), ("not", "a", "table"), ("x",), ("c",), ("e",), ("still",), ("a",)} & found


def test_a_key_without_a_line_falls_back_to_its_table() -> None:
    """Test that an item inside a value is placed on the line of the key that holds it."""
    lines = key_lines("[relay]\npins = [\n  'a',\n]\n")
    assert line_of(lines, ("relay", "pins", "3")) == 2
    assert line_of(lines, ("relay", "urls")) == 1
    assert line_of(lines, ("elsewhere",)) is None


def test_the_items_of_an_array_are_found_on_their_own_lines_by_index() -> None:
    """Test that each item of a multi-line array, and each key of an inline table in it, has the
    line it stands on, under the array's key and the item's index from 0 as an array of tables has."""
    text = 'admins = [\n  { name = "a", key = "k" },\n\n  # b\n  { name = "b", key = "l" },\n]\nafter = 1\n'
    tomllib.loads(text)
    lines = key_lines(text)
    assert lines[("admins",)] == 1
    assert (lines[("admins", "0")], lines[("admins", "0", "name")], lines[("admins", "0", "key")]) == (
        2,
        2,
        2,
    )
    assert (lines[("admins", "1")], lines[("admins", "1", "name")], lines[("admins", "1", "key")]) == (
        5,
        5,
        5,
    )
    assert lines[("after",)] == 7
    assert line_of(lines, ("admins", "2", "name")) == 1
