"""Helpers every test folder may use."""

from __future__ import annotations

import os

import pytest


def under_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require(condition: object, reason: str) -> None:
    """Skip the calling test when ``condition`` is false, or fail it under CI=true.

    For tests that need a component the machine may lack (a system daemon, root):
    a developer's run says what was skipped; CI must have everything.
    """
    if condition:
        return
    if under_ci():
        pytest.fail(f"required under CI=true: {reason}")
    pytest.skip(reason)
