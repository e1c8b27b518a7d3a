"""Where an archive comes from: what every source says up front, and a tarball file.

An engine's export is :class:`~.engine.EngineSource`, a node's content store
:class:`~.node.source.NodeSource`.

A source can be streamed more than once (a failed thin load falls back to a
full one) and says up front what it knows: the image (complete for a local
file, which is indexed first; partial for a remote file or another engine),
the digests the archive must match, and, for a file, where each member lies,
so that blobs a target already has are never even read.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ContextManager, Protocol

from airflow_provider_artiload.artifacts import DockerArchive
from airflow_provider_artiload.oci.layout import ArchiveLayout, read_layout
from airflow_provider_artiload.exceptions import ArchiveError
from airflow_provider_artiload.oci.image import Image, Store
from airflow_provider_artiload.storage import Target, exists, is_local_file, read_chunks
from airflow_provider_artiload.oci.digests import SNIFF, outer_compression
from airflow_provider_artiload.oci.manifests import listed
from airflow_provider_artiload.oci.reframe import named_blobs


@dataclass(frozen=True)
class SourceInfo:
    label: str
    image: Image | None = None  # fully known only for an indexed local file
    expected_ids: frozenset[str] = frozenset()  # digests the archive's image must have
    ids: dict[str, str] = field(default_factory=dict)  # store -> the ID it will give the image, where known
    diff_ids: list[str] = field(default_factory=list)
    sha256: str | None = None  # the whole archive's digest, when an artifact promised one
    size: int | None = None
    compressed: bool = False  # an outer gzip/zstd/bzip2/xz: removed on our side, streamed (never indexed)
    has_legacy_manifest: bool = True  # False: an OCI layout a classic-store engine cannot load as is
    placeable: bool = True  # can a stream's layers be placed at their headers (legacy or uncompressed blobs)?
    blobs: frozenset[str] | None = None  # the members the image names, when indexed: all a target is sent (oci.reframe)
    # per-target platforms (transfer/platforms.py): what the source lists, and what one target was given
    index: Any = field(default=None, repr=False, compare=False)  # an indexed file's scan, to pick another platform's image
    images: tuple[Any, ...] = ()  # oci.manifests.Listed per image, when known up front
    platform: str | None = None  # the platform of the image chosen for a target
    target_platform: str | None = None  # that target's own platform, where known
    narrowed: bool = False  # one platform's image of a multi-platform source: its manifest, not the index

    @property
    def layer_names(self) -> list[str] | None:
        return [layer.path or "" for layer in self.image.layers] if self.image else None

    def id_for(self, store: Store) -> str | None:
        return self.ids.get(store)


class Source(Protocol):
    """Where an archive comes from: what it says up front, and its bytes, readable once per batch."""

    def info(self) -> SourceInfo: ...

    def open(self, omit: frozenset[str] = frozenset()) -> ContextManager[Iterator[bytes]]:
        """The archive's bytes, leaving out the members named in ``omit`` where the source can."""


class FileSource:
    """An image archive on the local disk or at a remote path."""

    def __init__(
        self, path: Target, artifact: DockerArchive | None = None, *, platform: str | None = None, here: str | None = None
    ) -> None:
        """``here``: this worker's name as the artifact's ``hostname`` records it (Airflow's hostname_callable)."""
        self.here = here or socket.gethostname()
        self.path = path
        self.artifact = artifact
        self.platform = platform
        self._layout: ArchiveLayout | None = None

    def info(self) -> SourceInfo:
        if not exists(self.path):
            raise ArchiveError(self._missing())
        local = is_local_file(self.path)
        compressed = local and _compressed(str(self.path))
        try:  # only a local, uncompressed regular file can be indexed (a pipe would be consumed)
            self._layout = read_layout(str(self.path), self.platform) if local and not compressed else None
        except ArchiveError:
            self._layout = None  # streaming it will say precisely what is wrong
        layout, artifact = self._layout, self.artifact
        image = layout.image if layout else None
        ids: dict[str, str] = {}
        if image is not None:
            ids = {"classic": image.id_for("classic"), "containerd": image.id_for("containerd")}
        elif artifact is not None:
            ids = _artifact_ids(artifact)
        return SourceInfo(
            label=str(self.path),
            image=image,
            expected_ids=frozenset(artifact.identity()) if artifact else frozenset(),
            ids=ids,
            diff_ids=image.diff_ids if image else list(artifact.layers) if artifact else [],
            sha256=artifact.sha256 if artifact else None,
            size=artifact.size if artifact else None,
            compressed=compressed,
            has_legacy_manifest=layout.has_legacy_manifest if layout else (artifact is None or artifact.format != "oci-layout"),
            blobs=named_blobs(layout.index, layout.image) if layout and layout.index else None,
            index=layout.index if layout else None,
            images=tuple(listed(layout.index)) if layout and layout.index else (),
        )

    def _missing(self) -> str:
        """Name the likely cause when a local file written on another worker is not here."""
        message = f"archive {self.path} does not exist"
        written_on = self.artifact.hostname if self.artifact else None
        if written_on and is_local_path(self.path) and written_on != self.here:
            message += (
                f" on this worker ({self.here}); it was written on {written_on}. Local paths are not "
                "shared between workers: use an object-storage path (sftp://, s3://...) or a shared volume"
            )
        return message

    @contextlib.contextmanager
    def open(self, omit: frozenset[str] = frozenset()) -> Iterator[Iterator[bytes]]:
        """The archive's bytes, leaving out the members named in ``omit`` (never read)."""
        if not omit or self._layout is None:
            yield read_chunks(self.path)
            return
        cut = sorted(self._layout.extents[name] for name in omit if name in self._layout.extents)
        ranges, position = [], 0
        for start, end in cut:
            if start > position:
                ranges.append((position, start))
            position = max(position, end)
        ranges.append((position, None))
        yield read_chunks(self.path, ranges=ranges)  # type: ignore[arg-type]


def is_local_path(path: Target) -> bool:
    return isinstance(path, str)


def _artifact_ids(artifact: DockerArchive) -> dict[str, str]:
    """The IDs an artifact lets us predict without reading the archive."""
    ids = {}
    if artifact.config_digest or artifact.format is None:  # older artifacts: image_id was the config digest
        ids["classic"] = artifact.config_digest or artifact.image_id
    containerd = artifact.index_digest or artifact.manifest_digest
    if containerd:
        ids["containerd"] = containerd
    return ids


def _compressed(path: str) -> bool:
    """Does the file start as Go's DecompressStream takes for a compressed stream (then it cannot be indexed)?"""
    with open(path, "rb") as handle:
        return outer_compression(handle.read(SNIFF)) != "none"
