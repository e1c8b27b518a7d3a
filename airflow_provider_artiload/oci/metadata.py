"""Read an image from an archive's small JSON members: ``index.json``, ``manifest.json``, manifests, configs.

The model these produce is :mod:`.image`. Input is untrusted: every JSON
member is depth-checked before parsing, every field checked for its shape
with an error that names the file, every blob checked against its name.
Where an archive holds several images, one is chosen as containerd chooses:
``index.json`` over ``manifest.json``, nested indexes descended, attestation
manifests skipped, then the platform asked for, or the first image.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from airflow_provider_artiload.exceptions import ArchiveError
from airflow_provider_artiload.oci.gojson import (
    CONFIG_STRUCT,
    INDEX_STRUCT,
    LAYOUT_STRUCT,
    MANIFEST_ITEM,
    MANIFEST_STRUCT,
    digest_field,
    field_of,
    load_json,
    member,
    shape_name,
    with_member,
)
from airflow_provider_artiload.oci.platform import best, of_descriptor
from airflow_provider_artiload.oci.platform import parse as parse_platform
from airflow_provider_artiload.oci.image import (
    INDEXES,
    OCI_LAYER,
    Image,
    Layer,
    blob_path,
    digest_of,
    docker_layer_type,
    is_digest,
    sniff_compression,
)

ATTESTATION = "attestation-manifest"
NAME_ANNOTATIONS = ("io.containerd.image.name", "org.opencontainers.image.ref.name")


def diff_ids_of(config_raw: bytes, *, name: str) -> list[str]:
    """The diff IDs a config lists (``rootfs.diff_ids``)."""
    config = load_json(config_raw, name=name, shape=dict, struct=CONFIG_STRUCT)
    rootfs = field_of(config, "rootfs", dict, where=name)
    diff_ids = field_of(rootfs, "diff_ids", list, where=f"{name} rootfs")
    for diff_id in diff_ids:
        if not isinstance(diff_id, str) or not is_digest(diff_id):
            raise ArchiveError(f"{name}: diff ID {diff_id!r} is not a sha256 digest")
    return diff_ids


def platform_of(config_raw: bytes, *, name: str) -> str:
    """``os/architecture[/variant]`` as a config states it (what platform choice compares)."""
    config = load_json(config_raw, name=name, shape=dict, struct=CONFIG_STRUCT)
    parts = [str(member(config, "os") or ""), str(member(config, "architecture") or ""), str(member(config, "variant") or "")]
    return "/".join(p for p in parts if p)


@dataclass
class Metadata:
    """What an archive's small JSON members say, by member name (blobs by ``blobs/sha256/<hex>``)."""

    members: Mapping[str, bytes]
    sizes: Mapping[str, int] = field(default_factory=dict)  # of every regular member (links resolved)
    heads: Mapping[str, bytes] = field(default_factory=dict)  # each member's first bytes: its compression

    def blob(self, digest: str, *, what: str) -> bytes:
        """A JSON blob by digest, refused unless its bytes have that digest: a name proves nothing."""
        raw = self.members.get(blob_path(digest))
        if raw is None:
            raise ArchiveError(f"the archive lacks the {what} blob {digest}")
        if digest_of(raw) != digest:
            raise ArchiveError(f"blob {blob_path(digest)} does not have the digest its name says ({what})")
        return raw


def image_from_archive(meta: Metadata, *, platform: str | None = None) -> Image:
    """The archive's (first) image, for ``platform`` (``os/arch[/variant]``) when it holds several.

    ``index.json`` (an OCI layout) wins over ``manifest.json``, as containerd
    reads it; a legacy docker-archive has only ``manifest.json``.
    """
    oci = "index.json" in meta.members and "oci-layout" in meta.members
    if oci:
        _check_layout_version(meta.members["oci-layout"])
        image = _from_index(meta, platform)
        if "manifest.json" in meta.members:
            legacy = _from_legacy(meta)
            if legacy.config_digest != image.config_digest and legacy.platform:
                # Docker 25+ saves a multi-platform image with a manifest.json naming one platform's image (the
                # engine's), not always the index's first: that one must be the index's image of its platform, and
                # is the archive's image unless another platform is asked for
                named = _from_index(meta, legacy.platform)
                _check_same_image(named, legacy)
                image = named if platform is None else image
            else:
                _check_same_image(image, legacy)
            image = replace(image, repo_tags=legacy.repo_tags, format="oci-archive")
        return image
    if "manifest.json" in meta.members:
        return _from_legacy(meta)  # containerd too reads manifest.json when there is no oci-layout
    if "index.json" in meta.members:
        raise ArchiveError("not an image archive: it has no manifest.json, and index.json without oci-layout")
    raise ArchiveError("not an image archive: it has neither manifest.json nor index.json")


