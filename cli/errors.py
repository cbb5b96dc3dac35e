"""The CLI's own refusals, under the root ``EnclaveError`` so one handler reports every expected failure."""

from __future__ import annotations

from app.base.errors import EnclaveError


class CliError(EnclaveError):
    """A request the CLI cannot carry out (a missing file, an unknown colleague); the message says why."""
