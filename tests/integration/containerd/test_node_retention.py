"""Pins, retention, rollback and a racing prune on real containerd 1.6 and 2.x (namespace k8s.io).

Versions are OCI layouts sharing a busybox base, each with its own 512 KiB
layer; they are loaded through the same ``load_and_retain`` the operators
use, into a NodeTarget over the unix socket. Names are unique per test.
"""

from __future__ import annotations

import logging
import secrets
import threading

import pytest

import harness_containerd as h
from airflow_provider_artiload.exceptions import RetentionError
from airflow_provider_artiload.transfer import retention
from airflow_provider_artiload.transfer.node.lifecycle import PIN_LABEL
from airflow_provider_artiload.transfer.node.target import NodeTarget
from airflow_provider_artiload.transfer.plan import LoadOptions
from airflow_provider_artiload.transfer.sources import FileSource

log = logging.getLogger("test_node_retention")


@pytest.fixture
def versions(tmp_path):
    """Versions 1..6: (a directory for their OCI layouts, the image)."""
    base = h.busybox_layer({"etc/base": secrets.token_bytes(16)})
    out = {}
    for n in range(1, 7):
        top = h.layer_tar({"version": f"v{n}\n".encode(), "blob": secrets.token_bytes(512 * 1024)})
        out[n] = (tmp_path, h.make_image([base, top]))
    return out


def load(client, version, repo, n, *, keep_last=2, dry_run=False, pin=True):
    """Version ``n`` from an OCI layout that names it ``repo:vN`` (as a docker save would), tagged vN and latest."""
    where, image = version
    path = where / f"{repo}-v{n}.tar"
    if not path.exists():
        h.write_oci_layout(image, path, f"docker.io/library/{repo}:v{n}")
    target = NodeTarget(client, pin=pin)
    options = LoadOptions(tags=(f"{repo}:v{n}", f"{repo}:latest"))
    [outcome], [[report]] = retention.load_and_retain(FileSource(str(path)), [target], options, keep_last, dry_run, log)
    return outcome, report


def records(client, repo):
    return {r.name: r for r in client.images.list() if r.name.startswith(f"docker.io/library/{repo}:")}


def run_cat(containerd, name):
    return containerd.ctr("run", "--rm", "--runtime", "io.containerd.runc.v2", name, f"t-{secrets.token_hex(4)}",
                          "/bin/cat", "/version").stdout


def test_keep_last_pins_and_keeps_what_containers_use_and_what_others_imported(containerd, unix_client, versions,
                                                                              tmp_path):
    client, _ = unix_client
    repo = f"ret-{secrets.token_hex(3)}"
    first, _ = load(client, versions[1], repo, 1)
    container = f"c-{secrets.token_hex(4)}"
    containerd.ctr("containers", "create", f"docker.io/library/{repo}:v1", container)  # a stopped container on v1
    other = h.make_image([h.busybox_layer({"etc/other": secrets.token_bytes(64)})])
    h.write_oci_layout(other, tmp_path / "other.tar", f"docker.io/library/{repo}:imported")
    containerd.ctr("images", "import", str(tmp_path / "other.tar"))  # someone else's load, same repository
    loaded, freed = {1: first.image_id}, {}
    for n in range(2, 6):
        outcome, report = load(client, versions[n], repo, n)
        loaded[n] = outcome.image_id
        for gone in report.removed:
            freed[gone["image_id"]] = report.freed_bytes
    print(f"\nfreed per removed version: {sorted(freed.values())}")
    assert set(freed) == {loaded[2], loaded[3]}
    assert all(f >= 512 * 1024 for f in freed.values()), freed
    names = records(client, repo)
    left = {r.target.digest for r in names.values()}
    assert left == {loaded[1], loaded[4], loaded[5], other.manifest_digest}
    assert names[f"docker.io/library/{repo}:imported"].target.digest == other.manifest_digest
    assert PIN_LABEL not in names[f"docker.io/library/{repo}:imported"].labels  # not ours: not pinned by us
    ours = [r for n, r in names.items() if not n.endswith(":imported")]
    assert ours and all(r.labels.get(PIN_LABEL) == "pinned" for r in ours)
    markers = [r for r in ours if retention.marker_time(r.name.rsplit(":", 1)[1])]
    assert sorted(r.target.digest for r in markers) == sorted([loaded[1], loaded[4], loaded[5]])
    for n in (2, 3):  # their own layer blobs are gone from the content store
        own = versions[n][1].layers[1][0]["digest"]
        assert client.content.info(own) is None
    containerd.ctr("containers", "rm", container)


