"""A containerd node's answers for pinning, retention and rollback, beside ``target.py``'s NodeTarget.

**Pin.** In the ``k8s.io`` namespace every record artiload creates carries
``io.cri-containerd.pinned=pinned`` (unless ``pin`` is off): the CRI plugin
(containerd 1.7+) reports such images as pinned and kubelet's image GC
leaves them alone (k3s#8781: tarball imports no registry can give back).
A record artiload replaces keeps the labels it had (so a pin stays).

**Marks.** A version's mark is an image record of its own,
``<repository>:artiload-<UTC load time>`` with the load time also as the
label ``io.artiload.loaded-at``; it keeps the version's blobs from
containerd's GC after the tag moved on, which is what makes a rollback
possible. Pruning deletes a version's records in the repository (the last
delete runs containerd's GC synchronously); the space freed is the size of
the content blobs that are gone afterwards (the unpacked snapshots go too,
uncounted).
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Mapping, Sequence

from airflow_provider_artiload.containerd._proto import leases_pb2, leases_pb2_grpc, snapshots_pb2, snapshots_pb2_grpc
from airflow_provider_artiload.containerd.client import ContainerdClient
from airflow_provider_artiload.containerd.containers import Containers
from airflow_provider_artiload.containerd.images import Descriptor, ImageRecord
from airflow_provider_artiload.exceptions import ArtiloadError, ImageNotFound
from airflow_provider_artiload.oci.image import INDEXES, chain_ids
from airflow_provider_artiload.oci.reference import normalize
from airflow_provider_artiload.transfer import retention
from airflow_provider_artiload.transfer.retention import LOADED_AT_LABEL, Version

PIN_LABEL = "io.cri-containerd.pinned"
PINNED = "pinned"
CRI_NAMESPACE = "k8s.io"


def record_labels(base: Mapping[str, str], namespace: str, pin: bool) -> dict[str, str]:
    """The labels of every record artiload creates: ``base`` (the CRI's), plus the pin in ``k8s.io``."""
    return {**base, PIN_LABEL: PINNED} if pin and namespace == CRI_NAMESPACE else dict(base)


class NodeLifecycle:
    """Marks, versions, containers and removal in one namespace of one containerd."""

    def __init__(self, client: ContainerdClient, labels: Mapping[str, str]) -> None:
        self.client = client
        self.labels = dict(labels)  # what every record artiload creates carries (the pin among them)
        self._blobs: dict[str, dict[str, int]] = {}

    @property
    def url(self) -> str:
        return self.client.where

    # ---------------------------------------------------------------- marks

    def mark(self, image_id: str, tags: Sequence[str], log: logging.Logger, target: Descriptor | None = None) -> None:
        """A fresh marker record for ``image_id`` in each repository of ``tags``, then drop its older ones.

        ImageNotFound if no record names the image, or its manifest is gone
        (a Skip's claim raced a prune: then it must be sent).
        """
        records = self.client.images.list()
        if target is None:
            target = next((r.target for r in records if r.target.digest == image_id), None)
        if target is None:
            raise ImageNotFound(f"containerd at {self.url} has no image {image_id} in namespace {self.client.namespace!r}")
        loaded_at = retention.now()
        marker = retention.marker_tag(loaded_at)
        for repository in retention.repositories(tags):
            name = f"{repository}:{marker}"
            self.client.images.set(name, target, {**self.labels, LOADED_AT_LABEL: loaded_at})
            if self.client.content.info(target.digest) is None:  # collected before our record held it
                self.client.images.delete(name)
                raise ImageNotFound(f"containerd at {self.url}: image {image_id} was removed while it was claimed")
            log.info("%s: marked %s as %s", self.url, image_id[:19], name)
            for record in records:
                split = retention.split_name(record.name)
                if (record.target.digest == image_id and split and split[0] == repository
                        and retention.marker_time(split[1]) and record.name != name):
                    self.client.images.delete(record.name)

    # ---------------------------------------------------------------- Lifecycle

    def pointed(self, tags: Sequence[str]) -> dict[str, str | None]:
        found: dict[str, str | None] = {}
        for tag in tags:
            record = self.client.images.get(normalize(tag))
            found[tag] = record.target.digest if record else None
        return found

    def versions(self, repository: str) -> list[Version]:
        repository = retention.repository_of(repository)
        by_digest: dict[str, list[ImageRecord]] = {}
        for record in self.client.images.list():
            by_digest.setdefault(record.target.digest, []).append(record)
        out = []
        for digest, records in by_digest.items():
            ours, foreign, markers, times = [], [], [], []
            for record in records:
                split = retention.split_name(record.name)
                if split and split[0] == repository:
                    ours.append(record.name)
                    if retention.marker_time(split[1]):
                        markers.append(record.name)
                        times.append(record.labels.get(LOADED_AT_LABEL) or retention.marker_time(split[1]))
                else:
                    foreign.append(record.name)
            if times:
                size = sum(self._blob_sizes(records[0].target).values())
                out.append(Version(digest, max(times), tuple(sorted(ours)), tuple(sorted(markers)), tuple(sorted(foreign)),
                                   size))
        return out

    def in_use(self, versions: Sequence[Version]) -> set[str]:
        """By the image name a container was created from, or by the snapshot its root filesystem sits on."""
        containers = Containers(self.client.connection).list()
        names = {c.image for c in containers if c.image}
        parents = {p for p in (self._parent(c.snapshotter, c.snapshot_key) for c in containers if c.snapshot_key) if p}
        records = self.client.images.list()
        used = set()
        for version in versions:
            all_names = {r.name for r in records if r.target.digest == version.image_id}
            if all_names & names or self._top_chains(version.image_id) & parents:
                used.add(version.image_id)
        return used

    def remove(self, versions: Sequence[Version], log: logging.Logger) -> tuple[list[Version], int]:
        blobs: dict[str, int] = {}
        for version in versions:
            blobs.update(self._blobs.get(version.image_id, {}))
        for version in versions:
            claimed = [r.name for r in self.client.images.list()
                       if r.target.digest == version.image_id and r.name not in version.markers and _is_marker(r.name)]
            if claimed:  # a load claimed it while we pruned: it keeps everything
                log.info("%s: kept %s: a load claimed it while pruning", self.url, version.image_id[:19])
                continue
            for name in version.names:
                record = self.client.images.get(name)  # checked again just before: a moved name stays
                if record is not None and record.target.digest == version.image_id:
                    self.client.images.delete(name)
        self._collect_garbage()
        left = {r.target.digest for r in self.client.images.list()}
        gone = [v for v in versions if v.image_id not in left]
        freed = sum(size for digest, size in blobs.items() if self.client.content.info(digest) is None)
        return gone, freed

    def point(self, tag: str, version: Version) -> None:
        target = next((r.target for r in self.client.images.list() if r.target.digest == version.image_id), None)
        if target is None:
            raise ImageNotFound(f"containerd at {self.url} no longer has {version.image_id}")
        name = normalize(tag)
        existing = self.client.images.get(name)
        self.client.images.set(name, target, {**(existing.labels if existing else {}), **self.labels})

    def free_space(self) -> tuple[int, str] | None:
        """containerd's API does not report disk space (nor where its root is): not checked."""
        return None

    # ---------------------------------------------------------------- helpers

    def _collect_garbage(self) -> None:
        """Run containerd's GC now: deleting a lease with ``sync`` waits for it (as ``ctr leases rm --sync``)."""
        lease_id = f"artiload-gc-{secrets.token_hex(8)}"
        call = self.client.connection.call
        call(leases_pb2_grpc.LeasesStub, "Create", leases_pb2.CreateRequest(id=lease_id), "Leases.Create")
        call(leases_pb2_grpc.LeasesStub, "Delete", leases_pb2.DeleteRequest(id=lease_id, sync=True), "Leases.Delete")

    def _json(self, digest: str) -> dict:
        try:
            return json.loads(b"".join(self.client.content.read(digest)))
        except (ArtiloadError, ValueError):
            return {}

    def _manifests(self, target: Descriptor) -> list[dict]:
        """The image's manifests present on the node (one, or an index's children)."""
        if target.media_type in INDEXES:
            children = self._json(target.digest).get("manifests") or []
            return [self._json(c["digest"]) | {"_digest": c["digest"], "_size": c.get("size", 0)}
                    for c in children if isinstance(c, dict) and self.client.content.info(c.get("digest", "")) is not None]
        return [self._json(target.digest) | {"_digest": target.digest, "_size": target.size}]

    def _blob_sizes(self, target: Descriptor) -> dict[str, int]:
        """Every blob of the image on the node, with its size (remembered for :meth:`remove`)."""
        sizes = {target.digest: target.size}
        for manifest in self._manifests(target):
            sizes[manifest["_digest"]] = manifest["_size"]
            for desc in [manifest.get("config") or {}, *(manifest.get("layers") or [])]:
                if isinstance(desc, dict) and desc.get("digest"):
                    sizes[desc["digest"]] = int(desc.get("size") or 0)
        self._blobs[target.digest] = sizes
        return sizes

    def _top_chains(self, image_id: str) -> set[str]:
        target = next((r.target for r in self.client.images.list() if r.target.digest == image_id), None)
        if target is None:
            return set()
        tops = set()
        for manifest in self._manifests(target):
            config = self._json((manifest.get("config") or {}).get("digest", ""))
            diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
            if diff_ids:
                tops.add(chain_ids(diff_ids)[-1])
        return tops

    def _parent(self, snapshotter: str, key: str) -> str | None:
        request = snapshots_pb2.StatSnapshotRequest(snapshotter=snapshotter or "overlayfs", key=key)
        reply = self.client.connection.call_or_none(snapshots_pb2_grpc.SnapshotsStub, "Stat", request, f"Snapshots.Stat {key}")
        return reply.info.parent if reply is not None else None


def _is_marker(name: str) -> bool:
    split = retention.split_name(name)
    return bool(split and retention.marker_time(split[1]))


__all__ = ["CRI_NAMESPACE", "NodeLifecycle", "PIN_LABEL", "PINNED", "record_labels"]
