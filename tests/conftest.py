"""Helpers every test folder may use."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support.deployment import stop_deployment


@pytest.fixture(scope="session", autouse=True)
def organisation_of_the_run() -> Iterator[None]:
    """Stop the run's enrolment authority (tests/support/deployment.py), if a test started it."""
    yield
    stop_deployment()


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
