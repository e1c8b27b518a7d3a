"""NodeSource: an image streamed out of a containerd node's content store, as an OCI archive.

The same two faces as :class:`~airflow_provider_artiload.transfer.sources.EngineSource`:
:meth:`NodeSource.info` (what the archive will hold, before any layer byte
moves) and :meth:`NodeSource.open` (the archive's bytes, one pass, from a
context manager). The archive is an OCI image layout that also carries a
Docker-style ``manifest.json``, so both ``ctr images import`` / the
containerd store and classic-store ``docker load`` take it::

    blobs/  blobs/sha256/                      directories
    oci-layout                                 {"imageLayoutVersion":"1.0.0"}
    index.json                                 -> the record's target, with its name annotations
    manifest.json                              Config/Layers/RepoTags for classic-store engines
    blobs/sha256/<index>                       a multi-platform index, as the node holds it
    blobs/sha256/<manifest>, <config>          of the chosen platform
    blobs/sha256/<layer> ...                   streamed from Content.Read, in manifest order

All metadata comes before the first layer byte, so every layer is placed by
its header (``placeable``) and any can be left out (``omit``). A
multi-platform index is exported as it is (the image keeps its identity, the
index digest) with the blobs of ONE platform: ``platform`` if given, else
linux/amd64 (the loader's default), else the index's first image; the other
platforms' manifests are named by the index but not in the archive, which is
how a node that pulled one platform holds such an image anyway.

Layers stream in containerd's ~1 MiB messages with memory flat. Each blob is
hashed as it streams; its last message is held back until the digest and
size are checked, so a consumer never sees a complete member of a corrupt
blob: DigestMismatch names the blob and the node.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace

from airflow_provider_artiload.containerd.client import ContainerdClient
from airflow_provider_artiload.containerd.images import Descriptor
from airflow_provider_artiload.containerd.errors import BlobNotFound
from airflow_provider_artiload.oci.reference import normalize, parse
from airflow_provider_artiload.oci.tar import END, build_member, directory_header, member_header, padding
from airflow_provider_artiload.exceptions import ArchiveError, ImageNotFound
from airflow_provider_artiload.oci.image import OCI_INDEX, Image, blob_path, digest_of
from airflow_provider_artiload.oci.metadata import Metadata, image_from_archive
from airflow_provider_artiload.oci.verify import SIZE, mismatch, require_digest, require_size
from airflow_provider_artiload.transfer.sources import SourceInfo

DEFAULT_PLATFORM = "linux/amd64"  # as NodeTarget picks
JSON_BLOB_LIMIT = 4 << 20  # an index, manifest or config; as the archive scanner's limit for one JSON member
LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'
STORE_CORRUPT = "the node's content store is corrupt"  # what it means when a blob read back is not what its name says


@dataclass(frozen=True)
class ExportPlan:
    """What the archive will hold: the image, the record's target, and every small blob, verified."""

    name: str
    target: Descriptor
    image: Image  # repo_tags = (name,); layers' paths are blobs/sha256/<hex>
    head: tuple[tuple[str, bytes], ...]  # (member, bytes) written before the layers, in order
    others: tuple[Image, ...] = ()  # more platforms' images of the index, exported too (``platforms``)

    @property
    def layers(self) -> list:
        """Every layer exported, a blob once: the image's, then the other platforms'."""
        return _distinct(replace(self.image, layers=tuple(l for i in (self.image, *self.others) for l in i.layers)))

    @property
    def size(self) -> int:
        """The blobs' bytes (JSON blobs and each distinct layer once), not the tar framing."""
        blobs = sum(len(data) for member, data in self.head if member.startswith("blobs/"))
        return blobs + sum(layer.size or 0 for layer in self.layers)


