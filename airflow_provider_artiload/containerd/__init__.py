"""A containerd client over artiload's transports: the layer below loading images into k3s/Kubernetes nodes."""

from airflow_provider_artiload.containerd.client import ContainerdClient, Descriptor, Image, Version
from airflow_provider_artiload.containerd.content import BlobInfo, WriteStatus, manifest_gc_labels, skip
from airflow_provider_artiload.containerd.errors import BlobNotFound, ContainerdError
from airflow_provider_artiload.containerd.unpack import Layer, UnpackResult, chain_ids

__all__ = [
    "BlobInfo",
    "BlobNotFound",
    "ContainerdClient",
    "ContainerdError",
    "Descriptor",
    "Image",
    "Layer",
    "UnpackResult",
    "Version",
    "WriteStatus",
    "chain_ids",
    "manifest_gc_labels",
    "skip",
]
