"""Chain IDs, store detection and streamed-layer identification. No engine needed."""

from __future__ import annotations

import hashlib
import json

from airflow_provider_artiload.oci.archive import ArchiveIndex
from airflow_provider_artiload.oci.layout import chain_ids, layer_position
from airflow_provider_artiload.oci.image import store_of

DIFFS = ["sha256:" + hashlib.sha256(bytes([i])).hexdigest() for i in range(3)]


def test_chain_ids_follow_the_oci_definition():
    chains = chain_ids(DIFFS)
    assert chains[0] == DIFFS[0]
    assert chains[1] == "sha256:" + hashlib.sha256(f"{DIFFS[0]} {DIFFS[1]}".encode()).hexdigest()
    assert chains[2] == "sha256:" + hashlib.sha256(f"{chains[1]} {DIFFS[2]}".encode()).hexdigest()


def test_store_detection():
    assert store_of({"Driver": "overlayfs", "DriverStatus": [["driver-type", "io.containerd.snapshotter.v1"]]}) == "containerd"
    assert store_of({"Driver": "overlay2", "DriverStatus": [["Backing Filesystem", "extfs"]]}) == "classic"
    assert store_of({}) == "classic"


def _v1_json(position: int, parent: str | None) -> tuple[str, str]:
    """A v1 layer JSON as moby writes it, with its v1 ID computed the way moby's CreateID does."""
    body = {"created": "1970-01-01T00:00:00Z", "container_config": {"Hostname": "", "Cmd": None}}
    fields = {k: json.dumps(v, separators=(",", ":")) for k, v in body.items()}
    fields["layer_id"] = json.dumps(chain_ids(DIFFS)[position])
    if parent:
        fields["parent"] = json.dumps("sha256:" + parent)
    v1_id = hashlib.sha256(("{" + ",".join(f'"{k}":{fields[k]}' for k in sorted(fields)) + "}").encode()).hexdigest()
    written = {"id": v1_id, **({"parent": parent} if parent else {}), **body, "os": "linux"}
    return v1_id, json.dumps(written, separators=(",", ":"))


def test_classic_layer_dirs_are_identified_from_their_json():
    index = ArchiveIndex()
    parent = None
    ids = []
    for position in range(3):
        v1_id, text = _v1_json(position, parent)
        index.metadata[f"{v1_id}/json"] = text.encode()
        ids.append(v1_id)
        parent = v1_id
    assert [layer_position(f"{v1}/layer.tar", index, DIFFS) for v1 in ids] == [0, 1, 2]
    assert layer_position("ffff/layer.tar", index, DIFFS) is None  # no json seen: unknown, sent in full
    assert layer_position("manifest.json", index, DIFFS) is None


def test_oci_blobs_are_identified_by_digest():
    index = ArchiveIndex()
    assert layer_position("blobs/sha256/" + DIFFS[1].split(":")[1], index, DIFFS) == 1
    assert layer_position("blobs/sha256/" + "0" * 64, index, DIFFS) is None