def _check_layout_version(raw: bytes) -> None:
    """containerd refuses any ``oci-layout`` version but 1.0.0, so we do too, before any byte is loaded."""
    layout = load_json(raw, name="oci-layout", shape=dict, struct=LAYOUT_STRUCT)
    version = member(layout, "imageLayoutVersion")
    if version != "1.0.0":
        raise ArchiveError(f"oci-layout names version {version!r}; only 1.0.0 exists")


def _check_same_image(oci: Image, legacy: Image) -> None:
    """A classic store reads manifest.json, the containerd store index.json: they must describe one image."""
    if legacy.config_digest != oci.config_digest or [l.path for l in legacy.layers] != [l.path for l in oci.layers]:
        raise ArchiveError(
            f"manifest.json (config {legacy.config_digest}) and index.json (config {oci.config_digest}) "
            "describe different images; engines with different image stores would load different ones"
        )


def _from_legacy(meta: Metadata) -> Image:
    """The one ``manifest.json`` entry; layer media types from ``LayerSources`` or the bytes, as containerd decides.

    ``docker load`` loads every entry and applies its tags, so an archive of
    several images is refused, naming each: artiload checks and reports one.
    Entries that name the same config and layers are one image: their tags
    are all reported.
    """
    entries = load_json(meta.members["manifest.json"], name="manifest.json", shape=list, struct=[MANIFEST_ITEM])
    if not entries:
        raise ArchiveError("manifest.json lists no images")
    same = all(isinstance(e, dict) and member(e, "Config") == member(entries[0], "Config")
               and member(e, "Layers") == member(entries[0], "Layers") for e in entries)
    if len(entries) > 1 and same:  # one image under several entries (saved by several names): every tag applies
        tags = [t for e in entries for t in (member(e, "RepoTags") or [])]
        entries = [with_member(entries[0], "RepoTags", list(dict.fromkeys(tags)))]
    if len(entries) > 1:
        described = "; ".join(
            f"{member(e, 'Config') if isinstance(e, dict) else e!r} tagged {list(member(e, 'RepoTags') or []) if isinstance(e, dict) else []}"
            for e in entries
        )
        raise ArchiveError(
            f"manifest.json lists {len(entries)} images ({described}); the engine would load them all, "
            "artiload loads one image per archive: save each image to its own archive"
        )
    entry = entries[0]
    if not isinstance(entry, dict):
        raise ArchiveError(f"manifest.json: an entry must be an object, not {shape_name(type(entry))}")
    config_path = field_of(entry, "Config", str, where="manifest.json")
    layer_paths = field_of(entry, "Layers", list, where="manifest.json")
    tags = field_of(entry, "RepoTags", list, where="manifest.json", required=False)
    if not all(isinstance(p, str) for p in layer_paths) or not all(isinstance(t, str) for t in tags):
        raise ArchiveError("manifest.json: Layers and RepoTags must be lists of strings")
    raw = meta.members.get(config_path)
    if raw is None:
        raise ArchiveError(f"manifest.json names config {config_path!r}, which the archive does not contain")
    diff_ids = diff_ids_of(raw, name=config_path)
    if len(diff_ids) != len(layer_paths):
        raise ArchiveError(f"manifest.json names {len(layer_paths)} layers, config {config_path} lists {len(diff_ids)}")
    sources = member(entry, "LayerSources") if isinstance(member(entry, "LayerSources"), dict) else {}
    layers = []
    for diff_id, path in zip(diff_ids, layer_paths):
        digest = "sha256:" + path.rsplit("/", 1)[-1] if path.startswith("blobs/sha256/") else diff_id
        source = sources.get(diff_id)
        media = str(member(source, "mediaType") or "") if isinstance(source, dict) else ""
        if not media:
            media = docker_layer_type(sniff_compression(meta.heads.get(path, b"")))
        layers.append(Layer(diff_id=diff_id, digest=digest, media_type=media, size=meta.sizes.get(path), path=path))
    return Image(
        config_digest=digest_of(raw),
        config_size=len(raw),
        layers=tuple(layers),
        repo_tags=tuple(tags),
        format="docker-archive",
        config_path=config_path,
        platform=platform_of(raw, name=config_path),
    )


