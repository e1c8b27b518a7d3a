"""Retention, rollback and a prune racing loads, on a real engine of each kind (scripts/test.sh runs all three).

Five versions of one repository are built on engine A, saved, and loaded
into engine B with ``keep_last=2`` through DockerLoadOperator; B also holds
a container on version 1 and an image of the same repository built on B
itself. Names are unique per run: B is shared with other tests.
"""

from __future__ import annotations

import json
import secrets
import threading

import docker
import pytest

import harness
from airflow_provider_artiload.engine.client import EngineClient
from airflow_provider_artiload.endpoints import parse_endpoint
from airflow_provider_artiload.exceptions import RetentionError
from airflow_provider_artiload.hooks.engine import DockerEngineHook
from airflow_provider_artiload.operators import DockerLoadOperator, RollbackImageOperator
from airflow_provider_artiload.transfer import retention
from airflow_provider_artiload.transfer.engine_lifecycle import EngineLifecycle
from airflow_provider_artiload.transport import open_dialer

BASE = "artiload-test/busybox:latest"


@pytest.fixture(scope="module")
def repo() -> str:
    return f"ret/app-{secrets.token_hex(3)}"


@pytest.fixture(scope="module")
def archives(engine, engine_b, repo, tmp_path_factory) -> dict[int, dict]:
    """Versions 1..6 built on A (each with its own 512 KiB layer), saved as tarballs."""
    import os

    os.environ["AIRFLOW_CONN_RET_SRC"] = json.dumps({"conn_type": "docker_engine", "host": engine.unix_url})
    os.environ["AIRFLOW_CONN_RET_DST"] = json.dumps({"conn_type": "docker_engine", "host": engine_b.unix_url})
    out = tmp_path_factory.mktemp("retention")
    hook = DockerEngineHook("ret_src")
    saved = {}
    for n in range(1, 7):
        files = {"version": f"v{n}\n".encode(), "blob": secrets.token_bytes(512 * 1024)}
        harness.build_image(engine.socket_path, f"{repo}:v{n}", f"FROM {BASE}\nCOPY version blob /\n", files)
        saved[n] = hook.save_image(f"{repo}:v{n}", str(out / f"v{n}.tar")).to_xcom()
    hook.close()
    return saved


def load(archive: dict, repo: str, n: int, **options) -> dict:
    op = DockerLoadOperator(task_id=f"load_{n}_{secrets.token_hex(2)}", source=archive, engine_conn_id="ret_dst",
                            tag=[f"{repo}:v{n}", f"{repo}:latest"], **options)
    return op.execute({})


def ids(engine_b, repo: str) -> dict[str, str]:
    client = docker.DockerClient(base_url=engine_b.unix_url)
    return {tag: image.id for image in client.images.list(name=repo) for tag in image.tags}


def lifecycle(engine_b) -> EngineLifecycle:
    return EngineLifecycle(EngineClient(open_dialer(parse_endpoint(engine_b.unix_url, kind="engine"))))


def test_keep_last_keeps_the_newest_what_containers_use_and_what_others_built(engine_b, archives, repo):
    client = docker.DockerClient(base_url=engine_b.unix_url)
    first = load(archives[1], repo, 1, keep_last=2)
    assert first["retention"][0]["removed"] == []
    v1 = first["image_id"]
    container = client.containers.create(f"{repo}:v1", ["cat", "/version"], network_disabled=True)  # stopped, on v1
    local = harness.build_image(engine_b.socket_path, f"{repo}:built-here", "FROM scratch\nCOPY f /f\n",
                                {"f": secrets.token_bytes(1024)})
    loaded = {1: v1}
    removed: dict[str, int] = {}
    for n in range(2, 6):
        result = load(archives[n], repo, n, keep_last=2)
        loaded[n] = result["image_id"]
        [report] = result["retention"]
        assert report["keep_last"] == 2 and report["repository"] == f"docker.io/{repo}" and not report["dry_run"]
        for gone in report["removed"]:
            removed[gone["image_id"]] = report["freed_bytes"]
    print(f"\nremoved {len(removed)} versions, freed per load: {sorted(removed.values())}")
    assert set(removed) == {loaded[2], loaded[3]}
    assert all(freed >= 512 * 1024 for freed in removed.values()), removed  # each took its own 512 KiB layer
    present = {i for i in client.images.list(all=True) for i in [i.id]}
    assert {loaded[4], loaded[5], v1, local} <= present and not {loaded[2], loaded[3]} & present
    markers = [t for t, i in ids(engine_b, repo).items() if retention.marker_time(t.rsplit(":", 1)[1] or "")]
    assert sorted(ids(engine_b, repo)[m] for m in markers) == sorted([v1, loaded[4], loaded[5]])  # one marker per version
    assert ids(engine_b, repo)[f"{repo}:latest"] == loaded[5]
    assert ids(engine_b, repo)[f"{repo}:built-here"] == local
    container.remove()


