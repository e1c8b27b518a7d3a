"""The committed containerd *_pb2 modules are what scripts/generate_protos.py makes, with containerd's wire names."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "scripts"))
import generate_protos  # noqa: E402

PROTO_DIR = generate_protos.CONTAINERD_PROTO_DIR


def test_generated_modules_match_the_proto_files():
    stale = generate_protos.drift(PROTO_DIR)
    assert not stale, f"regenerate with `python scripts/generate_protos.py`: {stale}"


def test_imports_between_generated_modules_are_package_relative():
    for proto in generate_protos.proto_files(PROTO_DIR):
        for suffix in ("_pb2.py", "_pb2_grpc.py"):
            text = (proto.parent / (proto.stem + suffix)).read_text()
            assert not [line for line in text.splitlines() if line.startswith("import ") and "_pb2" in line]


def test_service_and_message_names_are_containerds():
    from airflow_provider_artiload.containerd._proto import (
        containerd_types_pb2, content_pb2, diff_pb2, images_pb2, leases_pb2, namespaces_pb2, snapshots_pb2, version_pb2,
    )

    services = {
        version_pb2: ("Version", "containerd.services.version.v1.Version", {"Version"}),
        namespaces_pb2: ("Namespaces", "containerd.services.namespaces.v1.Namespaces", {"Get", "List"}),
        content_pb2: ("Content", "containerd.services.content.v1.Content",
                      {"Info", "Update", "Delete", "Read", "Status", "ListStatuses", "Write", "Abort"}),
        images_pb2: ("Images", "containerd.services.images.v1.Images", {"Get", "List", "Create", "Update", "Delete"}),
        leases_pb2: ("Leases", "containerd.services.leases.v1.Leases", {"Create", "Delete", "List", "AddResource"}),
        snapshots_pb2: ("Snapshots", "containerd.services.snapshots.v1.Snapshots", {"Prepare", "Mounts", "Commit", "Remove", "Stat"}),
        diff_pb2: ("Diff", "containerd.services.diff.v1.Diff", {"Apply"}),
    }
    for module, (name, full_name, methods) in services.items():
        service = module.DESCRIPTOR.services_by_name[name]
        assert service.full_name == full_name
        assert {m.name for m in service.methods} == methods
    assert containerd_types_pb2.Descriptor.DESCRIPTOR.full_name == "containerd.types.Descriptor"

    def numbers(message) -> dict[str, int]:
        return {f.name: f.number for f in message.DESCRIPTOR.fields}

    assert numbers(containerd_types_pb2.Descriptor) == {"media_type": 1, "digest": 2, "size": 3, "annotations": 5}
    assert numbers(containerd_types_pb2.Mount) == {"type": 1, "source": 2, "target": 3, "options": 4}
    assert numbers(content_pb2.WriteContentRequest) == {
        "action": 1, "ref": 2, "total": 3, "expected": 4, "offset": 5, "data": 6, "labels": 7}
    assert numbers(content_pb2.WriteContentResponse) == {"action": 1, "offset": 4, "total": 5, "digest": 6}
    assert numbers(content_pb2.Info) == {"digest": 1, "size": 2, "labels": 5}
    assert numbers(content_pb2.Status) == {"ref": 3, "offset": 4, "total": 5, "expected": 6}
    assert (content_pb2.STAT, content_pb2.WRITE, content_pb2.COMMIT) == (0, 1, 2)
    assert numbers(images_pb2.Image) == {"name": 1, "labels": 2, "target": 3}
    assert numbers(leases_pb2.CreateRequest) == {"id": 1, "labels": 3}
    assert numbers(snapshots_pb2.CommitSnapshotRequest) == {"snapshotter": 1, "name": 2, "key": 3, "labels": 4}
    assert numbers(snapshots_pb2.Info) == {"name": 1, "parent": 2, "kind": 3, "labels": 6}
    assert snapshots_pb2.COMMITTED == 3
    assert numbers(diff_pb2.ApplyRequest) == {"diff": 1, "mounts": 2}


def test_buildkit_and_containerd_modules_load_side_by_side():
    """Both sets register in protobuf's default pool: their file names must not collide."""
    import airflow_provider_artiload.buildkit._proto.control_pb2  # noqa: F401
    import airflow_provider_artiload.containerd._proto.content_pb2  # noqa: F401

    names = [p.name for d in generate_protos.PROTO_DIRS for p in generate_protos.proto_files(d)]
    assert len(names) == len(set(names))
