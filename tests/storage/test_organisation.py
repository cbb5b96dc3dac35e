"""The organisation repository: the trusted root is fixed once set, and no version goes down."""

from __future__ import annotations

import pytest

from app.base.errors import StorageError
from storage.store import Store

ROOT, OTHER = b"\x01" * 32, b"\x02" * 32


def test_the_first_config_pins_the_root_and_later_ones_replace_it_by_origin(store: Store) -> None:
    """Test that accepting keeps the bytes per origin, pins the root once, and refuses another root."""
    repo = store.organisation
    assert repo.root_key() is None and repo.config("system") is None
    repo.accept("system", root_key=ROOT, version=3, config=b"v3", signature=b"s3")
    repo.accept("user", root_key=ROOT, version=1, config=b"u1", signature=b"t1")
    repo.accept("system", root_key=ROOT, version=4, config=b"v4", signature=b"s4")
    assert repo.root_key() == ROOT
    system = repo.config("system")
    assert system is not None and (system.version, system.config, system.signature) == (4, b"v4", b"s4")
    assert repo.config("user").config == b"u1"  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="another organisation"):
        repo.accept("user", root_key=OTHER, version=9, config=b"x", signature=b"y")
    assert repo.config("user").version == 1  # type: ignore[union-attr]


def test_the_store_itself_refuses_a_downgrade_and_a_new_root(store: Store) -> None:
    """Test that the triggers refuse lowering a version or changing the root, whatever the caller did."""
    store.organisation.accept("user", root_key=ROOT, version=5, config=b"v5", signature=b"s")
    with pytest.raises(StorageError):
        store.organisation.accept("user", root_key=ROOT, version=4, config=b"v4", signature=b"s")
    with pytest.raises(StorageError), store.transaction():
        store._db.execute("UPDATE org_trust SET root_key = ?", (OTHER,))
    assert store.organisation.config("user").version == 5  # type: ignore[union-attr]
    assert store.organisation.root_key() == ROOT
