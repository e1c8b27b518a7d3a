"""NodeTarget against real containerd 1.6 and 2.x, over unix and SSH: full, delta, skip, resume, bad archives, concurrency.

Archives are built without a registry: OCI layouts with harness_containerd,
legacy docker-archives with tests/unit/archives.docker_archive; the base
layer is a static busybox, so ``ctr run`` proves the image is usable.
"""

from __future__ import annotations

import logging
import os
import secrets
from concurrent.futures import ThreadPoolExecutor

import pytest

import harness_containerd as h
from airflow_provider_artiload.transfer.node.target import NodeTarget
from airflow_provider_artiload.exceptions import ArchiveError, ArtiloadError
from airflow_provider_artiload.transfer.plan import LoadOptions, Send, Skip
from airflow_provider_artiload.transfer.sources import FileSource, SourceInfo
from tests.unit.archives import docker_archive

log = logging.getLogger("test_node_load")
CHUNK = 256 * 1024


def chunks(data: bytes, on_chunk=None):
    for start in range(0, len(data), CHUNK):
        if on_chunk:
            on_chunk(start)
        yield data[start : start + CHUNK]


def oci_bytes(tmp_path, image: h.TestImage, name: str) -> bytes:
    path = tmp_path / f"{secrets.token_hex(4)}.tar"
    h.write_oci_layout(image, path, name)
    return path.read_bytes()


def run_cat(containerd, name: str, path: str) -> str:
    return containerd.ctr("run", "--rm", "--runtime", "io.containerd.runc.v2", name, f"t-{secrets.token_hex(4)}",
                          "/bin/cat", path).stdout


def leases(containerd) -> str:
    return containerd.ctr("leases", "ls").stdout


def images(containerd) -> str:
    return containerd.ctr("images", "ls", "-q").stdout


def no_artiload_lease(containerd) -> bool:
    return "artiload-" not in leases(containerd)


@pytest.fixture
def base():
    return h.busybox_layer({"etc/base": secrets.token_bytes(16)})  # unique: each test starts without it


def test_oci_full_then_delta_then_skip(containerd, any_client, tmp_path, base):
    client, dials = any_client
    loader = NodeTarget(client)
    tag = secrets.token_hex(4)
    first = h.make_image([base, h.layer_tar({"hello.txt": f"one {tag}\n".encode()})], gzipped=[True, False])
    data = oci_bytes(tmp_path, first, f"docker.io/library/artiload-node:{tag}")
    name = f"docker.io/library/node-a:{tag}"
    info = SourceInfo(label="oci one")
    assert isinstance(loader.plan(info, LoadOptions(tags=(f"node-a:{tag}",)), log), Send)
    out = loader.load(chunks(data), info, LoadOptions(tags=(f"node-a:{tag}",)), log)
    blob_bytes = sum(len(b) for b in first.blobs.values())
    print(f"\nfull: {out.bytes_sent} bytes sent of {blob_bytes} blob bytes, {dials.bytes_out} on the wire, {out.seconds}s")
    assert out.image_id == first.manifest_digest and out.mode == "full" and out.bytes_sent == blob_bytes
    assert (out.layers_sent, out.layers_skipped) == (2, 0)
    assert name in images(containerd) and f"docker.io/library/artiload-node:{tag}" in images(containerd)
    assert run_cat(containerd, name, "/hello.txt") == f"one {tag}\n"
    assert no_artiload_lease(containerd)
    labels = client.images.get(name).labels
    assert labels.get("io.cri-containerd.image") == "managed"

    # delta: same base, new top layer: only the new layer, its config and manifest are sent
    second = h.make_image([base, h.layer_tar({"hello.txt": f"two {tag}\n".encode()})], gzipped=[True, False])
    data2 = oci_bytes(tmp_path, second, f"docker.io/library/artiload-node:{tag}-2")
    before = dials.bytes_out
    out2 = loader.load(chunks(data2), SourceInfo(label="oci two"), LoadOptions(tags=(f"node-a:{tag}-2",)), log)
    new = sum(len(b) for d, b in second.blobs.items() if d not in first.blobs)
    wire = dials.bytes_out - before
    print(f"delta: {out2.bytes_sent} bytes sent, changed blobs {new}, {wire} on the wire (base {len(base)})")
    assert out2.mode == "delta" and out2.bytes_sent == new and (out2.layers_sent, out2.layers_skipped) == (1, 1)
    assert wire < 1.1 * new + 64 * 1024
    assert run_cat(containerd, f"{name}-2", "/hello.txt") == f"two {tag}\n"

    # repeat: the plan skips, the new tag is applied
    again = SourceInfo(label="oci one again", ids={"containerd": first.manifest_digest})
    plan = loader.plan(again, LoadOptions(tags=(f"node-a:{tag}-again",)), log)
    assert isinstance(plan, Skip) and plan.image_id == first.manifest_digest and plan.target is loader
    loader.tag(plan.image_id, f"node-a:{tag}-again")
    assert client.images.get(f"{name}-again").target.digest == first.manifest_digest