class NodeSource:
    """The image record ``image`` (normalised, ``app:1`` -> ``docker.io/library/app:1``) in the client's namespace."""

    def __init__(self, client: ContainerdClient, image: str, *, platform: str | None = None,
                 platforms: tuple[str, ...] = ()) -> None:
        """``platforms``: export these images of a multi-platform index (the first is the archive's image),
        every one whole on the node; none: one, ``platform`` (see the module docstring)."""
        self.client = client
        self.image = image
        self.platform = platforms[0] if platforms else platform
        self.platforms = tuple(platforms)
        self._plan: ExportPlan | None = None

    @property
    def where(self) -> str:
        return f"containerd at {self.client.where} (namespace {self.client.namespace!r})"

    def info(self) -> SourceInfo:
        plan = self.plan()
        return SourceInfo(
            label=f"{self.image} on {self.client.where}",
            image=plan.image,
            expected_ids=frozenset({plan.target.digest}),
            ids={"containerd": plan.target.digest, "classic": plan.image.config_digest},
            diff_ids=plan.image.diff_ids,
            size=plan.size,
            has_legacy_manifest=True,  # written below
            placeable=True,  # every header before the first layer: each layer is known at its header
        )

    def plan(self) -> ExportPlan:
        """Look the image up and read its small blobs (once; content is addressed, so they cannot change)."""
        if self._plan is None:
            self._plan = self._make_plan()
        return self._plan

    @contextlib.contextmanager
    def open(self, omit: frozenset[str] = frozenset()) -> Iterator[Iterator[bytes]]:
        """The archive's bytes, leaving out the blobs named in ``omit``.

        ``omit`` holds member names (``blobs/sha256/<hex>``, what ``info().layer_names``
        lists), bare digests, or ``#<n>`` for the n-th layer from the bottom.
        """
        plan = self.plan()
        chunks = self._stream(plan, _omitted(plan.image, omit))
        try:
            yield chunks
        finally:
            chunks.close()  # cancels a Read in flight

    # ---------------------------------------------------------------- planning

    def _make_plan(self) -> ExportPlan:
        name = normalize(self.image)
        record = self.client.images.get(name)
        if record is None:
            raise ImageNotFound(f"{self.where} has no image {name!r}")
        target = record.target
        blobs = _NodeJSON(self)
        layout = {
            "oci-layout": LAYOUT,
            "index.json": json.dumps(_index(target, name), separators=(",", ":")).encode(),
        }
        members = _Members(layout, blobs)
        image = self._choose(Metadata(members), name)
        if image.id_for("containerd") != target.digest:
            raise ArchiveError(f"{self.where}: image {name} targets {target.digest}, but it reads as {image.id_for('containerd')}")
        image = replace(image, repo_tags=(name,), format="oci-archive")
        others = tuple(image_from_archive(Metadata(members), platform=p) for p in self.platforms[1:])
        if others and not image.index_digest:
            raise ArchiveError(f"{self.where}: image {name} is one platform's ({target.digest}): it has no other platforms")
        head = [*layout.items(), ("manifest.json", image.legacy_manifest())]
        head += [(blob_path(digest), data) for digest, data in blobs.read.items()]  # index, manifests, configs: read order
        return ExportPlan(name=name, target=target, image=image, head=tuple(head), others=others)

    def _choose(self, meta: Metadata, name: str) -> Image:
        if self.platform:
            return image_from_archive(meta, platform=self.platform)
        try:
            return image_from_archive(meta, platform=DEFAULT_PLATFORM)
        except ArchiveError as exc:
            if "has no image for platform" not in str(exc):
                raise
            return image_from_archive(meta, platform=None)

    # ---------------------------------------------------------------- streaming

    def _stream(self, plan: ExportPlan, omit: frozenset[str]) -> Iterator[bytes]:
        yield directory_header("blobs/") + directory_header("blobs/sha256/")
        for member, data in plan.head:
            if member not in omit:
                yield build_member(member, data)
        for position, layer in enumerate(plan.layers):
            member = blob_path(layer.digest)
            if member in omit:
                continue
            yield member_header(member, layer.size or 0)
            yield from self._blob(layer.digest, layer.size or 0, f"layer {position} of {plan.name}")
            if pad := padding(layer.size or 0):
                yield pad
        yield END

    def _blob(self, digest: str, size: int, what: str) -> Iterator[bytes]:
        """The blob's bytes, checked: the last piece is yielded only once digest and size match."""
        hasher, count, held, blob = hashlib.sha256(), 0, None, f"blob {digest} ({what})"
        with contextlib.closing(self.client.content.read(digest)) as pieces:  # closed early: the Read is cancelled
            for piece in pieces:
                count += len(piece)
                if count > size:
                    raise mismatch(blob, f"more than {size} bytes", f"{SIZE} {size}", where=self.where, verdict=STORE_CORRUPT)
                hasher.update(piece)
                if held is not None:
                    yield held
                held = piece
        require_size(count, size, what=blob, where=self.where, verdict=STORE_CORRUPT)
        require_digest("sha256:" + hasher.hexdigest(), digest, what=blob, where=self.where, verdict=STORE_CORRUPT)
        if held is not None:
            yield held


