"""containerd's container records (``client.ContainerService()``): what runs, or could run, on a node.

Retention asks it which images are in use: a container, running or not,
names its image and the snapshot its root filesystem sits on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from airflow_provider_artiload.containerd._proto import containers_pb2, containers_pb2_grpc
from airflow_provider_artiload.containerd.connection import Connection


@dataclass(frozen=True)
class ContainerRecord:
    id: str
    image: str  # the image name it was created from ("" for some sandboxes)
    snapshotter: str = ""
    snapshot_key: str = ""  # its active snapshot; the parent is the image's top layer chain
    labels: Mapping[str, str] = field(default_factory=dict)


class Containers:
    """The containers service: list the namespace's containers (read only)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def list(self, filters: Sequence[str] = ()) -> list[ContainerRecord]:
        request = containers_pb2.ListContainersRequest(filters=list(filters))
        reply = self.connection.call(containers_pb2_grpc.ContainersStub, "List", request, "Containers.List")
        return [ContainerRecord(c.id, c.image, c.snapshotter, c.snapshot_key, dict(c.labels)) for c in reply.containers]


__all__ = ["ContainerRecord", "Containers"]
