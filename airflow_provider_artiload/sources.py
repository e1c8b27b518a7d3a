"""Where an archive comes from: a tarball file, or another engine's export.

A source can be streamed more than once (a failed thin load falls back to a
full one) and says up front what it knows: the image ID, the layers' diff
IDs, the digest an artifact promised, and, for a file, where each member
lies, so that layers a target already has are never even read.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from airflow_provider_artiload.artifacts import DockerArchive
from airflow_provider_artiload.engine.client import EngineClient
from airflow_provider_artiload.engine.layers import ArchiveLayout, read_layout
from airflow_provider_artiload.exceptions import ArchiveError
from airflow_provider_artiload.storage import Target, exists, is_local_file, read_chunks
from airflow_provider_artiload.verify import GZIP_MAGIC


@dataclass(frozen=True)
class SourceInfo:
    label: str
    image_id: str | None = None
    diff_ids: list[str] = field(default_factory=list)
    sha256: str | None = None  # the whole archive's digest, when an artifact promised one
    size: int | None = None
    layer_names: list[str] | None = None  # member name of each layer position, when known up front
    compressed: bool = False  # gzip: passed through as is, so no member can be left out


class FileSource:
    """A docker-archive on the local disk or at a remote path."""

    def __init__(self, path: Target, artifact: DockerArchive | None = None) -> None:
        self.path = path
        self.artifact = artifact
        self._layout: ArchiveLayout | None = None

    def info(self) -> SourceInfo:
        if not exists(self.path):
            raise ArchiveError(f"archive {self.path} does not exist")
        try:  # only a local regular file can be indexed (a pipe would be consumed)
            self._layout = read_layout(self.path) if is_local_file(self.path) else None
        except ArchiveError:
            self._layout = None  # streaming it will say precisely what is wrong
        layout, artifact = self._layout, self.artifact
        compressed = is_local_file(self.path) and _starts_with(self.path, GZIP_MAGIC)
        return SourceInfo(
            compressed=compressed,
            label=str(self.path),
            image_id=artifact.image_id if artifact else layout.image_id if layout else None,
            diff_ids=layout.diff_ids if layout else list(artifact.layers) if artifact else [],
            sha256=artifact.sha256 if artifact else None,
            size=artifact.size if artifact else None,
            layer_names=layout.layer_names if layout else None,
        )

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


def _starts_with(path: str, magic: bytes) -> bool:
    with open(path, "rb") as handle:
        return handle.read(len(magic)) == magic


class EngineSource:
    """An image streamed straight out of another engine (``GET /images/{name}/get``)."""

    def __init__(self, client: EngineClient, image: str) -> None:
        self.client = client
        self.image = image

    def info(self) -> SourceInfo:
        inspect = self.client.inspect_image(self.image)
        return SourceInfo(
            label=f"{self.image} on {self.client.url}",
            image_id=inspect["Id"],
            diff_ids=list(inspect.get("RootFS", {}).get("Layers") or []),
            size=inspect.get("Size"),
        )

    @contextlib.contextmanager
    def open(self, omit: frozenset[str] = frozenset()) -> Iterator[Iterator[bytes]]:
        """The export stream; a stream cannot skip, so every target filters for itself."""
        with self.client.export_image(self.image) as chunks:
            yield chunks
