"""NodeTarget: a containerd node (k3s, Kubernetes, nerdctl host) as a load target, next to Docker engines.

It answers what :class:`~airflow_provider_artiload.transfer.plan.LoadTarget`
asks: :meth:`plan` (before any byte moves: skip when a record already names
the image) and :meth:`upload`, one consumer of the fan-out, where :meth:`load`
reads the archive's chunks once, writes only the blobs the node's content
store lacks (resuming cut writes from containerd's offset), converts legacy
docker-archives on the fly, unpacks into the snapshotter and names the image
with its fully normalised names, all inside one lease, so a failed load
leaves no image record and no lease.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from collections.abc import Iterable

from airflow_provider_artiload.artifacts import LoadOutcome
from airflow_provider_artiload.containerd.client import ContainerdClient
from airflow_provider_artiload.transfer.node.finish import CRI_LABELS, complete, name_image
from airflow_provider_artiload.transfer.node.lifecycle import NodeLifecycle, record_labels
from airflow_provider_artiload.transfer.retention import LOADED_AT_LABEL
from airflow_provider_artiload.transfer.node.members import member_events
from airflow_provider_artiload.transfer.node.receive import BlobReceiver
from airflow_provider_artiload.oci.archive import ArchiveIndex, ArchiveScanner
from airflow_provider_artiload.oci.reference import normalize
from airflow_provider_artiload.exceptions import ArchiveError, ArtiloadError, ImageNotFound
from airflow_provider_artiload.oci.image import Image
from airflow_provider_artiload.transfer.plan import LoadOptions, Send, Skip, Streamed, Unreachable
from airflow_provider_artiload.transfer.retention import claim_before_skip
from airflow_provider_artiload.transfer.sources import SourceInfo
from airflow_provider_artiload.oci.platform import Platform
from airflow_provider_artiload.oci.platform import normalize as normalize_platform
from airflow_provider_artiload.oci.platform import parse as parse_platform
from airflow_provider_artiload.oci.reframe import chosen_platform
from airflow_provider_artiload.transfer.platforms import select, stream_target

STORE = "containerd"
DEFAULT_PLATFORM = "linux/amd64"


class NodeTarget:
    """Loads archives into one containerd namespace (the client's) and ``snapshotter``."""

    def __init__(self, client: ContainerdClient, *, snapshotter: str = "overlayfs", platform: str | None = None,
                 pin: bool = True) -> None:
        self.client = client
        self.snapshotter = snapshotter
        self.platform = platform
        self.pin = pin  # in k8s.io: io.cri-containerd.pinned on every record artiload creates (node/lifecycle.py)
        self._detected: Platform | None = None

    @property
    def own_platform(self) -> Platform | None:
        """The node's platform: its connection's ``platform`` extra, else what containerd's plugins serve (once)."""
        if self.platform:
            return parse_platform(self.platform, what=f"{self.url}: platform")
        if self._detected is None:
            try:
                stated = self.client.introspection.platform()
            except ArtiloadError as exc:  # the load goes on; a multi-platform source then gets its first image
                logging.getLogger(__name__).warning("%s: cannot tell the node's platform: %s", self.url, exc)
                stated = None
            self._detected = normalize_platform(*stated) if stated else None
        return self._detected

    @property
    def url(self) -> str:
        return self.client.where

    @property
    def labels(self) -> dict[str, str]:
        """What every image record artiload creates here carries."""
        return record_labels(CRI_LABELS, self.client.namespace, self.pin)

    @property
    def lifecycle(self) -> NodeLifecycle:
        """Pins, marks, retention and rollback on this node (``transfer/retention.py``)."""
        return NodeLifecycle(self.client, self.labels)

    # ---------------------------------------------------------------- planning and tags

    def plan(self, info: SourceInfo, options: LoadOptions, log: logging.Logger) -> Skip | Send | Unreachable:
        """Skip if a record already targets the image's containerd ID; else Send, counting the layer blobs present."""
        try:
            info = select(info, self.own_platform, options, where=self.url, store=STORE, log=log)  # its platform's image
            target = info.id_for(STORE) or (info.image.id_for(STORE) if info.image else None)
            if (options.skip_existing and target and self.has_image(target) and self._whole(target, info, log)
                    and claim_before_skip(self.lifecycle, target, options, log)):
                log.info("%s already has %s: no bytes sent", self.url, target)
                return Skip(self, STORE, target, info=info)
            have = 0
            if info.image is not None:
                have = sum(1 for layer in info.image.layers if self.client.content.info(layer.digest) is not None)
                if have:
                    log.info("%s has %d of %d layer blobs: sending the others", self.url, have, len(info.image.layers))
        except ArtiloadError as exc:
            return Unreachable(self, exc)
        return Send(self, STORE, have=have, info=info)  # it checks every blob it writes: nothing unchecked

    def _whole(self, image_id: str, info: SourceInfo, log: logging.Logger) -> bool:
        """Skip only an image whose every blob is here: a record can outlive its content (a blob deleted by
        hand, another tool's partial import), and the skipped image must still inspect, run and export."""
        digests = [image_id]
        if info.image is not None:  # the image this node takes (its platform's), when the source is indexed
            image = info.image
            digests += [d for d in (image.manifest_digest, image.config_digest) if d]
            digests += [layer.digest for layer in image.layers]
        missing = [d for d in dict.fromkeys(digests) if self.client.content.info(d) is None]
        if missing:
            log.info("%s has a record of %s but lacks %d of its blobs (%s): sending it", self.url, image_id[:19],
                     len(missing), ", ".join(d[:19] for d in missing))
        return not missing

    def has_image(self, image_id: str) -> bool:
        """Does any record in the namespace target ``image_id`` (a manifest or index digest)?"""
        return any(image.target.digest == image_id for image in self.client.images.list())

    def tag(self, image_id: str, tag: str) -> None:
        """Name the image ``image_id`` as ``tag`` (normalised), as an engine's tag would (a Skip's tags)."""
        for image in self.client.images.list():
            if image.target.digest == image_id:
                kept = {k: v for k, v in image.labels.items() if k != LOADED_AT_LABEL}  # a marker's own label stays on it
                self.client.images.set(normalize(tag), image.target, {**kept, **self.labels})
                return
        raise ImageNotFound(f"containerd at {self.url} has no image {image_id} in namespace {self.client.namespace!r} to tag")

    # ---------------------------------------------------------------- loading

    def upload(self, send: Send, chunks: Iterable[bytes], info: SourceInfo, options: LoadOptions,
               log: logging.Logger) -> LoadOutcome:
        return self.load(chunks, info, options, log)

    def conclude(self, send: Send, uploaded: object, streamed: Streamed, info: SourceInfo, options: LoadOptions,
                 log: logging.Logger) -> LoadOutcome | BaseException:
        """It verified, recorded and named the image itself while it loaded."""
        assert isinstance(uploaded, (LoadOutcome, BaseException))
        return uploaded

    def load(self, chunks: Iterable[bytes], info: SourceInfo, options: LoadOptions, log: logging.Logger) -> LoadOutcome:
        """Consume the archive stream once; return the outcome. Raises (leaving no record, no lease) on any failure."""
        started = time.monotonic()
        names = [normalize(tag) for tag in options.tags]  # a bad tag fails before any byte moves
        receiver = BlobReceiver(self.client, info, _needed(info, options))
        with self.client.leases.lease():
            scanner = ArchiveScanner()
            try:
                for kind, member, piece in member_events(chunks, scanner):
                    receiver.on(kind, member, piece, scanner.index)
                index = scanner.finish()
            except BaseException as exc:
                receiver.abandon(resumable=not isinstance(exc, ArchiveError))  # a bad archive's partial write goes
                raise
            image = self._choose(index, options, info)
            if info.expected_ids and not image.ids() & info.expected_ids:
                raise ArchiveError(f"{info.label} holds image {image.id_for(STORE)}, not {', '.join(sorted(info.expected_ids))}")
            names += [n for n in (normalize(t) for t in image.repo_tags) if n not in names]
            if not names:
                raise ArchiveError(f"{info.label}: no tag given and the archive names its image nowhere; give tags")
            target, manifest_sent = complete(self.client, image, index, receiver.result, snapshotter=self.snapshotter)
            name_image(self.client, names, target, self.labels)
            if options.mark:
                self.lifecycle.mark(target.digest, list(options.tags) or names, log, target)
        got = receiver.result
        present = sum(1 for layer in image.layers if layer.digest in got.present or not got.on_node(layer.digest))
        log.info("%s: loaded %s as %s (%d bytes sent)", self.url, target.digest[:19], ", ".join(names), got.sent + manifest_sent)
        return LoadOutcome(
            image_id=target.digest,
            tags=list(options.tags),
            engine=self.url,
            mode="delta" if got.present else "full",
            bytes_sent=got.sent + manifest_sent,
            seconds=round(time.monotonic() - started, 3),
            layers_sent=len(image.layers) - present,
            layers_skipped=present,
            archive_tags=list(image.repo_tags),
        )

    def _choose(self, index: ArchiveIndex, options: LoadOptions, info: SourceInfo) -> Image:
        """The image this node takes (transfer/platforms.py): its platform's, narrowed to that manifest; with
        ``all_platforms``, the index, unpacked for the node's platform (default linux/amd64); else the archive's only one."""
        if info.narrowed and info.platform:
            return replace(index.image(info.platform), index_digest=None)
        target = stream_target(info, options, STORE)
        platform = chosen_platform(index, target) if target else None
        if platform is not None:
            return replace(index.image(platform), index_digest=None)
        if options.platform:
            return index.image(options.platform)
        own = str(self.own_platform) if self.own_platform else None
        try:
            return index.image(own or DEFAULT_PLATFORM)
        except ArchiveError:
            if self.platform:
                raise
            return index.image(None)

    def close(self) -> None:
        self.client.close()


def _needed(info: SourceInfo, options: LoadOptions) -> frozenset[str] | None:
    """The blobs one image needs, when the indexed source pins which image that is; None: write every blob."""
    image = info.image
    if image is None or (image.index_digest and not options.platform):
        return None
    digests = {image.config_digest, *(layer.digest for layer in image.layers)}
    digests.update(d for d in (image.manifest_digest, image.index_digest) if d)
    return frozenset(digests)


__all__ = ["NodeTarget"]
