#!/usr/bin/env bash
# Run the whole test suite: unit tests, then integration tests against a real
# private Docker Engine (with its BuildKit), a real sshd on loopback and a real
# Airflow on SQLite, all started by tests/conftest.py and stopped afterwards.
# Extra arguments go to pytest (e.g. `-m "not integration"`, `-k load`).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
exec "$ROOT/.venv/bin/python" -m pytest -p no:cacheprovider "$@"
