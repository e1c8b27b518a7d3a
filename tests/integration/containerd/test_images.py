"""Image records and unpacking into a real containerd, checked with its own ctr and by running a container."""

from __future__ import annotations

import json
import secrets

import pytest

import harness_containerd as h
from airflow_provider_artiload.containerd import ContainerdClient, Descriptor, LayerBlob, Unpacker, manifest_gc_labels
from airflow_provider_artiload.exceptions import DigestMismatch


def write_image(client: ContainerdClient, image: h.TestImage) -> int:
    """Every blob of ``image`` (manifest labelled for GC), as a load would; return the bytes sent."""
    config = image.manifest["config"]["digest"]
    gc = manifest_gc_labels(config, [d["digest"] for d in image.manifest["layers"]])
    sent = 0
    for digest, data in image.blobs.items():
        labels = gc if digest == image.manifest_digest else {}
        sent += client.content.write(f"test-{digest}", digest, len(data), lambda off, data=data: [data[off:]], labels)
    return sent


def unpacker(client: ContainerdClient) -> Unpacker:
    return Unpacker(client.content, client.snapshots, client.diff, client.leases)


def descriptor(image: h.TestImage) -> Descriptor:
    d = image.manifest_descriptor
    return Descriptor(d["mediaType"], d["digest"], d["size"])


@pytest.mark.parametrize("compression", [[False, True], [True, False]], ids=["tar+gzip", "gzip+tar"])
def test_image_from_blobs_unpacks_and_runs(containerd, any_client, compression):
    client, _ = any_client
    tag = secrets.token_hex(4)
    base = h.busybox_layer({"etc/variant": tag.encode()})
    top = h.layer_tar({"hello.txt": f"hello from {tag}\n".encode()})
    image = h.make_image([base, top], gzipped=compression)
    name = f"docker.io/library/artiload-test:{tag}"
    with client.leases.lease():
        assert write_image(client, image) == sum(len(b) for b in image.blobs.values())
        client.images.create(name, descriptor(image), {"io.cri-containerd.image": "managed"})
        result = unpacker(client).unpack_image(client.images.get(name))
    assert (result.applied, result.skipped) == (2, 0)
    assert client.images.get(name).target.digest == image.manifest_digest
    assert name in containerd.ctr("images", "ls", "-q").stdout
    snapshots = containerd.ctr("snapshots", "ls").stdout
    assert f"{result.chain_id} " in snapshots and "Committed" in snapshots and "extract-" not in snapshots
    config = client.content.info(image.manifest["config"]["digest"])
    assert config.labels["containerd.io/gc.ref.snapshot.overlayfs"] == result.chain_id
    layer = client.content.info(image.layers[0][0]["digest"])
    assert layer.labels["containerd.io/uncompressed"] == image.layers[0][1]

    out = containerd.ctr("run", "--rm", "--runtime", "io.containerd.runc.v2", name, f"t-{tag}",
                         "sh", "-c", "echo hello; cat /hello.txt").stdout
    assert out == f"hello\nhello from {tag}\n"

    again = unpacker(client).unpack_image(client.images.get(name))  # everything is there: nothing applied
    assert (again.applied, again.skipped, again.chain_id) == (0, 2, result.chain_id)
    assert client.images.delete(name) and client.images.get(name) is None


def test_a_wrong_diff_id_fails_the_unpack_and_leaves_no_snapshot(containerd, unix_client):
    client, _ = unix_client
    image = h.make_image([h.layer_tar({"x": secrets.token_bytes(64)})])
    desc, _ = image.layers[0]
    wrong = "sha256:" + "0" * 64
    with client.leases.lease():
        write_image(client, image)
        with pytest.raises(DigestMismatch, match="diff ID"):
            unpacker(client).unpack([LayerBlob(desc["digest"], desc["mediaType"], desc["size"], wrong)])
    snapshots = containerd.ctr("snapshots", "ls").stdout
    assert wrong not in snapshots and "extract-" not in snapshots


def test_image_records_create_update_list_delete(containerd, unix_client):
    client, _ = unix_client
    a, b = (h.make_image([h.layer_tar({"f": secrets.token_bytes(32)})]) for _ in range(2))
    name = f"docker.io/library/artiload-records:{secrets.token_hex(4)}"
    with client.leases.lease():
        write_image(client, a)
        write_image(client, b)
        created = client.images.create(name, descriptor(a), {"k": "1"})
        assert created.target.digest == a.manifest_digest and created.labels == {"k": "1"}
        with pytest.raises(Exception, match="already exists"):
            client.images.create(name, descriptor(a))
        moved = client.images.set(name, descriptor(b), {"k": "2"})
        assert moved.target.digest == b.manifest_digest and moved.labels == {"k": "2"}
        assert name in [i.name for i in client.images.list()]
        assert json.loads(b"".join(client.content.read(b.manifest_digest)))["layers"]
        assert client.images.delete(name) and not client.images.delete(name)
