"""Tarball lifecycle: content-addressed names written once, delete after load, cleanup by age."""

from __future__ import annotations

import json
import os
import time

from airflow_provider_artiload.operators import DockerLoadOperator, SaveImageOperator, TarballCleanupOperator
from tests.integration.test_engine_transfer import drop

BASE = "artiload-test/busybox:latest"


def test_content_addressed_save_is_written_once(monkeypatch, engine, tmp_path, capsys):
    monkeypatch.setenv("AIRFLOW_CONN_LC_SRC", json.dumps({"conn_type": "docker_engine", "host": engine.unix_url}))
    op = SaveImageOperator(task_id="save", image=BASE, path=f"{tmp_path}/", engine_conn_id="lc_src")
    first = op.execute({})
    name = first["image_id"].split(":")[1] + ".tar"
    assert first["path"] == str(tmp_path / name)
    mtime = os.stat(first["path"]).st_mtime_ns
    second = op.execute({})
    assert second == first
    assert os.stat(first["path"]).st_mtime_ns == mtime  # not rewritten
    assert "already holds" in capsys.readouterr().out
    assert os.listdir(tmp_path) == [name]


def test_a_damaged_file_at_the_path_is_rewritten(monkeypatch, engine, tmp_path):
    monkeypatch.setenv("AIRFLOW_CONN_LC_SRC2", json.dumps({"conn_type": "docker_engine", "host": engine.unix_url}))
    target = tmp_path / "base.tar"
    good = SaveImageOperator(task_id="s", image=BASE, path=str(target), engine_conn_id="lc_src2").execute({})
    target.write_bytes(target.read_bytes()[: good["size"] // 2])  # a half file, e.g. copied by hand
    again = SaveImageOperator(task_id="s", image=BASE, path=str(target), engine_conn_id="lc_src2").execute({})
    assert again["size"] == good["size"] and target.stat().st_size == good["size"]


def test_delete_source_after_a_successful_load(monkeypatch, engine, engine_b, tmp_path):
    monkeypatch.setenv("AIRFLOW_CONN_LC_A", json.dumps({"conn_type": "docker_engine", "host": engine.unix_url}))
    monkeypatch.setenv("AIRFLOW_CONN_LC_B", json.dumps({"conn_type": "docker_engine", "host": engine_b.unix_url}))
    artifact = SaveImageOperator(task_id="s", image=BASE, path=str(tmp_path / "x.tar"), engine_conn_id="lc_a").execute({})
    drop(engine_b, artifact["image_id"])
    DockerLoadOperator(task_id="l", source=artifact, engine_conn_id="lc_b", tag="lc/deleted:1", delete_source=True).execute({})
    assert os.listdir(tmp_path) == []


def test_cleanup_removes_only_old_tarballs_and_temp_files(tmp_path):
    old = time.time() - 10 * 86400
    for name in ("old.tar", ".old.tar.artiload-1-aa.partial", "old.txt", "new.tar"):
        (tmp_path / name).write_bytes(b"x")
    for name in ("old.tar", ".old.tar.artiload-1-aa.partial", "old.txt"):
        os.utime(tmp_path / name, (old, old))
    removed = TarballCleanupOperator(task_id="c", prefix=str(tmp_path), older_than_days=7).execute({})
    assert sorted(os.path.basename(p) for p in removed) == [".old.tar.artiload-1-aa.partial", "old.tar"]
    assert sorted(os.listdir(tmp_path)) == ["new.tar", "old.txt"]


NAMESPACED_WRITER = """
import os, sys
from airflow_provider_artiload.storage import AtomicFile
with AtomicFile(sys.argv[1]) as out:
    out.write(b"from another PID namespace")
    print("TEMP=" + out._temp + " PID=" + str(os.getpid()), flush=True)
    sys.stdin.read()  # hold the temp file until told to go on
    out.commit()
"""


def test_cleanup_spares_a_writer_in_another_pid_namespace(tmp_path):
    """A worker in another container sharing the volume: the pid in its temp name means nothing here,
    its flock on the temp file does. ``unshare --pid --fork`` (root) gives it its own PID namespace."""
    import shutil
    import subprocess
    import sys

    from airflow_provider_artiload.storage import AtomicFile, remove_stale_temp_files

    assert shutil.which("unshare") and os.geteuid() == 0, "needs util-linux unshare, as root"
    target = tmp_path / "shared.tar"
    writer = subprocess.Popen(
        ["unshare", "--pid", "--fork", sys.executable, "-c", NAMESPACED_WRITER, str(target)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
    )
    try:
        line = next(line for line in writer.stdout if line.startswith("TEMP="))
        temp, pid = line[len("TEMP="):].split(" PID=")
        assert int(pid) == 1  # its pid in its namespace: here, pid 1 is our init, nothing to do with it
        old = time.time() - 7200
        os.utime(temp, (old, old))  # old enough to look abandoned
        assert remove_stale_temp_files(str(target)) == []
        with AtomicFile(str(target)) as out:  # a writer here, to the same path, meanwhile
            out.write(b"from this namespace")
            out.commit()
        assert os.path.exists(temp)
        writer.communicate("", timeout=60)
        assert writer.returncode == 0
        assert target.read_bytes() == b"from another PID namespace"  # the last to commit wins, whole
        assert os.listdir(tmp_path) == ["shared.tar"]
    finally:
        writer.kill()


def test_a_foreign_file_or_empty_directory_at_the_path_is_rewritten(monkeypatch, engine, tmp_path):
    monkeypatch.setenv("AIRFLOW_CONN_LC_SRC3", json.dumps({"conn_type": "docker_engine", "host": engine.unix_url}))
    garbage, empty_dir = tmp_path / "garbage.tar", tmp_path / "dir.tar"
    garbage.write_bytes(os.urandom(10000))  # not ours: not even a tar archive
    empty_dir.mkdir()
    for target in (garbage, empty_dir):
        artifact = SaveImageOperator(task_id="s", image=BASE, path=str(target), engine_conn_id="lc_src3").execute({})
        assert target.is_file() and target.stat().st_size == artifact["size"]
