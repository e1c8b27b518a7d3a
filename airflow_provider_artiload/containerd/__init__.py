"""A containerd client over artiload's transports: the layer below loading images into k3s/Kubernetes nodes.

``ContainerdClient`` hands out the services (``content``, ``images``,
``leases``, ``snapshots``, ``diff``); ``Unpacker`` and ``BlobStream`` take
services, not the client.
"""

from airflow_provider_artiload.containerd.client import ContainerdClient, Version
from airflow_provider_artiload.containerd.connection import Connection
from airflow_provider_artiload.containerd.content import BlobInfo, ContentStore, WriteStatus, manifest_gc_labels, skip
from airflow_provider_artiload.containerd.errors import BlobNotFound, ContainerdError
from airflow_provider_artiload.containerd.images import Descriptor, ImageRecord, Images
from airflow_provider_artiload.containerd.leases import Leases
from airflow_provider_artiload.containerd.snapshots import Diff, Snapshots
from airflow_provider_artiload.containerd.unpack import LayerBlob, UnpackResult, Unpacker, chain_ids

__all__ = [
    "BlobInfo",
    "BlobNotFound",
    "Connection",
    "ContainerdClient",
    "ContainerdError",
    "ContentStore",
    "Descriptor",
    "Diff",
    "ImageRecord",
    "Images",
    "LayerBlob",
    "Leases",
    "Snapshots",
    "UnpackResult",
    "Unpacker",
    "Version",
    "WriteStatus",
    "chain_ids",
    "manifest_gc_labels",
    "skip",
]