def test_legacy_docker_archive_is_converted(containerd, any_client, tmp_path, base):
    client, _ = any_client
    tag = secrets.token_hex(4)
    top = h.layer_tar({"hello.txt": f"legacy {tag}\n".encode()})
    data, config_digest = docker_archive([base, top], tags=[f"legacy:{tag}"])
    path = tmp_path / "legacy.tar"
    path.write_bytes(data)
    info = FileSource(str(path)).info()  # indexed: the loader knows every digest up front
    assert info.image is not None and info.image.manifest_digest is None
    loader = NodeTarget(client)
    out = loader.load(chunks(data), info, LoadOptions(), log)
    assert out.image_id == info.image.id_for("containerd") and out.mode in ("full", "delta")
    assert client.images.get(f"docker.io/library/legacy:{tag}").target.digest == out.image_id
    assert run_cat(containerd, f"docker.io/library/legacy:{tag}", "/hello.txt") == f"legacy {tag}\n"
    assert client.content.info(config_digest) is not None and no_artiload_lease(containerd)
    # the same archive as a bare stream (no index, no diff IDs): digests learned as the layers pass
    other, _ = docker_archive([base, h.layer_tar({"hello.txt": f"stream {tag}\n".encode()})], tags=[f"legacy:{tag}-s"])
    out2 = loader.load(chunks(other), SourceInfo(label="legacy stream"), LoadOptions(), log)
    assert run_cat(containerd, f"docker.io/library/legacy:{tag}-s", "/hello.txt") == f"stream {tag}\n"
    assert out2.layers_sent >= 1


def test_a_cut_load_resumes_on_retry(containerd, ssh_client, tmp_path, base):
    client, dials = ssh_client
    tag = secrets.token_hex(4)
    big = h.layer_tar({"big.bin": os.urandom(64 << 20)})
    image = h.make_image([big])
    data = oci_bytes(tmp_path, image, f"docker.io/library/resume:{tag}")
    loader = NodeTarget(client)
    half = len(data) // 2
    cut = {"done": False}

    def maybe_cut(position: int) -> None:
        if position >= half and not cut["done"]:
            cut["done"] = True
            dials.cut()

    with pytest.raises(ArtiloadError):
        loader.load(chunks(data, maybe_cut), SourceInfo(label="cut"), LoadOptions(), log)
    assert f"resume:{tag}" not in images(containerd)
    assert no_artiload_lease(containerd)
    out = loader.load(chunks(data), SourceInfo(label="retry"), LoadOptions(), log)
    print(f"\nretry after a cut at 50%: {out.bytes_sent} of {len(data)} bytes ({out.bytes_sent / len(data):.2f}x)")
    assert out.bytes_sent < 0.6 * len(data)
    assert client.images.get(f"docker.io/library/resume:{tag}").target.digest == image.manifest_digest


def _corrupt_layer(data: bytes, image: h.TestImage) -> bytes:
    layer = image.layers[0][0]["digest"]
    blob = image.blobs[layer]
    at = data.index(blob[2048:2100]) + 10
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]


