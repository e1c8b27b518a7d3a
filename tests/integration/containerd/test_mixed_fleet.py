"""A fleet that mixes a Docker Engine and a containerd node: one read of the archive, both get the image.

Real parts only: the private engine A (of this pass's engine kind) builds and saves; a standalone
containerd (k8s.io namespace) is the node, over the loopback sshd, as a k3s node would be reached.
"""

from __future__ import annotations

import contextlib
import json
import secrets

import docker
import pytest

import harness  # scripts/, put on sys.path by tests/conftest.py
from airflow_provider_artiload.operators import CopyImageOperator, DockerLoadOperator, SaveImageOperator


def _conn(monkeypatch, conn_id: str, conn: dict) -> str:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    return conn_id


def listed_digest(containerd, name: str) -> str:
    for line in containerd.ctr("images", "ls").stdout.splitlines():
        ref, _, digest, *_ = line.split()
        if ref == name:
            return digest
    raise AssertionError(f"{name} is not listed")


def node_conn(monkeypatch, containerd, sshd) -> str:
    host = f"ssh://{sshd.user}@{sshd.host}:{sshd.port}{containerd.socket_path}"
    extra = {"key_file": sshd.client_key, "known_hosts": sshd.known_hosts, "look_for_keys": "false"}
    return _conn(monkeypatch, "node", {"conn_type": "containerd", "host": host, "extra": extra})


@pytest.mark.parametrize("containerd", ["2.x"], indirect=True, ids=["containerd-2.x"])
def test_load_and_copy_into_an_engine_and_a_node_at_once(monkeypatch, engine, engine_b, containerd, sshd, tmp_path):
    tag = secrets.token_hex(4)
    harness.build_image(engine.socket_path, f"mixed/app:{tag}", f'FROM {harness.BASE_TAG}\nRUN echo "{tag}" > /stamp\n')
    src = _conn(monkeypatch, "mixed_src", {"conn_type": "docker_engine", "host": engine.unix_url})
    dst = _conn(monkeypatch, "mixed_dst", {"conn_type": "docker_engine", "host": engine_b.unix_url})
    node = node_conn(monkeypatch, containerd, sshd)
    artifact = SaveImageOperator(task_id="save", image=f"mixed/app:{tag}", path=str(tmp_path) + "/", engine_conn_id=src).execute({})

    result = DockerLoadOperator(task_id="load", source=artifact, engine_conn_id=[dst, node], tag=f"mixed/app:{tag}").execute({})
    by_engine = {t["engine"]: t for t in result["targets"]}
    assert {t["mode"] for t in by_engine.values()} <= {"full", "delta"} and len(by_engine) == 2  # others may have the base
    with contextlib.closing(docker.DockerClient(base_url=engine_b.unix_url)) as client:
        assert client.containers.run(f"mixed/app:{tag}", ["cat", "/stamp"], network_mode="none", remove=True) == f"{tag}\n".encode()
    name = f"docker.io/mixed/app:{tag}"
    assert name in containerd.ctr("images", "ls", "-q").stdout.split()
    out = containerd.ctr("run", "--rm", "--runtime", "io.containerd.runc.v2", name, f"t-{tag}", "/bin/cat", "/stamp").stdout
    assert out == f"{tag}\n"
    node_result = next(t for t in result["targets"] if t["engine"].startswith("ssh://"))
    assert node_result["image_id"] == listed_digest(containerd, name)  # the manifest digest, as containerd calls it

    again = DockerLoadOperator(task_id="again", source=artifact, engine_conn_id=[dst, node], tag=f"mixed/app:{tag}-b").execute({})
    assert {t["mode"] for t in again["targets"]} == {"skipped"} and {t["bytes_sent"] for t in again["targets"]} == {0}
    assert f"docker.io/mixed/app:{tag}-b" in containerd.ctr("images", "ls", "-q").stdout.split()

    copied = CopyImageOperator(task_id="copy", image=f"mixed/app:{tag}", source_engine_conn_id=src,
                               engine_conn_id=[node], tag=f"mixed/copied:{tag}").execute({})
    # an engine's export names no containerd ID up front, so the node cannot skip it unread; it has every layer
    # blob (a Docker 28 classic-store export may bring a small metadata blob of its own: a few KiB at most)
    assert copied["targets"][0]["mode"] in ("skipped", "delta") and copied["targets"][0]["bytes_sent"] < 64 << 10
    assert f"docker.io/mixed/copied:{tag}" in containerd.ctr("images", "ls", "-q").stdout.split()


@pytest.mark.parametrize("containerd", ["2.x"], indirect=True, ids=["containerd-2.x"])
def test_save_and_copy_out_of_a_node_into_an_engine(monkeypatch, engine, engine_b, containerd, sshd, tmp_path):
    tag = secrets.token_hex(4)
    harness.build_image(engine.socket_path, f"fromnode/app:{tag}", f'FROM {harness.BASE_TAG}\nRUN echo "{tag}" > /stamp\n')
    src = _conn(monkeypatch, "fn_src", {"conn_type": "docker_engine", "host": engine.unix_url})
    dst = _conn(monkeypatch, "fn_dst", {"conn_type": "docker_engine", "host": engine_b.unix_url})
    node = node_conn(monkeypatch, containerd, sshd)
    CopyImageOperator(task_id="to_node", image=f"fromnode/app:{tag}", source_engine_conn_id=src, engine_conn_id=node,
                      tag=f"fromnode/app:{tag}").execute({})
    digest = listed_digest(containerd, f"docker.io/fromnode/app:{tag}")

    artifact = SaveImageOperator(task_id="save", image=f"fromnode/app:{tag}", path=str(tmp_path) + "/",
                                 engine_conn_id=node).execute({})
    assert artifact["image_id"] == digest == artifact["manifest_digest"] and artifact["format"] in ("oci-archive", "oci-layout")
    assert artifact["path"] == f"{tmp_path}/{digest.split(':')[1]}.tar"
    loaded = DockerLoadOperator(task_id="load", source=artifact, engine_conn_id=dst, tag=f"fromnode/saved:{tag}").execute({})
    copied = CopyImageOperator(task_id="copy", image=f"fromnode/app:{tag}", source_engine_conn_id=node, engine_conn_id=dst,
                               tag=f"fromnode/copied:{tag}").execute({})
    assert copied["image_id"] == loaded["image_id"]
    with contextlib.closing(docker.DockerClient(base_url=engine_b.unix_url)) as client:
        for ref in (f"fromnode/saved:{tag}", f"fromnode/copied:{tag}"):
            assert client.containers.run(ref, ["cat", "/stamp"], network_mode="none", remove=True) == f"{tag}\n".encode()
