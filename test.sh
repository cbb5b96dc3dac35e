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
# Workers (pytest-xdist): as many as the machine has cores unless ENCLAVE_TEST_WORKERS says;
# each takes whole test files, so a module's relay starts once, in the worker running it.
exec .venv/bin/python -m pytest -n "${ENCLAVE_TEST_WORKERS:-auto}" --dist loadfile "$@"
