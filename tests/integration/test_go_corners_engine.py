"""Issue 16's reader corners against a real engine (engine B, skip and delta off; every engine kind).

- An archive behind a zstd *skippable frame*, which dockerd's DecompressStream decompresses: artiload decides
  the same way (``digests.outer_compression``), so it checks and loads the image the engine would find.
- A PAX global header between a pending ``path`` record and the next entry: Go forgets the pending record, so
  does artiload; the load is the real image, under its real names.
- An archive of two images (``manifest.json`` with two different entries): refused by name before the engine
  changes, as ``docker load`` would load and tag both.
"""

from __future__ import annotations

import json
import struct
import tarfile
from pathlib import Path

import docker
import pytest
import zstandard

from airflow_provider_artiload.exceptions import ArchiveError
from tests.integration.test_bad_input import base, manifest_of, rebuild, wait_engine_temp_empty  # noqa: F401  (base: a fixture)
from tests.integration.test_engine_transfer import connect, drop, snapshot
from tests.unit.test_tar_go import member, pax, rec

def test_an_archive_behind_a_zstd_skippable_frame_loads_what_the_engine_reads(monkeypatch, engine_b, base, tmp_path):
    packed = tmp_path / "base.tar.zst"
    frame = struct.pack("<II", 0x184D2A50, 8) + b"artiload"
    packed.write_bytes(frame + zstandard.ZstdCompressor().compress(Path(base.path).read_bytes()))
    drop(engine_b, base.image_id)
    hook = connect(monkeypatch, "zst_dst", engine_b.unix_url)
    outcome = hook.load_archive(str(packed), tags=["zst/loaded:1"], skip_existing=False, delta=False)
    assert outcome.image_id == base.image_id
    assert docker.DockerClient(base_url=engine_b.unix_url).images.get("zst/loaded:1").id == base.image_id


def test_a_global_header_after_a_pending_path_changes_no_name(monkeypatch, engine_b, base, tmp_path):
    """``x`` says the next entry is manifest.json, then ``g``: Go (and artiload) forget the ``x``; a decoy follows."""
    decoy = json.dumps([{"Config": "nothing.json", "RepoTags": ["evil/decoy:1"], "Layers": []}]).encode()
    crafted = tmp_path / "crafted.tar"
    crafted.write_bytes(pax(rec("path", "manifest.json")) + pax(rec("comment", "g"), kind=b"g")
                        + member("decoy.json", decoy) + Path(base.path).read_bytes())
    drop(engine_b, base.image_id)
    hook = connect(monkeypatch, "g_dst", engine_b.unix_url)
    outcome = hook.load_archive(str(crafted), tags=["g/loaded:1"], skip_existing=False, delta=False)
    assert outcome.image_id == base.image_id
    client = docker.DockerClient(base_url=engine_b.unix_url)
    assert client.images.get("g/loaded:1").id == base.image_id
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get("evil/decoy:1")


def test_an_archive_of_two_images_is_refused_naming_both(monkeypatch, engine_b, base, tmp_path):
    entries = manifest_of(base.path)
    second = {**entries[0], "RepoTags": ["evil/second:1"], "Layers": entries[0]["Layers"][:-1]}
    two = rebuild(base.path, tmp_path / "two.tar", skip=("manifest.json",),
                  extra=[(tarfile.TarInfo("manifest.json"), json.dumps(entries + [second]).encode())])
    drop(engine_b, base.image_id)
    before = snapshot(engine_b)
    hook = connect(monkeypatch, "two_dst", engine_b.unix_url)
    with pytest.raises(ArchiveError, match=r"manifest.json lists 2 images .*evil/second:1.*save each image to its own archive"):
        hook.load_archive(str(two), tags=["must/not:exist"], skip_existing=False, delta=False)
    assert snapshot(engine_b) == before
    assert wait_engine_temp_empty(engine_b) == []

