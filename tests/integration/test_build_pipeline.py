"""The example DAGs' main job, task by task: build with BuildKit, save the image, load it elsewhere."""

from __future__ import annotations

import json
from pathlib import Path

import docker

from airflow_provider_artiload.operators.build import BuildArtifactOperator
from airflow_provider_artiload.operators.load import DockerLoadOperator
from airflow_provider_artiload.operators.save import SaveImageOperator

CONTEXT = Path(__file__).resolve().parents[2] / "dags" / "context" / "refresh"


def test_build_then_save_then_load(monkeypatch, engine, engine_b, tmp_path):
    monkeypatch.setenv("AIRFLOW_CONN_PIPE_ENGINE", json.dumps({"conn_type": "docker_engine", "host": engine.unix_url}))
    monkeypatch.setenv("AIRFLOW_CONN_PIPE_TARGET", json.dumps({"conn_type": "docker_engine", "host": engine_b.unix_url}))
    monkeypatch.setenv(
        "AIRFLOW_CONN_PIPE_BUILDER",
        json.dumps({"conn_type": "buildkit", "host": "docker://", "extra": {"engine_conn_id": "pipe_engine", "network": "none"}}),
    )
    built = BuildArtifactOperator(
        task_id="build",
        context=str(CONTEXT),
        image="artiload/refresh:20260304",
        build_args={"DATA_DATE": "2026-03-04"},
        labels={"org.opencontainers.image.version": "2026-03-04"},
        buildkit_conn_id="pipe_builder",
    ).execute({})
    assert built["kind"] == "image" and built["engine"] == engine.unix_url
    saved = SaveImageOperator(
        task_id="save", image=built, path=str(tmp_path / "refresh.tar"), engine_conn_id="pipe_engine"
    ).execute({})
    assert saved["image_id"] == built["image_id"]
    loaded = DockerLoadOperator(
        task_id="load", source=saved, tag=["artiload/refresh:latest"], engine_conn_id="pipe_target"
    ).execute({})
    assert loaded["image_id"] == built["image_id"]
    client = docker.DockerClient(base_url=engine_b.unix_url, version="auto")
    try:
        out = client.containers.run("artiload/refresh:latest", ["cat", "/app/DATA_DATE"], network_mode="none", remove=True)
        assert out == b"2026-03-04\n"
        assert client.images.get("artiload/refresh:latest").labels["org.opencontainers.image.version"] == "2026-03-04"
    finally:
        client.close()
