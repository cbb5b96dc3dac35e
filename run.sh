#!/usr/bin/env bash
# Start Enclave. Sets up .venv with the pinned dependencies on first use.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/venv.sh
enclave_venv ""
exec .venv/bin/python main.py "$@"
