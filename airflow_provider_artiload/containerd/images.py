"""containerd's image records: a name pointing at a descriptor, with labels (``client.ImageService()``).

A record is only a name; its blobs live in the content store, kept from GC
by the labels on the manifest the record points at.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from google.protobuf import field_mask_pb2

from airflow_provider_artiload.containerd._proto import containerd_types_pb2, images_pb2, images_pb2_grpc
from airflow_provider_artiload.containerd.connection import Connection
from airflow_provider_artiload.containerd.errors import ContainerdError
from airflow_provider_artiload.exceptions import ImageNotFound


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
class ImageRecord:
    """A named record in containerd's image store (the image itself is ``oci.image.Image``)."""

    name: str
    target: Descriptor
    labels: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_proto(cls, image: images_pb2.Image) -> ImageRecord:
        return cls(image.name, Descriptor.from_proto(image.target), dict(image.labels))


class Images:
    """The images service: get, list, create, update, set and delete records in the namespace."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def get(self, name: str) -> ImageRecord | None:
        request = images_pb2.GetImageRequest(name=name)
        reply = self.connection.call_or_none(images_pb2_grpc.ImagesStub, "Get", request, f"Images.Get {name}")
        return ImageRecord.from_proto(reply.image) if reply is not None else None

    def list(self, filters: Sequence[str] = ()) -> list[ImageRecord]:
        request = images_pb2.ListImagesRequest(filters=list(filters))
        reply = self.connection.call(images_pb2_grpc.ImagesStub, "List", request, "Images.List")
        return [ImageRecord.from_proto(i) for i in reply.images]

    def create(self, name: str, target: Descriptor, labels: Mapping[str, str] | None = None) -> ImageRecord:
        """Create the record; ContainerdError(code='ALREADY_EXISTS') if the name is taken."""
        image = images_pb2.Image(name=name, target=target.to_proto(), labels=dict(labels or {}))
        request = images_pb2.CreateImageRequest(image=image)
        reply = self.connection.call(images_pb2_grpc.ImagesStub, "Create", request, f"Images.Create {name}")
        return ImageRecord.from_proto(reply.image)

    def update(self, name: str, target: Descriptor | None = None, labels: Mapping[str, str] | None = None) -> ImageRecord:
        """Point ``name`` at ``target`` and/or replace its labels; ImageNotFound if there is no such record."""
        paths = (["target"] if target is not None else []) + (["labels"] if labels is not None else [])
        image = images_pb2.Image(name=name, labels=dict(labels or {}))
        if target is not None:
            image.target.CopyFrom(target.to_proto())
        request = images_pb2.UpdateImageRequest(image=image, update_mask=field_mask_pb2.FieldMask(paths=paths))
        reply = self.connection.call_or_none(images_pb2_grpc.ImagesStub, "Update", request, f"Images.Update {name}")
        if reply is None:
            where, namespace = self.connection.where, self.connection.namespace
            raise ImageNotFound(f"containerd at {where} has no image {name!r} in namespace {namespace!r}")
        return ImageRecord.from_proto(reply.image)

    def set(self, name: str, target: Descriptor, labels: Mapping[str, str] | None = None) -> ImageRecord:
        """Create the record, or repoint an existing one (what a load does for each tag)."""
        try:
            return self.create(name, target, labels)
        except ContainerdError as exc:
            if exc.code != "ALREADY_EXISTS":
                raise
        return self.update(name, target, labels)

    def delete(self, name: str, *, sync: bool = False) -> bool:
        """Delete the record (its blobs go at the next GC); False if there was none."""
        request = images_pb2.DeleteImageRequest(name=name, sync=sync)
        return self.connection.call_or_none(images_pb2_grpc.ImagesStub, "Delete", request, f"Images.Delete {name}") is not None


__all__ = ["Descriptor", "ImageRecord", "Images"]
