"""A real multi-process deployment: Postgres, Redis, CeleryExecutor, api-server, scheduler,
dag-processor, triggerer and two Celery workers, each in its own mount namespace with its own directory
over the local tarball path (scripts/deploy_harness.py). The example DAG ``image_refresh`` is triggered
through the REST API with a token; a task policy routes the build and save to one worker and the loads
to the other, so the tarball must travel through the sftp:// store (the sshd of the harness).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import docker
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import deploy_harness  # noqa: E402

LOCAL_PATH = "/tmp/artiload"  # what the DAGs would use without a store: different on each worker here
POLICY = '''
def task_policy(task):
    """Builders build and save; loaders load: a save and its load never share a worker."""
    task.queue = "builders" if task.task_id in ("check_base_image", "build", "save") else "loaders"
'''


@pytest.fixture(scope="module")
def deployment(engine, engine_b, engine_c, sshd, tmp_path_factory):
    workdir = Path(tmp_path_factory.mktemp("deploy"))
    home = workdir / "user-home"  # the sftp provider (asyncssh) checks ~/.ssh/known_hosts
    (home / ".ssh").mkdir(parents=True)
    shutil.copy(sshd.known_hosts, home / ".ssh" / "known_hosts")
    store = workdir / "store"
    store.mkdir()
    conns = {
        "ARTILOAD_BUILD_ENGINE": {"conn_type": "docker_engine", "host": engine.unix_url},
        "ARTILOAD_BUILDER": {"conn_type": "buildkit", "host": "docker://",
                             "extra": {"engine_conn_id": "artiload_build_engine", "network": "none"}},
        "ARTILOAD_LOCAL": {"conn_type": "docker_engine", "host": engine_b.unix_url},
        "ARTILOAD_REMOTE": {"conn_type": "docker_engine",
                            "host": f"ssh://{sshd.user}@{sshd.host}:{sshd.port}{engine_c.socket_path}",
                            "extra": {"key_file": sshd.client_key, "known_hosts": sshd.known_hosts,
                                      "look_for_keys": "false"}},
        "ARTILOAD_STORE": {"conn_type": "sftp", "host": sshd.host, "port": sshd.port, "login": sshd.user,
                           "schema": str(store), "extra": {"key_file": sshd.client_key}},
    }
    env = {f"AIRFLOW_CONN_{k}": json.dumps(v) for k, v in conns.items()}
    env["HOME"] = str(home)
    workers = {"worker-a": ("builders", str(workdir / "local-a")), "worker-b": ("loaders", str(workdir / "local-b"))}
    try:
        dep = deploy_harness.start_deployment(workdir, dags_folder=str(ROOT / "dags"), extra_env=env,
                                              workers=workers, local_path=LOCAL_PATH, local_settings=POLICY)
    except deploy_harness.DeployError as exc:
        pytest.fail(f"could not start the deployment: {exc}", pytrace=False)
    dep.store = store
    try:
        yield dep
    finally:
        dep.stop()


def test_save_and_load_on_different_workers_through_the_sftp_store(deployment, engine_b, engine_c):
    deploy_harness.unpause(deployment, "on_image_refresh")  # every other DAG stays paused
    state, tis = deploy_harness.run_dag(deployment, "image_refresh", "2026-04-01T00:00:00Z")
    hosts = {ti["task_id"]: ti["hostname"] for ti in tis}
    states = {ti["task_id"]: ti["state"] for ti in tis}
    assert state == "success", (states, deployment.log("worker-worker-a")[-3000:], deployment.log("worker-worker-b")[-3000:])
    assert hosts["build"] == hosts["save"] == "worker-a"
    assert hosts["load_local"] == hosts["load_remote"] == "worker-b"
    for target in (engine_b, engine_c):
        image = docker.DockerClient(base_url=target.unix_url).images.get("artiload/refresh:20260401")
        assert "artiload/refresh:latest" in image.tags
    # the store default is object storage (artiload_store exists); names are content-addressed. The
    # scheduler may have run the latest daily interval too: that is another image, another name.
    assert image.id.split(":")[1] + ".tar" in os.listdir(deployment.store / "refresh")
    assert not os.listdir(deployment.workdir / "local-a") and not os.listdir(deployment.workdir / "local-b")
    # the downstream DAG scheduled on the asset the loads emitted
    deadline = time.monotonic() + 180
    runs = []
    while time.monotonic() < deadline:
        runs = deployment.request("GET", "/api/v2/dags/on_image_refresh/dagRuns")["dag_runs"]
        if runs and runs[0]["state"] == "success":
            break
        time.sleep(3)
    assert runs and runs[0]["state"] == "success", deployment.log("scheduler")[-3000:]
