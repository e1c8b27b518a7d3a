"""Issue 16's corners: each is a way Go's archive/tar or encoding/json reads an archive differently from a naive
reader. artiload reads it as Go does, or refuses it with an ArchiveError naming the member and the reason.

(``test_go_oracle.py`` asks Go itself about the same inputs and about thousands of mutations of them.)
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import tarfile

import pytest
import zstandard

from airflow_provider_artiload.exceptions import ArchiveError
from airflow_provider_artiload.oci.archive import EXTENDED_RUN_LIMIT
from airflow_provider_artiload.oci.digests import Inflater, outer_compression
from airflow_provider_artiload.oci.gojson import load_json
from tests.unit.archives import docker_archive, layer_tar, oci_archive, scan
from tests.unit.test_tar_go import END, header, member, pax, rec

BLOCK = 512


# ---------------------------------------------------------------- outer compression


def skippable(data: bytes = b"artiload") -> bytes:
    return struct.pack("<II", 0x184D2A50, len(data)) + data


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"\x1f\x8b\x08\0\0\0\0\0\0\xff", "gzip"),
        (b"\x1f\x8b\x09\0\0\0\0\0\0\xff", "none"),  # moby wants the deflate method byte too
        (b"BZh91AY&SY", "bzip2"),
        (b"\xfd7zXZ\x00\x00\x04\xe6\xd6", "xz"),
        (b"\x28\xb5\x2f\xfd\x00\x58\x00\x00\x00\x00", "zstd"),
        (skippable(), "zstd"),  # Docker 28 decompresses a stream that starts with a skippable frame
        (struct.pack("<II", 0x184D2A5F, 0) + b"xx", "zstd"),
        (struct.pack("<I", 0x184D2A50) + b"abc", "none"),  # moby needs 8 bytes to call it skippable
        (b"manifest.j", "none"),
    ],
)
def test_outer_compression_is_what_dockerds_decompress_stream_sees(head, kind):
    assert outer_compression(head) == kind


def test_a_zstd_stream_behind_a_skippable_frame_is_decompressed_whole():
    archive, _ = docker_archive(tags=["app:1"])
    stream = skippable() + zstandard.ZstdCompressor().compress(archive[:5000]) + skippable(b"") + zstandard.ZstdCompressor().compress(archive[5000:])
    assert outer_compression(stream[:10]) == "zstd"
    inflater = Inflater("zstd", "the archive")
    out: list[bytes] = []
    inflater.feed_into(stream, out.append)
    inflater.finish()
    assert b"".join(out) == archive
    assert b"".join(Inflater("zstd", "x").feed(stream)) == archive
    truncated = Inflater("zstd", "the archive")
    truncated.feed_into(stream[:-3], out.append)
    with pytest.raises(ArchiveError, match="truncated"):
        truncated.finish()


def test_zstd_output_comes_in_bounded_pieces_however_much_one_chunk_inflates():
    bomb = zstandard.ZstdCompressor(level=19).compress(bytes(256 << 20))  # 256 MiB of zeros in a few KiB
    assert len(bomb) < 64 << 10
    sizes: list[int] = []
    Inflater("zstd", "layer").feed_into(bomb, lambda piece: sizes.append(len(piece)))
    assert sum(sizes) == 256 << 20 and max(sizes) <= 4 << 20
    pulled = [len(piece) for piece in Inflater("zstd", "layer").feed(bomb)]
    assert sum(pulled) == 256 << 20 and max(pulled) <= 8 << 20


def test_a_bzip2_or_xz_layer_is_hashed_uncompressed_as_the_engine_reads_it():
    import bz2
    import lzma

    from airflow_provider_artiload.oci.digests import Check, MemberHasher

    layer = layer_tar({"a": b"x" * 10000})
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    for blob in (bz2.compress(layer), lzma.compress(layer), skippable() + zstandard.ZstdCompressor().compress(layer)):
        hasher = MemberHasher(Check(diff_id=diff_id), "blobs/sha256/x")
        hasher.update(memoryview(blob))
        assert hasher.finish()[1] == diff_id


# ---------------------------------------------------------------- tar headers


def test_a_global_header_clears_a_pending_pax_path_or_gnu_long_name_as_in_go():
    evil = pax(rec("path", "manifest.json")) + pax(rec("comment", "g"), kind=b"g") + member("real", b"x") + END
    assert list(scan(evil).members) == ["real"]
    long_name = member("././@LongLink", b"manifest.json\0", kind=b"L") + pax(rec("comment", "g"), kind=b"g")
    assert list(scan(long_name + member("real", b"x") + END).members) == ["real"]
    long_link = member("././@LongLink", b"../../etc\0", kind=b"K") + pax(b"", kind=b"g")
    assert scan(long_link + header("l", kind=b"2", linkname="real") + member("real", b"x") + END).links == {"l": "real"}


def test_empty_pax_values_and_empty_long_names_keep_the_headers_own_fields_as_in_go():
    assert list(scan(pax(rec("path", "")) + member("real", b"x") + END).members) == ["real"]
    assert list(scan(member("././@LongLink", b"\0", kind=b"L") + member("real", b"x") + END).members) == ["real"]


@pytest.mark.parametrize(("field", "start", "end"), [("mode", 100, 108), ("uid", 108, 116), ("gid", 116, 124),
                                                     ("mtime", 136, 148), ("devmajor", 329, 337), ("devminor", 337, 345)])
@pytest.mark.parametrize("value", [b"x", b"12 34", b"9", b"-1", b"0o7"])
def test_numeric_fields_go_refuses_make_the_header_refused(field, start, end, value):
    block = bytearray(header("manifest.json", size=2))
    block[start:end] = value.ljust(end - start - 1, b" ") + b"\0"
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    archive = bytes(block) + b"[]" + bytes(510) + END
    with pytest.raises(ArchiveError, match=f"corrupt tar header at byte 0 .'manifest.json'.: {field}"):
        scan(archive)


def test_device_numbers_are_not_read_in_a_v7_header_as_in_go():
    block = bytearray(header("f", size=1, magic=bytes(8)))
    block[329:337] = b"garbage\0"
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    assert list(scan(bytes(block) + b"x" + bytes(511) + END).members) == ["f"]


@pytest.mark.parametrize("record", [rec("mtime", "yesterday"), rec("atime", "1.2.3"), rec("uid", "9" * 19)])
def test_pax_numbers_go_refuses_are_refused(record):
    with pytest.raises(ArchiveError, match="pax"):
        scan(pax(record) + member("f", b"x") + END)


def test_consecutive_extended_headers_are_limited_together():
    one = pax(rec("comment", "c" * ((1 << 20) - 600)))
    with pytest.raises(ArchiveError, match="add up to more than"):
        scan(one * (EXTENDED_RUN_LIMIT // len(one) + 1) + member("f", b"x") + END)
    assert list(scan(one + member("f", b"x") + END).members) == ["f"]


def test_a_symlink_chain_through_a_symlinked_directory_is_refused():
    with pytest.raises(ArchiveError, match="unsafe link 'd/up/x'"):
        scan(header("d/up", kind=b"2", linkname=".") + header("d/up/x", kind=b"2", linkname="../..") + END)
    assert scan(header("d/up", kind=b"2", linkname=".") + header("d/up/x", kind=b"2", linkname="..") + END).links["d/up/x"] == ""


# ---------------------------------------------------------------- JSON


def test_leading_whitespace_does_not_hide_a_metadata_file():
    data, digests = oci_archive(tags=["docker.io/library/app:1"])
    index = scan(data)
    spaced = _replace_member(data, "index.json", b" \n\t" + index.metadata["index.json"])
    assert scan(spaced).metadata["index.json"].startswith(b" \n\t")
    assert scan(spaced).image().manifest_digest == digests["manifest"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"Config": "a", "config": "b"}', "twice"),
        (b'{"manifests": [], "Manifests": []}', "twice"),
        (b'{"size": 1, "\xc5\xbfize": 2}', "twice"),  # LONG S folds to s in Go
        (b'\xef\xbb\xbf{"a": 1}', "not valid JSON"),  # a BOM: Python's bytes decoding would skip it, Go does not
        ('{"a": 1}'.encode("utf-16"), "not UTF-8"),
        (b'{"a": NaN}', "not valid JSON"),
        (b'{"a": "\\ud800"}', "surrogate"),
    ],
)
def test_json_go_reads_differently_is_refused(raw, message):
    with pytest.raises(ArchiveError, match=message):
        load_json(raw, name="manifest.json", shape=dict)


def test_keys_match_struct_fields_whatever_their_case_as_in_go():
    layer = layer_tar({"hello.txt": b"hello\n"})
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps({"OS": "linux", "Architecture": "amd64", "RootFS": {"Diff_IDs": [diff_id]}}).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"config": config_name, "REPOTAGS": ["evil:latest"], "layers": ["0/layer.tar"]}]).encode()
    data = _tar({"0/layer.tar": layer, config_name: config, "manifest.json": manifest})
    image = scan(data).image()
    assert image.repo_tags == ("evil:latest",) and image.platform == "linux/amd64" and image.diff_ids == [diff_id]


def test_an_archive_of_several_images_is_refused_naming_each():
    data, config = docker_archive(tags=["a:1"])
    entries = json.loads(scan(data).metadata["manifest.json"])
    other_layers = [layer_tar({"other": b"image"})]
    _, other = docker_archive(other_layers)
    several = entries + [{**entries[0], "Config": other.split(":")[1] + ".json", "RepoTags": ["b:2", "b:3"]}]
    data, _ = docker_archive(tags=["a:1"], manifest=several)
    with pytest.raises(ArchiveError, match=r"manifest.json lists 2 images .*\['a:1'\].*\['b:2', 'b:3'\]"):
        scan(data).image()


def test_several_entries_of_one_image_are_one_image_with_every_tag():
    data, config = docker_archive(tags=["a:1"])
    entries = json.loads(scan(data).metadata["manifest.json"])
    data, _ = docker_archive(tags=["a:1"], manifest=entries + [{**entries[0], "RepoTags": ["b:2", "a:1"]}])
    image = scan(data).image()
    assert image.repo_tags == ("a:1", "b:2") and image.config_digest == config


def test_an_oci_index_of_several_named_images_is_refused_naming_each():
    data, digests = oci_archive(tags=["docker.io/library/a:1"])
    index = json.loads(scan(data).metadata["index.json"])
    other = {**index["manifests"][0], "digest": "sha256:" + "e" * 64,
             "annotations": {"io.containerd.image.name": "docker.io/library/b:2"}}
    index["manifests"].append(other)
    changed = _replace_member(data, "index.json", json.dumps(index).encode())
    with pytest.raises(ArchiveError, match=r"index.json lists 2 images .*a:1.*b:2"):
        scan(changed).image()


def _tar(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _replace_member(archive: bytes, name: str, data: bytes) -> bytes:
    members = {}
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for info in tar.getmembers():
            if info.isfile():
                members[info.name] = data if info.name == name else tar.extractfile(info).read()
    return _tar(members)


@pytest.mark.parametrize(
    ("raw", "struct_name", "message"),
    [
        (b'[{"Config": "c.json", "Layers": "l.tar", "RepoTags": []}]', "items", "Layers is string"),
        (b'[{"Config": "c.json", "Layers": [], "RepoTags": "a:1"}]', "items", "RepoTags is string"),
        (b'[{"Config": "c.json", "Layers": [], "Parent": 5}]', "items", "Parent is int"),
        (b'{"os": [], "architecture": "amd64", "rootfs": {"diff_ids": []}}', "config", "os is list"),
        (b'{"os": "linux", "rootfs": "layers"}', "config", "rootfs is string"),
        (b'{"schemaVersion": "2", "manifests": []}', "index", "schemaVersion is string"),
        (b'{"schemaVersion": 2, "manifests": [{"digest": "sha256:x", "size": 1.5}]}', "index", "size is float"),
        (b'{"schemaVersion": 2, "manifests": [{"digest": "sha256:x", "size": 9223372036854775808}]}', "index", "size is int"),
        (b'{"schemaVersion": 2, "manifests": [{"annotations": {"a": 1}}]}', "index", "'a' is int"),
    ],
)
def test_a_field_go_cannot_decode_into_its_struct_is_refused(raw, struct_name, message):
    from airflow_provider_artiload.oci.gojson import CONFIG_STRUCT, INDEX_STRUCT, MANIFEST_ITEM

    struct = {"items": [MANIFEST_ITEM], "config": CONFIG_STRUCT, "index": INDEX_STRUCT}[struct_name]
    shape = list if struct_name == "items" else dict
    with pytest.raises(ArchiveError, match=message):
        load_json(raw, name="m", shape=shape, struct=struct)


def test_a_regular_file_named_like_a_directory_is_refused():
    with pytest.raises(ArchiveError, match="directory's name"):
        scan(member("x/", b"data") + END)