def _from_index(meta: Metadata, platform: str | None) -> Image:
    """An OCI layout's image: index.json down to one manifest, then its config and layers."""
    index = load_json(meta.members["index.json"], name="index.json", shape=dict, struct=INDEX_STRUCT)
    descriptor, parent = _choose_manifest(meta, index, "index.json", platform, parent=None, depth=0)
    manifest_digest = digest_field(descriptor, "digest", where="index.json")
    raw = meta.blob(manifest_digest, what="manifest")
    name = blob_path(manifest_digest)
    manifest = load_json(raw, name=name, shape=dict, struct=MANIFEST_STRUCT)
    config = field_of(manifest, "config", dict, where=name)
    config_digest = digest_field(config, "digest", where=f"{name} config")
    config_raw = meta.blob(config_digest, what="config")
    diff_ids = diff_ids_of(config_raw, name=blob_path(config_digest))
    descriptors = field_of(manifest, "layers", list, where=name)
    if len(descriptors) != len(diff_ids):
        raise ArchiveError(f"manifest {manifest_digest} lists {len(descriptors)} layers, its config {len(diff_ids)}")
    layers = []
    for diff_id, desc in zip(diff_ids, descriptors):
        if not isinstance(desc, dict):
            raise ArchiveError(f"{name}: a layer must be an object")
        size = field_of(desc, "size", int, where=f"{name} layer")
        layers.append(
            Layer(
                diff_id=diff_id,
                digest=digest_field(desc, "digest", where=f"{name} layer"),
                media_type=str(member(desc, "mediaType") or OCI_LAYER),
                size=size,
                path=blob_path(str(member(desc, "digest"))),
            )
        )
    tags = _ref_names(index)
    return Image(
        config_digest=config_digest,
        config_size=len(config_raw),
        layers=tuple(layers),
        manifest_digest=manifest_digest,
        index_digest=parent,
        repo_tags=tuple(tags),
        format="oci-layout",
        config_path=blob_path(config_digest),
        platform=platform_of(config_raw, name=blob_path(config_digest)),
    )


def _choose_manifest(
    meta: Metadata, index: dict[str, Any], name: str, platform: str | None, *, parent: str | None, depth: int
) -> tuple[dict[str, Any], str | None]:
    """Descend (nested) indexes to one image manifest: the platform asked for, else the only or first image."""
    if depth > 4:
        raise ArchiveError(f"{name}: indexes nest too deep")
    entries = [e for e in field_of(index, "manifests", list, where=name) if isinstance(e, dict)]
    if not entries:
        raise ArchiveError(f"{name} lists no manifests")
    images = [e for e in entries if not _is_attestation(e)]
    if depth == 0:
        _refuse_several_images(images, name)
    if len(images) == 1 and member(images[0], "mediaType") in INDEXES:
        digest = digest_field(images[0], "digest", where=name)
        nested = load_json(meta.blob(digest, what="index"), name=blob_path(digest), shape=dict, struct=INDEX_STRUCT)
        return _choose_manifest(meta, nested, blob_path(digest), platform, parent=digest, depth=depth + 1)
    if platform:  # containerd's rules (oci/platform.py): arm64 is arm64/v8, arm/v7 takes v6...
        position = best(parse_platform(platform), [of_descriptor(member(e, "platform")) for e in images])
        if position is None:
            have = sorted({_platform_text(member(e, "platform")) for e in images})
            raise ArchiveError(f"{name} has no image for platform {platform} (it has {', '.join(have) or 'none named'})")
        return images[position], parent
    return images[0], parent


def _refuse_several_images(images: list[dict[str, Any]], name: str) -> None:
    """An index naming different images (``docker save a b`` on a containerd store): containerd imports each by name."""
    digests = {str(member(e, "digest")) for e in images}
    names = [n for e in images for n in _names_of(e)]
    if len(digests) > 1 and names:
        described = "; ".join(f"{member(e, 'digest')} named {_names_of(e)}" for e in images)
        raise ArchiveError(
            f"{name} lists {len(digests)} images ({described}); the engine would load them all, "
            "artiload loads one image per archive: save each image to its own archive"
        )


def _annotations(entry: Mapping[str, Any]) -> Mapping[str, Any]:
    annotations = member(entry, "annotations")
    return annotations if isinstance(annotations, dict) else {}


def _names_of(entry: Mapping[str, Any]) -> list[str]:
    return [n for key in NAME_ANNOTATIONS if isinstance(n := _annotations(entry).get(key), str) and n]


def _is_attestation(entry: Mapping[str, Any]) -> bool:
    """BuildKit's provenance manifests sit in the index beside the images; they are never the image."""
    platform = member(entry, "platform") if isinstance(member(entry, "platform"), dict) else {}
    return _annotations(entry).get("vnd.docker.reference.type") == ATTESTATION or member(platform, "os") == "unknown"


def _platform_text(platform: Any) -> str:
    if not isinstance(platform, dict):
        return "?"
    parts = [member(platform, "os"), member(platform, "architecture"), member(platform, "variant")]
    return "/".join(str(p) for p in parts if p)


def _ref_names(index: Mapping[str, Any]) -> list[str]:
    """The full names containerd records (``io.containerd.image.name``); the OCI ``ref.name`` is only a tag."""
    names = []
    for entry in member(index, "manifests") or []:
        annotations = _annotations(entry) if isinstance(entry, dict) else {}
        name = annotations.get("io.containerd.image.name")
        if isinstance(name, str) and name:
            names.append(name)
    return names
