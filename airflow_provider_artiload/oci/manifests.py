"""The images an archive lists, one per platform: what a multi-platform artifact holds, and which a target takes.

An OCI layout's ``index.json`` names either the images themselves or (as
Docker's save and BuildKit's exporters write it) one index that lists a
manifest per platform, beside BuildKit's attestation manifests. This module
descends to that list and gives, per image, its platform (the index entry's
``platform``, else its config's) and its manifest digest; attestations are
left out. A legacy docker-archive holds one image, known by its config.

Reading the JSON is :mod:`.metadata`'s; the rules for which image a
platform takes are :mod:`.platform`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from airflow_provider_artiload.exceptions import ArchiveError, ArtiloadError
from airflow_provider_artiload.oci.archive import ArchiveIndex
from airflow_provider_artiload.oci.image import INDEXES, blob_path
from airflow_provider_artiload.oci.gojson import load_json, member
from airflow_provider_artiload.oci.metadata import ATTESTATION, platform_of
from airflow_provider_artiload.oci.platform import Platform, best, described, of_descriptor, parse

MAX_DEPTH = 4


@dataclass(frozen=True)
class Listed:
    """One image of an archive: its platform (None if nothing states one) and its manifest digest (None: legacy)."""

    platform: Platform | None
    manifest_digest: str | None
    index_digest: str | None = None  # the index that lists it, when that index is a blob

    def to_xcom(self) -> dict[str, Any]:
        return {"platform": str(self.platform) if self.platform else None, "manifest_digest": self.manifest_digest}


def listed(index: ArchiveIndex) -> list[Listed]:
    """Every image the archive lists, in its index's order (attestations left out)."""
    meta = index.metadata
    if "index.json" in meta and "oci-layout" in meta:
        return _from_index(index, load_json(meta["index.json"], name="index.json", shape=dict), None, 0)
    image = index.image()
    return [Listed(_config_platform(index, image.config_path or blob_path(image.config_digest)), image.manifest_digest)]


def _from_index(index: ArchiveIndex, value: dict[str, Any], digest: str | None, depth: int) -> list[Listed]:
    if depth > MAX_DEPTH:
        raise ArchiveError("indexes nest too deep")
    entries = [e for e in (member(value, "manifests") or []) if isinstance(e, dict) and not _is_attestation(e)]
    if len(entries) == 1 and member(entries[0], "mediaType") in INDEXES:
        child = str(member(entries[0], "digest"))
        raw = index.metadata.get(index.links.get(blob_path(child), blob_path(child)))
        if raw is None:
            raise ArchiveError(f"the archive lacks the index blob {child}")
        return _from_index(index, load_json(raw, name=blob_path(child), shape=dict), child, depth + 1)
    out = []
    for entry in entries:
        manifest = str(member(entry, "digest") or "")
        platform = of_descriptor(member(entry, "platform")) or _manifest_platform(index, manifest)
        out.append(Listed(platform, manifest or None, digest))
    return out


def _is_attestation(entry: dict[str, Any]) -> bool:
    annotations = member(entry, "annotations") if isinstance(member(entry, "annotations"), dict) else {}
    platform = of_descriptor(member(entry, "platform"))
    return annotations.get("vnd.docker.reference.type") == ATTESTATION or bool(platform and platform.is_attestation)


def _manifest_platform(index: ArchiveIndex, digest: str) -> Platform | None:
    """The platform a manifest's config states (an index entry without ``platform``)."""
    raw = index.metadata.get(index.links.get(blob_path(digest), blob_path(digest))) if digest else None
    if raw is None:
        return None
    try:
        config = member(load_json(raw, name=blob_path(digest), shape=dict), "config")
        config_digest = str(member(config, "digest")) if isinstance(config, dict) else ""
    except ArchiveError:
        return None
    return _config_platform(index, blob_path(config_digest)) if config_digest else None


def _config_platform(index: ArchiveIndex, path: str) -> Platform | None:
    raw = index.metadata.get(index.links.get(path, path))
    if raw is None:
        return None
    try:
        return parse(platform_of(raw, name=path))
    except ArtiloadError:  # a config without os/architecture, or not one at all
        return None


def choose(images: list[Listed], target: Platform) -> Listed | None:
    """The image ``target`` takes (containerd's rules), or None."""
    position = best(target, [image.platform for image in images])
    return images[position] if position is not None else None


def platforms_of(images: list[Listed]) -> str:
    """``linux/amd64, linux/arm64``: for messages."""
    return described(image.platform for image in images)


__all__ = ["Listed", "choose", "listed", "platforms_of"]
