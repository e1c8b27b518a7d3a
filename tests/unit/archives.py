"""Small docker-archives built in memory for unit tests (real ones come from the engine in integration tests)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from typing import Any

from airflow_provider_artiload.oci.archive import ArchiveIndex, ArchiveScanner


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def layer_tar(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in files.items():
            _add(tar, name, data)
    return buffer.getvalue()


def docker_archive(
    layers: list[bytes] | None = None,
    *,
    tags: list[str] | None = None,
    manifest: object | None = None,
    extra: dict[str, bytes] | None = None,
    fmt: int = tarfile.USTAR_FORMAT,
) -> tuple[bytes, str]:
    """(archive bytes, image id) in the classic ``docker save`` layout."""
    layers = layers if layers is not None else [layer_tar({"hello.txt": b"hello\n"})]
    diff_ids = ["sha256:" + hashlib.sha256(layer).hexdigest() for layer in layers]
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    image_hex = hashlib.sha256(config).hexdigest()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt) as tar:
        names = []
        for index, layer in enumerate(layers):
            name = f"{index:064x}/layer.tar"
            _add(tar, name, layer)
            names.append(name)
        _add(tar, f"{image_hex}.json", config)
        body = manifest if manifest is not None else [{"Config": f"{image_hex}.json", "RepoTags": tags or [], "Layers": names}]
        _add(tar, "manifest.json", json.dumps(body).encode())
        for name, data in (extra or {}).items():
            _add(tar, name, data)
    return buffer.getvalue(), "sha256:" + image_hex


def chunked(data: bytes, sizes: list[int]) -> list[bytes]:
    out, start, i = [], 0, 0
    while start < len(data):
        size = sizes[i % len(sizes)]
        out.append(data[start : start + size])
        start += size
        i += 1
    return out


def scan(data: bytes, sizes: tuple[int, ...] | list[int] = (1, 511, 513, 4096, 7), **kwargs: Any) -> ArchiveIndex:
    """Feed ``data`` to an ArchiveScanner in uneven chunks (across header and block edges); its index."""
    scanner = ArchiveScanner(**kwargs)
    for piece in chunked(data, list(sizes)):
        scanner.feed(piece)
    return scanner.finish()


def oci_archive(
    layers: list[bytes] | None = None,
    *,
    compress: str | None = "gzip",
    legacy_manifest: bool = False,
    tags: list[str] | None = None,
    platforms: list[str] | None = None,
) -> tuple[bytes, dict[str, str]]:
    """(archive bytes, digests) in an OCI image layout, as BuildKit's oci exporter or Docker 25+ write it.

    ``compress``: None, "gzip" (multi-member safe) or "zstd". ``platforms``:
    several ``os/arch`` images behind a nested index. Digests: ``config``,
    ``manifest`` (the first platform's) and, with platforms, ``index``.
    """
    import gzip

    import zstandard

    layers = layers if layers is not None else [layer_tar({"hello.txt": b"hello\n"})]
    blobs: dict[str, bytes] = {}

    def put(data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return digest

    manifests, digests = [], {}
    for number, platform in enumerate(platforms or ["linux/amd64"]):
        os_name, arch = platform.split("/")[:2]
        diff_ids = ["sha256:" + hashlib.sha256(layer).hexdigest() for layer in layers]
        layer_descs = []
        for layer in layers:
            blob = {None: lambda b: b, "gzip": lambda b: gzip.compress(b, mtime=0),
                    "zstd": lambda b: zstandard.ZstdCompressor().compress(b)}[compress](layer)
            media = "application/vnd.oci.image.layer.v1.tar" + {None: "", "gzip": "+gzip", "zstd": "+zstd"}[compress]
            layer_descs.append({"mediaType": media, "digest": put(blob), "size": len(blob)})
        config = json.dumps({"architecture": arch, "os": os_name, "config": {"Env": [f"N={number}"]},
                             "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
        config_digest = put(config)
        manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                               "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                          "digest": config_digest, "size": len(config)},
                               "layers": layer_descs}).encode()
        manifest_digest = put(manifest)
        manifests.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest,
                          "size": len(manifest), "platform": {"os": os_name, "architecture": arch}})
        digests.setdefault("config", config_digest)
        digests.setdefault("manifest", manifest_digest)
        digests[f"manifest:{platform}"] = manifest_digest
        digests[f"config:{platform}"] = config_digest
    top = manifests
    if platforms:
        nested = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                             "manifests": manifests}).encode()
        digests["index"] = put(nested)
        top = [{"mediaType": "application/vnd.oci.image.index.v1+json", "digest": digests["index"], "size": len(nested)}]
    for entry, tag in zip(top, tags or []):
        entry["annotations"] = {"io.containerd.image.name": tag}
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": top}).encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for digest in sorted(blobs):
            _add(tar, "blobs/sha256/" + digest.split(":")[1], blobs[digest])
        _add(tar, "index.json", index)
        _add(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        if legacy_manifest:
            legacy = [{"Config": "blobs/sha256/" + digests["config"].split(":")[1], "RepoTags": tags or [],
                       "Layers": ["blobs/sha256/" + d["digest"].split(":")[1] for d in layer_descs]}]
            _add(tar, "manifest.json", json.dumps(legacy).encode())
    return buffer.getvalue(), digests
