"""Only the bytes that must move: skip, delta layers, verification, fan-out, engine to engine."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import docker
import pytest

from airflow_provider_artiload.transfer import engine as engine_target
from airflow_provider_artiload.artifacts import DockerArchive
from airflow_provider_artiload.exceptions import ArtiloadError, DigestMismatch
from airflow_provider_artiload.hooks.engine import DockerEngineHook
from airflow_provider_artiload.operators import CopyImageOperator, DockerLoadOperator
from tests.integration.test_engine_transfer import drop, reframed_size, run, snapshot

BASE_LAYER = 6 << 20
TOP_LAYER = 3 << 20


def connect(monkeypatch, conn_id: str, host: str, **extra) -> str:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "docker_engine", "host": host, "extra": extra}))
    return conn_id


@pytest.fixture(scope="module")
def images(engine, tmp_path_factory):
    """delta/base:1 (busybox + 6 MiB) and delta/app:2 (base + a 3 MiB top layer), saved as tarballs."""
    import harness

    harness.build_image(engine.socket_path, "delta/base:1", f"FROM {harness.BASE_TAG}\nRUN head -c {BASE_LAYER} /dev/urandom > /base.bin\n")
    harness.build_image(engine.socket_path, "delta/app:2", f"FROM delta/base:1\nRUN head -c {TOP_LAYER} /dev/urandom > /top.bin\n")
    out = tmp_path_factory.mktemp("delta")
    import os

    os.environ["AIRFLOW_CONN_DELTA_SRC"] = json.dumps({"conn_type": "docker_engine", "host": engine.unix_url})
    hook = DockerEngineHook("delta_src")
    return {name: hook.save_image(ref, str(out / f"{name}.tar")) for name, ref in (("base", "delta/base:1"), ("app", "delta/app:2"))}


def fresh(engine_b, images) -> None:
    drop(engine_b, images["app"].image_id, images["base"].image_id)


def test_delta_sends_only_the_new_layer_then_skips(monkeypatch, engine_b, images):
    fresh(engine_b, images)
    hook = DockerEngineHook(connect(monkeypatch, "delta_b", engine_b.unix_url))
    first = hook.load_archive(DockerArchive(**images["base"].to_xcom()), tags=["delta/base:1"])
    assert first.mode in ("full", "delta")  # delta if busybox's layer is already there
    before = hook.client.dialer.counter.sent
    outcome = hook.load_archive(images["app"], tags=["delta/app:2"])
    on_wire = hook.client.dialer.counter.sent - before
    assert outcome.mode == "delta"
    assert (outcome.layers_sent, outcome.layers_skipped) == (1, len(images["app"].layers) - 1)
    top_layer_tar = TOP_LAYER + 4096  # the layer's tar: file plus headers
    assert top_layer_tar <= outcome.bytes_sent <= 1.1 * top_layer_tar
    assert on_wire <= 1.1 * top_layer_tar + (64 << 10)  # plus the HTTP requests around it
    assert run(engine_b, "delta/app:2", "sh", "-c", "wc -c < /top.bin; wc -c < /base.bin").split() == [
        str(TOP_LAYER).encode(),
        str(BASE_LAYER).encode(),
    ]
    before = hook.client.dialer.counter.sent
    again = hook.load_archive(images["app"], tags=["delta/app:again"])
    assert again.mode == "skipped" and again.bytes_sent == 0
    assert hook.client.dialer.counter.sent - before < 16 << 10


def test_a_thin_load_the_engine_rejects_falls_back_to_full(monkeypatch, engine_b, images, capsys):
    """No real engine lies about its layers, so the inventory is made to lie: the thin archive then
    lacks a layer the engine does not have, the engine refuses it, and the full load must follow."""
    fresh(engine_b, images)
    drop(engine_b, "delta/base:1")
    monkeypatch.setattr(engine_target, "layers_present", lambda client, diff_ids: len(diff_ids) - 1)
    hook = DockerEngineHook(connect(monkeypatch, "delta_lie", engine_b.unix_url))
    outcome = hook.load_archive(images["app"], tags=["delta/fallback:1"])
    assert outcome.mode == "full" and outcome.bytes_sent == reframed_size(images["app"].path)
    assert "thin load failed" in capsys.readouterr().out
    assert run(engine_b, "delta/fallback:1", "sh", "-c", "wc -c < /top.bin").strip() == str(TOP_LAYER).encode()


def _corrupt_base_layer(archive: DockerArchive, target: Path) -> Path:
    data = bytearray(Path(archive.path).read_bytes())
    with tarfile.open(archive.path) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
        member = tar.getmember(manifest[0]["Layers"][-2])  # the base layer, under the top one
    data[member.offset_data + member.size // 2] ^= 0xFF
    target.write_bytes(data)
    return target


def test_a_corrupt_layer_is_caught_even_where_the_engine_would_skip_it(monkeypatch, engine_b, images, tmp_path):
    fresh(engine_b, images)
    hook = DockerEngineHook(connect(monkeypatch, "delta_corrupt", engine_b.unix_url))
    hook.load_archive(images["base"], tags=["delta/base:1"])  # the engine has the base layer: it would skip it
    bad = _corrupt_base_layer(images["app"], tmp_path / "corrupt.tar")
    before = snapshot(engine_b)
    with pytest.raises(DigestMismatch, match=r"corrupt.tar: layer .* has sha256 .*(diff ID is|its blob is) sha256:"):
        hook.load_archive(str(bad), tags=["must/not:exist"], delta=False)
    tampered = DockerArchive(**{**images["app"].to_xcom(), "path": str(bad)})
    with pytest.raises(DigestMismatch, match="the artifact says"):
        hook.load_archive(tampered, tags=["must/not:exist"], delta=False)
    assert snapshot(engine_b) == before


def test_fan_out_reads_once_and_loads_each_engine_its_own_way(monkeypatch, engine, engine_b, sshd, images):
    fresh(engine_b, images)
    drop(engine, "delta/app:2")  # the source tarball remains; engine A keeps the base layers
    ssh_host = f"ssh://root@127.0.0.1:{sshd.port}{engine.socket_path}"
    ids = [
        connect(monkeypatch, "fan_b", engine_b.unix_url),
        connect(monkeypatch, "fan_a", ssh_host, key_file=sshd.client_key, known_hosts=sshd.known_hosts, look_for_keys="false"),
    ]
    op = DockerLoadOperator(task_id="fan", source=images["app"].to_xcom(), engine_conn_id=ids, tag="delta/fan:1", max_parallel=2)
    result = op.execute({})
    by_engine = {t["engine"]: t for t in result["targets"]}
    assert by_engine[ssh_host]["mode"] == "delta" and by_engine[ssh_host]["layers_sent"] == 1
    assert by_engine[engine_b.unix_url]["mode"] in ("full", "delta")
    assert result["image_id"] == images["app"].image_id
    for target in (engine, engine_b):
        assert run(target, "delta/fan:1", "sh", "-c", "wc -c < /top.bin").strip() == str(TOP_LAYER).encode()


def test_fan_out_failure_on_one_engine_does_not_stop_the_other(monkeypatch, engine_b, images, tmp_path):
    fresh(engine_b, images)
    ids = [connect(monkeypatch, "ok_b", engine_b.unix_url), connect(monkeypatch, "gone", f"unix://{tmp_path}/gone.sock")]
    op = DockerLoadOperator(task_id="fan", source=images["app"].to_xcom(), engine_conn_id=ids, tag="delta/partial:1")
    with pytest.raises(ArtiloadError, match=rf"failed on 1 of 2 engines: unix://{tmp_path}/gone.sock: .*does not exist"):
        op.execute({})
    assert docker.DockerClient(base_url=engine_b.unix_url).images.get("delta/partial:1").id == images["app"].image_id


def test_engine_to_engine_streams_with_delta_and_no_tarball(monkeypatch, engine, engine_b, images, tmp_path):
    fresh(engine_b, images)
    monkeypatch.chdir(tmp_path)
    src, dst = connect(monkeypatch, "e2e_a", engine.unix_url), connect(monkeypatch, "e2e_b", engine_b.unix_url)
    DockerLoadOperator(task_id="base", source=images["base"].to_xcom(), engine_conn_id=dst).execute({})
    result = CopyImageOperator(
        task_id="copy", image="delta/base:1", source_engine_conn_id=src, engine_conn_id=dst, tag="delta/copied:0"
    ).execute({})
    assert result["mode"] == "skipped"
    result = CopyImageOperator(
        task_id="copy", image=images["app"].image_id, source_engine_conn_id=src, engine_conn_id=dst, tag="delta/copied:1"
    ).execute({})
    if engine.kind.store == "classic":
        assert result["mode"] == "delta" and result["layers_sent"] == 1
        assert result["bytes_sent"] <= 1.1 * (TOP_LAYER + 4096)
    else:  # a containerd-store export names gzip blobs by digest, manifests last: no layer can be left out
        assert result["mode"] == "full" and result["layers_sent"] == len(images["app"].layers)
    assert run(engine_b, "delta/copied:1", "sh", "-c", "wc -c < /top.bin").strip() == str(TOP_LAYER).encode()
    assert list(tmp_path.iterdir()) == []
