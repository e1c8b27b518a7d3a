"""After the stream: make the image whole on the node, then name it. Runs inside the load's lease.

Order matters for "complete or absent": every blob is checked present, the
manifest (made from ``manifest.json`` for a legacy archive, with the bytes
containerd's importer makes) gets its GC labels, the layers are unpacked
into the snapshotter, and only then are image records created. A failure
before the records leaves none; a failure among them removes those this
load created.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from airflow_provider_artiload.containerd import content, unpack
from airflow_provider_artiload.containerd.images import Descriptor
from airflow_provider_artiload.transfer.node.receive import Received
from airflow_provider_artiload.oci.archive import ArchiveIndex
from airflow_provider_artiload.exceptions import ArchiveError
from airflow_provider_artiload.oci.image import DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, Image, blob_path, digest_of
from airflow_provider_artiload.oci.verify import BLOB, DIFF_ID, require_digest

if TYPE_CHECKING:
    from airflow_provider_artiload.containerd.client import ContainerdClient

CRI_LABELS = {"io.cri-containerd.image": "managed"}  # what the CRI plugin puts on the images it pulls


def complete(
    client: ContainerdClient, image: Image, index: ArchiveIndex, got: Received, *, snapshotter: str
) -> tuple[Descriptor, int]:
    """Check, label and unpack the image; return the image records' target and the manifest bytes sent."""
    where = f"containerd at {client.where}"
    _check_layers(image, index, got)
    sizes = {d: _size(client, d, got, what, where) for d, what in _blobs(image)}
    sent = 0
    if image.manifest_digest is None:  # legacy docker-archive: convert, as containerd's importer would
        if any(layer.size is None for layer in image.layers) or image.config_size is None:
            image = _with_sizes(image, sizes)
        raw = image.converted_manifest()
        digest = digest_of(raw)
        labels = content.manifest_gc_labels(image.config_digest, [layer.digest for layer in image.layers])
        sent = client.content.write(f"artiload-{digest}", digest, len(raw), lambda off: [raw[off:]], labels)
        target = Descriptor(DOCKER_MANIFEST, digest, len(raw))
        media = [json.loads(raw)["layers"][i]["mediaType"] for i in range(len(image.layers))]
    else:
        manifest_raw = index.metadata.get(blob_path(image.manifest_digest), b"")
        labels = content.manifest_gc_labels(image.config_digest, [layer.digest for layer in image.layers])
        client.content.set_labels(image.manifest_digest, labels)
        target = Descriptor(_media(manifest_raw, OCI_MANIFEST), image.manifest_digest, sizes[image.manifest_digest])
        if image.index_digest:
            index_raw = index.metadata.get(blob_path(image.index_digest), b"")
            children = [m.get("digest") for m in json.loads(index_raw or b"{}").get("manifests", []) if isinstance(m, dict)]
            client.content.set_labels(image.index_digest, {f"containerd.io/gc.ref.content.m.{i}": d for i, d in enumerate(children) if d})
            _keep_other_platforms(client, index, [d for d in children if d and d != image.manifest_digest])
            target = Descriptor(_media(index_raw, OCI_INDEX), image.index_digest, sizes[image.index_digest])
        media = [layer.media_type for layer in image.layers]
    require_digest(target.digest, image.id_for("containerd"), what="the image's target", claim="the archive says the image is",
                   where=where, verdict="a different image")
    layers = [
        unpack.LayerBlob(layer.digest, media[i], sizes[layer.digest], layer.diff_id) for i, layer in enumerate(image.layers)
    ]
    if layers:
        unpacker = unpack.Unpacker(client.content, client.snapshots, client.diff, client.leases)
        unpacker.unpack(layers, config_digest=image.config_digest, snapshotter=snapshotter)
    return target, sent


def name_image(client: ContainerdClient, names: Sequence[str], target: Descriptor,
               labels: Mapping[str, str] = CRI_LABELS) -> None:
    """Point every name at ``target`` with ``labels`` (a replaced record keeps its others, e.g. a pin);
    on failure remove the records this call created."""
    created: list[str] = []
    try:
        for name in names:
            existing = client.images.get(name)
            if existing is None:
                created.append(name)
            client.images.set(name, target, {**(existing.labels if existing else {}), **labels})
    except BaseException:
        for name in created:
            try:
                client.images.delete(name)
            except Exception:  # noqa: BLE001 - best effort; the original error matters
                pass
        raise


def _keep_other_platforms(client: ContainerdClient, index: ArchiveIndex, manifests: list[str]) -> None:
    """The index's other manifests that came along (``all_platforms``): label each with its config and layers, or
    containerd's GC takes them once the load's lease ends (only the unpacked platform's are referenced otherwise)."""
    for digest in manifests:
        raw = index.metadata.get(index.links.get(blob_path(digest), blob_path(digest)))
        if raw is None or client.content.info(digest) is None:
            continue  # not in this archive: a partial index, as a pull of one platform leaves it
        try:
            manifest = json.loads(raw)
            config = manifest["config"]["digest"]
            layers = [layer["digest"] for layer in manifest.get("layers") or []]
        except (ValueError, KeyError, TypeError):
            continue  # an attestation or another kind of child: nothing of ours to keep
        present = [d for d in (config, *layers) if client.content.info(d) is not None]
        if config in present:
            client.content.set_labels(digest, content.manifest_gc_labels(config, [d for d in layers if d in present]))


def _blobs(image: Image) -> list[tuple[str, str]]:
    out = [(image.config_digest, "config")]
    out += [(d, "manifest") for d in (image.manifest_digest, image.index_digest) if d]
    out += [(layer.digest, f"layer {layer.path or layer.digest}") for layer in image.layers]
    return out


def _size(client: ContainerdClient, digest: str, got: Received, what: str, where: str) -> int:
    info = client.content.info(digest)
    if info is not None:
        client.leases.protect(digest)  # left out of the archive or written earlier: held by this lease from now
    if info is None:
        state = "was written but is gone" if digest in got.written else "is neither in the archive nor on the node"
        raise ArchiveError(f"{where}: the image's {what} {digest} {state}")
    return info.size


def _check_layers(image: Image, index: ArchiveIndex, got: Received) -> None:
    """A legacy layer.tar's digest was learned as it passed: it must be the diff ID the config lists."""
    for layer in image.layers:
        path = index.links.get(layer.path or "", layer.path or "")
        seen = got.digests.get(path)
        if seen is not None:
            require_digest(seen, layer.digest, what=f"layer {layer.path}", claim=DIFF_ID if layer.digest == layer.diff_id else BLOB)


def _with_sizes(image: Image, sizes: dict[str, int]) -> Image:
    from dataclasses import replace

    layers = tuple(replace(layer, size=layer.size if layer.size is not None else sizes[layer.digest]) for layer in image.layers)
    return replace(image, layers=layers, config_size=image.config_size or sizes[image.config_digest])


def _media(raw: bytes, default: str) -> str:
    try:
        value = json.loads(raw).get("mediaType") if raw else None
    except ValueError:
        value = None
    return value if isinstance(value, str) and value else default


__all__ = ["CRI_LABELS", "complete", "name_image"]
