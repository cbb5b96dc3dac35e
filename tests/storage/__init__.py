"""Tests of the encrypted local store (storage/)."""
