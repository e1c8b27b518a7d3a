"""An artifact saved on each engine kind loads over SSH into every other kind and runs with the same content.

Three real engines at once: the machine's docker.io (classic store, a legacy
docker-archive on Debian 12's 20.10), Docker 28 on the classic store (an OCI
layout with uncompressed layers plus manifest.json) and Docker 28 on the
containerd store (gzip layers, the manifest digest as image ID).
"""

from __future__ import annotations

import contextlib
import json

import docker
import pytest

from airflow_provider_artiload.artifacts import DockerArchive
from airflow_provider_artiload import transfer
from airflow_provider_artiload.hooks.engine import DockerEngineHook
from airflow_provider_artiload.transfer import LoadOptions
import harness  # noqa: E402  (tests/conftest.py put scripts/ on sys.path)

KINDS = ("system", "28-classic", "28-containerd")
PAIRS = [(a, b) for a in KINDS for b in KINDS if a != b]


def connect(monkeypatch, conn_id: str, host: str, **extra) -> DockerEngineHook:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "docker_engine", "host": host, "extra": extra}))
    return DockerEngineHook(conn_id)


def over_ssh(monkeypatch, sshd, engine, conn_id: str) -> DockerEngineHook:
    host = f"ssh://{sshd.user}@{sshd.host}:{sshd.port}{engine.socket_path}"
    return connect(monkeypatch, conn_id, host, key_file=sshd.client_key, known_hosts=sshd.known_hosts, look_for_keys="false")


def run(engine, image: str, *command: str) -> bytes:
    with contextlib.closing(docker.DockerClient(base_url=engine.unix_url, version="auto")) as client:
        return client.containers.run(image, list(command), remove=True, network_mode="none")


@pytest.fixture(scope="module")
def saved(engines_by_kind, tmp_path_factory, monkeypatch_module) -> dict[str, DockerArchive]:
    """On each kind: build an image with content unique to that kind, save it to a tarball."""
    out = {}
    for kind, engine in engines_by_kind.items():
        tag = f"cross/{kind}:1"
        harness.build_image(engine.socket_path, tag, f'FROM {harness.BASE_TAG}\nRUN echo "made on {kind}" > /origin\n')
        hook = connect(monkeypatch_module, f"src_{kind.replace('-', '_')}", engine.unix_url)
        out[kind] = hook.save_image(tag, str(tmp_path_factory.mktemp(kind)) + "/")
        hook.close()
    return out


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_saves_record_the_identity_each_store_uses(engines_by_kind, saved):
    for kind, artifact in saved.items():
        with contextlib.closing(docker.DockerClient(base_url=engines_by_kind[kind].unix_url, version="auto")) as client:
            engine_id = client.images.get(f"cross/{kind}:1").id
        assert artifact.image_id == engine_id
        assert artifact.config_digest and artifact.format in ("docker-archive", "oci-archive")
        if kind == "28-containerd":
            assert artifact.manifest_digest == engine_id != artifact.config_digest
        else:
            assert artifact.config_digest == engine_id
        with contextlib.closing(docker.DockerClient(base_url=engines_by_kind[kind].unix_url, version="auto")) as client:
            base_layers = client.images.get(harness.BASE_TAG).attrs["RootFS"]["Layers"]
        assert artifact.layers[:-1] == base_layers and len(artifact.layers) == len(base_layers) + 1


@pytest.mark.parametrize(("source", "target"), PAIRS)
def test_artifact_loads_over_ssh_into_every_other_store(monkeypatch, engines_by_kind, sshd, saved, source, target):
    engine = engines_by_kind[target]
    hook = over_ssh(monkeypatch, sshd, engine, f"dst_{target.replace('-', '_')}")
    tag = f"from-{source}/to-{target}:1"
    outcome = hook.load_archive(saved[source], tags=[tag])
    assert outcome.mode in ("full", "delta")
    assert run(engine, tag, "cat", "/origin") == f"made on {source}\n".encode()
    again = hook.load_archive(saved[source], tags=[tag + "-again"])
    assert again.mode == "skipped" and again.bytes_sent == 0 and again.image_id == outcome.image_id
    assert run(engine, tag + "-again", "cat", "/origin") == f"made on {source}\n".encode()


@pytest.mark.parametrize(("source", "target"), [("28-containerd", "system"), ("system", "28-containerd"),
                                                ("28-classic", "28-containerd"), ("28-containerd", "28-classic")])
def test_copy_streams_engine_to_engine_across_stores(monkeypatch, engines_by_kind, saved, source, target):
    src = connect(monkeypatch, "copy_src", engines_by_kind[source].unix_url)
    dst = connect(monkeypatch, "copy_dst", engines_by_kind[target].unix_url)
    tag = f"copied-{source}/to-{target}:1"
    [outcome] = transfer.load(src.source(f"cross/{source}:1"), [dst.target], LoadOptions(tags=(tag,)), src.log)
    assert run(engines_by_kind[target], tag, "cat", "/origin") == f"made on {source}\n".encode()
    assert outcome.tags == [tag]
