#!/usr/bin/env bash
# Install what artiload needs on a fresh Debian machine (run as root), idempotently:
# system packages for the private engine and sshd the demo and the tests start,
# and a virtualenv at .venv with the provider installed editable.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v sshd >/dev/null || [ -x /usr/sbin/sshd ] || missing+=(openssh-server)
# The test base image copies /bin/busybox into FROM scratch: it must be the static build.
ldd /bin/busybox 2>&1 | grep -q "not a dynamic executable" || missing+=(busybox-static)
command -v ssh-keygen >/dev/null || missing+=(openssh-client)
command -v docker-compose >/dev/null || missing+=(docker-compose)  # validates docker-compose.airflow.yml
# The Celery deployment test (tests/integration/test_celery.py): Postgres and Redis from Debian.
[ -x /usr/lib/postgresql/15/bin/initdb ] || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v redis-server >/dev/null || missing+=(redis-server)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
PY="${PYTHON:-python3}"
if [ ! -x "$ROOT/.venv/bin/python" ]; then
  "$PY" -m venv "$ROOT/.venv"
fi
stamp="$ROOT/.venv/.artiload-installed"
if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ] || [ "$ROOT/constraints.txt" -nt "$stamp" ]; then
  "$ROOT/.venv/bin/pip" install -q --disable-pip-version-check -c "$ROOT/constraints.txt" -e "$ROOT[test]"
  touch "$stamp"
fi
# Docker 28 + containerd 2 from Debian sid, for the engine matrix and the containerd tests.
bash "$ROOT/scripts/fetch_engines.sh" sid
# The browser test of the connection forms: Debian's chromium and playwright-core from npm.
bash "$ROOT/scripts/setup_ui.sh" >/dev/null
