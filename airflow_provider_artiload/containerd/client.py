"""ContainerdClient: containerd's gRPC API over any artiload Stream (unix socket, SSH streamlocal).

containerd speaks plain gRPC on its socket. grpcio cannot be handed a
connected socket, so every connection goes through ``transport/grpc.py``'s
:class:`BridgedChannel` (a private unix socket piped to ``dial()``): the SSH
case needs nothing on the node but sshd.

Every call carries the namespace as metadata ``containerd-namespace``; inside
:meth:`ContainerdClient.lease` calls from that thread also carry
``containerd-lease``, so what they create is safe from garbage collection
until the lease is deleted. Content (blobs) and unpacking live in
``content.py`` and ``unpack.py``; the methods here delegate to them.
"""

from __future__ import annotations

import contextlib
import datetime
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import empty_pb2, field_mask_pb2

from airflow_provider_artiload.transport.grpc import BridgedChannel, Duplex, status_code
from airflow_provider_artiload.containerd import content, unpack
from airflow_provider_artiload.containerd._proto import (
    containerd_types_pb2,
    images_pb2,
    images_pb2_grpc,
    leases_pb2,
    leases_pb2_grpc,
    namespaces_pb2,
    namespaces_pb2_grpc,
    version_pb2_grpc,
)
from airflow_provider_artiload.containerd.errors import ContainerdError, is_lock, translate
from airflow_provider_artiload.exceptions import ArtiloadError, ImageNotFound

LEASE_EXPIRE_LABEL = "containerd.io/gc.expire"


@dataclass(frozen=True)
class Descriptor:
    """An OCI descriptor (what an image record points at)."""

    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)

    def to_proto(self) -> containerd_types_pb2.Descriptor:
        return containerd_types_pb2.Descriptor(
            media_type=self.media_type, digest=self.digest, size=self.size, annotations=dict(self.annotations)
        )

    @classmethod
    def from_proto(cls, d: containerd_types_pb2.Descriptor) -> Descriptor:
        return cls(d.media_type, d.digest, d.size, dict(d.annotations))


@dataclass(frozen=True)
class Image:
    name: str
    target: Descriptor
    labels: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_proto(cls, image: images_pb2.Image) -> Image:
        return cls(image.name, Descriptor.from_proto(image.target), dict(image.labels))


@dataclass(frozen=True)
class Version:
    version: str
    revision: str


