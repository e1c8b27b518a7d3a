"""Bounded everything (issue 16): what a small crafted archive makes artiload hold, measured as the integration
tests measure it (the peak RSS, VmHWM, reset through /proc/self/clear_refs before the step).

- a zstd layer that inflates ~30,000-fold (a 134 KiB archive grew memory by 4.1 GB before: python-zstandard's
  decompressobj hands back a whole chunk's output at once);
- consecutive PAX headers in a filtering scan (300 of 1 MiB grew RSS by 307 MiB: each waited for its entry);
- the symlink chain through a symlinked directory is in test_go_corners.py.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
import zstandard

from airflow_provider_artiload.exceptions import ArchiveError
from airflow_provider_artiload.oci.archive import ArchiveScanner
from airflow_provider_artiload.oci.verify import VerifiedArchive, every_member
from tests.unit.archives import chunked
from tests.unit.test_tar_go import END, member, pax, rec

BOMB = 1 << 30  # a 1 GiB layer of zeros, in ~32 KiB of zstd


def _vm_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(field)


def _peak_growth_mib(step) -> int:
    """Run ``step``; how far the peak RSS rose above the RSS before it, in MiB."""
    clear = Path("/proc/self/clear_refs")
    if not clear.exists():
        pytest.skip("no /proc/self/clear_refs: cannot reset the peak RSS")
    clear.write_text("5")
    start = _vm_kib("VmRSS")
    step()
    return (_vm_kib("VmHWM") - start) >> 10


def _zstd_bomb_archive() -> tuple[bytes, str]:
    """An OCI archive whose one zstd layer is a stream of zeros that inflates to BOMB bytes; and its diff ID."""
    compressor = zstandard.ZstdCompressor(level=19)
    writer = io.BytesIO()
    with compressor.stream_writer(writer, closefd=False) as stream:
        zeros = bytes(1 << 20)
        for _ in range(BOMB >> 20):
            stream.write(zeros)
    layer = writer.getvalue()
    diff = hashlib.sha256()
    zeros = bytes(1 << 20)
    for _ in range(BOMB >> 20):
        diff.update(zeros)
    diff_id = "sha256:" + diff.hexdigest()
    blobs = {}

    def put(data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return digest

    layer_digest = put(layer)
    config = json.dumps({"os": "linux", "architecture": "amd64", "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": put(config), "size": len(config)},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+zstd", "digest": layer_digest,
                                       "size": len(layer)}]}).encode()
    manifest_digest = put(manifest)
    index = json.dumps({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                                          "digest": manifest_digest, "size": len(manifest)}]}).encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}', "index.json": index,
                           **{"blobs/sha256/" + d.split(":")[1]: b for d, b in blobs.items()}}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue(), diff_id


def test_a_zstd_layer_that_inflates_a_million_fold_is_hashed_in_bounded_memory():
    archive, diff_id = _zstd_bomb_archive()
    assert len(archive) < 256 << 10
    verified = VerifiedArchive(chunked(archive, [64 << 10]), where="bomb.tar", expect=every_member)
    grown = _peak_growth_mib(lambda: list(verified))
    layer = verified.index.members[verified.image.layers[0].path]
    assert layer.diff_id == diff_id  # every byte of the 1 GiB was inflated and hashed
    print(f"peak RSS growth hashing a {len(archive) >> 10} KiB archive whose zstd layer inflates to 1 GiB: {grown} MiB")
    assert grown < 48


def test_consecutive_pax_headers_in_a_filtering_scan_are_refused_in_bounded_memory():
    one = pax(rec("comment", "c" * ((1 << 20) - 600)))

    def pieces():  # the 300 MiB archive, one header at a time: the test must not hold it either
        for _ in range(300):
            yield one
        yield member("f", b"x") + END

    def step():
        scanner = ArchiveScanner(keep=lambda name, index: True)
        with pytest.raises(ArchiveError, match="add up to more than 3 MiB"):
            for piece in pieces():
                scanner.feed(piece)

    grown = _peak_growth_mib(step)
    print(f"peak RSS growth filtering 300 consecutive 1 MiB PAX headers: {grown} MiB")
    assert grown < 16
