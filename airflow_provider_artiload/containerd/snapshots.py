"""containerd's snapshotters and differ: the services an unpack needs (``client.SnapshotService()``, ``DiffService()``).

A snapshot is prepared (active, with mounts), filled by the differ applying
a layer blob onto those mounts, then committed under a name; ``unpack.py``
drives that order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow_provider_artiload.containerd._proto import diff_pb2, diff_pb2_grpc, snapshots_pb2, snapshots_pb2_grpc
from airflow_provider_artiload.containerd.connection import Connection
from airflow_provider_artiload.containerd.images import Descriptor


class Snapshots:
    """The snapshots service, for any snapshotter by name (``overlayfs``, ``native``)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def committed(self, snapshotter: str, name: str) -> bool:
        """Whether a committed snapshot ``name`` exists (an active one with that key does not count)."""
        request = snapshots_pb2.StatSnapshotRequest(snapshotter=snapshotter, key=name)
        reply = self.connection.call_or_none(snapshots_pb2_grpc.SnapshotsStub, "Stat", request, f"Snapshots.Stat {name}")
        return reply is not None and reply.info.kind == snapshots_pb2.COMMITTED

    def prepare(self, snapshotter: str, key: str, parent: str, labels: Mapping[str, str]) -> Sequence[Any]:
        """An active snapshot ``key`` on ``parent``; its mounts, for the differ."""
        request = snapshots_pb2.PrepareSnapshotRequest(snapshotter=snapshotter, key=key, parent=parent, labels=dict(labels))
        return self.connection.call(snapshots_pb2_grpc.SnapshotsStub, "Prepare", request, f"Snapshots.Prepare {key}").mounts

    def commit(self, snapshotter: str, name: str, key: str, labels: Mapping[str, str]) -> None:
        """Commit the active snapshot ``key`` as ``name``; ContainerdError(code='ALREADY_EXISTS') if taken."""
        request = snapshots_pb2.CommitSnapshotRequest(snapshotter=snapshotter, name=name, key=key, labels=dict(labels))
        self.connection.call(snapshots_pb2_grpc.SnapshotsStub, "Commit", request, f"Snapshots.Commit {name}")

    def remove(self, snapshotter: str, key: str) -> bool:
        """Remove a snapshot; False if there was none."""
        request = snapshots_pb2.RemoveSnapshotRequest(snapshotter=snapshotter, key=key)
        return self.connection.call_or_none(snapshots_pb2_grpc.SnapshotsStub, "Remove", request, "Snapshots.Remove") is not None


class Diff:
    """The diff service: the node decompresses and extracts a layer blob onto mounts."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def apply(self, layer: Descriptor, mounts: Sequence[Any]) -> str:
        """Apply the blob ``layer`` onto ``mounts``; return the digest of what it unpacked to (its diff ID)."""
        request = diff_pb2.ApplyRequest(diff=layer.to_proto(), mounts=mounts)
        return self.connection.call(diff_pb2_grpc.DiffStub, "Apply", request, f"Diff.Apply {layer.digest}").applied.digest


__all__ = ["Diff", "Snapshots"]
