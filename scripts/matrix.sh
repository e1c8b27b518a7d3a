#!/usr/bin/env bash
# The Airflow version matrix, run by .ci/run after scripts/test.sh (which runs everything, on every engine
# kind, on the newest minor, 3.3, with constraints.txt).
#
# For each older supported minor, on its newest patch (3.1.8, 3.2.2), in its own venv under
# .artiload/matrix/ pinned by constraints/airflow-<minor>.txt (a pip freeze, as constraints.txt is):
#   1. the provider's wheel (built here with `python -m build`, checked with `twine check`), not the tree,
#      installed with the test extra;
#   2. the unit tests (-m "not integration"), with Airflow's deprecation warnings as errors (pyproject.toml);
#   3. the example DAGs under `airflow dags test` against a real engine (tests/integration/test_dags.py),
#      and a slice of the integration tests: build, save, load over SSH, the XCom hand-over, a containerd
#      node, S3 (moto) and SFTP paths, the provider's registration.
# The tests run from a copy of the repository without airflow_provider_artiload/, so they import the wheel.
#
#   bash scripts/matrix.sh              # 3.1 and 3.2
#   bash scripts/matrix.sh 3.1          # one minor
#   bash scripts/matrix.sh --freeze 3.1 # rebuild that venv without constraints and rewrite constraints/airflow-3.1.txt
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
declare -A NEWEST=([3.1]=3.1.8 [3.2]=3.2.2)
# The lowest provider versions the extras allow, pinned on the oldest minor so that they are what is tested.
# On 3.2: Airflow 3.2.2's execution API breaks under `airflow dags test` with fastapi>=0.157 (pydantic: "needs a
# discriminator field") and with svcs 26 (no svcs_registry): what its users resolve today, pinned to what works.
declare -A FLOOR=([3.1]="apache-airflow-providers-sftp[sshfs]==5.7.0 apache-airflow-providers-amazon[s3fs]==9.6.0"
                  [3.2]="fastapi==0.156.0 svcs==25.1.0")
SLICE=(
  tests/integration/test_dags.py
  tests/integration/containerd/test_fleet_dag.py
  tests/integration/test_provider.py
  tests/integration/test_build_hints.py
  tests/integration/test_engine_transfer.py::test_save_writes_a_complete_archive_and_a_true_artifact
  tests/integration/test_engine_transfer.py::test_load_over_ssh_streamlocal
  tests/integration/test_engine_transfer.py::test_operators_pass_the_artifact_through_xcom
  tests/integration/test_s3.py::test_save_to_an_s3_directory_gets_a_content_addressed_name_and_loads
  tests/integration/test_remote_paths.py::test_tarball_round_trips_through_sftp
)

freeze=0
if [ "${1:-}" = "--freeze" ]; then freeze=1; shift; fi
minors=("$@")
[ ${#minors[@]} -gt 0 ] || minors=(3.1 3.2)

[ -n "${ARTILOAD_MATRIX_NO_SETUP:-}" ] || bash "$ROOT/scripts/setup_lab.sh"  # .ci/run has just run it (test.sh)
DIST="$ROOT/.artiload/dist"
rm -rf "$DIST"
"$ROOT/.venv/bin/python" -m build --outdir "$DIST" "$ROOT" >/dev/null
"$ROOT/.venv/bin/python" -m twine check --strict "$DIST"/*
WHEEL="$(ls "$DIST"/*.whl)"

# The tree without the package: tests import what the wheel installed.
RUN="$ROOT/.artiload/matrix/tree"
rm -rf "$RUN"
mkdir -p "$RUN"
tar -C "$ROOT" --exclude=./airflow_provider_artiload --exclude=./.venv --exclude=./.git --exclude=./.artiload \
    --exclude=./.engines --exclude=./build --exclude=./dist --exclude='*/node_modules' --exclude='*.egg-info' \
    --exclude='__pycache__' -cf - . | tar -C "$RUN" -xf -
ln -s "$ROOT/.engines" "$RUN/.engines"

status=0
summary=()
for minor in "${minors[@]}"; do
  version="${NEWEST[$minor]:?no newest patch known for Airflow $minor}"
  venv="$ROOT/.artiload/matrix/airflow-$minor"
  constraints="$ROOT/constraints/airflow-$minor.txt"
  started=$SECONDS
  if [ $freeze = 1 ]; then
    rm -rf "$venv"
  fi
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  if [ $freeze = 1 ]; then
    # shellcheck disable=SC2086
    # grpcio-tools as in constraints.txt: the committed *_pb2_grpc.py were generated with it (test_protos_fresh).
    "$venv/bin/pip" install -q --disable-pip-version-check "apache-airflow==$version" "$WHEEL[test]" ${FLOOR[$minor]} \
        "$(grep -i '^grpcio-tools==' "$ROOT/constraints.txt")"
    {
      echo "# Airflow $minor (newest patch) for scripts/matrix.sh: pip freeze of a venv holding apache-airflow==$version"
      echo "# and the provider's wheel with the test extra. Regenerate: bash scripts/matrix.sh --freeze $minor"
      "$venv/bin/pip" freeze --disable-pip-version-check | grep -v -i -e '^airflow-provider-artiload' -e '^-e ' -e ' @ '
    } > "$constraints"
  else
    "$venv/bin/pip" install -q --disable-pip-version-check -c "$constraints" "apache-airflow==$version" "$WHEEL[test]"
  fi
  # The wheel, freshly: the same version number is rebuilt on every run.
  "$venv/bin/pip" install -q --disable-pip-version-check --no-deps --force-reinstall "$WHEEL"
  got="$("$venv/bin/python" -c 'import airflow; print(airflow.__version__)' 2>/dev/null | tail -1)"
  [ "$got" = "$version" ] || { echo "matrix: $venv holds Airflow $got, not $version" >&2; exit 1; }
  echo "=== Airflow $version: venv ready in $((SECONDS - started)) s"
  # Deselected: what checks the tree's own files (Dockerfile.airflow's COPY, the generated *_pb2*.py against
  # their .proto), which does not depend on Airflow and runs in scripts/test.sh.
  PYTEST=("$venv/bin/python" -m pytest -p no:cacheprovider
          --deselect tests/unit/test_compose.py::test_image_installs_this_provider
          --deselect tests/unit/buildkit/test_protos_fresh.py::test_generated_modules_match_the_proto_files
          --deselect tests/unit/containerd/test_proto_drift.py::test_generated_modules_match_the_proto_files)
  for run in unit slice; do
    started=$SECONDS
    if [ $run = unit ]; then args=(-q -m "not integration"); else args=(-q "${SLICE[@]}"); fi
    if (cd "$RUN" && ARTILOAD_TEST_ENGINE=system "${PYTEST[@]}" "${args[@]}"); then
      summary+=("Airflow $version $run: passed in $((SECONDS - started)) s")
    else
      summary+=("Airflow $version $run: FAILED in $((SECONDS - started)) s")
      status=1
    fi
  done
done
printf 'matrix: %s\n' "${summary[@]}"
exit $status
