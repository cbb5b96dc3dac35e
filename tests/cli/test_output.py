"""What the CLI does with untrusted text from colleagues, and the account ids the workspace makes."""

from __future__ import annotations

from pathlib import Path

from app.services.events import MessageHeld, MessageUnreadable, Problem
from cli.files import save_path
from cli.output import clean, event_note
from cli.workspace import account_id_for


def test_untrusted_text_stays_on_one_line_and_in_its_column() -> None:
    """Test that tabs, line breaks, terminal escapes, bidi overrides and backslashes are printed escaped."""
    assert clean("a\tb\r\nc\x1b[2J\u2028\u202etxt.exe\\") == "a\\tb\\r\\nc\\u001b[2J\\u2028\\u202etxt.exe\\\\"
    assert clean("Анна: 5 €") == "Анна: 5 €"


def test_a_received_file_name_cannot_leave_the_folder_or_replace_a_file(tmp_path: Path) -> None:
    """Test that a hostile file name stays inside the folder and an existing file is never overwritten."""
    for hostile in ("../../etc/passwd", "..", "/abs/path", "C:\\Windows\\x.dll", "\x1b]0;x\x07"):
        assert save_path(tmp_path, hostile).parent == tmp_path
    (tmp_path / "report.pdf").write_bytes(b"mine")
    assert save_path(tmp_path, "report.pdf") == tmp_path / "report (1).pdf"


def test_workspace_account_ids_are_plain_lower_case() -> None:
    """Test that a display name becomes a lower-case id without spaces, in any script."""
    assert account_id_for("Anna Ivanova") == "anna-ivanova"
    assert account_id_for("Анна Иванова") == "анна-иванова"
    assert account_id_for("  ../") == "me"


def test_a_problem_is_told_on_one_line() -> None:
    """Test that a Problem event becomes one escaped stderr line for listen and the chat."""
    assert event_note(Problem("The disk is full.\nFree space.")) == "problem: The disk is full.\\nFree space."


def test_a_held_message_is_told_with_how_to_accept_the_new_key() -> None:
    """Test that a MessageHeld event names the colleague and the commands to compare and accept."""
    text = event_note(MessageHeld(7, 3, "b.petrov\n"))
    assert text == (
        "held: message 7 in conversation 3 waits until you accept b.petrov\\n's new key; compare safety "
        "numbers (safety-number b.petrov\\n), then accept it (safety-number b.petrov\\n --accept)"
    )


def test_an_unreadable_message_is_told_naming_the_sender_device_when_known() -> None:
    """Test that a MessageUnreadable event says in plain words which device's message was lost, or
    that the message named none, on one escaped line."""
    named = event_note(MessageUnreadable("a.ivanova\n", 2, "no session with this device"))
    assert named == (
        "unreadable: a message from a.ivanova\\n device 2 could not be decrypted and was dropped"
        " (no session with this device); its sender is not told, ask them to send it again"
    )
    unnamed = event_note(MessageUnreadable(None, None, "the message did not authenticate"))
    assert unnamed is not None and unnamed.startswith(
        "unreadable: a message from a sender the message does not name could not be decrypted"
    )
