"""Tests of app/sync."""
