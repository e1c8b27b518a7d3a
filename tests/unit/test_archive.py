"""The streaming docker-archive scanner, fed in uneven chunks."""

from __future__ import annotations

import hashlib
import io
import tarfile

import pytest

from airflow_provider_artiload.oci.archive import ArchiveScanner, Check
from airflow_provider_artiload.exceptions import ArchiveError
from tests.unit.archives import docker_archive, layer_tar, scan


def test_reads_manifest_configs_and_layer_digests_whatever_the_chunking():
    layers = [layer_tar({"a": b"x" * 5000}), layer_tar({"b": b"y" * 3})]
    data, image_id = docker_archive(layers, tags=["app:1"])
    for sizes in ([1], [512], [100_000], [3, 1021, 7]):
        diff_ids = ["sha256:" + hashlib.sha256(layer).hexdigest() for layer in layers]
        by_name = {f"{i:064x}/layer.tar": d for i, d in enumerate(diff_ids)}
        index = scan(data, sizes, expect=lambda name, seen: Check(diff_id=by_name[name]) if name in by_name else None)
        image = index.image()
        assert image.config_digest == image_id and image.id_for("classic") == image_id
        assert image.repo_tags == ("app:1",)
        assert [index.members[layer.path].diff_id for layer in image.layers] == diff_ids
        index.check_complete()


def test_pax_long_names_are_followed():
    long_dir = "d" * 150
    data, _ = docker_archive(extra={f"{long_dir}/note.txt": b"hi"}, fmt=tarfile.PAX_FORMAT)
    index = scan(data)
    assert f"{long_dir}/note.txt" in index.members


def test_gnu_long_names_are_followed():
    data, _ = docker_archive(extra={"n" * 120 + ".txt": b"hi"}, fmt=tarfile.GNU_FORMAT)
    assert "n" * 120 + ".txt" in scan(data).members


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"", "the archive is empty"),
        (b"\x89PNG\r\n" + bytes(2000), "not a tar archive"),
        (b"\x1f\x8b\x08" + bytes(600), "not a tar archive (is it compressed"),
    ],
)
def test_rejects_non_archives(data, needle):
    with pytest.raises(ArchiveError, match=needle.replace("(", r"\(")):
        scan(data)


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9, 0.999])
def test_truncation_is_detected_at_any_point(fraction):
    data, _ = docker_archive([layer_tar({"big": bytes(range(256)) * 64})])
    content_end = data.rindex(b"]") + 1  # the manifest's last byte; after it only zero padding follows
    cut = data[: int(content_end * fraction)]
    with pytest.raises(ArchiveError, match="truncated|no manifest"):
        index = scan(cut)
        index.check_complete()


def test_truncation_exactly_at_a_member_boundary_lacks_the_manifest():
    data, _ = docker_archive()
    cut = data[: data.index(b"manifest.json") ]  # ends right before the manifest's header
    with pytest.raises(ArchiveError, match="neither manifest.json nor index.json"):
        scan(cut).check_complete()


def test_missing_manifest_and_absent_members_are_named():
    data, _ = docker_archive(manifest=[{"Config": "c.json", "Layers": ["nope/layer.tar"]}])
    index = scan(data)
    with pytest.raises(ArchiveError, match="names config 'c.json', which the archive does not contain"):
        index.check_complete()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("layer.tar")
        info.size = 0
        tar.addfile(info, io.BytesIO())
    with pytest.raises(ArchiveError, match="neither manifest.json nor index.json"):
        scan(buffer.getvalue()).image()


@pytest.mark.parametrize("name", ["../evil", "/etc/passwd", "a/../../b"])
def test_unsafe_member_names_are_refused(name):
    data, _ = docker_archive(extra={name: b"x"})
    with pytest.raises(ArchiveError, match="unsafe member name"):
        scan(data)


def test_links_pointing_outside_are_refused():
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("link")
        info.type = tarfile.SYMTYPE
        info.linkname = "../../etc/shadow"
        tar.addfile(info)
    with pytest.raises(ArchiveError, match="unsafe link"):
        scan(buffer.getvalue())


def test_huge_manifest_is_refused_without_buffering_it():
    scanner = ArchiveScanner()
    info = tarfile.TarInfo("manifest.json")
    info.size = 64 << 20
    with pytest.raises(ArchiveError, match="JSON files are small"):
        scanner.feed(info.tobuf(format=tarfile.USTAR_FORMAT))