@pytest.mark.parametrize("damage", ["corrupt layer", "truncated", "wrong config digest", "legacy corrupt layer"])
def test_bad_archives_leave_nothing(containerd, unix_client, tmp_path, damage):
    client, _ = unix_client
    tag = secrets.token_hex(4)
    layer = h.layer_tar({"x.bin": os.urandom(64 << 10)})
    image = h.make_image([layer])
    name = f"docker.io/library/bad:{tag}"
    if damage == "legacy corrupt layer":
        good, _ = docker_archive([layer], tags=[f"bad:{tag}"])
        at = good.index(layer[4096:4200]) + 5
        data = good[:at] + bytes([good[at] ^ 0xFF]) + good[at + 1 :]
    elif damage == "wrong config digest":
        config = image.manifest["config"]["digest"].split(":")[1]
        data = oci_bytes(tmp_path, image, name)
        raw = image.blobs[image.manifest["config"]["digest"]]
        data = data.replace(raw, raw.replace(b'"os":"linux"', b'"os":"linuz"'))
        assert config
    else:
        data = oci_bytes(tmp_path, image, name)
        data = _corrupt_layer(data, image) if damage == "corrupt layer" else data[: len(data) // 2]
    with pytest.raises(ArchiveError):
        NodeTarget(client).load(chunks(data), SourceInfo(label=damage), LoadOptions(), log)
    assert f"bad:{tag}" not in images(containerd) and no_artiload_lease(containerd)


def test_eight_concurrent_loads_into_one_node(containerd, unix_client, tmp_path, base):
    client, _ = unix_client
    tag = secrets.token_hex(4)
    archives = []
    for i in range(8):
        image = h.make_image([base, h.layer_tar({"n.txt": f"{i} {tag}\n".encode()})], gzipped=[True, False])
        archives.append((oci_bytes(tmp_path, image, f"docker.io/library/many:{tag}-{i}"), image))
    loader = NodeTarget(client)

    def load(i: int):
        return loader.load(chunks(archives[i][0]), SourceInfo(label=f"many {i}"), LoadOptions(), log)

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(load, range(8)))
    assert [o.image_id for o in outcomes] == [image.manifest_digest for _, image in archives]
    for i in (0, 7):
        assert run_cat(containerd, f"docker.io/library/many:{tag}-{i}", "/n.txt") == f"{i} {tag}\n"
    assert no_artiload_lease(containerd)


def test_as_a_fanout_consumer_next_to_another(containerd, unix_client, tmp_path, base):
    """What transfer.load will do: one read of the archive, the node as one of several consumers."""
    from airflow_provider_artiload.transfer.fanout import Fanout

    client, _ = unix_client
    tag = secrets.token_hex(4)
    image = h.make_image([base, h.layer_tar({"f.txt": tag.encode()})], gzipped=[True, False])
    data = oci_bytes(tmp_path, image, f"docker.io/library/fan:{tag}")
    loader, info, options = NodeTarget(client), SourceInfo(label="fan"), LoadOptions(tags=(f"fan:{tag}-t",))
    other = []
    results = Fanout(chunks(data)).run([lambda c: loader.load(c, info, options, log), lambda c: other.append(sum(map(len, c)))])
    assert results[0].image_id == image.manifest_digest and other == [len(data)]
    assert run_cat(containerd, f"docker.io/library/fan:{tag}-t", "/f.txt") == tag


def test_hook_test_connection_reports_version_and_namespace(containerd):
    from types import SimpleNamespace

    from airflow_provider_artiload.hooks.containerd import ContainerdHook

    def hook(namespace: str) -> ContainerdHook:
        conn = SimpleNamespace(conn_id="node", host=f"unix://{containerd.socket_path}", port=None, login=None,
                               password=None, extra_dejson={"namespace": namespace})
        made = ContainerdHook("node")
        made.get_connection = lambda conn_id: conn  # type: ignore[method-assign]
        return made

    good = hook("k8s.io")
    with good.client.leases.lease():  # containerd creates a namespace on its first write
        pass
    ok, message = good.test_connection()
    assert ok and containerd.version in message and "k8s.io" in message, message
    good.close()
    missing = hook("no-such-ns")
    ok, message = missing.test_connection()
    assert not ok and "namespace no-such-ns does not exist" in message
    missing.close()
