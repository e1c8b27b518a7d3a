"""Tarballs on S3, against a real S3-compatible server process.

moto's standalone server (``moto[server]`` from PyPI, a real HTTP server on 127.0.0.1) stands in for S3:
the same wire protocol (multipart uploads, ranged GETs), reached through Airflow's ObjectStoragePath
(``s3://CONN@bucket/key``, apache-airflow-providers-amazon + s3fs) with an ``aws`` connection whose
``endpoint_url`` extra points at it (the ``s3_server`` and ``s3`` fixtures, tests/integration/conftest.py).
"""

from __future__ import annotations

import hashlib
import json
import tracemalloc

import pytest

from airflow_provider_artiload import storage
from airflow_provider_artiload.hooks.paths import as_target
from tests.integration.conftest import BUCKET

MiB = 1 << 20


def keys(client, prefix: str) -> list[str]:
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", []))


def uploads(client) -> list[str]:
    return [u["Key"] for u in client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])]


def round_trip(client, name: str, size: int) -> tuple[int, int]:
    """Write ``size`` bytes to ``roundtrip/<name>`` and read them back; the peak traced memory of each."""
    target = storage.child(as_target(f"s3://moto@{BUCKET}/roundtrip/"), name)
    expected, got, read = hashlib.sha256(), hashlib.sha256(), 0
    tracemalloc.start()
    try:
        with storage.atomic_file(target) as out:
            for i in range(size // MiB):
                chunk = bytes([i % 251]) * MiB
                out.write(chunk)
                expected.update(chunk)
                if i == 15:  # parts are uploaded, but nothing is visible before the upload completes
                    assert f"roundtrip/{name}" not in keys(client, "roundtrip/")
                    assert uploads(client) == [f"roundtrip/{name}"]
            out.commit()
        _, write_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for chunk in storage.read_chunks(target):
            got.update(chunk)
            read += len(chunk)
        _, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out.sha256 == "sha256:" + expected.hexdigest() == "sha256:" + got.hexdigest() and read == size
    assert client.head_object(Bucket=BUCKET, Key=f"roundtrip/{name}")["ContentLength"] == size
    return write_peak, read_peak


def test_round_trip_streams_both_ways_in_bounded_memory(s3):
    directory = as_target(f"s3://moto@{BUCKET}/roundtrip/")
    assert str(directory).endswith("/")  # a directory: the name inside is ours to choose
    assert str(storage.child(directory, "x.tar")) == f"s3://moto@{BUCKET}/roundtrip/x.tar"
    round_trip(s3, "warmup.tar", 2 * MiB)  # imports, sessions and connection pools are not the file's
    small = round_trip(s3, "small.tar", 16 * MiB)
    big = round_trip(s3, "big.tar", 48 * MiB)
    print(f"peak traced memory (write, read), MiB: 16 MiB file {small[0] / MiB:.1f}, {small[1] / MiB:.1f}; "
          f"48 MiB file {big[0] / MiB:.1f}, {big[1] / MiB:.1f}")
    assert keys(s3, "roundtrip/") == ["roundtrip/big.tar", "roundtrip/small.tar", "roundtrip/warmup.tar"]
    assert uploads(s3) == []  # no temp key, no copy, nothing left open
    for small_peak, big_peak in zip(small, big):
        assert big_peak < 48 * MiB / 2  # a few 5 MiB parts, never the file
        assert big_peak < small_peak + 4 * MiB  # flat: three times the bytes, the same memory


def test_a_failed_write_publishes_nothing_and_keeps_the_older_object(s3):
    target = as_target(f"s3://moto@{BUCKET}/failed/img.tar")
    s3.put_object(Bucket=BUCKET, Key="failed/img.tar", Body=b"older, complete")
    with pytest.raises(RuntimeError, match="stream broke"):
        with storage.atomic_file(target) as out:
            for _ in range(12):
                out.write(b"n" * MiB)
            raise RuntimeError("stream broke")
    assert s3.get_object(Bucket=BUCKET, Key="failed/img.tar")["Body"].read() == b"older, complete"
    assert uploads(s3) == []  # the multipart upload was aborted, not completed
    small = as_target(f"s3://moto@{BUCKET}/failed/small.tar")
    with pytest.raises(RuntimeError):
        with storage.atomic_file(small) as out:
            out.write(b"less than one part")
            raise RuntimeError("stream broke")
    assert keys(s3, "failed/") == ["failed/img.tar"]


def test_save_to_an_s3_directory_gets_a_content_addressed_name_and_loads(monkeypatch, s3, engine, engine_b):
    from airflow_provider_artiload.operators import DockerLoadOperator, SaveImageOperator
    from tests.integration.test_engine_transfer import drop, run

    monkeypatch.setenv("AIRFLOW_CONN_S3_SRC", json.dumps({"conn_type": "docker_engine", "host": engine.unix_url}))
    monkeypatch.setenv("AIRFLOW_CONN_S3_DST", json.dumps({"conn_type": "docker_engine", "host": engine_b.unix_url}))
    base = "artiload-test/busybox:latest"
    artifact = SaveImageOperator(task_id="save", image=base, path=f"s3://moto@{BUCKET}/images/",
                                 engine_conn_id="s3_src").execute({})
    name = artifact["image_id"].split(":")[1] + ".tar"
    assert artifact["path"] == f"s3://moto@{BUCKET}/images/{name}"
    assert keys(s3, "images/") == [f"images/{name}"]
    drop(engine_b, artifact["image_id"])
    result = DockerLoadOperator(task_id="load", source=artifact, tag="s3/loaded:1", engine_conn_id="s3_dst").execute({})
    assert result["image_id"] == artifact["image_id"]
    assert run(engine_b, "s3/loaded:1", "echo", "s3") == b"s3\n"
