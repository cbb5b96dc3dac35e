"""docs/ADMIN.md stays true: its settings table lists every relay setting with its default."""

from __future__ import annotations

from dataclasses import MISSING, fields
from pathlib import Path

from server.config import ServerConfig

ADMIN_DOC = (Path(__file__).resolve().parents[2] / "docs" / "ADMIN.md").read_text(encoding="utf-8")


def test_every_setting_is_documented_with_its_default() -> None:
    """Test that each ServerConfig setting has a row in ADMIN.md showing its real default."""
    for setting in fields(ServerConfig):
        if setting.default is MISSING:
            continue
        default = setting.default
        shown = (f"`{default}`" if default else "") if isinstance(default, str) else str(default)
        assert f"| `{setting.name}` | {shown}" in ADMIN_DOC, setting.name
