"""The example DAG fleet_refresh on a fleet that mixes a Docker Engine and a containerd node, by a real Airflow.

The node is a standalone containerd 2.x reached over the loopback sshd (as a k3s node would be, with
nothing on it but sshd); ``airflow dags test`` runs the DAG on SQLite.
"""

from __future__ import annotations

import json

import docker
import pytest

from tests.integration.test_dags import airflow_env, dags_test  # noqa: F401  (a fixture and a helper)


@pytest.mark.parametrize("containerd", ["2.x"], indirect=True, ids=["containerd-2.x"])
def test_fleet_refresh_loads_into_an_engine_and_a_node(airflow_env, engine, engine_b, containerd, sshd, tmp_path):  # noqa: F811
    ssh = {"key_file": sshd.client_key, "known_hosts": sshd.known_hosts, "look_for_keys": "false"}
    conns = {
        "ARTILOAD_BUILD_ENGINE": {"conn_type": "docker_engine", "host": engine.unix_url},
        "ARTILOAD_BUILDER": {"conn_type": "buildkit", "host": "docker://",
                             "extra": {"engine_conn_id": "artiload_build_engine", "network": "none"}},
        "ARTILOAD_LOCAL": {"conn_type": "docker_engine", "host": engine_b.unix_url},
        "ARTILOAD_NODE": {"conn_type": "containerd", "host": f"ssh://{sshd.user}@{sshd.host}:{sshd.port}{containerd.socket_path}",
                          "extra": ssh},
    }
    env = {**airflow_env, **{f"AIRFLOW_CONN_{k}": json.dumps(v) for k, v in conns.items()}}
    env["AIRFLOW_VAR_ARTILOAD_TARBALLS"] = str(tmp_path)
    env["AIRFLOW_VAR_ARTILOAD_FLEET"] = json.dumps(["artiload_local", "artiload_node"])
    dags_test(env, "fleet_refresh", "2026-03-02")
    image = docker.DockerClient(base_url=engine_b.unix_url).images.get("artiload/fleet:latest")
    assert "artiload/fleet:20260302" in image.tags
    listed = containerd.ctr("images", "ls", "-q").stdout.split()
    assert {"docker.io/artiload/fleet:20260302", "docker.io/artiload/fleet:latest"} <= set(listed)
    out = containerd.ctr("run", "--rm", "--runtime", "io.containerd.runc.v2", "docker.io/artiload/fleet:latest",
                         "fleet-dag", "/bin/cat", "/app/DATA_DATE").stdout
    engine_out = docker.DockerClient(base_url=engine_b.unix_url).containers.run(
        "artiload/fleet:latest", ["cat", "/app/DATA_DATE"], network_mode="none", remove=True)
    assert out.encode() == engine_out and out.strip()  # the same image on the node as on the engine
