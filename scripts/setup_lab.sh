#!/usr/bin/env bash
# The test lab, on top of what the demo needs (scripts/setup.sh), idempotently, as root:
# OpenSSH (the sshd the tests start on loopback), docker-compose (validates
# docker-compose.airflow.yml), Postgres and Redis (the Celery deployment test), the test extra in
# .venv (docker-py, build, twine, moto, the sftp/amazon/celery providers), Docker 28 + containerd 2
# unpacked into .engines/ (scripts/fetch_engines.sh) and chromium with playwright-core
# (scripts/setup_ui.sh). scripts/test.sh runs it; the Airflow version matrix adds its own venvs
# (scripts/matrix.sh).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"

missing=()
command -v sshd >/dev/null || [ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v ssh-keygen >/dev/null || missing+=(openssh-client)
command -v docker-compose >/dev/null || missing+=(docker-compose)
[ -x /usr/lib/postgresql/15/bin/initdb ] || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v docker-registry >/dev/null || missing+=(docker-registry)  # registry build cache (scripts/harness_registry.py)
command -v go >/dev/null || missing+=(golang-go)  # Go's archive/tar and encoding/json: the oracle of tests/unit/test_go_oracle.py
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup_lab: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
stamp="$ROOT/.venv/.artiload-test-installed"
if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ] || [ "$ROOT/constraints.txt" -nt "$stamp" ]; then
  "$ROOT/.venv/bin/pip" install -q --disable-pip-version-check -c "$ROOT/constraints.txt" -e "$ROOT[test]"
  touch "$stamp"
fi
# Docker 28 + containerd 2 from Debian sid, for the engine matrix and the containerd tests.
bash "$ROOT/scripts/fetch_engines.sh" sid
# Heterogeneous fleets (tests/integration/test_platforms.py): QEMU's aarch64 handler registered when
# missing (fails clearly when it cannot), and an arm64 busybox from Debian's archive (private apt config).
bash "$ROOT/scripts/setup_qemu.sh"
bash "$ROOT/scripts/fetch_arm64.sh"
# The browser test of the connection forms: Debian's chromium and playwright-core from npm.
bash "$ROOT/scripts/setup_ui.sh" >/dev/null
