"""NodeSource against real containerd 1.6 and 2.x, over unix and SSH: export an image as an OCI archive.

An image is loaded into namespace k8s.io with the NodeTarget, exported with
NodeSource, checked with artiload's own scanner (the identity must be the
node's digest), then imported into another namespace with ``ctr images
import`` and run with ``ctr run``; thin exports, multi-platform indexes,
corrupt content and big tar headers too. One test loads the archive into a
Docker engine with ``docker load``.
"""

from __future__ import annotations

import io
import json
import logging
import os
import secrets
import subprocess
import tarfile

import pytest

import harness_containerd as h
from airflow_provider_artiload.containerd import ContainerdClient
from airflow_provider_artiload.transfer.node.target import NodeTarget
from airflow_provider_artiload.transfer.node.source import NodeSource
from airflow_provider_artiload.oci.archive import ArchiveScanner
from airflow_provider_artiload.oci.tar import OCTAL_SIZE_LIMIT, member_header, parse_header
from airflow_provider_artiload.exceptions import ArchiveError, DigestMismatch, ImageNotFound
from airflow_provider_artiload.oci.image import OCI_INDEX, blob_path
from airflow_provider_artiload.transfer.plan import LoadOptions
from airflow_provider_artiload.transfer.sources import SourceInfo

log = logging.getLogger("test_node_export")
CHUNK = 256 * 1024


def chunks(data: bytes):
    for start in range(0, len(data), CHUNK):
        yield data[start : start + CHUNK]


def load(client: ContainerdClient, data: bytes, tag: str):
    return NodeTarget(client).load(chunks(data), SourceInfo(label=tag), LoadOptions(tags=(tag,)), log)


def export(source: NodeSource, path, omit: frozenset[str] = frozenset()) -> int:
    """Stream the export to ``path``; return the largest piece seen (memory stays flat)."""
    largest = 0
    with source.open(omit) as pieces, open(path, "wb") as out:
        for piece in pieces:
            largest = max(largest, len(piece))
            out.write(piece)
    return largest


def scan(path):
    scanner = ArchiveScanner()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            scanner.feed(block)
    return scanner.finish()


def members(path) -> list[str]:
    with tarfile.open(path) as tar:
        return tar.getnames()


def run_cat(containerd, name: str, path: str, namespace: str) -> str:
    return containerd.ctr("run", "--rm", "--runtime", "io.containerd.runc.v2", name, f"t-{secrets.token_hex(4)}",
                          "/bin/cat", path, namespace=namespace).stdout


def other_client(containerd, namespace: str) -> ContainerdClient:
    from airflow_provider_artiload.endpoints import parse_endpoint
    from airflow_provider_artiload.transport import open_dialer

    dialer = open_dialer(parse_endpoint(f"unix://{containerd.socket_path}", kind="engine"))
    return ContainerdClient(lambda: dialer.dial(timeout=15), namespace=namespace, where=containerd.socket_path)


@pytest.fixture
def base():
    return h.busybox_layer({"etc/base": secrets.token_bytes(16)})


def test_export_imports_and_runs_elsewhere(containerd, any_client, tmp_path, base):
    client, _ = any_client
    tag = secrets.token_hex(4)
    image = h.make_image([base, h.layer_tar({"hello.txt": f"export {tag}\n".encode(), "big.bin": os.urandom(3 << 20)})],
                         gzipped=[True, False])
    archive = tmp_path / "in.tar"
    h.write_oci_layout(image, archive, f"docker.io/library/exp:{tag}")
    load(client, archive.read_bytes(), f"exp:{tag}")

    source = NodeSource(client, f"exp:{tag}")
    info = source.info()
    assert info.label == f"exp:{tag} on {client.where}"
    assert info.expected_ids == {image.manifest_digest} and info.ids["containerd"] == image.manifest_digest
    assert info.diff_ids == [d for _, d in image.layers] and info.placeable and info.has_legacy_manifest
    assert info.size == sum(len(b) for b in image.blobs.values())
    out = tmp_path / "out.tar"
    largest = export(source, out)
    assert largest <= (1 << 20) + 2048, largest  # containerd's ~1 MiB messages, never a whole blob

    names = members(out)
    first_layer = min(names.index(blob_path(d["digest"])) for d, _ in image.layers)
    metadata = ["oci-layout", "index.json", "manifest.json", blob_path(image.manifest_digest),
                blob_path(image.manifest["config"]["digest"])]
    assert all(names.index(m) < first_layer for m in metadata), names
    index = scan(out)
    scanned = index.image()
    assert scanned.id_for("containerd") == client.images.get(f"docker.io/library/exp:{tag}").target.digest
    assert scanned.repo_tags == (f"docker.io/library/exp:{tag}",) and scanned.config_digest == image.manifest["config"]["digest"]
    legacy = json.loads(index.metadata["manifest.json"])
    assert legacy[0]["Layers"] == [blob_path(d["digest"]) for d, _ in image.layers]
    ref = json.loads(index.metadata["index.json"])["manifests"][0]["annotations"]
    assert ref == {"io.containerd.image.name": f"docker.io/library/exp:{tag}", "org.opencontainers.image.ref.name": tag}
    assert out.stat().st_size - info.size < 16 * 1024  # only tar framing and the layout files on top

    ns = f"other-{tag}"
    containerd.ctr("images", "import", str(out), namespace=ns)
    assert f"docker.io/library/exp:{tag}" in containerd.ctr("images", "ls", "-q", namespace=ns).stdout
    assert run_cat(containerd, f"docker.io/library/exp:{tag}", "/hello.txt", ns) == f"export {tag}\n"
    print(f"\nexported {out.stat().st_size} bytes ({info.size} blob bytes), largest piece {largest}")


