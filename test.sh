#!/usr/bin/env bash
# Enclave's whole test suite: lint, import rules, tests. Sets up what it needs first.
# With CI=true every optional component is mandatory: a test that would skip fails.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/venv.sh
source scripts/secret-service.sh
enclave_venv "test,bench"
enclave_secret_service_deps

echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== import rules (DESIGN.md layout)"
.venv/bin/lint-imports --no-cache
echo "== pytest"
exec .venv/bin/python -m pytest "$@"
