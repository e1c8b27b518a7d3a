"""What crosses XCom: artifacts and load results, as dataclasses with a dict form."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_artiload.exceptions import ArchiveError
from airflow_provider_artiload.oci.archive import ArchiveIndex, describe
from airflow_provider_artiload.oci.manifests import listed

DOCKER_ARCHIVE = "docker-archive"
IMAGE = "image"
ROOTFS_TAR = "tar"


@dataclass(frozen=True)
class DockerArchive:
    """A docker-archive tarball at ``path`` (a local path or an object-storage URI)."""

    path: str
    sha256: str
    size: int
    image_id: str
    repo_tags: list[str] = field(default_factory=list)
    layers: list[str] = field(default_factory=list)  # diff IDs, bottom first
    kind: str = DOCKER_ARCHIVE
    config_digest: str | None = None  # what a classic-store engine calls the image
    manifest_digest: str | None = None  # what the containerd store calls it (OCI archives)
    index_digest: str | None = None  # a multi-platform image's index, when there is one
    format: str | None = None  # docker-archive | oci-archive (OCI layout + manifest.json) | oci-layout
    hostname: str | None = None  # the worker that wrote a local file (other workers cannot read it)
    # every image the archive holds: [{"platform": "linux/arm64", "manifest_digest": ...}], in its index's order
    # (older artifacts have none: the archive is read to learn them)
    platforms: list[dict[str, Any]] = field(default_factory=list)

    def to_xcom(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_xcom(cls, value: Mapping[str, Any]) -> DockerArchive:
        if value.get("kind") != DOCKER_ARCHIVE:
            raise ArchiveError(f"expected an artifact of kind {DOCKER_ARCHIVE!r}, got {value.get('kind')!r}")
        missing = [name for name in ("path", "sha256", "size", "image_id") if not value.get(name) and name != "size"]
        if missing:
            raise ArchiveError(f"docker-archive artifact lacks {', '.join(missing)}: {dict(value)!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in value.items() if k in known})

    @classmethod
    def of_index(cls, index: ArchiveIndex, *, path: str, sha256: str, size: int, image_id: str | None = None,
                 hostname: str | None = None) -> DockerArchive:
        """The artifact of an archive written to ``path``, described from its scanned ``index``."""
        if image_id is None:
            image = index.image()
            image_id = image.manifest_digest or image.config_digest
        return cls(path=path, sha256=sha256, size=size, image_id=image_id, hostname=hostname,
                   platforms=[image.to_xcom() for image in listed(index)], **describe(index))

    def identity(self) -> set[str]:
        """Every digest the artifact promises the archive's image has (today's and older artifacts alike)."""
        return {d for d in (self.image_id, self.config_digest, self.manifest_digest, self.index_digest) if d}


@dataclass(frozen=True)
class RootfsTar:
    """A root filesystem tarball (BuildKit's ``tar`` exporter): not a loadable image."""

    path: str
    sha256: str
    size: int
    kind: str = ROOTFS_TAR

    def to_xcom(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ImageArtifact:
    """An image that lives in an engine (what a build with ``export="image"`` returns)."""

    image: str
    image_id: str
    engine: str
    kind: str = IMAGE

    def to_xcom(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class LoadOutcome:
    """One engine's result of a load."""

    image_id: str
    tags: list[str]
    engine: str
    mode: str = "full"  # skipped | delta | full
    bytes_sent: int = 0
    seconds: float = 0.0
    layers_sent: int = 0
    layers_skipped: int = 0
    archive_tags: list[str] = field(default_factory=list)  # tags the archive itself carried, applied by the engine
    platform: str | None = None  # the platform of the image loaded (os/arch[/variant]), where known
    target_platform: str | None = None  # the target's own platform (detected, or its connection's platform extra)
    manifest_digest: str | None = None  # the manifest loaded (one platform's), or None for a classic layout

    def to_xcom(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
