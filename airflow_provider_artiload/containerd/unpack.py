"""Unpack an image's layers into a snapshotter, as containerd's own unpacker does, over the API.

For each layer, bottom first: if the snapshot named by its chain ID exists,
skip it; else Prepare an active snapshot (key ``extract-<unique> <chainID>``,
parent the previous chain ID), Diff.Apply the layer blob onto its mounts (the
node decompresses and extracts; we check the diff ID it reports), and Commit
it under the chain ID. Then the labels GC follows: ``containerd.io/uncompressed``
on each applied layer blob, ``containerd.io/gc.ref.snapshot.<snapshotter>`` =
top chain ID on the config blob. Everything runs inside a lease, so a half
done unpack leaves nothing behind once the lease is deleted.

:class:`Unpacker` is handed the services it drives (content, snapshots,
diff, leases), as containerd's ``unpack.NewUnpacker`` is: it never sees the
client, so the client needs nothing from here.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from airflow_provider_artiload.containerd.content import UNCOMPRESSED_LABEL, ContentStore
from airflow_provider_artiload.containerd.errors import ContainerdError
from airflow_provider_artiload.containerd.images import Descriptor, ImageRecord
from airflow_provider_artiload.containerd.leases import Leases
from airflow_provider_artiload.containerd.snapshots import Diff, Snapshots
from airflow_provider_artiload.exceptions import ArchiveError
from airflow_provider_artiload.oci.image import chain_ids
from airflow_provider_artiload.oci.verify import DIFF_ID, require_digest

SNAPSHOT_REF_LABEL = "containerd.io/snapshot.ref"
MANIFEST_TYPES = ("application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json")


@dataclass(frozen=True)
class LayerBlob:
    """One layer blob to unpack: its descriptor and its uncompressed digest (the model's layer is ``oci.image.Layer``)."""

    digest: str
    media_type: str
    size: int
    diff_id: str
    annotations: Mapping[str, str] = field(default_factory=dict)

    def descriptor(self) -> Descriptor:
        return Descriptor(self.media_type, self.digest, self.size, self.annotations)


@dataclass(frozen=True)
class UnpackResult:
    chain_id: str  # the top snapshot's name
    applied: int  # layers extracted now
    skipped: int  # layers whose snapshot existed already


class Unpacker:
    """Makes snapshot chains from layer blobs already in the content store."""

    def __init__(self, content: ContentStore, snapshots: Snapshots, diff: Diff, leases: Leases) -> None:
        self.content = content
        self.snapshots = snapshots
        self.diff = diff
        self.leases = leases

    def unpack(
        self, layers: Sequence[LayerBlob], *, config_digest: str | None = None, snapshotter: str = "overlayfs"
    ) -> UnpackResult:
        """Make the snapshot chain for ``layers`` exist in ``snapshotter``; label the config so GC keeps it."""
        if not layers:
            raise ArchiveError("an image without layers cannot be unpacked")
        chain = chain_ids([layer.diff_id for layer in layers])
        applied = skipped = 0
        with self.leases.lease():
            for i, layer in enumerate(layers):
                parent = chain[i - 1] if i else ""
                if self.snapshots.committed(snapshotter, chain[i]):
                    skipped += 1
                    continue
                if self._apply_layer(snapshotter, layer, chain[i], parent):
                    applied += 1
                else:
                    skipped += 1  # a concurrent unpack committed it first
                self.content.set_labels(layer.digest, {UNCOMPRESSED_LABEL: layer.diff_id})
            if config_digest:
                self.content.set_labels(config_digest, {f"containerd.io/gc.ref.snapshot.{snapshotter}": chain[-1]})
        return UnpackResult(chain[-1], applied, skipped)

    def unpack_image(self, image: ImageRecord, *, snapshotter: str = "overlayfs") -> UnpackResult:
        """Unpack an image record whose target is a single-platform manifest already in the content store."""
        if image.target.media_type not in MANIFEST_TYPES:
            raise ContainerdError(
                f"image {image.name!r} points at {image.target.media_type}; only single-platform manifests unpack here"
            )
        manifest = json.loads(b"".join(self.content.read(image.target.digest)))
        config = json.loads(b"".join(self.content.read(manifest["config"]["digest"])))
        diff_ids = config.get("rootfs", {}).get("diff_ids", [])
        if len(diff_ids) != len(manifest.get("layers", [])):
            raise ArchiveError(f"image {image.name!r}: {len(manifest.get('layers', []))} layers but {len(diff_ids)} diff IDs")
        layers = [
            LayerBlob(d["digest"], d["mediaType"], d["size"], diff_id, d.get("annotations", {}))
            for d, diff_id in zip(manifest["layers"], diff_ids)
        ]
        return self.unpack(layers, config_digest=manifest["config"]["digest"], snapshotter=snapshotter)

    def _apply_layer(self, snapshotter: str, layer: LayerBlob, chain_id: str, parent: str) -> bool:
        """Prepare, apply, commit one layer; False if another unpack committed it meanwhile."""
        labels = {SNAPSHOT_REF_LABEL: chain_id}
        key = f"extract-{time.time_ns() % 1_000_000_000}-{secrets.token_urlsafe(6)} {chain_id}"
        try:
            mounts = self.snapshots.prepare(snapshotter, key, parent, labels)
        except ContainerdError as exc:
            if exc.code == "ALREADY_EXISTS" and self.snapshots.committed(snapshotter, chain_id):
                return False
            raise
        try:
            self._check_diff_id(layer, self.diff.apply(layer.descriptor(), mounts))
            try:
                self.snapshots.commit(snapshotter, chain_id, key, labels)
            except ContainerdError as exc:
                if exc.code != "ALREADY_EXISTS":
                    raise
                self._remove(snapshotter, key)
                return False
        except BaseException:
            self._remove(snapshotter, key)
            raise
        return True

    def _check_diff_id(self, layer: LayerBlob, unpacked: str) -> None:
        """The node's digest of the extracted bytes must be the diff ID the image config promised."""
        require_digest(unpacked, layer.diff_id, what=f"layer {layer.digest}", claim=DIFF_ID, how=" unpacked",
                       where=f"containerd at {self.content.connection.where}")

    def _remove(self, snapshotter: str, key: str) -> None:
        try:
            self.snapshots.remove(snapshotter, key)
        except Exception:  # noqa: BLE001 - best effort; the lease's deletion lets GC take it
            pass


__all__ = ["LayerBlob", "UnpackResult", "Unpacker", "chain_ids"]
