"""Which layers an engine already has, and which of an archive's layers it lacks.

A classic-store engine skips every layer whose *chain* it already has
without opening that layer's file, so an archive may leave those out (a thin
archive). Chain IDs: ``chain(L0) = diff(L0)``, ``chain(Ln) = sha256(chain(Ln-1)
+ " " + diff(Ln))``; having chain n implies having every chain below it, so
what an engine lacks is always a suffix of the image's layers.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from airflow_provider_artiload.engine.archive import ArchiveIndex
from airflow_provider_artiload.engine.client import EngineClient
from airflow_provider_artiload.exceptions import ArchiveError, ImageNotFound

CONTAINERD_SNAPSHOTTER = "io.containerd.snapshotter.v1"
MAX_JSON = 16 << 20


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    chains: list[str] = []
    for diff_id in diff_ids:
        chains.append(diff_id if not chains else "sha256:" + hashlib.sha256(f"{chains[-1]} {diff_id}".encode()).hexdigest())
    return chains


def uses_containerd_store(info: dict[str, Any]) -> bool:
    """Engines on the containerd image store (default on fresh Docker 29+) load differently."""
    status = {str(k): str(v) for k, v in (info.get("DriverStatus") or [])}
    return status.get("driver-type") == CONTAINERD_SNAPSHOTTER


def present_chains(client: EngineClient) -> set[str]:
    """Every layer chain the engine holds, from its images' root filesystems."""
    chains: set[str] = set()
    for summary in client.list_images():
        try:
            layers = client.inspect_image(summary["Id"]).get("RootFS", {}).get("Layers") or []
        except ImageNotFound:
            continue  # removed while we looked
        chains.update(chain_ids(layers))
    return chains


def layers_present(client: EngineClient, diff_ids: Sequence[str]) -> int:
    """How many of the image's bottom layers the engine already has."""
    have = present_chains(client)
    count = 0
    for chain in chain_ids(diff_ids):
        if chain not in have:
            break
        count += 1
    return count


@dataclass(frozen=True)
class ArchiveLayout:
    """A seekable archive's table: member extents, and each layer position's member name."""

    image_id: str
    diff_ids: list[str]
    layer_names: list[str]  # manifest order, bottom first (a name may repeat)
    extents: dict[str, tuple[int, int]]  # member name -> (start of its headers, end of its padded data)


def read_layout(path: str) -> ArchiveLayout:
    """Index a docker-archive file by reading its headers only (tarfile seeks over the data)."""
    try:
        with tarfile.open(path, mode="r:") as tar:
            members = {m.name: m for m in tar.getmembers()}
            manifest = json.loads(_small(tar, members, "manifest.json", path))
            if not isinstance(manifest, list) or not manifest:
                raise ArchiveError(f"{path}: manifest.json lists no images")
            config_raw = _small(tar, members, manifest[0].get("Config", ""), path)
    except (tarfile.TarError, ValueError) as exc:
        raise ArchiveError(f"{path}: not a readable docker-archive: {exc}") from None
    except FileNotFoundError:
        raise ArchiveError(f"archive {path} does not exist") from None
    diff_ids = list(json.loads(config_raw).get("rootfs", {}).get("diff_ids") or [])
    layer_names = list(manifest[0].get("Layers") or [])
    if len(layer_names) != len(diff_ids):
        raise ArchiveError(f"{path}: manifest names {len(layer_names)} layers, the config {len(diff_ids)}")
    extents = {name: (m.offset, m.offset_data + -(-m.size // 512) * 512) for name, m in members.items()}
    return ArchiveLayout(
        image_id="sha256:" + hashlib.sha256(config_raw).hexdigest(),
        diff_ids=diff_ids,
        layer_names=layer_names,
        extents=extents,
    )


def _small(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], name: str, path: str) -> bytes:
    member = members.get(name)
    if member is None:
        raise ArchiveError(f"{path}: not a docker-archive: it has no {name or 'config'}")
    if member.size > MAX_JSON:
        raise ArchiveError(f"{path}: {name} is {member.size} bytes; a docker-archive's JSON files are small")
    handle = tar.extractfile(member)
    assert handle is not None
    return handle.read()


def layer_position(name: str, index: ArchiveIndex, diff_ids: Sequence[str]) -> int | None:
    """Which layer of the image a streamed member is, decided at its header; None if not a layer or unknown.

    - OCI layout (Docker 25+): ``blobs/sha256/<hex>``, the digest of an
      uncompressed layer, is its diff ID.
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