def test_thin_export_loads_where_the_base_is(containerd, unix_client, tmp_path, base):
    client, _ = unix_client
    tag = secrets.token_hex(4)
    first = h.make_image([base], gzipped=[True])
    second = h.make_image([base, h.layer_tar({"t.txt": f"thin {tag}\n".encode()})], gzipped=[True, False])
    for img, name in ((first, f"thin-base:{tag}"), (second, f"thin:{tag}")):
        path = tmp_path / f"{secrets.token_hex(4)}.tar"
        h.write_oci_layout(img, path, f"docker.io/library/{name}")
        load(client, path.read_bytes(), name)
    source = NodeSource(client, f"thin:{tag}")
    base_blob = blob_path(second.layers[0][0]["digest"])
    assert source.info().layer_names[0] == base_blob
    out = tmp_path / "thin.tar"
    export(source, out, frozenset({base_blob}))
    assert base_blob not in members(out)
    scan(out).check_complete(frozenset({base_blob}))
    assert out.stat().st_size < len(base)

    # "#0" (a layer position, as the planner names layers of a stream) leaves out the same blob
    export(source, tmp_path / "thin2.tar", frozenset({"#0"}))
    assert (tmp_path / "thin2.tar").read_bytes() == out.read_bytes()

    ns = f"thin-{tag}"
    other = other_client(containerd, ns)
    try:
        path = tmp_path / "base.tar"
        h.write_oci_layout(first, path, f"docker.io/library/thin-base:{tag}")
        load(other, path.read_bytes(), f"thin-base:{tag}")
        outcome = NodeTarget(other).load(chunks(out.read_bytes()), SourceInfo(label="thin"), LoadOptions(), log)
        assert outcome.image_id == second.manifest_digest
        assert run_cat(containerd, f"docker.io/library/thin:{tag}", "/t.txt", ns) == f"thin {tag}\n"
    finally:
        other.close()


def _platform_image(layers: list[bytes], arch: str) -> h.TestImage:
    """make_image, with the config naming ``arch``."""
    image = h.make_image(layers)
    config = {**image.config, "architecture": arch}
    raw = json.dumps(config, separators=(",", ":")).encode()
    blobs = {d: b for d, b in image.blobs.items() if d not in (image.manifest_digest, image.manifest["config"]["digest"])}
    blobs[h.sha256(raw)] = raw
    manifest = {**image.manifest, "config": {**image.manifest["config"], "digest": h.sha256(raw), "size": len(raw)}}
    made = h.TestImage(config, manifest, blobs, image.layers)
    blobs[made.manifest_digest] = json.dumps(manifest, separators=(",", ":")).encode()
    return made


def _index_archive(path, images: dict[str, h.TestImage], name: str) -> tuple[str, dict]:
    """An OCI layout whose index.json names one index blob over ``images`` (platform -> image)."""
    entries = [{**img.manifest_descriptor, "platform": {"os": "linux", "architecture": arch}} for arch, img in images.items()]
    raw = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}, separators=(",", ":")).encode()
    digest = h.sha256(raw)
    top = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_INDEX, "digest": digest, "size": len(raw), "annotations": {"io.containerd.image.name": name}}]}
    blobs = {digest: raw}
    for img in images.values():
        blobs.update(img.blobs)
    with tarfile.open(path, "w") as tar:
        files = {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}', "index.json": json.dumps(top).encode(),
                 **{blob_path(d): b for d, b in blobs.items()}}
        for member, data in files.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return digest, blobs


def test_multi_platform_index_exports_one_platform(containerd, any_client, tmp_path, base):
    client, _ = any_client
    tag = secrets.token_hex(4)
    here = h._arch()
    native = _platform_image([base, h.layer_tar({"p.txt": f"{here} {tag}\n".encode()})], here)
    foreign_arch = "arm64" if here != "arm64" else "amd64"
    foreign = _platform_image([h.layer_tar({"p.txt": f"{foreign_arch} {tag}\n".encode()})], foreign_arch)
    name = f"docker.io/library/multi:{tag}"
    index_digest, _ = _index_archive(tmp_path / "in.tar", {here: native, foreign_arch: foreign}, name)
    outcome = NodeTarget(client, platform=f"linux/{here}").load(
        chunks((tmp_path / "in.tar").read_bytes()), SourceInfo(label="multi"), LoadOptions(), log)
    assert outcome.image_id == index_digest

    out = tmp_path / "out.tar"
    source = NodeSource(client, name, platform=f"linux/{here}")
    assert source.info().expected_ids == {index_digest}
    export(source, out)
    names = set(members(out))
    assert blob_path(index_digest) in names and blob_path(native.manifest_digest) in names
    assert blob_path(foreign.manifest_digest) not in names and blob_path(foreign.layers[0][0]["digest"]) not in names
    scanned = scan(out).image(f"linux/{here}")
    assert scanned.id_for("containerd") == index_digest and scanned.manifest_digest == native.manifest_digest

    # the index's GC labels keep the other platform's manifest, not its config (gone once GC has run):
    # then that platform is refused, naming the missing blob
    try:
        other = NodeSource(client, name, platform=f"linux/{foreign_arch}").info()
    except ArchiveError as exc:
        assert f"lacks blob {foreign.manifest['config']['digest']}" in str(exc)
    else:
        assert other.image.manifest_digest == foreign.manifest_digest and other.expected_ids == {index_digest}

    ns = f"multi-{tag}"
    containerd.ctr("images", "import", str(out), namespace=ns)
    assert run_cat(containerd, name, "/p.txt", ns) == f"{here} {tag}\n"


