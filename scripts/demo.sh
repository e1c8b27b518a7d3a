#!/usr/bin/env bash
# The main job, end to end: the example DAG `artiload_demo` run by `airflow dags test` on a throwaway
# SQLite Airflow. Installs only what that needs (scripts/setup.sh). Without DOCKER_HOST it starts a
# private local Docker Engine (own data-root and socket, nothing else touched) and stops it after.
# It ends by printing what each task passed through XCom, and keeps the tarball in
# ARTILOAD_DEMO_OUT (default: .artiload/demo/ in this clone).
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
export ARTILOAD_DEMO_OUT="${ARTILOAD_DEMO_OUT:-$ROOT/.artiload/demo}"
mkdir -p "$ARTILOAD_DEMO_OUT"
"$ROOT/.venv/bin/airflow" db migrate >/dev/null
"$ROOT/.venv/bin/airflow" dags test artiload_demo 2026-01-01

echo
echo "demo: what each task passed on (XCom return_value):"
"$PY" - <<'PYEOF'
import json

from sqlalchemy import select

from airflow.models.xcom import XComModel
from airflow.utils.session import create_session

with create_session() as session:
    rows = session.scalars(
        select(XComModel).where(XComModel.dag_id == "artiload_demo").order_by(XComModel.timestamp)
    ).all()
    for row in rows:
        value = XComModel.deserialize_value(row)
        print(f"  {row.task_id} ({row.key}):")
        for line in json.dumps(value, indent=2, default=str).splitlines():
            print(f"    {line}")
PYEOF
echo "demo: images in the engine:"
"$PY" - <<'PYEOF'
import docker

for image in docker.from_env().images.list(name="artiload-demo"):
    print("  ", image.short_id, ", ".join(image.tags))
PYEOF
echo "demo: the tarball is kept in $ARTILOAD_DEMO_OUT:"
ls -l "$ARTILOAD_DEMO_OUT"
if [ -n "${STARTED_ENGINE:-}" ]; then
  echo "demo: stopping the private engine (the tarball stays; load it anywhere with docker load -i)"
fi
