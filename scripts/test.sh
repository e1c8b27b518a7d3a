#!/usr/bin/env bash
# Run the whole test suite: unit tests, then integration tests against real private
# Docker Engines (with their BuildKit), a real sshd on loopback and a real Airflow,
# all started by tests/conftest.py and stopped afterwards.
#
# With no arguments it runs the engine matrix: everything on the machine's own
# docker.io (classic store), then every test that uses an engine again on Docker 28
# with the classic store and on Docker 28 with the containerd image store
# (ARTILOAD_TEST_ENGINE=28-classic / 28-containerd; scripts/fetch_engines.sh fetches it).
# With arguments they go to one pytest run, on ARTILOAD_TEST_ENGINE (default: system),
# e.g. `bash scripts/test.sh -m "not integration"` or
# `ARTILOAD_TEST_ENGINE=28-containerd bash scripts/test.sh tests/integration/test_delta.py`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup_lab.sh"
cd "$ROOT"
PYTEST=("$ROOT/.venv/bin/python" -m pytest -p no:cacheprovider)
if [ $# -gt 0 ]; then
  exec "${PYTEST[@]}" "$@"
fi
status=0
summary=()
run() {
  local kind="$1"; shift
  echo "=== engine kind: $kind: pytest $*"
  if ARTILOAD_TEST_ENGINE="$kind" "${PYTEST[@]}" "$@"; then
    summary+=("$kind: passed")
  else
    summary+=("$kind: FAILED")
    status=1
  fi
}
run system
run 28-classic -m engines
run 28-containerd -m engines
printf '%s\n' "${summary[@]}"
exit $status