def test_corrupt_content_is_refused_naming_blob_and_node(containerd, unix_client, tmp_path):
    client, _ = unix_client
    tag = secrets.token_hex(4)
    layer = h.layer_tar({"x.bin": os.urandom(3 << 20)})
    image = h.make_image([layer])
    path = tmp_path / "in.tar"
    h.write_oci_layout(image, path, f"docker.io/library/rot:{tag}")
    load(client, path.read_bytes(), f"rot:{tag}")
    digest = image.layers[0][0]["digest"]
    on_disk = os.path.join(containerd.workdir, "root", "io.containerd.content.v1.content", "blobs", "sha256", digest.split(":")[1])
    with open(on_disk, "r+b") as f:  # bit rot in the node's content store
        f.seek(2 << 20)
        byte = f.read(1)
        f.seek(2 << 20)
        f.write(bytes([byte[0] ^ 0xFF]))
    received = 0
    with pytest.raises(DigestMismatch) as caught:
        with NodeSource(client, f"rot:{tag}").open() as pieces:
            for piece in pieces:
                received += len(piece)
    assert digest in str(caught.value) and containerd.socket_path in str(caught.value)
    assert received < len(layer) + 8192  # the blob's last piece was withheld: no complete member was passed on


def test_missing_image(containerd, unix_client):
    client, _ = unix_client
    with pytest.raises(ImageNotFound, match="docker.io/library/no-such-image:1"):
        NodeSource(client, "no-such-image:1").info()


@pytest.mark.parametrize("size", [0, 1, OCTAL_SIZE_LIMIT - 1, OCTAL_SIZE_LIMIT, 20 << 30])
def test_member_header_sizes(size):
    block = member_header("blobs/sha256/" + "a" * 64, size)
    assert parse_header(block, offset=0).size == size
    assert tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape").size == size


def test_export_loads_into_docker(engine, containerd, unix_client, tmp_path, base):
    """Classic store: manifest.json; containerd store: the OCI layout."""
    client, _ = unix_client
    tag = secrets.token_hex(4)
    image = h.make_image([base, h.layer_tar({"d.txt": f"docker {tag}\n".encode()})], gzipped=[True, False])
    path = tmp_path / "in.tar"
    h.write_oci_layout(image, path, f"docker.io/library/to-docker:{tag}")
    load(client, path.read_bytes(), f"to-docker:{tag}")
    out = tmp_path / "out.tar"
    export(NodeSource(client, f"to-docker:{tag}"), out)
    docker = ["docker", "-H", engine.unix_url]
    loaded = subprocess.run([*docker, "load", "-i", str(out)], capture_output=True, text=True, timeout=120)
    assert loaded.returncode == 0, loaded.stderr
    ran = subprocess.run([*docker, "run", "--rm", "--network", "none", f"to-docker:{tag}", "cat", "/d.txt"],
                         capture_output=True, text=True, timeout=120)
    assert ran.stdout == f"docker {tag}\n", ran.stderr
    subprocess.run([*docker, "rmi", "-f", f"to-docker:{tag}"], capture_output=True, timeout=60)


def test_converted_legacy_image_exports(containerd, unix_client, tmp_path, base):
    """A legacy docker-archive loaded into a node gets a Docker schema-2 manifest: it exports and imports as well."""
    from tests.unit.archives import docker_archive

    client, _ = unix_client
    tag = secrets.token_hex(4)
    data, config_digest = docker_archive([base, h.layer_tar({"l.txt": f"legacy {tag}\n".encode()})], tags=[f"old:{tag}"])
    outcome = NodeTarget(client).load(chunks(data), SourceInfo(label="legacy"), LoadOptions(), log)
    out = tmp_path / "out.tar"
    source = NodeSource(client, f"old:{tag}")
    assert source.info().image.config_digest == config_digest
    export(source, out)
    assert scan(out).image().id_for("containerd") == outcome.image_id
    ns = f"old-{tag}"
    containerd.ctr("images", "import", str(out), namespace=ns)
    assert run_cat(containerd, f"docker.io/library/old:{tag}", "/l.txt", ns) == f"legacy {tag}\n"
