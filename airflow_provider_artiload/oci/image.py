"""An image's identity and its blobs: the one place that knows what "the image ID" is.

Every other module asks this one; none compares IDs itself. An image is
known by up to three digests:

- the **config digest**: what a classic-store engine calls the image ID;
- the **manifest digest**: what a containerd-store engine (and containerd
  itself) calls it, for a single-platform image;
- the **index digest**, above the manifest of a multi-platform image: then
  the containerd store calls the image by the index.

A legacy docker-archive has no manifest blob. Loading one, containerd makes a
Docker schema-2 manifest from ``manifest.json`` with Go's compact JSON, so
that manifest's digest is predictable: :meth:`Image.converted_manifest`
builds the same bytes (checked against Docker 28.5's containerd store).
Reading an image from an archive's JSON is :mod:`.metadata`'s job.

Layers are known by their diff ID (sha256 of the uncompressed tar, what
``RootFS.Layers`` lists) and their blob (digest, media type, size), which is
the same tar for uncompressed layers and a gzip or zstd stream otherwise.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Store = Literal["classic", "containerd"]
Format = Literal["docker-archive", "oci-archive", "oci-layout"]
CONTAINERD_SNAPSHOTTER = "io.containerd.snapshotter.v1"

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
INDEXES = (OCI_INDEX, DOCKER_LIST)
MANIFESTS = (OCI_MANIFEST, DOCKER_MANIFEST)
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
COMPRESSIONS = {"gzip": (b"\x1f\x8b", ("+gzip", ".gzip")), "zstd": (b"\x28\xb5\x2f\xfd", ("+zstd", ".zstd"))}


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def hex_of(digest: str) -> str:
    return digest.split(":", 1)[-1]


def blob_path(digest: str) -> str:
    """Where an OCI image layout keeps a blob."""
    return f"blobs/sha256/{hex_of(digest)}"


def is_digest(text: str) -> bool:
    algorithm, _, value = str(text).partition(":")
    return algorithm == "sha256" and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def compression_of(media_type: str) -> str:
    """``none``, ``gzip`` or ``zstd``, from a layer's media type."""
    for name, (_, suffixes) in COMPRESSIONS.items():
        if media_type.endswith(suffixes):
            return name
    return "none"


def sniff_compression(head: bytes) -> str:
    """What a blob's first bytes say (as Go's DecompressStream decides)."""
    for name, (magic, _) in COMPRESSIONS.items():
        if head.startswith(magic):
            return name
    return "none"


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """OCI chain IDs: ``chain(L0) = diff(L0)``, ``chain(Ln) = sha256(chain(Ln-1) + " " + diff(Ln))``."""
    chains: list[str] = []
    for diff_id in diff_ids:
        chains.append(diff_id if not chains else digest_of(f"{chains[-1]} {diff_id}".encode()))
    return chains


def store_of(info: Mapping[str, Any]) -> Store:
    """Which image store an engine uses, from ``GET /info`` (the containerd store is the default on fresh Docker 29+)."""
    status = {str(k): str(v) for k, v in (info.get("DriverStatus") or [])}
    return "containerd" if status.get("driver-type") == CONTAINERD_SNAPSHOTTER else "classic"


@dataclass(frozen=True)
class Layer:
    """One layer: its diff ID and the blob that carries it."""

    diff_id: str
    digest: str  # of the blob; equals diff_id for an uncompressed layer
    media_type: str = OCI_LAYER
    size: int | None = None
    path: str | None = None  # member name in an archive, when known

    @property
    def compression(self) -> str:
        return compression_of(self.media_type)

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass(frozen=True)
class Image:
    """An image's identity and layers, as an archive or an engine describes it."""

    config_digest: str
    layers: tuple[Layer, ...] = ()
    manifest_digest: str | None = None
    index_digest: str | None = None
    config_size: int | None = None
    repo_tags: tuple[str, ...] = ()
    format: Format = "docker-archive"
    config_path: str | None = None
    platform: str | None = None

    @property
    def diff_ids(self) -> list[str]:
        return [layer.diff_id for layer in self.layers]

    def id_for(self, store: Store) -> str:
        """The ID an engine with ``store`` gives this image once loaded."""
        if store == "classic":
            return self.config_digest
        return self.index_digest or self.manifest_digest or digest_of(self.converted_manifest())

    def ids(self) -> set[str]:
        """Every digest that names this image in some store."""
        known = {self.config_digest, self.manifest_digest, self.index_digest}
        if self.manifest_digest is None and self.layers:
            known.add(digest_of(self.converted_manifest()))
        return {d for d in known if d}

    def matches(self, engine_id: str | None) -> bool:
        """Is ``engine_id`` (an ``Id`` from inspect, any store) this image?"""
        return bool(engine_id) and engine_id in self.ids()

    def converted_manifest(self) -> bytes:
        """The Docker schema-2 manifest containerd makes from a legacy ``manifest.json`` entry."""
        manifest = {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": DOCKER_CONFIG, "digest": self.config_digest, "size": self.config_size},
            "layers": [
                {"mediaType": docker_layer_type(layer.compression), "digest": layer.digest, "size": layer.size}
                for layer in self.layers
            ],
        }
        return json.dumps(manifest, separators=(",", ":")).encode()

    def legacy_manifest(self) -> bytes:
        """A ``manifest.json`` for engines that need one (classic store) when the archive has none."""
        entry = {
            "Config": self.config_path or blob_path(self.config_digest),
            "RepoTags": list(self.repo_tags),
            "Layers": [layer.path or blob_path(layer.digest) for layer in self.layers],
        }
        return json.dumps([entry], separators=(",", ":")).encode()

    def describe(self) -> dict[str, Any]:
        """What an artifact records of the image."""
        return {
            "config_digest": self.config_digest,
            "manifest_digest": self.manifest_digest,
            "index_digest": self.index_digest,
            "format": self.format,
        }


def docker_layer_type(compression: str) -> str:
    """containerd names a legacy archive's layers by what their bytes are, not by any media type given."""
    return DOCKER_LAYER + {"none": "", "gzip": ".gzip", "zstd": ".zstd"}[compression]
