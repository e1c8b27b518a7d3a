#!/usr/bin/env bash
# What the demo (scripts/demo.sh) needs on a fresh Debian machine (run as root), idempotently, and
# nothing more: docker.io (dockerd for the private engine, with BuildKit inside), a static busybox
# (the example's base image is made from it: no registry) and a virtualenv at .venv holding the
# provider (editable) and Airflow, which runs on SQLite. docker-py comes along because
# scripts/harness.py makes the base image with it.
# The test lab (sshd, Postgres, Redis, chromium, Docker 28, the test extra) is scripts/setup_lab.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# A static busybox has no ELF interpreter (/lib64/ld-linux-*.so) in its first bytes. Not `ldd`:
# ldd exits non-zero for a static binary, which under pipefail read as "missing" on every run.
static_busybox() {
  local bb text
  bb="$(command -v busybox || true)"
  [ -n "$bb" ] || return 1
  text="$(head -c 4096 "$bb" | tr -d '\000')"
  [[ $text != *ld-linux* ]]
}

missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
static_busybox || missing+=(busybox-static)
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
# Pinned by constraints.txt (Airflow 3.3, the newest minor), so pip has nothing to search.
stamp="$ROOT/.venv/.artiload-installed"
if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ] || [ "$ROOT/constraints.txt" -nt "$stamp" ]; then
  "$ROOT/.venv/bin/pip" install -q --disable-pip-version-check -c "$ROOT/constraints.txt" -e "$ROOT" docker
  touch "$stamp"
fi
