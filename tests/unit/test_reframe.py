"""Issue 16: the engine is sent a tar artiload wrote, from the plain archive that passed the checks.

Each test builds a source archive in memory, runs it through what a load
runs (VerifiedArchive with ``plain=True``, then :func:`reframe`), and reads
what the engine would receive with both our scanner and Python's tarfile.
"""

from __future__ import annotations

import bz2
import hashlib
import gzip
import io
import json
import lzma
import struct
import tarfile

import pytest
import zstandard

from airflow_provider_artiload.exceptions import ArchiveError
from airflow_provider_artiload.oci.archive import ArchiveScanner
from airflow_provider_artiload.oci.layout import layer_position, read_layout
from airflow_provider_artiload.oci.digests import outer_compression
from airflow_provider_artiload.oci.reframe import Framing, named_blobs, reframe
from airflow_provider_artiload.oci.verify import VerifiedArchive
from tests.unit.archives import chunked, docker_archive, layer_tar, oci_archive


def sent(data: bytes, framing: Framing = Framing(), sizes=(1, 511, 513, 4096, 7)) -> bytes:
    """What the engine receives for source ``data`` (fed in uneven chunks)."""
    verified = VerifiedArchive(chunked(data, list(sizes)), where="src", plain=True)
    return b"".join(bytes(piece) for piece in reframe(verified, framing))


def members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: (tar.extractfile(m).read() if m.isfile() else b"<dir>") for m in tar.getmembers()}


