"""ContainerdClient: containerd's gRPC API over any artiload Stream (unix socket, SSH streamlocal).

Like containerd's Go client, it hands out services over one connection:
``client.content``, ``client.images``, ``client.leases``,
``client.snapshots`` and ``client.diff``. The connection (channel, namespace
and lease metadata, error translation) is in ``connection.py``; unpacking
(``unpack.Unpacker``) and the resumable blob stream (``stream.BlobStream``)
take the services they need, never this client.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from google.protobuf import empty_pb2

from airflow_provider_artiload.containerd._proto import namespaces_pb2, namespaces_pb2_grpc, version_pb2_grpc
from airflow_provider_artiload.containerd.connection import Connection
from airflow_provider_artiload.containerd.content import ContentStore
from airflow_provider_artiload.containerd.images import Images
from airflow_provider_artiload.containerd.introspection import Introspection
from airflow_provider_artiload.containerd.leases import Leases
from airflow_provider_artiload.containerd.snapshots import Diff, Snapshots
from airflow_provider_artiload.transport.grpc import Duplex


@dataclass(frozen=True)
class Version:
    version: str
    revision: str


class ContainerdClient:
    """A containerd client in one namespace; connects on first use, through ``dial``."""

    def __init__(
        self, dial: Callable[[], Duplex], *, namespace: str = "k8s.io", where: str = "containerd", timeout: float = 60.0
    ) -> None:
        self.connection = Connection(dial, namespace=namespace, where=where, timeout=timeout)
        self.content = ContentStore(self.connection)
        self.images = Images(self.connection)
        self.leases = Leases(self.connection)
        self.snapshots = Snapshots(self.connection)
        self.diff = Diff(self.connection)
        self.introspection = Introspection(self.connection)

    @property
    def namespace(self) -> str:
        return self.connection.namespace

    @property
    def where(self) -> str:
        return self.connection.where

    def version(self) -> Version:
        reply = self.connection.call(version_pb2_grpc.VersionStub, "Version", empty_pb2.Empty(), "Version")
        return Version(reply.version, reply.revision)

    def namespaces(self) -> list[str]:
        request = namespaces_pb2.ListNamespacesRequest()
        reply = self.connection.call(namespaces_pb2_grpc.NamespacesStub, "List", request, "Namespaces.List")
        return sorted(n.name for n in reply.namespaces)

    def has_namespace(self, name: str | None = None) -> bool:
        """Whether ``name`` (default: this client's namespace) exists.

        Namespaces.Get answers OK with empty labels for a missing namespace
        (seen on 1.6), so this asks List. containerd creates a namespace on first write.
        """
        return (name or self.namespace) in self.namespaces()

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> ContainerdClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


__all__ = ["ContainerdClient", "Version"]
