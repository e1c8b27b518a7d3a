"""Issue 21, item 2: what a load into a containerd-store engine leaves to us, and that nothing unchecked lands.

Seen on Docker 28.5 (containerd 2.1), loading raw with ``docker load``: the
engine's importer stores each blob under the sha256 of the bytes it got,
whatever the member is named, and records the image (moving the archive's
names onto it, leaving the displaced image dangling) before it unpacks; the
unpack then fails ("content digest ... not found", or "wrong diff id
calculated on extraction") in a ``stream`` line of a 200 reply. So artiload
checks every blob digest itself, before the archive's end; leaves the diff
ID to the unpack, sending the archive unnamed (no tag can move) and removing
the record a refused unpack leaves; and checks itself the diff ID of a layer
the engine has, which its unpack skips unread. Each case leaves the engine
as it was: no record, no dangling image, no tag moved.

These run on whichever engine kind the run selects (``ARTILOAD_TEST_ENGINE``,
``-m engines``). A classic store checks each diff ID itself before it records
anything, and keeps no blob digest, so there a gzip header changed in
transit (same content) is a good load, and a wrong diff ID is the engine's
refusal.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
import uuid

import docker
import pytest

from airflow_provider_artiload.exceptions import ArtiloadError, DigestMismatch
from airflow_provider_artiload.hooks.engine import DockerEngineHook

PAYLOAD = 3 << 20  # several 1 MiB chunks: the engine has most of the archive when the check fails
ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def blob_path(digest: str) -> str:
    return "blobs/sha256/" + digest.split(":", 1)[1]


def crafted(path, name: str, *, tamper_blob: bool = False, wrong_diff_id: bool = False,
            claim: str | None = None, seed: bytes | None = None, level: int = 1) -> dict[str, str]:
    """An OCI layout (with the legacy manifest.json, as ``docker save`` writes) of one gzip layer, named ``name``.

    ``tamper_blob``: the gzip header's OS byte changed after the manifest was written, so the blob no longer
    hashes to its name, while its content (the diff ID) is unchanged. ``wrong_diff_id``: the config claims
    another diff ID (the config's digest, in the manifest, follows it), every blob matching its name; ``claim``:
    that diff ID (another image's layer, say); ``seed``: the payload's bytes come from it (same seed, same
    layer), else they are random; ``level``: gzip's (another level, another blob of the same layer)."""
    plain = io.BytesIO()
    with tarfile.open(fileobj=plain, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("payload")
        info.size = PAYLOAD
        payload = hashlib.shake_256(seed).digest(PAYLOAD) if seed else os.urandom(PAYLOAD)
        tar.addfile(info, io.BytesIO(payload))
    layer = plain.getvalue()
    blob = gzip.compress(layer, compresslevel=level, mtime=0)
    layer_digest, diff_id = sha(blob), sha(layer)
    if tamper_blob:
        blob = blob[:9] + bytes([blob[9] ^ 1]) + blob[10:]
    claimed = claim or (sha(layer + b"\0") if wrong_diff_id else diff_id)
    config = json.dumps({"architecture": ARCH, "os": "linux", "config": {"Labels": {"crafted-as": name}},
                         "rootfs": {"type": "layers", "diff_ids": [claimed]}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest,
                    "size": len(blob)}],
    }).encode()
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha(manifest), "size": len(manifest),
        "annotations": {"io.containerd.image.name": f"docker.io/{name}",
                        "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1]},
    }]}).encode()
    legacy = json.dumps([{"Config": blob_path(sha(config)), "RepoTags": [name], "Layers": [blob_path(layer_digest)]}])
    with tarfile.open(path, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for member, data in ((blob_path(sha(config)), config), (blob_path(layer_digest), blob),
                             (blob_path(sha(manifest)), manifest), ("index.json", index),
                             ("manifest.json", legacy.encode()), ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')):
            info = tarfile.TarInfo(member)
            info.size, info.mode = len(data), 0o444
            tar.addfile(info, io.BytesIO(data))
    return {"layer": layer_digest, "blob": sha(blob), "diff_id": diff_id, "claimed": claimed,
            "config": sha(config), "manifest": sha(manifest)}


def connect(monkeypatch, engine) -> DockerEngineHook:
    monkeypatch.setenv("AIRFLOW_CONN_CTD_CHECKS", json.dumps({"conn_type": "docker_engine", "host": engine.unix_url}))
    return DockerEngineHook("ctd_checks")


def everything(engine) -> dict[str, object]:
    """What could be left behind: every image record (dangling ones too) with its tags, as the Engine API lists
    them, and on a containerd store the records its containerd holds (``moby-dangling@...`` included)."""
    with contextlib.closing(docker.DockerClient(base_url=engine.unix_url, version="auto")) as client:
        state: dict[str, object] = {"images": {(i.id, tuple(sorted(i.tags))) for i in client.images.list(all=True)}}
    if engine.kind.store == "containerd":
        ctr = str(engine.kind.private_root / "usr" / "bin" / "ctr")
        sock = os.path.join(engine.workdir, "exec", "containerd", "containerd.sock")
        out = subprocess.run([ctr, "-a", sock, "-n", "moby", "images", "ls", "-q"], check=True,
                             capture_output=True, text=True, timeout=60).stdout
        state["containerd"] = set(out.split())
    return state


@pytest.fixture
def victim(engine_b, tmp_path):
    """A tag that already names an image on the engine (loaded by docker-py): a refused load must not move it."""
    tag = f"ctd-checks/victim-{uuid.uuid4().hex[:8]}:1"
    digests = crafted(tmp_path / "victim.tar", tag, seed=tag.encode())
    with contextlib.closing(docker.DockerClient(base_url=engine_b.unix_url, version="auto")) as client:
        client.images.load((tmp_path / "victim.tar").read_bytes())
        image_id = client.images.get(tag).id
    yield tag, image_id, digests
    with contextlib.suppress(docker.errors.ImageNotFound):
        remove(engine_b, tag)


def tag_target(engine, tag: str) -> str:
    with contextlib.closing(docker.DockerClient(base_url=engine.unix_url, version="auto")) as client:
        return client.images.get(tag).id


def remove(engine, reference: str) -> None:
    with contextlib.closing(docker.DockerClient(base_url=engine.unix_url, version="auto")) as client:
        client.images.remove(reference, force=True)


def refused_each_way(hook, engine, archive, tag: str, message: str, deltas=(False, True)) -> None:
    """Loading ``archive`` (full, then thin) fails with exactly ``message`` and leaves ``engine`` as it was."""
    before = everything(engine)
    for delta in deltas:
        with pytest.raises(DigestMismatch) as caught:
            hook.load_archive(str(archive), tags=[tag], delta=delta)
        assert str(caught.value) == message
        assert everything(engine) == before


def test_a_blob_that_does_not_match_its_name_is_refused_and_nothing_is_recorded(monkeypatch, engine_b, victim, tmp_path):
    tag, victim_id, _ = victim
    archive = tmp_path / "tampered-blob.tar"
    digests = crafted(archive, tag, tamper_blob=True)
    hook = connect(monkeypatch, engine_b)
    before = everything(engine_b)
    if engine_b.kind.store == "classic":  # it keeps diff IDs, not blobs: same content, a good load
        outcome = hook.load_archive(str(archive), tags=[tag + "-loaded"])
        assert outcome.image_id == digests["config"]
        remove(engine_b, outcome.image_id)
        return
    with pytest.raises(DigestMismatch) as caught:
        hook.load_archive(str(archive), tags=[tag + "-must-not-exist"])
    assert str(caught.value) == (  # ours, before the archive's end
        f"{archive}: layer {blob_path(digests['layer'])} has sha256 {digests['blob']}, "
        f"but the image says its blob is {digests['layer']} (corrupt)")
    assert everything(engine_b) == before  # no record, no dangling image, no tag added
    assert tag_target(engine_b, tag) == victim_id  # the archive's own name did not move


def test_a_wrong_diff_id_is_refused_and_nothing_is_recorded(monkeypatch, engine_b, victim, tmp_path):
    """On a containerd store the engine's own unpack finds it, after it recorded the image: the load went in
    unnamed, so no tag moved, and the record it made is removed."""
    tag, victim_id, _ = victim
    archive = tmp_path / "wrong-diff-id.tar"
    digests = crafted(archive, tag, wrong_diff_id=True)
    hook = connect(monkeypatch, engine_b)
    before = everything(engine_b)
    with pytest.raises(DigestMismatch) as caught:
        hook.load_archive(str(archive), tags=[tag + "-must-not-exist"])
    if engine_b.kind.store == "containerd":  # found by the engine's unpack, told as ours are
        assert str(caught.value) == (
            f"{archive}: layer {blob_path(digests['layer'])} has sha256 {digests['diff_id']} uncompressed, "
            f"but the image config says its diff ID is {digests['claimed']} (corrupt; {engine_b.unix_url} found it "
            "as it unpacked the layer, and kept nothing)")
    else:  # the classic store's own refusal, before it records anything
        assert digests["claimed"] in str(caught.value) or "diff" in str(caught.value).lower()
    assert everything(engine_b) == before
    assert tag_target(engine_b, tag) == victim_id


def test_a_layer_the_engine_would_not_unpack_is_checked_on_our_side(monkeypatch, engine_b, victim, tmp_path):
    """The config claims the diff ID of a layer the engine already has (the victim's), over other bytes: the
    engine skips that layer unread, so its diff ID is checked here, before the archive's end, in full and thin."""
    tag, victim_id, theirs = victim
    archive = tmp_path / "claims-their-layer.tar"
    digests = crafted(archive, f"ctd-checks/claims-{uuid.uuid4().hex[:8]}:1", claim=theirs["diff_id"])
    # thin, a classic store takes the image as its config says, from the layer it has: nothing of ours lands
    refused_each_way(connect(monkeypatch, engine_b), engine_b, archive, tag + "-must-not-exist", (
        f"{archive}: layer {blob_path(digests['layer'])} has sha256 {digests['diff_id']} uncompressed, "
        f"but the image config says its diff ID is {theirs['diff_id']} (corrupt)"),
        deltas=(False, True) if engine_b.kind.store == "containerd" else (False,))
    assert tag_target(engine_b, tag) == victim_id


def test_a_blob_that_does_not_match_its_name_over_a_layer_the_engine_has_is_refused(monkeypatch, engine_b, victim,
                                                                                     tmp_path):
    """The victim's layer compressed anew, its gzip header changed in transit: the engine has the chain, so its
    unpack would not read it, and its diff ID (the content's) is right; only the blob is not what its name says.
    Refused here, before the archive's end, in full and thin."""
    tag, victim_id, theirs = victim
    archive = tmp_path / "tampered-over-theirs.tar"
    name = f"ctd-checks/over-{uuid.uuid4().hex[:8]}:1"
    digests = crafted(archive, name, tamper_blob=True, seed=tag.encode(), level=6)
    assert digests["diff_id"] == theirs["diff_id"] and digests["layer"] != theirs["layer"]
    hook = connect(monkeypatch, engine_b)
    if engine_b.kind.store == "classic":  # same content: the image, as its config says, from the layer it has
        remove(engine_b, hook.load_archive(str(archive), tags=[name + "-loaded"], delta=False).image_id)
        return
    refused_each_way(hook, engine_b, archive, name + "-must-not-exist", (
        f"{archive}: layer {blob_path(digests['layer'])} has sha256 {digests['blob']}, "
        f"but the image says its blob is {digests['layer']} (corrupt)"))
    assert tag_target(engine_b, tag) == victim_id


def test_a_good_load_goes_in_unnamed_and_lands_with_exactly_its_names(monkeypatch, engine_b, tmp_path):
    """The other side of sending unnamed: once whole, the image gets the archive's name and the task's tag, and no
    unnamed record (``moby-dangling@...``) is left beside it."""
    name = f"ctd-checks/good-{uuid.uuid4().hex[:8]}:1"
    archive = tmp_path / "good.tar"
    digests = crafted(archive, name)
    hook = connect(monkeypatch, engine_b)
    before = everything(engine_b)
    outcome = hook.load_archive(str(archive), tags=[name + "-task"])
    try:
        after = everything(engine_b)
        image_id = digests["manifest"] if engine_b.kind.store == "containerd" else digests["config"]
        assert outcome.image_id == image_id
        assert after["images"] - before["images"] == {(image_id, tuple(sorted([name, name + "-task"])))}
        if engine_b.kind.store == "containerd":
            assert after["containerd"] - before["containerd"] == {f"docker.io/{name}", f"docker.io/{name}-task"}
    finally:
        remove(engine_b, outcome.image_id)
