"""The image model: identity in each store, layers, archive formats and JSON shapes."""

from __future__ import annotations

import hashlib
import json

import pytest

from airflow_provider_artiload.oci.archive import Check
from airflow_provider_artiload.exceptions import ArchiveError, DigestMismatch
from airflow_provider_artiload.oci.image import Image, Layer, chain_ids, digest_of, store_of
from airflow_provider_artiload.oci.gojson import load_json
from tests.unit.archives import docker_archive, layer_tar, oci_archive, scan


def test_legacy_archive_identity_in_each_store():
    data, config_digest = docker_archive(tags=["app:1"])
    image = scan(data).image()
    assert image.format == "docker-archive" and image.manifest_digest is None
    assert image.id_for("classic") == config_digest
    # the containerd store makes a schema-2 manifest from manifest.json: we predict its digest
    converted = json.loads(image.converted_manifest())
    assert converted["config"] == {"mediaType": "application/vnd.docker.container.image.v1+json",
                                   "digest": config_digest, "size": image.config_size}
    assert converted["layers"][0]["mediaType"] == "application/vnd.docker.image.rootfs.diff.tar"
    assert image.id_for("containerd") == digest_of(image.converted_manifest())
    assert image.matches(config_digest) and image.matches(image.id_for("containerd"))
    assert not image.matches("sha256:" + "0" * 64)


@pytest.mark.parametrize("compress", [None, "gzip", "zstd"])
@pytest.mark.parametrize("legacy_manifest", [False, True])
def test_oci_layout_identity_layers_and_compression(compress, legacy_manifest):
    layers = [layer_tar({"a": b"x" * 5000}), layer_tar({"b": b"y"})]
    data, digests = oci_archive(layers, compress=compress, legacy_manifest=legacy_manifest, tags=["docker.io/library/app:1"])
    image = scan(data).image()
    assert image.format == ("oci-archive" if legacy_manifest else "oci-layout")
    assert image.config_digest == digests["config"] == image.id_for("classic")
    assert image.manifest_digest == digests["manifest"] == image.id_for("containerd")
    assert image.diff_ids == ["sha256:" + hashlib.sha256(layer).hexdigest() for layer in layers]
    assert {layer.compression for layer in image.layers} == {compress or "none"}
    assert all(layer.size for layer in image.layers)


@pytest.mark.parametrize("compress", ["gzip", "zstd"])
def test_compressed_blobs_are_checked_by_blob_digest_and_diff_id(compress):
    layers = [layer_tar({"a": bytes(range(256)) * 300})]
    data, _ = oci_archive(layers, compress=compress)
    image = scan(data).image()
    [layer] = image.layers
    good = {layer.path: Check(digest=layer.digest, diff_id=layer.diff_id)}
    index = scan(data, expect=lambda name, seen: good.get(name))
    assert index.members[layer.path].diff_id == layer.diff_id
    wrong_diff = {layer.path: Check(digest=layer.digest, diff_id="sha256:" + "1" * 64)}
    with pytest.raises(DigestMismatch, match="uncompressed"):
        scan(data, expect=lambda name, seen: wrong_diff.get(name))
    wrong_blob = {layer.path: Check(digest="sha256:" + "2" * 64, diff_id=layer.diff_id)}
    with pytest.raises(DigestMismatch, match="its blob is"):
        scan(data, expect=lambda name, seen: wrong_blob.get(name))


@pytest.mark.parametrize("compress", [None, "gzip", "zstd"])
def test_a_layer_checked_by_diff_id_alone_still_catches_corruption(compress):
    """Without a blob digest to compare, a compressed blob is not hashed as stored (one sha256, not two)."""
    layers = [layer_tar({"a": bytes(range(256)) * 300})]
    data, _ = oci_archive(layers, compress=compress)
    [layer] = scan(data).image().layers
    index = scan(data, expect=lambda name, seen: Check(diff_id=layer.diff_id) if name == layer.path else None)
    member = index.members[layer.path]
    assert member.diff_id == layer.diff_id
    assert member.sha256 == (layer.digest if compress is None else None)  # uncompressed: the blob is the diff
    wrong = Check(diff_id="sha256:" + "1" * 64)
    with pytest.raises(DigestMismatch, match="diff ID"):
        scan(data, expect=lambda name, seen: wrong if name == layer.path else None)