def headers(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.getmembers()


def test_blobs_pass_byte_for_byte_and_the_metadata_is_artiloads():
    data, digests = oci_archive(compress="gzip", legacy_manifest=True, tags=["docker.io/library/app:1"])
    out = sent(data)
    source, got = members(data), members(out)
    blobs = {n for n in source if n.startswith("blobs/sha256/")}
    assert {n: got[n] for n in blobs} == {n: source[n] for n in blobs}
    assert set(got) == blobs | {"blobs", "blobs/sha256", "oci-layout", "index.json", "manifest.json"}
    index = json.loads(got["index.json"])
    assert got["index.json"] == json.dumps(index, sort_keys=True, separators=(",", ":")).encode()  # canonical
    [entry] = index["manifests"]
    assert entry["digest"] == digests["manifest"]
    assert entry["annotations"] == {"io.containerd.image.name": "docker.io/library/app:1",
                                    "org.opencontainers.image.ref.name": "1"}
    [legacy] = json.loads(got["manifest.json"])
    assert legacy == {"Config": "blobs/sha256/" + digests["config"][7:], "RepoTags": ["docker.io/library/app:1"],
                      "Layers": [n for n in json.loads(source["manifest.json"])[0]["Layers"]]}
    scanner = ArchiveScanner()
    scanner.feed(out)
    image = scanner.finish().image()
    assert image.id_for("containerd") == digests["manifest"] and image.config_digest == digests["config"]


def test_every_header_is_one_plain_block_from_the_one_writer(tmp_path):
    long_name = "x" * 150  # a PAX path in the source: in what we send, no extended header survives
    data, _ = docker_archive(extra={long_name: b"junk"}, fmt=tarfile.PAX_FORMAT, tags=["app:1"])
    path = tmp_path / "a.tar"
    path.write_bytes(data)
    layout = read_layout(str(path))
    out = sent(data, Framing(blobs=named_blobs(layout.index, layout.image)))
    for info in headers(out):
        assert not info.pax_headers and info.uid == 0 and info.mtime == 0 and len(info.name) <= 100
    assert long_name not in members(out)
    for offset in range(0, len(out), 512):  # no 'x', 'g', 'L' or 'K' block anywhere
        block = out[offset : offset + 512]
        if block[257:262] == b"ustar":
            assert block[156:157] in (b"0", b"5")
    with pytest.raises(ArchiveError):  # a stream cannot know it is junk until the end: refused, not forwarded
        sent(data)


def test_a_legacy_archive_keeps_only_config_and_layers_and_links_resolve():
    layer = layer_tar({"a": b"1"})
    data, image_id = docker_archive([layer, layer_tar({"b": b"2"})], tags=["app:1"],
                                    extra={"repositories": b'{"app":{"1":"x"}}', "0" * 64 + "/json": b"{}"})
    got = members(sent(data))
    assert set(got) == {f"{0:064x}", f"{0:064x}/layer.tar", f"{1:064x}", f"{1:064x}/layer.tar",
                        image_id[7:] + ".json", "manifest.json"}  # no repositories, no v1 json
    assert json.loads(got["manifest.json"])[0]["RepoTags"] == ["app:1"]


def test_a_repeated_layer_linked_in_the_source_is_named_by_its_target():
    layer = layer_tar({"a": b"1"})
    data, _ = docker_archive([layer], tags=["app:1"])
    config_name = next(n for n in members(data) if n.endswith(".json") and n != "manifest.json")
    manifest = [{"Config": config_name, "RepoTags": [], "Layers": [f"{0:064x}/layer.tar", "dup/layer.tar"]}]
    config = json.loads(members(data)[config_name])
    config["rootfs"]["diff_ids"] *= 2
    raw = json.dumps(config).encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, body in ((f"{0:064x}/layer.tar", layer), (config_name, raw), ("manifest.json", json.dumps(manifest).encode())):
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
        link = tarfile.TarInfo("dup/layer.tar")
        link.type, link.linkname = tarfile.SYMTYPE, f"../{0:064x}/layer.tar"
        tar.addfile(link)
    got = members(sent(buffer.getvalue()))
    assert "dup/layer.tar" not in got
    assert json.loads(got["manifest.json"])[0]["Layers"] == [f"{0:064x}/layer.tar"] * 2


def test_a_stream_with_a_blob_the_image_does_not_name_is_refused_before_any_metadata():
    data, _ = docker_archive(tags=["app:1"], extra={"blobs/sha256/" + "a" * 64: b"smuggled"})
    verified = VerifiedArchive(chunked(data, [4096]), where="src", plain=True)
    out: list[bytes] = []
    with pytest.raises(ArchiveError, match="does not name"):
        for piece in reframe(verified, Framing()):
            out.append(bytes(piece))
    assert b"manifest.json" not in b"".join(out) and b"RepoTags" not in b"".join(out)


def test_a_stream_drops_the_json_blobs_the_image_does_not_name_and_writes_those_it_does_at_the_end():
    """Docker 25+ classic saves carry each layer's v1 config as a blob no manifest names: dropped, not refused."""
    v1 = json.dumps({"id": "x", "parent": "y"}).encode()
    data, digests = oci_archive(compress="gzip", legacy_manifest=True, tags=["docker.io/library/app:1"])
    extra = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(data)) as source, tarfile.open(fileobj=extra, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("blobs/sha256/" + hashlib.sha256(v1).hexdigest())
        info.size = len(v1)
        tar.addfile(info, io.BytesIO(v1))
        for member in source.getmembers():
            tar.addfile(member, source.extractfile(member))
    out = sent(extra.getvalue())
    got = members(out)
    assert "blobs/sha256/" + hashlib.sha256(v1).hexdigest() not in got
    assert got["blobs/sha256/" + digests["config"][7:]] == members(data)["blobs/sha256/" + digests["config"][7:]]
    assert got["blobs/sha256/" + digests["manifest"][7:]] == members(data)["blobs/sha256/" + digests["manifest"][7:]]


def test_an_indexed_file_drops_what_the_image_does_not_name(tmp_path):
    data, _ = docker_archive(tags=["app:1"], extra={"blobs/sha256/" + "a" * 64: b"smuggled", "other.tar": b"x"})
    path = tmp_path / "a.tar"
    path.write_bytes(data)
    layout = read_layout(str(path))
    blobs = named_blobs(layout.index, layout.image)
    got = members(sent(data, Framing(blobs=blobs)))
    assert "blobs/sha256/" + "a" * 64 not in got and "other.tar" not in got and "manifest.json" in got


def test_thin_sends_leave_blobs_out_by_name_or_by_position():
    layers = [layer_tar({"a": b"1"}), layer_tar({"b": b"2"})]
    data, _ = oci_archive(layers, compress=None, legacy_manifest=True)
    scanner = ArchiveScanner()
    scanner.feed(data)
    image = scanner.finish().image()
    bottom = image.layers[0].path
    by_name = members(sent(data, Framing(omit=frozenset({bottom}))))
    by_position = members(sent(data, Framing(omit=frozenset({"#0"}), position=lambda n, i: layer_position(n, i, image.diff_ids))))
    for got in (by_name, by_position):
        assert bottom not in got and image.layers[1].path in got
        assert json.loads(got["manifest.json"])[0]["Layers"] == [bottom, image.layers[1].path]


def test_an_unnamed_send_carries_no_names():
    data, _ = oci_archive(compress="gzip", legacy_manifest=True, tags=["docker.io/library/app:1"])
    got = members(sent(data, Framing(named=False)))
    assert json.loads(got["manifest.json"])[0]["RepoTags"] == []
    assert "annotations" not in json.loads(got["index.json"])["manifests"][0]


def test_a_multi_platform_index_goes_with_everything_it_lists():
    data, digests = oci_archive(compress="gzip", platforms=["linux/amd64", "linux/arm64"], tags=["docker.io/library/m:1"])
    got = members(sent(data, Framing(platform="linux/arm64")))
    assert json.loads(got["index.json"])["manifests"][0]["digest"] == digests["index"]
    assert {"blobs/sha256/" + digests[k][7:] for k in ("manifest:linux/amd64", "manifest:linux/arm64", "index")} <= set(got)


def _skippable(payload: bytes) -> bytes:
    return struct.pack("<II", 0x184D2A53, len(payload)) + payload


@pytest.mark.parametrize(
    "pack",
    [
        pytest.param(lambda d: gzip.compress(d[: len(d) // 2]) + gzip.compress(d[len(d) // 2 :]), id="gzip, two members"),
        pytest.param(lambda d: zstandard.ZstdCompressor().compress(d), id="zstd"),
        pytest.param(lambda d: _skippable(b"hidden") + zstandard.ZstdCompressor().compress(d), id="zstd after a skippable frame"),
        pytest.param(lambda d: bz2.compress(d), id="bzip2"),
        pytest.param(lambda d: lzma.compress(d, format=lzma.FORMAT_XZ), id="xz"),
    ],
)
def test_the_outer_compression_is_removed_and_the_engine_gets_plain_tar(pack):
    data, image_id = docker_archive(tags=["app:1"])
    packed = pack(data)
    assert outer_compression(packed[:10]) != "none"
    verified = VerifiedArchive(chunked(packed, [3, 4096]), where="src", plain=True)
    plain = b"".join(bytes(p) for p in verified)
    assert plain == data and verified.image.config_digest == image_id
    out = sent(packed)
    assert outer_compression(out[:10]) == "none" and members(out)["manifest.json"]


def test_go_takes_a_skippable_frame_for_zstd_and_so_do_we():
    assert outer_compression(_skippable(b"")[:10]) == "zstd"
    assert outer_compression(b"\x1f\x8b\x08") == "gzip" and outer_compression(b"\x1f\x8b\x00") == "none"  # Go wants deflate
    assert outer_compression(b"BZh91AY") == "bzip2" and outer_compression(b"ustar\x00") == "none"


def test_a_truncated_or_corrupt_outer_stream_is_refused():
    data, _ = docker_archive(tags=["app:1"])
    for broken in (gzip.compress(data)[:-20], zstandard.ZstdCompressor().compress(data)[:-5], b"BZh9" + b"\x00" * 100):
        with pytest.raises(ArchiveError):
            list(VerifiedArchive([broken], where="src", plain=True))