class _NodeJSON:
    """Small blobs (index, manifest, config) read whole from the node, verified, remembered in read order."""

    def __init__(self, source: NodeSource) -> None:
        self.source = source
        self.read: dict[str, bytes] = {}

    def get(self, digest: str) -> bytes:
        if digest not in self.read:
            client, where = self.source.client, self.source.where
            lacks = f"{where} lacks blob {digest} of image {self.source.image} (pulled for another platform only?)"
            info = client.content.info(digest)
            if info is None:
                raise ArchiveError(lacks)
            if info.size > JSON_BLOB_LIMIT:
                raise ArchiveError(f"{where}: blob {digest} is {info.size} bytes; an index, manifest or config is small")
            try:
                data = b"".join(bytes(piece) for piece in client.content.read(digest))
            except BlobNotFound:  # collected by the node's GC between the stat and the read
                raise ArchiveError(lacks) from None
            require_digest(digest_of(data), digest, what=f"blob {digest}", where=where, verdict=STORE_CORRUPT)
            self.read[digest] = data
        return self.read[digest]


class _Members(Mapping):
    """What image_from_archive sees: the layout files, and ``blobs/sha256/<hex>`` fetched on demand."""

    def __init__(self, layout: dict[str, bytes], blobs: _NodeJSON) -> None:
        self.layout = layout
        self.blobs = blobs

    def __getitem__(self, key: str) -> bytes:
        if key in self.layout:
            return self.layout[key]
        if key.startswith("blobs/sha256/"):
            return self.blobs.get("sha256:" + key.rsplit("/", 1)[-1])
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return key in self.layout or (isinstance(key, str) and key.startswith("blobs/sha256/"))

    def __iter__(self) -> Iterator[str]:
        return iter([*self.layout, *(blob_path(d) for d in self.blobs.read)])

    def __len__(self) -> int:
        return len(self.layout) + len(self.blobs.read)


def _index(target: Descriptor, name: str) -> dict:
    """index.json: the record's target with its names, as containerd's and Docker 25+'s exporters write them."""
    ref = parse(name)
    annotations = {"io.containerd.image.name": name}
    if ref.tag:
        annotations["org.opencontainers.image.ref.name"] = ref.tag  # OCI: the tag alone
    descriptor = {"mediaType": target.media_type, "digest": target.digest, "size": target.size, "annotations": annotations}
    return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [descriptor]}


def _distinct(image: Image) -> list:
    """Layers in manifest order, a repeated blob once (a tar may not hold a name twice)."""
    seen: set[str] = set()
    out = []
    for layer in image.layers:
        if layer.digest not in seen:
            seen.add(layer.digest)
            out.append(layer)
    return out


def _omitted(image: Image, omit: frozenset[str]) -> frozenset[str]:
    """``omit`` as member names."""
    names = set()
    for item in omit:
        if item.startswith("#") and item[1:].isdigit():
            position = int(item[1:])
            if position < len(image.layers):
                names.add(blob_path(image.layers[position].digest))
        elif item.startswith("sha256:"):
            names.add(blob_path(item))
        else:
            names.add(item)
    return frozenset(names)


__all__ = ["ExportPlan", "NodeSource"]
