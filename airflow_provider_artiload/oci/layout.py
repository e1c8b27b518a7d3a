"""Where each member of an archive file lies, and which layer a streamed member is."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from airflow_provider_artiload.oci.archive import ArchiveIndex, ArchiveScanner
from airflow_provider_artiload.exceptions import ArchiveError
from airflow_provider_artiload.oci.image import Image, chain_ids
from airflow_provider_artiload.oci.tar import padding

__all__ = ["ArchiveLayout", "index_file", "read_layout", "layer_position"]


@dataclass(frozen=True)
class ArchiveLayout:
    """A seekable archive's table: its image, and member extents for leaving members out."""

    image: Image
    extents: dict[str, tuple[int, int]]  # member name -> (start of its headers, end of its padded data)
    has_legacy_manifest: bool
    index: ArchiveIndex | None = None  # what the scan learned (metadata, links): which members the image names

    @property
    def layer_names(self) -> list[str]:
        """Each layer's member name, bottom first ("" where the archive names none)."""
        return [layer.path or "" for layer in self.image.layers]


def index_file(path: str) -> ArchiveIndex:
    """Scan a local archive exactly as a stream would be scanned, seeking over layer data."""
    scanner = ArchiveScanner()
    try:
        with open(path, "rb") as handle:
            while True:
                if skip := scanner.skippable():
                    handle.seek(skip, 1)
                    scanner.skip()
                    continue
                chunk = handle.read(scanner.wanted())
                if not chunk:
                    break
                scanner.feed(chunk)
    except FileNotFoundError:
        raise ArchiveError(f"archive {path} does not exist") from None
    return scanner.finish()


def read_layout(path: str, platform: str | None = None) -> ArchiveLayout:
    """Index an archive file by reading its headers and metadata only."""
    try:
        index = index_file(path)
        image = index.image(platform)
    except ArchiveError as exc:
        raise ArchiveError(f"{path}: {exc}") from None
    extents = {name: (m.header_offset, m.offset + m.size + len(padding(m.size))) for name, m in index.members.items()}
    return ArchiveLayout(image=image, extents=extents, has_legacy_manifest="manifest.json" in index.metadata, index=index)


def layer_position(name: str, index: ArchiveIndex, diff_ids: Sequence[str]) -> int | None:
    """Which layer of the image a streamed member is, decided at its header; None if not a layer or unknown.

    - OCI layout: ``blobs/sha256/<hex>`` of an uncompressed layer is its diff
      ID (a compressed blob cannot be placed before the manifest arrives).
    - Classic layout: ``<v1 id>/layer.tar`` directories come in lexical, not
      layer, order; but each ``<v1 id>/json`` arrives first, and the v1 ID is
      a digest over that JSON and the layer's chain ID (moby
      ``image/v1.CreateID``), so trying each chain ID finds the position.
    Unknown members are simply forwarded in full, which is always safe.
    """
    if name.startswith("blobs/sha256/"):
        digest = "sha256:" + name.rsplit("/", 1)[-1]
        return diff_ids.index(digest) if digest in diff_ids else None
    if not name.endswith("/layer.tar"):
        return None
    raw = index.metadata.get(name[: -len("layer.tar")] + "json")
    return _v1_position(raw.decode("utf-8", "replace"), chain_ids(diff_ids)) if raw else None


def _v1_position(text: str, chains: Sequence[str]) -> int | None:
    """The position whose chain ID, put into the v1 JSON as moby does, hashes to the JSON's ``id``."""
    try:
        fields = _raw_fields(text)
        v1_id = json.loads(fields.pop("id"))
    except (KeyError, ValueError, IndexError):
        return None
    parent = json.loads(fields.pop("parent")) if "parent" in fields else None
    for with_os in (False, True):  # only the top layer's v1 image carries "os" into its ID
        base = {k: v for k, v in fields.items() if with_os or k != "os"}
        if parent:
            base["parent"] = json.dumps("sha256:" + parent)
        for position, chain in enumerate(chains):
            candidate = {**base, "layer_id": json.dumps(chain)}
            blob = "{" + ",".join(f"{json.dumps(k)}:{candidate[k]}" for k in sorted(candidate)) + "}"
            if hashlib.sha256(blob.encode()).hexdigest() == v1_id:
                return position
    return None


def _raw_fields(text: str) -> dict[str, str]:
    """A JSON object's top-level values as their exact source text (Go wrote them compact)."""
    decoder = json.JSONDecoder()
    fields: dict[str, str] = {}
    i = text.index("{") + 1
    while True:
        while text[i] in " \t\r\n,":
            i += 1
        if text[i] == "}":
            return fields
        key, i = decoder.raw_decode(text, i)
        i = text.index(":", i) + 1
        while text[i] in " \t\r\n":
            i += 1
        _, end = decoder.raw_decode(text, i)
        fields[key] = text[i:end]
        i = end
