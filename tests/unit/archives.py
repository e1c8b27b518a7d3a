"""Small docker-archives built in memory for unit tests (real ones come from the engine in integration tests)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile


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
