"""The run command's entry point."""

from __future__ import annotations

import pytest

import main


def test_main_runs_the_demonstration_conversation(capsys: pytest.CaptureFixture[str]) -> None:
    """Test that main() completes a sealed exchange both ways and prints the 60-digit safety number."""
    assert main.main() == 0
    out = capsys.readouterr().out
    assert "from 'alice': 'Good morning, Bob. The draft is ready.'" in out
    assert "Alice read the reply: 'Thank you, Alice.'" in out
    digits = out.split("their safety number:")[1].split()
    assert len(digits) == 12 and all(len(group) == 5 and group.isdigit() for group in digits)