def test_multi_member_gzip_layer_is_read_to_its_end_as_go_does():
    import gzip

    layer = layer_tar({"a": b"first" * 100, "b": b"second" * 100})
    half = len(layer) // 2
    blob = gzip.compress(layer[:half]) + gzip.compress(layer[half:])
    check = Check(diff_id="sha256:" + hashlib.sha256(layer).hexdigest())
    data, _ = docker_archive([layer])  # carrier; we feed the blob as one member below
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("blobs/sha256/" + hashlib.sha256(blob).hexdigest())
        info.size = len(blob)
        tar.addfile(info, io.BytesIO(blob))
    index = scan(buffer.getvalue(), expect=lambda name, seen: check)
    assert next(iter(index.members.values())).diff_id == check.diff_id


def test_many_small_layer_blobs_are_not_taken_for_metadata():
    import os

    layers = [layer_tar({f"f{i}": os.urandom(60_000)}) for i in range(300)]  # 18 MiB of blobs under 1 MiB each
    data, digests = oci_archive(layers, compress="gzip")
    index = scan(data, sizes=[1 << 16])
    assert len(index.image().layers) == 300
    assert len(index.metadata) <= 4  # index.json, oci-layout, manifest, config: no layer captured


def test_platform_is_chosen_from_a_multi_platform_index():
    data, digests = oci_archive(platforms=["linux/amd64", "linux/arm64"])
    index = scan(data)
    assert index.image().manifest_digest == digests["manifest:linux/amd64"]
    arm = index.image("linux/arm64")
    assert arm.manifest_digest == digests["manifest:linux/arm64"] and arm.config_digest == digests["config:linux/arm64"]
    assert arm.index_digest == digests["index"] == arm.id_for("containerd")
    assert arm.id_for("classic") == digests["config:linux/arm64"]
    with pytest.raises(ArchiveError, match="no image for platform linux/s390x .*linux/amd64, linux/arm64"):
        index.image("linux/s390x")


def test_legacy_manifest_made_for_a_classic_engine_names_every_blob():
    data, digests = oci_archive(layers=[layer_tar({"a": b"1"}), layer_tar({"b": b"2"})])
    image = scan(data).image()
    [entry] = json.loads(image.legacy_manifest())
    assert entry["Config"] == "blobs/sha256/" + digests["config"].split(":")[1]
    assert entry["Layers"] == [layer.path for layer in image.layers]


@pytest.mark.parametrize(
    ("raw", "shape", "needle"),
    [
        (b'{"a": 1}', list, "must hold a JSON list, not object"),
        (b"[1]", dict, "must hold a JSON object, not list"),
        (b"null", dict, "not null"),
        (b"[" * 100_000 + b"]" * 100_000, list, "nests 100000 levels deep"),
        (b"{not json", dict, "is not valid JSON"),
    ],
)
def test_metadata_of_the_wrong_shape_is_refused_naming_the_file(raw, shape, needle):
    with pytest.raises(ArchiveError, match=needle) as caught:
        load_json(raw, name="index.json", shape=shape)
    assert str(caught.value).startswith("index.json")


@pytest.mark.parametrize(
    "manifest",
    [
        [{"Config": None, "Layers": []}],
        [{"Config": "c.json", "Layers": None}],
        [{"Config": "c.json", "Layers": "a/layer.tar"}],
        ["not an object"],
        {"Config": "c.json"},
    ],
)
def test_manifest_json_of_the_wrong_shape_is_refused(manifest):
    data, _ = docker_archive(manifest=manifest)
    with pytest.raises(ArchiveError, match="manifest.json"):
        scan(data).image()


def test_chain_ids_and_store_detection():
    diffs = ["sha256:" + c * 64 for c in "abc"]
    chains = chain_ids(diffs)
    assert chains[0] == diffs[0]
    assert chains[1] == "sha256:" + hashlib.sha256(f"{diffs[0]} {diffs[1]}".encode()).hexdigest()
    assert store_of({"DriverStatus": [["driver-type", "io.containerd.snapshotter.v1"]]}) == "containerd"
    assert store_of({"DriverStatus": None}) == "classic"


def test_an_index_digest_names_a_multi_platform_image_in_the_containerd_store():
    image = Image(config_digest="sha256:" + "c" * 64, manifest_digest="sha256:" + "m" * 64,
                  index_digest="sha256:" + "i" * 64, layers=(Layer(diff_id="sha256:" + "d" * 64, digest="sha256:" + "d" * 64),))
    assert image.id_for("containerd") == "sha256:" + "i" * 64
    assert image.ids() == {"sha256:" + c * 64 for c in "cmi"}
