"""Concurrency and load: a backfill of 16 loads over one SSH host, and 8 saves into one directory."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from pathlib import Path

import docker
import pytest

import harness  # scripts/harness.py, put on sys.path by tests/conftest.py
from airflow_provider_artiload.hooks.engine import DockerEngineHook
from airflow_provider_artiload.operators import DockerLoadOperator, SaveImageOperator
from tests.processes import running
from tests.integration.test_engine_transfer import BASE

LOADS = 16
SAVES = 8
APP_LAYER = 2 << 20


@pytest.fixture(scope="module")
def target(request):
    """An engine of this module's own, so its image set is exactly what the backfill made."""
    with running(request, "engine backfill", lambda d: harness.start_engine(d, name="backfill")) as eng:
        yield eng


@pytest.fixture(scope="module")
def apps(engine, tmp_path_factory) -> list[dict]:
    """conc/app:0-2 on busybox (2 MiB of their own each), conc/app:3 from scratch; saved as artifacts."""
    out = tmp_path_factory.mktemp("conc")
    for i in range(3):
        harness.build_image(engine.socket_path, f"conc/app:{i}", f"FROM {BASE}\nRUN head -c {APP_LAYER} /dev/urandom > /app.bin\n")
    harness.build_image(engine.socket_path, "conc/app:3", "FROM scratch\nCOPY blob /blob\n", {"blob": os.urandom(APP_LAYER)})
    os.environ["AIRFLOW_CONN_CONC_SRC"] = json.dumps({"conn_type": "docker_engine", "host": engine.unix_url})
    hook = DockerEngineHook("conc_src")
    return [hook.save_image(f"conc/app:{i}", str(out / f"app{i}.tar")).to_xcom() for i in range(4)]


def _kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(field)


def _run_all(tasks: list) -> tuple[list, list]:
    """Run callables at once (a barrier), like parallel task instances; return results and errors by index."""
    results: list = [None] * len(tasks)
    errors: list = [None] * len(tasks)
    barrier = threading.Barrier(len(tasks))

    def work(i: int) -> None:
        barrier.wait()
        try:
            results[i] = tasks[i]()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors[i] = exc

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(tasks))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads), "a task hangs"
    return results, errors


def test_backfill_of_16_loads_over_one_ssh_host(monkeypatch, target, sshd, apps):
    host = f"ssh://root@127.0.0.1:{sshd.port}{target.socket_path}"
    monkeypatch.setenv("AIRFLOW_CONN_BACKFILL", json.dumps({
        "conn_type": "docker_engine", "host": host,
        "extra": {"key_file": sshd.client_key, "known_hosts": sshd.known_hosts, "look_for_keys": "false"},
    }))
    DockerLoadOperator(task_id="seed", source=apps[0], engine_conn_id="backfill").execute({})  # app 0 is there: skips
    operators = [
        DockerLoadOperator(task_id=f"load_{i}", source=apps[i % 4], tag=f"backfill/app:{i:02d}", engine_conn_id="backfill")
        for i in range(LOADS)
    ]
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    rss_before = _kib("VmRSS")
    results, errors = _run_all([lambda op=op: op.execute({}) for op in operators])
    growth_mib = (_kib("VmHWM") - rss_before) / 1024
    print(f"\n16 concurrent loads over SSH: peak RSS growth {growth_mib:.1f} MiB")
    failed = {i: f"{type(e).__name__}: {e}" for i, e in enumerate(errors) if e is not None}
    assert not failed, f"{len(failed)} of {LOADS} loads failed: {failed}"
    client = docker.DockerClient(base_url=target.unix_url)
    for i, result in enumerate(results):
        expected = apps[i % 4]["image_id"]
        assert result["image_id"] == expected and result["tags"] == [f"backfill/app:{i:02d}"] and result["engine"] == host
        assert client.images.get(f"backfill/app:{i:02d}").id == expected, f"tag {i} points at the wrong image"
    modes = [result["mode"] for result in results]
    assert all(modes[i] == "skipped" for i in range(0, LOADS, 4)), modes
    assert {"full", "delta"} & set(modes), modes
    tagged = {tag for image in client.images.list() for tag in image.tags if tag.startswith("backfill/")}
    assert tagged == {f"backfill/app:{i:02d}" for i in range(LOADS)}
    assert growth_mib < 256


def _sha(data_or_path) -> str:
    if isinstance(data_or_path, (str, Path)):
        data_or_path = Path(data_or_path).read_bytes()
    return "sha256:" + hashlib.sha256(data_or_path).hexdigest()


def _members(data_or_path) -> dict[str, str]:
    """Each regular member's content digest: Docker 25+ saves differ byte for byte (directory mtimes), not in content."""
    import io
    import tarfile

    data = Path(data_or_path).read_bytes() if isinstance(data_or_path, (str, Path)) else data_or_path
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: _sha(tar.extractfile(m).read()) for m in tar.getmembers() if m.isfile()}


def test_8_concurrent_saves_into_one_directory(monkeypatch, engine, apps, tmp_path):
    monkeypatch.setenv("AIRFLOW_CONN_SAVES", json.dumps({"conn_type": "docker_engine", "host": engine.unix_url}))
    client = docker.DockerClient(base_url=engine.unix_url)
    images = [BASE, "conc/app:0", "conc/app:1", "conc/app:2", "conc/app:3", BASE, "conc/app:1", "conc/app:2"]
    names = ["base.tar", "app0.tar", "app1.tar", "app2.tar", "app3.tar", "base-again.tar", "same.tar", "same.tar"]
    exported = {ref: _members(b"".join(client.images.get(ref).save(named=ref))) for ref in set(images)}  # what the engine exports
    operators = [
        SaveImageOperator(task_id=f"save_{i}", image=ref, path=str(tmp_path / name), engine_conn_id="saves")
        for i, (ref, name) in enumerate(zip(images, names))
    ]
    results, errors = _run_all([lambda op=op: op.execute({}) for op in operators])
    assert not [e for e in errors if e is not None], errors
    assert sorted(os.listdir(tmp_path)) == sorted(set(names)), "temp files left, or a name collided"
    for ref, name, artifact in zip(images, names, results):
        path = tmp_path / name
        assert path.stat().st_mode & 0o777 == 0o600
        if name == "same.tar":
            assert _members(path) in (exported["conc/app:1"], exported["conc/app:2"]), "two writers interleaved"
            continue
        assert _members(path) == exported[ref], f"{name} differs from the engine's export"
        assert _sha(path) == artifact["sha256"], f"{name} is not what its artifact says"
        assert artifact["size"] == path.stat().st_size and artifact["path"] == str(path)
