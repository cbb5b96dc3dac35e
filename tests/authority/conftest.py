"""One organisation (org init is two Argon2id runs) and one running authority per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.authority import AuthorityProcess, Organisation


@pytest.fixture(scope="module")
def organisation(tmp_path_factory: pytest.TempPathFactory) -> Organisation:
    return Organisation.init(tmp_path_factory.mktemp("organisation"))


@pytest.fixture(scope="module")
def authority(
    organisation: Organisation, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AuthorityProcess]:
    data = organisation.data_folder(tmp_path_factory.mktemp("authority") / "data")
    process = AuthorityProcess(data, organisation.passphrase_file, "--attempts-per-minute", "10000").start()
    yield process
    process.stop()