def test_dry_run_removes_nothing(engine_b, archives, repo):
    before = ids(engine_b, repo)
    result = load(archives[5], repo, 5, keep_last=1, dry_run=True)  # v5 is there: a skip, then the dry run
    [report] = result["retention"]
    assert result["mode"] == "skipped" and report["dry_run"] and report["freed_bytes"] == 0
    assert report["removed"], report  # v4 and v1 (its container is gone now) would go
    after = ids(engine_b, repo)
    assert {k: v for k, v in after.items() if ":artiload-" not in k} == {k: v for k, v in before.items() if ":artiload-" not in k}
    assert {i["image_id"] for i in report["removed"]} <= set(after.values())


def test_rollback_repoints_the_tag_and_the_old_version_runs(engine_b, archives, repo):
    client = docker.DockerClient(base_url=engine_b.unix_url)
    assert client.containers.run(f"{repo}:latest", ["cat", "/version"], network_disabled=True, remove=True) == b"v5\n"
    op = RollbackImageOperator(task_id="rollback", tag=f"{repo}:latest", engine_conn_id="ret_dst")
    result = op.execute({})
    [moved] = result["targets"]
    assert moved["to"] == ids(engine_b, repo)[f"{repo}:v4"] == ids(engine_b, repo)[f"{repo}:latest"]
    assert client.containers.run(f"{repo}:latest", ["cat", "/version"], network_disabled=True, remove=True) == b"v4\n"
    op.execute({})  # v2 and v3 are gone: the next older version left is v1
    assert client.containers.run(f"{repo}:latest", ["cat", "/version"], network_disabled=True, remove=True) == b"v1\n"
    with pytest.raises(RetentionError) as failed:
        op.execute({})
    message = str(failed.value)
    assert engine_b.unix_url in message and f"docker.io/{repo}" in message and "oldest" in message
    assert message.count("loaded 20") == 3  # the versions there, with their load times


def test_a_prune_racing_loads_of_the_same_repository_loses_nothing_they_need(engine_b, archives, repo):
    """Loads (a new version, sent thin over layers the prune may take; an old one, skipped) against prunes in a loop."""
    stop = threading.Event()
    errors: list[BaseException] = []
    prunes = 0

    def prune_forever() -> None:
        nonlocal prunes
        life = lifecycle(engine_b)
        while not stop.is_set():
            try:
                retention.prune(life, repo, 1, log=_log())
                prunes += 1
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)
                return

    pruner = threading.Thread(target=prune_forever)
    pruner.start()
    try:
        results = {n: load(archives[n], repo, n, keep_last=1) for n in (6, 4, 6, 5)}
    finally:
        stop.set()
        pruner.join(120)
    print(f"\n{prunes} prunes raced the loads; modes {[r['mode'] for r in results.values()]}")
    assert not errors, errors
    assert prunes > 0
    client = docker.DockerClient(base_url=engine_b.unix_url)
    assert ids(engine_b, repo)[f"{repo}:latest"] == results[5]["image_id"]
    assert client.containers.run(f"{repo}:latest", ["cat", "/version"], network_disabled=True, remove=True) == b"v5\n"


def _log():
    import logging

    return logging.getLogger("test_retention")


def test_free_space_is_measured_where_the_engine_keeps_its_images(engine_b):
    import os
    import shutil

    free, where = lifecycle(engine_b).free_space()
    assert os.path.realpath(where) == os.path.realpath(os.path.join(engine_b.workdir, "root"))
    assert abs(free - shutil.disk_usage(where).free) < 64 << 20  # other tests write meanwhile


def test_copy_keeps_the_last_versions_too(engine_b, archives, repo):
    from airflow_provider_artiload.operators import CopyImageOperator

    result = CopyImageOperator(task_id="copy", image=f"{repo}:v6", source_engine_conn_id="ret_src", engine_conn_id="ret_dst",
                               tag=[f"{repo}:v6", f"{repo}:latest"], keep_last=1).execute({})
    [report] = result["retention"]
    assert report["keep_last"] == 1 and report["kept"][0]["image_id"] == result["image_id"]
    assert ids(engine_b, repo)[f"{repo}:latest"] == result["image_id"]
    why = {k["image_id"]: k["why"] for k in report["kept"]}
    assert why == {result["image_id"]: "newest 1", ids(engine_b, repo)[f"{repo}:v5"]: why[ids(engine_b, repo)[f"{repo}:v5"]]}
    assert "rollback target" in why[ids(engine_b, repo)[f"{repo}:v5"]]  # latest named v5 before the copy
