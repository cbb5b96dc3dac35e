"""Where a key stands in a TOML text: its line number, which ``tomllib`` does not report.

``key_lines`` reads a text that ``tomllib`` has already accepted, so it only has to follow
TOML far enough not to be fooled: table headers, dotted and quoted keys, and values it
skips whole (strings of all four kinds, multi-line arrays, inline tables, comments). A
``key = value`` inside a multi-line string or array is part of a value, not a key, but the
items of an array and the keys of an inline table in it have lines of their own
(``admins.0.name``), as the tables of an array of tables do.
"""

from __future__ import annotations

from collections.abc import Sequence

KeyPath = tuple[str, ...]

_BARE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", '"': '"', "\\": "\\"}


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.line = 1
        self.lines: dict[KeyPath, int] = {}

    def peek(self, ahead: int = 0) -> str:
        at = self.pos + ahead
        return self.text[at] if at < len(self.text) else ""

    def advance(self, n: int = 1) -> None:
        for _ in range(n):
            if self.peek() == "\n":
                self.line += 1
            self.pos += 1

    def skip_blanks(self) -> None:
        while self.peek() in (" ", "\t"):
            self.advance()

    def skip_comment(self) -> None:
        if self.peek() == "#":
            while self.peek() not in ("\n", ""):
                self.advance()

    def startswith(self, token: str) -> bool:
        return self.text.startswith(token, self.pos)

    def string(self) -> str:
        """A string of any kind at the cursor; returns its value for a one-line key, skips others."""
        for quote in ('"""', "'''"):
            if self.startswith(quote):
                self.advance(3)
                while not self.startswith(quote):
                    if quote == '"""' and self.peek() == "\\":
                        self.advance()
                    self.advance()
                self.advance(3)
                # Up to two more quotes may close the string ("""a"""" is a" then ").
                while self.peek() == quote[0]:
                    self.advance()
                return ""
        quote = self.peek()
        self.advance()
        value = []
        while self.peek() != quote:
            char = self.peek()
            if quote == '"' and char == "\\":
                self.advance()
                escape = self.peek()
                if escape in ("u", "U"):
                    digits = 4 if escape == "u" else 8
                    value.append(chr(int(self.text[self.pos + 1 : self.pos + 1 + digits], 16)))
                    self.advance(digits)
                else:
                    value.append(_ESCAPES.get(escape, escape))
            else:
                value.append(char)
            self.advance()
        self.advance()
        return "".join(value)

    def key(self) -> KeyPath:
        parts = []
        while True:
            self.skip_blanks()
            if self.peek() in ('"', "'"):
                parts.append(self.string())
            else:
                start = self.pos
                while self.peek() in _BARE and self.peek():
                    self.advance()
                parts.append(self.text[start : self.pos])
            self.skip_blanks()
            if self.peek() != ".":
                return tuple(parts)
            self.advance()

    def value(self, path: KeyPath) -> None:
        """Skip one value; the keys of an inline table are recorded under ``path``, and an array's
        items under ``path`` and their index from 0 (as ``[[path]]`` tables are), so an item of a
        multi-line array is found on its own line."""
        self.skip_blanks()
        char = self.peek()
        if char in ('"', "'"):
            self.string()
        elif char == "[":
            self.advance()
            index = 0
            while True:
                self.skip_space_and_comments()
                if self.peek() == "]":
                    self.advance()
                    return
                item = (*path, str(index))
                self.lines.setdefault(item, self.line)
                self.value(item)
                index += 1
                self.skip_space_and_comments()
                if self.peek() == ",":
                    self.advance()
        elif char == "{":
            self.advance()
            while True:
                self.skip_blanks()
                if self.peek() == "}":
                    self.advance()
                    return
                line = self.line
                inner = path + self.key()
                self.lines.setdefault(inner, line)
                self.advance()  # "="
                self.value(inner)
                self.skip_blanks()
                if self.peek() == ",":
                    self.advance()
        else:
            # A number, boolean or date-time; it may hold a space ("1979-05-27 07:32:00Z"),
            # and blanks after it are harmless, so it runs to what may follow a value.
            while self.peek() not in (",", "]", "}", "\n", "#", ""):
                self.advance()

    def skip_space_and_comments(self) -> None:
        while True:
            self.skip_blanks()
            self.skip_comment()
            if self.peek() in ("\n", "\r"):
                self.advance()
            else:
                return

    def document(self) -> dict[KeyPath, int]:
        table: KeyPath = ()
        counts: dict[KeyPath, int] = {}
        while self.peek():
            self.skip_space_and_comments()
            if not self.peek():
                break
            line = self.line
            if self.startswith("[["):
                self.advance(2)
                header = self.key()
                self.advance(2)
                index = counts.get(header, 0)
                counts[header] = index + 1
                self.lines.setdefault(header, line)
                table = (*header, str(index))
                self.lines.setdefault(table, line)
            elif self.peek() == "[":
                self.advance()
                table = self.key()
                self.advance()
                for depth in range(1, len(table) + 1):
                    self.lines.setdefault(table[:depth], line)
            else:
                path = table + self.key()
                for depth in range(len(table) + 1, len(path) + 1):
                    self.lines.setdefault(path[:depth], line)
                self.advance()  # "="
                self.value(path)
            self.skip_blanks()
            self.skip_comment()
        return self.lines


def key_lines(text: str) -> dict[KeyPath, int]:
    """The 1-based line of every key and table header in ``text`` (TOML that parses)."""
    return _Scanner(text).document()


def line_of(lines: dict[KeyPath, int], path: Sequence[str]) -> int | None:
    """The line of ``path``, or of its nearest enclosing key or table that has one."""
    for depth in range(len(path), 0, -1):
        found = lines.get(tuple(path[:depth]))
        if found is not None:
            return found
    return None
