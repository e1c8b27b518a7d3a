"""The example DAGs, run end to end by a real Airflow (``airflow dags test`` on SQLite)."""

from __future__ import annotations

import os
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


def test_demo_dag_saves_and_loads_under_a_dated_tag(airflow_env, engine, tmp_path):
    env = {**airflow_env, "DOCKER_HOST": engine.unix_url, "ARTILOAD_DEMO_OUT": str(tmp_path)}
    result = dags_test(env, "artiload_demo", "2026-03-04")
    log = result.stdout + result.stderr
    client = docker.DockerClient(base_url=engine.unix_url)
    image = client.images.get("artiload-demo:20260304")
    assert "artiload-demo:latest" in image.tags
    assert client.containers.run("artiload-demo:20260304", ["echo", "demo"], network_mode="none", remove=True) == b"demo\n"
    assert os.listdir(tmp_path) == ["artiload-demo-20260304.tar"]
    assert f"Loading {tmp_path}/artiload-demo-20260304.tar into {engine.unix_url}: done" in log
