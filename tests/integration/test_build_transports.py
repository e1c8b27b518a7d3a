"""The engine's BuildKit reached through each engine transport: unix, TCP+mutual TLS and SSH.

The BuildKit connection names a ``docker_engine`` connection with ``engine_conn_id``;
/grpc and /session are upgraded over that engine's own transport.
"""

from __future__ import annotations

import json
import os

import docker
import pytest

from airflow_provider_artiload.operators.build import BuildArtifactOperator
from airflow_provider_artiload.hooks.buildkit import BuildKitHook

BASE = "artiload-test/busybox:latest"


def _engine_conn(kind: str, engine, sshd, tls_material) -> tuple[str, dict]:
    if kind == "unix":
        return engine.unix_url, {}
    if kind == "tls":
        return engine.tcp_url, {
            "tls_ca_cert": tls_material.ca_cert,
            "tls_client_cert": tls_material.client_cert,
            "tls_client_key": tls_material.client_key,
        }
    return f"ssh://{sshd.user}@{sshd.host}:{sshd.port}{engine.socket_path}", {
        "key_file": sshd.client_key,
        "known_hosts": sshd.known_hosts,
        "look_for_keys": "false",
    }


@pytest.mark.parametrize("kind", ["unix", "tls", "ssh"])
def test_build_through_each_engine_transport(monkeypatch, engine, sshd, tls_material, tmp_path, kind):
    host, extra = _engine_conn(kind, engine, sshd, tls_material)
    monkeypatch.setenv(f"AIRFLOW_CONN_ENG_{kind.upper()}", json.dumps({"conn_type": "docker_engine", "host": host, "extra": extra}))
    monkeypatch.setenv(
        f"AIRFLOW_CONN_BK_{kind.upper()}",
        json.dumps({"conn_type": "buildkit", "host": "docker://", "extra": {"engine_conn_id": f"eng_{kind}", "network": "none"}}),
    )
    payload = os.urandom(2 << 20)
    (tmp_path / "blob").write_bytes(payload)
    (tmp_path / "Dockerfile").write_text(f"FROM {BASE}\nCOPY blob /blob\nRUN md5sum /blob > /sum\n")
    ok, message = BuildKitHook(f"bk_{kind}").test_connection()
    assert ok, message
    artifact = BuildArtifactOperator(
        task_id=f"build_{kind}", context=str(tmp_path), image=f"artiload-build/{kind}:1", buildkit_conn_id=f"bk_{kind}"
    ).execute({})
    assert artifact["engine"] == BuildKitHook(f"bk_{kind}").endpoint.engine.url
    client = docker.DockerClient(base_url=engine.unix_url, version="auto")
    try:
        out = client.containers.run(artifact["image_id"], ["cat", "/sum"], network_mode="none", remove=True)
    finally:
        client.close()
    import hashlib

    assert out.decode().split()[0] == hashlib.md5(payload).hexdigest()
