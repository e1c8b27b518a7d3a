#!/usr/bin/env bash
# The main job, end to end: the example DAG `artiload_demo` run by `airflow dags test`
# on a throwaway SQLite Airflow. Without DOCKER_HOST it starts a private local
# Docker Engine (own data-root and socket, nothing else touched) and stops it after.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
PY="$ROOT/.venv/bin/python"
WORK="$(mktemp -d /tmp/al-demo-XXXXXX)"
cleanup() {
  if [ -n "${STARTED_ENGINE:-}" ]; then "$PY" "$ROOT/scripts/harness.py" engine stop "$WORK/engine" || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

if [ -z "${DOCKER_HOST:-}" ]; then
  export DOCKER_HOST="$("$PY" "$ROOT/scripts/harness.py" engine start "$WORK/engine")"
  STARTED_ENGINE=1
  echo "demo: started a private Docker Engine at $DOCKER_HOST"
  # The private engine has no bridge network: RUN steps of the build use none.
  export AIRFLOW_CONN_BUILDKIT_DEFAULT="{\"conn_type\": \"buildkit\", \"host\": \"docker://$DOCKER_HOST\", \"extra\": {\"network\": \"none\"}}"
fi
# The demo builds FROM a small busybox image made locally (no registry is needed).
"$PY" "$ROOT/scripts/harness.py" base-image "${DOCKER_HOST#unix://}" >/dev/null

export AIRFLOW_HOME="$WORK/airflow" AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__DAGS_FOLDER="$ROOT/dags"
export ARTILOAD_DEMO_OUT="$WORK/out"
mkdir -p "$ARTILOAD_DEMO_OUT"
"$ROOT/.venv/bin/airflow" db migrate >/dev/null
"$ROOT/.venv/bin/airflow" dags test artiload_demo 2026-01-01
echo "demo: done; images now in $DOCKER_HOST:"
DOCKER_HOST="$DOCKER_HOST" "$PY" - <<'PYEOF'
import docker
for image in docker.from_env().images.list(name="artiload-demo"):
    print("  ", image.short_id, ", ".join(image.tags))
PYEOF
