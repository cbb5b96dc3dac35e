"""Enclave's tests; a package so that tests/storage/test_*.py never shadow the ``storage`` package."""