def test_the_pin_survives_a_reimport_of_the_same_name(containerd, unix_client, versions, tmp_path):
    client, _ = unix_client
    repo = f"pin-{secrets.token_hex(3)}"
    name = f"docker.io/library/{repo}:latest"
    load(client, versions[1], repo, 1)
    assert client.images.get(name).labels[PIN_LABEL] == "pinned"
    load(client, versions[2], repo, 2, pin=False)  # artiload replaces the record: its pin stays
    assert client.images.get(name).target.digest == versions[2][1].manifest_digest
    assert client.images.get(name).labels[PIN_LABEL] == "pinned"
    assert PIN_LABEL not in client.images.get(f"docker.io/library/{repo}:v2").labels  # pin=False: new records unpinned
    load(client, versions[1], repo, 1)  # latest back on v1, which artiload loaded and marked (pinned)
    h.write_oci_layout(versions[1][1], tmp_path / "again.tar", name)
    containerd.ctr("images", "import", str(tmp_path / "again.tar"))  # someone else re-imports the same name
    record = client.images.get(name)
    print(f"\nafter ctr import: {record.target.digest[:19]} labels {dict(record.labels)}")
    assert record.target.digest == versions[1][1].manifest_digest
    if containerd.version.startswith("1."):
        assert record.labels.get(PIN_LABEL) == "pinned"  # 1.x's import updates the record's target only
    # 2.x's import replaces the record's labels; the CRI pins an image if any of its names is pinned, and its
    # marker record still is: the version stays pinned either way
    pinned = [r.name for r in client.images.list() if r.target.digest == record.target.digest and r.labels.get(PIN_LABEL)]
    assert any(retention.marker_time(n.rsplit(":", 1)[1]) for n in pinned), pinned


def test_dry_run_removes_nothing_and_rollback_runs_the_old_version(containerd, unix_client, versions):
    client, _ = unix_client
    repo = f"rb-{secrets.token_hex(3)}"
    for n in (1, 2, 3):
        load(client, versions[n], repo, n, keep_last=3)
    before = {n: r.target.digest for n, r in records(client, repo).items()}
    _, report = load(client, versions[3], repo, 3, keep_last=1, dry_run=True)
    assert report.dry_run and report.freed_bytes == 0 and len(report.removed) == 2
    after = {n: r.target.digest for n, r in records(client, repo).items()}
    assert {n: d for n, d in after.items() if ":artiload-" not in n} == {n: d for n, d in before.items() if ":artiload-" not in n}
    assert set(after.values()) == set(before.values())
    latest = f"docker.io/library/{repo}:latest"
    assert run_cat(containerd, latest) == "v3\n"
    life = NodeTarget(client).lifecycle
    moved = retention.rollback(life, f"{repo}:latest", log)
    assert moved["to"] == versions[2][1].manifest_digest == client.images.get(latest).target.digest
    assert client.images.get(latest).labels[PIN_LABEL] == "pinned"
    assert run_cat(containerd, latest) == "v2\n"
    retention.rollback(life, f"{repo}:latest", log)
    with pytest.raises(RetentionError, match=rf"{containerd.socket_path}.*docker.io/library/{repo}.*versions"):
        retention.rollback(life, f"{repo}:latest", log)


def test_a_prune_racing_loads_of_the_same_repository_loses_nothing_they_need(containerd, unix_client, versions):
    client, _ = unix_client
    repo = f"race-{secrets.token_hex(3)}"
    for n in (1, 2, 3):
        load(client, versions[n], repo, n, keep_last=3)
    stop = threading.Event()
    errors: list[BaseException] = []
    prunes = 0

    def prune_forever() -> None:
        nonlocal prunes
        life = NodeTarget(client).lifecycle
        while not stop.is_set():
            try:
                retention.prune(life, repo, 1, log=log)
                prunes += 1
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)
                return

    pruner = threading.Thread(target=prune_forever)
    pruner.start()
    try:
        results = [load(client, versions[n], repo, n, keep_last=1)[0] for n in (4, 2, 6, 5)]
    finally:
        stop.set()
        pruner.join(120)
    print(f"\n{prunes} prunes raced the loads; modes {[r.mode for r in results]}")
    assert not errors, errors
    assert prunes > 0
    latest = f"docker.io/library/{repo}:latest"
    assert client.images.get(latest).target.digest == versions[5][1].manifest_digest
    assert run_cat(containerd, latest) == "v5\n"
