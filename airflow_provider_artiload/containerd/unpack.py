"""Unpack an image's layers into a snapshotter, as containerd's own unpacker does, over the API.

For each layer, bottom first: if the snapshot named by its chain ID exists,
skip it; else Prepare an active snapshot (key ``extract-<unique> <chainID>``,
parent the previous chain ID), Diff.Apply the layer blob onto its mounts (the
node decompresses and extracts; we check the diff ID it reports), and Commit
it under the chain ID. Then the labels GC follows: ``containerd.io/uncompressed``
on each applied layer blob, ``containerd.io/gc.ref.snapshot.<snapshotter>`` =
top chain ID on the config blob. Everything runs inside a lease, so a half
done unpack leaves nothing behind once the lease is deleted.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from airflow_provider_artiload.containerd._proto import (
    containerd_types_pb2,
    diff_pb2,
    diff_pb2_grpc,
    snapshots_pb2,
    snapshots_pb2_grpc,
)
from airflow_provider_artiload.containerd.content import UNCOMPRESSED_LABEL, set_labels
from airflow_provider_artiload.containerd.errors import ContainerdError
from airflow_provider_artiload.exceptions import ArchiveError, ImageNotFound
from airflow_provider_artiload.oci.image import chain_ids
from airflow_provider_artiload.oci.verify import DIFF_ID, require_digest

if TYPE_CHECKING:
    from airflow_provider_artiload.containerd.client import ContainerdClient

SNAPSHOT_REF_LABEL = "containerd.io/snapshot.ref"
MANIFEST_TYPES = ("application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json")


@dataclass(frozen=True)
class Layer:
    """One layer as the image model knows it: the blob's descriptor and its uncompressed digest."""

    digest: str
    media_type: str
    size: int
    diff_id: str
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class UnpackResult:
    chain_id: str  # the top snapshot's name
    applied: int  # layers extracted now
    skipped: int  # layers whose snapshot existed already


def unpack(
    client: ContainerdClient, layers: Sequence[Layer], *, config_digest: str | None = None, snapshotter: str = "overlayfs"
) -> UnpackResult:
    """Make the snapshot chain for ``layers`` exist in ``snapshotter``; label the config so GC keeps it."""
    if not layers:
        raise ArchiveError("an image without layers cannot be unpacked")
    chain = chain_ids([layer.diff_id for layer in layers])
    applied = skipped = 0
    with client.lease():
        for i, layer in enumerate(layers):
            parent = chain[i - 1] if i else ""
            if _committed(client, snapshotter, chain[i]):
                skipped += 1
                continue
            if _apply_layer(client, snapshotter, layer, chain[i], parent):
                applied += 1
            else:
                skipped += 1  # a concurrent unpack committed it first
            set_labels(client, layer.digest, {UNCOMPRESSED_LABEL: layer.diff_id})
        if config_digest:
            set_labels(client, config_digest, {f"containerd.io/gc.ref.snapshot.{snapshotter}": chain[-1]})
    return UnpackResult(chain[-1], applied, skipped)


def unpack_image(client: ContainerdClient, name: str, *, snapshotter: str = "overlayfs") -> UnpackResult:
    """Unpack an image record whose target is a single-platform manifest already in the content store."""
    image = client.get_image(name)
    if image is None:
        raise ImageNotFound(f"containerd at {client.where} has no image {name!r} in namespace {client.namespace!r}")
    if image.target.media_type not in MANIFEST_TYPES:
        raise ContainerdError(f"image {name!r} points at {image.target.media_type}; only single-platform manifests unpack here")
    manifest = json.loads(b"".join(client.read_blob(image.target.digest)))
    config = json.loads(b"".join(client.read_blob(manifest["config"]["digest"])))
    diff_ids = config.get("rootfs", {}).get("diff_ids", [])
    if len(diff_ids) != len(manifest.get("layers", [])):
        raise ArchiveError(f"image {name!r}: {len(manifest.get('layers', []))} layers but {len(diff_ids)} diff IDs")
    layers = [
        Layer(d["digest"], d["mediaType"], d["size"], diff_id, d.get("annotations", {}))
        for d, diff_id in zip(manifest["layers"], diff_ids)
    ]
    return unpack(client, layers, config_digest=manifest["config"]["digest"], snapshotter=snapshotter)


def _committed(client: ContainerdClient, snapshotter: str, name: str) -> bool:
    request = snapshots_pb2.StatSnapshotRequest(snapshotter=snapshotter, key=name)
    reply = client.call_or_none(snapshots_pb2_grpc.SnapshotsStub, "Stat", request, f"Snapshots.Stat {name}")
    return reply is not None and reply.info.kind == snapshots_pb2.COMMITTED


def _apply_layer(client: ContainerdClient, snapshotter: str, layer: Layer, chain_id: str, parent: str) -> bool:
    """Prepare, apply, commit one layer; False if another unpack committed it meanwhile."""
    labels = {SNAPSHOT_REF_LABEL: chain_id}
    key = f"extract-{time.time_ns() % 1_000_000_000}-{secrets.token_urlsafe(6)} {chain_id}"
    stub = snapshots_pb2_grpc.SnapshotsStub
    prepare = snapshots_pb2.PrepareSnapshotRequest(snapshotter=snapshotter, key=key, parent=parent, labels=labels)
    try:
        mounts = client.call(stub, "Prepare", prepare, f"Snapshots.Prepare {chain_id}").mounts
    except ContainerdError as exc:
        if exc.code == "ALREADY_EXISTS" and _committed(client, snapshotter, chain_id):
            return False
        raise
    try:
        descriptor = containerd_types_pb2.Descriptor(
            media_type=layer.media_type, digest=layer.digest, size=layer.size, annotations=dict(layer.annotations)
        )
        request = diff_pb2.ApplyRequest(diff=descriptor, mounts=mounts)
        applied = client.call(diff_pb2_grpc.DiffStub, "Apply", request, f"Diff.Apply {layer.digest}").applied
        require_digest(applied.digest, layer.diff_id, what=f"layer {layer.digest}", claim=DIFF_ID, how=" unpacked",
                       where=f"containerd at {client.where}")
        commit = snapshots_pb2.CommitSnapshotRequest(snapshotter=snapshotter, name=chain_id, key=key, labels=labels)
        try:
            client.call(stub, "Commit", commit, f"Snapshots.Commit {chain_id}")
        except ContainerdError as exc:
            if exc.code != "ALREADY_EXISTS":
                raise
            _remove(client, snapshotter, key)
            return False
    except BaseException:
        _remove(client, snapshotter, key)
        raise
    return True


def _remove(client: ContainerdClient, snapshotter: str, key: str) -> None:
    try:
        client.call_or_none(snapshots_pb2_grpc.SnapshotsStub, "Remove", snapshots_pb2.RemoveSnapshotRequest(snapshotter=snapshotter, key=key), "Snapshots.Remove")
    except Exception:  # noqa: BLE001 - best effort; the lease's deletion lets GC take it
        pass


__all__ = ["Layer", "UnpackResult", "chain_ids", "unpack", "unpack_image"]
