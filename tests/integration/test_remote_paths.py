"""Tarball paths across workers: an sftp:// ObjectStoragePath against the harness's real sshd."""

from __future__ import annotations

import json
import logging
import os
import shutil

import pytest

from airflow_provider_artiload.exceptions import ArtiloadError
from airflow_provider_artiload.operators import DockerLoadOperator, SaveImageOperator
from tests.integration.test_engine_transfer import drop, run

BASE = "artiload-test/busybox:latest"
logging.getLogger("asyncssh").setLevel(logging.WARNING)  # its INFO lines at interpreter exit hit closed streams


@pytest.fixture
def sftp_store(monkeypatch, sshd, tmp_path):
    """An Airflow sftp connection 'store' to the harness sshd; host keys from ~/.ssh/known_hosts as usual."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    shutil.copy(sshd.known_hosts, home / ".ssh" / "known_hosts")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv(
        "AIRFLOW_CONN_STORE",
        json.dumps({"conn_type": "sftp", "host": sshd.host, "port": sshd.port, "login": sshd.user, "extra": {"key_file": sshd.client_key}}),
    )
    remote_dir = tmp_path / "remote"
    remote_dir.mkdir()
    return remote_dir


def test_tarball_round_trips_through_sftp(monkeypatch, engine, engine_b, sftp_store):
    monkeypatch.setenv("AIRFLOW_CONN_R_SRC", json.dumps({"conn_type": "docker_engine", "host": engine.unix_url}))
    monkeypatch.setenv("AIRFLOW_CONN_R_DST", json.dumps({"conn_type": "docker_engine", "host": engine_b.unix_url}))
    uri = f"sftp://store@{sftp_store}/base.tar"
    artifact = SaveImageOperator(task_id="save", image=BASE, path=uri, engine_conn_id="r_src").execute({})
    assert artifact["path"] == uri
    assert sorted(os.listdir(sftp_store)) == ["base.tar"]  # the temp name was moved into place
    assert os.path.getsize(sftp_store / "base.tar") == artifact["size"]
    drop(engine_b, artifact["image_id"])
    result = DockerLoadOperator(task_id="load", source=json.loads(json.dumps(artifact)), tag="remote/sftp:1", engine_conn_id="r_dst").execute({})
    assert result["mode"] in ("full", "delta") and result["image_id"] == artifact["image_id"]
    assert run(engine_b, "remote/sftp:1", "echo", "sftp") == b"sftp\n"


def test_unknown_scheme_is_named(monkeypatch, engine):
    monkeypatch.setenv("AIRFLOW_CONN_R_SRC2", json.dumps({"conn_type": "docker_engine", "host": engine.unix_url}))
    op = SaveImageOperator(task_id="save", image=BASE, path="nosuchfs://bucket/x.tar", engine_conn_id="r_src2")
    with pytest.raises(ArtiloadError, match="cannot use nosuchfs://bucket/x.tar"):
        op.execute({})


def test_build_output_streams_to_sftp(monkeypatch, engine, sftp_store, tmp_path):
    import tarfile

    from airflow_provider_artiload.operators import BuildArtifactOperator

    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(f"FROM {BASE}\nRUN echo remote > /hello\n")
    buildkit = {"conn_type": "buildkit", "host": f"docker://{engine.unix_url}", "extra": {"network": "none"}}
    monkeypatch.setenv("AIRFLOW_CONN_R_BK", json.dumps(buildkit))
    uri = f"sftp://store@{sftp_store}/rootfs.tar"
    result = BuildArtifactOperator(
        task_id="build", context=str(context), export="tar", output=uri, buildkit_conn_id="r_bk"
    ).execute({})
    assert result["kind"] == "tar" and result["path"] == uri
    assert sorted(os.listdir(sftp_store)) == ["rootfs.tar"]
    with tarfile.open(sftp_store / "rootfs.tar") as tar:
        assert tar.extractfile("hello").read() == b"remote\n"


def test_a_directory_path_on_sftp_gets_content_addressed_names(monkeypatch, engine, sftp_store):
    """``sftp://store@/dir/`` keeps its trailing slash (ObjectStoragePath drops it): <image id>.tar inside."""
    monkeypatch.setenv("AIRFLOW_CONN_R_SRC3", json.dumps({"conn_type": "docker_engine", "host": engine.unix_url}))
    uri = f"sftp://store@{sftp_store}/refresh/"
    first = SaveImageOperator(task_id="save", image=BASE, path=uri, engine_conn_id="r_src3").execute({})
    name = first["image_id"].split(":")[1] + ".tar"
    assert first["path"] == uri + name
    assert os.listdir(sftp_store / "refresh") == [name]
    again = SaveImageOperator(task_id="save", image=BASE, path=uri, engine_conn_id="r_src3").execute({})
    assert again["path"] == first["path"] and again["sha256"] == first["sha256"]
    assert os.listdir(sftp_store / "refresh") == [name]  # one object per image, not one per directory


def test_a_stale_sftp_temp_file_is_removed_and_a_fresh_one_kept(monkeypatch, engine, sftp_store):
    import time

    from airflow_provider_artiload.storage import UNLOCKED_STALE_SECONDS

    monkeypatch.setenv("AIRFLOW_CONN_R_SRC4", json.dumps({"conn_type": "docker_engine", "host": engine.unix_url}))
    stale = sftp_store / ".t.tar.artiload-7-aaaa0000.partial"
    fresh = sftp_store / ".t.tar.artiload-8-bbbb0000.partial"
    for path in (stale, fresh):
        path.write_bytes(b"x")
    old = time.time() - UNLOCKED_STALE_SECONDS - 60
    os.utime(stale, (old, old))
    SaveImageOperator(task_id="save", image=BASE, path=f"sftp://store@{sftp_store}/t.tar", engine_conn_id="r_src4").execute({})
    assert sorted(os.listdir(sftp_store)) == sorted([fresh.name, "t.tar"])
