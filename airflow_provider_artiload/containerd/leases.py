"""containerd leases: what a load creates is safe from GC until its lease ends (``client.LeasesService()``).

A lease is per thread: inside :meth:`Leases.lease` every call that thread
makes carries it (see ``connection.py``), as Go's ``leases.WithLease(ctx)``.
"""

from __future__ import annotations

import contextlib
import datetime
import secrets
from collections.abc import Iterator, Mapping

from airflow_provider_artiload.containerd._proto import leases_pb2, leases_pb2_grpc
from airflow_provider_artiload.containerd.connection import Connection
from airflow_provider_artiload.containerd.errors import ContainerdError

LEASE_EXPIRE_LABEL = "containerd.io/gc.expire"


class Leases:
    """The leases service: a lease for a block of calls, protecting blobs, listing leases."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    @property
    def current(self) -> str | None:
        """The lease this thread's calls carry, if any."""
        return self.connection.current_lease

    @contextlib.contextmanager
    def lease(self, expire: float | None = 3600.0, *, labels: Mapping[str, str] | None = None) -> Iterator[str]:
        """A lease for the calls this thread makes inside the block; deleted on exit, even on failure.

        ``expire`` (seconds) is the backstop: if the delete cannot reach the
        node, containerd's GC drops the lease after that time anyway.
        """
        if self.current:
            yield self.current  # nested: the outer lease already protects everything
            return
        lease_id = self._create(expire, labels)
        self.connection.current_lease = lease_id
        try:
            yield lease_id
        finally:
            self.connection.current_lease = None
            request = leases_pb2.DeleteRequest(id=lease_id)
            self.connection.call_or_none(leases_pb2_grpc.LeasesStub, "Delete", request, "Leases.Delete")

    def _create(self, expire: float | None, labels: Mapping[str, str] | None) -> str:
        all_labels = dict(labels or {})
        if expire:
            until = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=expire)
            all_labels[LEASE_EXPIRE_LABEL] = until.strftime("%Y-%m-%dT%H:%M:%SZ")
        lease_id = f"artiload-{secrets.token_hex(8)}"
        request = leases_pb2.CreateRequest(id=lease_id, labels=all_labels)
        try:
            self.connection.call(leases_pb2_grpc.LeasesStub, "Create", request, "Leases.Create")
        except ContainerdError as exc:
            if exc.code != "ALREADY_EXISTS":  # a retried create that had landed: the id is ours
                raise
        return lease_id

    def protect(self, digest: str) -> None:
        """Add a blob the node already holds to the current lease: an earlier failed load's blobs are
        held by nothing once its lease is gone, and GC could take them before this load names its image."""
        if not self.current:
            return
        request = leases_pb2.AddResourceRequest(id=self.current, resource=leases_pb2.Resource(id=digest, type="content"))
        self.connection.call(leases_pb2_grpc.LeasesStub, "AddResource", request, f"Leases.AddResource {digest}")

    def list(self) -> list[str]:
        """The ids of every lease in the namespace."""
        reply = self.connection.call(leases_pb2_grpc.LeasesStub, "List", leases_pb2.ListRequest(), "Leases.List")
        return sorted(lease.id for lease in reply.leases)


__all__ = ["LEASE_EXPIRE_LABEL", "Leases"]
