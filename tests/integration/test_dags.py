"""The example DAGs, run end to end by a real Airflow (``airflow dags test`` on SQLite)."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import docker
import pytest

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory) -> dict[str, str]:
    """A fresh SQLite Airflow whose dags folder is the repo's dags/."""
    home = tmp_path_factory.mktemp("airflow-home")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
    }
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
    return env


def dags_test(env: dict[str, str], dag_id: str, logical_date: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [AIRFLOW, "dags", "test", dag_id, logical_date], env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "state=success" in result.stdout + result.stderr
    return result


def test_demo_dag_builds_saves_and_loads_under_a_dated_tag(airflow_env, engine, tmp_path):
    buildkit = {"conn_type": "buildkit", "host": f"docker://{engine.unix_url}", "extra": {"network": "none"}}
    env = {
        **airflow_env,
        "DOCKER_HOST": engine.unix_url,
        "ARTILOAD_DEMO_OUT": str(tmp_path),
        "AIRFLOW_CONN_BUILDKIT_DEFAULT": json.dumps(buildkit),  # as scripts/demo.sh sets it
    }
    result = dags_test(env, "artiload_demo", "2026-03-04")
    log = result.stdout + result.stderr
    client = docker.DockerClient(base_url=engine.unix_url)
    image = client.images.get("artiload-demo:20260304")
    assert "artiload-demo:latest" in image.tags
    assert client.containers.run("artiload-demo:20260304", ["echo", "demo"], network_mode="none", remove=True) == b"demo\n"
    assert os.listdir(tmp_path) == ["artiload-demo-20260304.tar"]
    assert f"Loading {tmp_path}/artiload-demo-20260304.tar into {engine.unix_url}: done" in log


@pytest.fixture(scope="module")
def example_env(airflow_env, engine, engine_b, engine_c, sshd, tmp_path_factory) -> dict[str, str]:
    """The connections and variables docs/connections.md tells users to set, pointed at the harness:
    BuildKit inside engine A builds; engine B is 'local' (unix), engine C 'remote' (SSH)."""
    tarballs = tmp_path_factory.mktemp("tarballs")
    conns = {
        "ARTILOAD_BUILD_ENGINE": {"conn_type": "docker_engine", "host": engine.unix_url},
        "ARTILOAD_BUILDER": {
            "conn_type": "buildkit",
            "host": "docker://",
            "extra": {"engine_conn_id": "artiload_build_engine", "network": "none"},
        },
        "ARTILOAD_LOCAL": {"conn_type": "docker_engine", "host": engine_b.unix_url},
        "ARTILOAD_REMOTE": {
            "conn_type": "docker_engine",
            "host": f"ssh://{sshd.user}@{sshd.host}:{sshd.port}{engine_c.socket_path}",
            "extra": {"key_file": sshd.client_key, "known_hosts": sshd.known_hosts, "look_for_keys": "false"},
        },
    }
    env = {**airflow_env, **{f"AIRFLOW_CONN_{k}": json.dumps(v) for k, v in conns.items()}}
    env["AIRFLOW_VAR_ARTILOAD_TARBALLS"] = str(tarballs)
    env["AIRFLOW_VAR_ARTILOAD_FLEET"] = json.dumps(["artiload_local", "artiload_remote"])
    return env


def image_output(engine, ref: str) -> bytes:
    client = docker.DockerClient(base_url=engine.unix_url)
    return client.containers.run(ref, network_mode="none", remove=True)


def asset_events(env: dict[str, str]) -> list[tuple[str, dict]]:
    with sqlite3.connect(Path(env["AIRFLOW_HOME"]) / "airflow.db") as db:
        rows = db.execute("SELECT asset.uri, asset_event.extra FROM asset_event JOIN asset ON asset.id = asset_event.asset_id")
        return [(uri, json.loads(extra) if isinstance(extra, str) else extra) for uri, extra in rows]


def test_image_refresh_builds_saves_and_loads_into_local_and_remote(example_env, engine_b, engine_c):
    result = dags_test(example_env, "image_refresh", "2026-02-01")
    log = result.stdout + result.stderr
    for target in (engine_b, engine_c):
        assert image_output(target, "artiload/refresh:20260201") == b"data refreshed for 2026-02-01\n"
        image = docker.DockerClient(base_url=target.unix_url).images.get("artiload/refresh:latest")
        assert "artiload/refresh:20260201" in image.tags
        assert image.labels["org.opencontainers.image.version"] == "2026-02-01"
    tarballs = Path(example_env["AIRFLOW_VAR_ARTILOAD_TARBALLS"]) / "refresh"
    [tarball] = os.listdir(tarballs)  # content-addressed: <image id>.tar
    assert tarball == image.id.split(":")[1] + ".tar"
    # progress before "done", even for a transfer this fast; no SSH library chatter
    # (a load that finds the bottom layers in place moves a few KiB, too little for a progress line: the save,
    # or a full load, moves the whole image)
    transfers = re.finditer(r"((?:Saving|Loading) \S+ (?:from|into|to) [^\n]*?): (?:[\d.]+ [KM]iB / [\d.]+ [KM]iB \(\d+%\)|done)", log)
    first_progress, first_done = {}, {}
    for match in transfers:
        label, is_done = match.group(1), match.group(0).endswith("done")
        (first_done if is_done else first_progress).setdefault(label, match.start())
    assert any(label in first_done and first_progress[label] < first_done[label] for label in first_progress), log[-4000:]
    assert "[paramiko" not in log and "[asyncssh" not in log
    # asset events: one per engine for the repository, with the image, its digest and tags
    events = {uri: extra for uri, extra in asset_events(example_env) if uri.startswith("docker-image://")}
    for conn_id in ("artiload_local", "artiload_remote"):
        extra = events[f"docker-image://{conn_id}/artiload/refresh"]
        assert extra["image_id"] == extra["digest"] == image.id
        assert sorted(extra["tags"]) == ["artiload/refresh:20260201", "artiload/refresh:latest"]


def test_a_missing_base_image_is_named_before_the_build(example_env):
    env = {**example_env, "AIRFLOW_VAR_ARTILOAD_BASE_IMAGE": "artiload-test/not-there:1"}
    result = subprocess.run([AIRFLOW, "dags", "test", "image_refresh", "2026-02-02"], env=env,
                            capture_output=True, text=True, timeout=600)
    log = result.stdout + result.stderr
    assert result.returncode != 0 or "state=failed" in log
    assert "the example DAGs build FROM 'artiload-test/not-there:1', which is not in the builder's engine" in log
    assert "set the Variable artiload_base_image" in log
    assert "Build finished" not in log and "is invalid" not in log  # it stopped before the build


def test_backfill_runs_in_parallel_without_collisions_and_reruns_idempotently(example_env, engine_b, tmp_path):
    dates = ["2026-01-01", "2026-01-02", "2026-01-03"]
    runs = []
    for date in dates:  # max_active_runs=3: three runs at once, each on its own copy of the metadata DB
        home = tmp_path / date
        shutil.copytree(example_env["AIRFLOW_HOME"], home)
        env = {**example_env, "AIRFLOW_HOME": str(home)}
        runs.append(subprocess.Popen([AIRFLOW, "dags", "test", "backfill", date], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    for run in runs:
        out, _ = run.communicate(timeout=600)
        assert run.returncode == 0 and "state=success" in out, out[-4000:]
    tarballs = Path(example_env["AIRFLOW_VAR_ARTILOAD_TARBALLS"]) / "backfill"
    assert sorted(os.listdir(tarballs)) == ["20260101.tar", "20260102.tar", "20260103.tar"]
    for date in dates:
        assert image_output(engine_b, f"artiload/backfill:{date.replace('-', '')}") == f"data refreshed for {date}\n".encode()
    before = (tarballs / "20260102.tar").stat().st_mtime_ns
    log = "".join(dags_test(example_env, "backfill", "2026-01-02").stdout)
    assert (tarballs / "20260102.tar").stat().st_mtime_ns == before  # complete: not rewritten
    assert "already holds" in log and "no layer bytes sent" in log  # the engine had it: skipped


def test_fleet_refresh_maps_over_engines_and_fans_out(example_env, engine_b, engine_c):
    result = dags_test(example_env, "fleet_refresh", "2026-03-01")
    for target in (engine_b, engine_c):
        image = docker.DockerClient(base_url=target.unix_url).images.get("artiload/fleet:latest")
        assert "artiload/fleet:20260301" in image.tags
    assert "load_each" in result.stdout + result.stderr