class ContainerdClient:
    """A containerd client in one namespace; connects on first use, through ``dial``."""

    def __init__(
        self, dial: Callable[[], Duplex], *, namespace: str = "k8s.io", where: str = "containerd", timeout: float = 60.0
    ) -> None:
        if not namespace:
            raise ContainerdError("a containerd namespace must not be empty (kubelet and k3s use 'k8s.io')")
        self.namespace = namespace
        self.where = where
        self.timeout = timeout  # for unary calls; streams are bounded by the transport instead
        self._grpc = BridgedChannel(dial, name="containerd-grpc")
        self._local = threading.local()

    # ------------------------------------------------------------ plumbing (used by content.py, unpack.py)

    @property
    def channel(self) -> grpc.Channel:
        return self._grpc.channel

    @property
    def current_lease(self) -> str | None:
        return getattr(self._local, "lease", None)

    def metadata(self) -> tuple[tuple[str, str], ...]:
        lease = self.current_lease
        extra = (("containerd-lease", lease),) if lease else ()
        return (("containerd-namespace", self.namespace), *extra)

    def error(self, exc: grpc.RpcError, what: str, *, started: bool = False) -> ArtiloadError:
        return translate(exc, where=self.where, what=what, dial_error=self._grpc.dial_error, started=started)

    def call(self, stub_class: type, method: str, request: Any, what: str) -> Any:
        """A unary call with our metadata and deadline; grpc errors translated."""
        try:
            return self._unary(stub_class, method, request)
        except grpc.RpcError as exc:
            raise self.error(exc, what) from exc

    def call_or_none(self, stub_class: type, method: str, request: Any, what: str) -> Any:
        """Like :meth:`call`, but NOT_FOUND is None (e.g. a blob the node lacks)."""
        try:
            return self._unary(stub_class, method, request)
        except grpc.RpcError as exc:
            if status_code(exc) == grpc.StatusCode.NOT_FOUND:
                return None
            raise self.error(exc, what) from exc

    def _unary(self, stub_class: type, method: str, request: Any) -> Any:
        """One call, retried once when the connection it went out on had just broken.

        After a cut (a dropped SSH link) grpcio fails the next call on the dead
        connection before it notices and redials. Creates with a fixed name
        that did land come back ALREADY_EXISTS, which callers handle.
        """
        for attempt in (1, 2):
            try:
                return getattr(stub_class(self.channel), method)(request, metadata=self.metadata(), timeout=self.timeout)
            except grpc.RpcError as exc:
                transient = status_code(exc) == grpc.StatusCode.UNAVAILABLE and not is_lock(exc.details() or "")
                if attempt == 2 or not transient or self._grpc.dial_error:
                    raise
                time.sleep(0.1)
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._grpc.close()

    def __enter__(self) -> ContainerdClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------ version, namespaces, leases

    def version(self) -> Version:
        reply = self.call(version_pb2_grpc.VersionStub, "Version", empty_pb2.Empty(), "Version")
        return Version(reply.version, reply.revision)

    def namespaces(self) -> list[str]:
        reply = self.call(namespaces_pb2_grpc.NamespacesStub, "List", namespaces_pb2.ListNamespacesRequest(), "Namespaces.List")
        return sorted(n.name for n in reply.namespaces)

    def has_namespace(self, name: str | None = None) -> bool:
        """Whether ``name`` (default: this client's namespace) exists.

        Namespaces.Get answers OK with empty labels for a missing namespace
        (seen on 1.6), so this asks List. containerd creates a namespace on first write.
        """
        return (name or self.namespace) in self.namespaces()

    @contextlib.contextmanager
    def lease(self, expire: float | None = 3600.0, *, labels: Mapping[str, str] | None = None) -> Iterator[str]:
        """A lease for the calls this thread makes inside the block; deleted on exit, even on failure.

        ``expire`` (seconds) is the backstop: if the delete cannot reach the
        node, containerd's GC drops the lease after that time anyway.
        """
        if self.current_lease:
            yield self.current_lease  # nested: the outer lease already protects everything
            return
        all_labels = dict(labels or {})
        if expire:
            until = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=expire)
            all_labels[LEASE_EXPIRE_LABEL] = until.strftime("%Y-%m-%dT%H:%M:%SZ")
        lease_id = f"artiload-{secrets.token_hex(8)}"
        request = leases_pb2.CreateRequest(id=lease_id, labels=all_labels)
        try:
            self.call(leases_pb2_grpc.LeasesStub, "Create", request, "Leases.Create")
        except ContainerdError as exc:
            if exc.code != "ALREADY_EXISTS":  # a retried create that had landed: the id is ours
                raise
        self._local.lease = lease_id
        try:
            yield lease_id
        finally:
            self._local.lease = None
            self.call_or_none(leases_pb2_grpc.LeasesStub, "Delete", leases_pb2.DeleteRequest(id=lease_id), "Leases.Delete")

    def protect(self, digest: str) -> None:
        """Add a blob the node already holds to the current lease: an earlier failed load's blobs are
        held by nothing once its lease is gone, and GC could take them before this load names its image."""
        if not self.current_lease:
            return
        request = leases_pb2.AddResourceRequest(
            id=self.current_lease, resource=leases_pb2.Resource(id=digest, type="content")
        )
        self.call(leases_pb2_grpc.LeasesStub, "AddResource", request, f"Leases.AddResource {digest}")

    def leases(self) -> list[str]:
        reply = self.call(leases_pb2_grpc.LeasesStub, "List", leases_pb2.ListRequest(), "Leases.List")
        return sorted(lease.id for lease in reply.leases)

    # ------------------------------------------------------------ images

    def get_image(self, name: str) -> Image | None:
        reply = self.call_or_none(images_pb2_grpc.ImagesStub, "Get", images_pb2.GetImageRequest(name=name), f"Images.Get {name}")
        return Image.from_proto(reply.image) if reply is not None else None

    def list_images(self, filters: Sequence[str] = ()) -> list[Image]:
        reply = self.call(images_pb2_grpc.ImagesStub, "List", images_pb2.ListImagesRequest(filters=list(filters)), "Images.List")
        return [Image.from_proto(i) for i in reply.images]

    def create_image(self, name: str, target: Descriptor, labels: Mapping[str, str] | None = None) -> Image:
        """Create the record; ContainerdError(code='ALREADY_EXISTS') if the name is taken."""
        image = images_pb2.Image(name=name, target=target.to_proto(), labels=dict(labels or {}))
        reply = self.call(images_pb2_grpc.ImagesStub, "Create", images_pb2.CreateImageRequest(image=image), f"Images.Create {name}")
        return Image.from_proto(reply.image)

    def update_image(
        self, name: str, target: Descriptor | None = None, labels: Mapping[str, str] | None = None
    ) -> Image:
        """Point ``name`` at ``target`` and/or replace its labels; ImageNotFound if there is no such record."""
        paths = (["target"] if target is not None else []) + (["labels"] if labels is not None else [])
        image = images_pb2.Image(name=name, labels=dict(labels or {}))
        if target is not None:
            image.target.CopyFrom(target.to_proto())
        request = images_pb2.UpdateImageRequest(image=image, update_mask=field_mask_pb2.FieldMask(paths=paths))
        reply = self.call_or_none(images_pb2_grpc.ImagesStub, "Update", request, f"Images.Update {name}")
        if reply is None:
            raise ImageNotFound(f"containerd at {self.where} has no image {name!r} in namespace {self.namespace!r}")
        return Image.from_proto(reply.image)

    def set_image(self, name: str, target: Descriptor, labels: Mapping[str, str] | None = None) -> Image:
        """Create the record, or repoint an existing one (what a load does for each tag)."""
        try:
            return self.create_image(name, target, labels)
        except ContainerdError as exc:
            if exc.code != "ALREADY_EXISTS":
                raise
        return self.update_image(name, target, labels if labels is not None else None)

    def delete_image(self, name: str, *, sync: bool = False) -> bool:
        """Delete the record (its blobs go at the next GC); False if there was none."""
        request = images_pb2.DeleteImageRequest(name=name, sync=sync)
        return self.call_or_none(images_pb2_grpc.ImagesStub, "Delete", request, f"Images.Delete {name}") is not None

    # ------------------------------------------------------------ content and unpacking (see content.py, unpack.py)

    def blob_info(self, digest: str) -> content.BlobInfo | None:
        return content.blob_info(self, digest)

    def write_blob(
        self,
        ref: str,
        digest: str,
        size: int,
        open_at: Callable[[int], Iterable[bytes]],
        labels: Mapping[str, str] | None = None,
    ) -> int:
        return content.write_blob(self, ref, digest, size, open_at, labels)

    def read_blob(self, digest: str, offset: int = 0) -> Iterator[bytes]:
        return content.read_blob(self, digest, offset)

    def write_status(self, ref: str) -> content.WriteStatus | None:
        return content.write_status(self, ref)

    def abort_write(self, ref: str) -> bool:
        return content.abort_write(self, ref)

    def set_blob_labels(self, digest: str, labels: Mapping[str, str]) -> content.BlobInfo:
        return content.set_labels(self, digest, labels)

    def delete_blob(self, digest: str) -> bool:
        return content.delete_blob(self, digest)

    def unpack(
        self, layers: Sequence[unpack.Layer], *, config_digest: str | None = None, snapshotter: str = "overlayfs"
    ) -> unpack.UnpackResult:
        return unpack.unpack(self, layers, config_digest=config_digest, snapshotter=snapshotter)

    def unpack_image(self, name: str, *, snapshotter: str = "overlayfs") -> unpack.UnpackResult:
        return unpack.unpack_image(self, name, snapshotter=snapshotter)


__all__ = ["ContainerdClient", "Descriptor", "Image", "Version"]
