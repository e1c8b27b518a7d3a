"""Tarball paths from DAGs -> storage targets: local paths, or any Airflow ObjectStoragePath.

``/data/x.tar`` and ``file:///data/x.tar`` are local; ``sftp://conn_id@/data/x.tar``,
``s3://conn_id@bucket/x.tar``... resolve through Airflow's object storage
(the connection named in the URL supplies the credentials), so the task that
writes a tarball and the task that loads it may run on different workers.
"""

from __future__ import annotations

import time
from typing import Any

from airflow.sdk import ObjectStoragePath
from airflow.utils.net import get_hostname

from airflow_provider_artiload import storage
from airflow_provider_artiload.artifacts import DockerArchive
from airflow_provider_artiload.exceptions import ArtiloadError
from airflow_provider_artiload.storage import RemotePath, Target
from airflow_provider_artiload.transfer.sources import FileSource

LOCAL_PROTOCOLS = ("file", "local", "")


def as_target(path: str | ObjectStoragePath | Any) -> Target:
    """A local path string, or a RemotePath on the filesystem the URL names.

    A trailing ``/`` (a directory: the tarball gets a content-addressed name
    inside it) is kept on every backend, although ObjectStoragePath drops it.
    """
    text = str(path).strip()
    if not isinstance(path, ObjectStoragePath):
        if not text:
            raise ArtiloadError("the tarball path is empty")
        if "://" not in text:
            return text
        if text.startswith("file://"):
            return text[len("file://") :]
    directory = text.endswith("/")
    try:
        path = path if isinstance(path, ObjectStoragePath) else ObjectStoragePath(text)
        if path.protocol in LOCAL_PROTOCOLS:
            target: Target = path.path
        else:
            target = RemotePath(fs=path.fs, path=path.path, uri=str(path))
    except Exception as exc:  # noqa: BLE001 - fsspec/Airflow raise plain ValueError/ImportError
        raise ArtiloadError(f"cannot use {path}: {exc}") from exc
    return storage.as_directory(target) if directory else target


def file_source(source: DockerArchive | str | ObjectStoragePath | Any, *, platform: str | None = None) -> FileSource:
    """A tarball to load: an artifact (its path, sha256 and identity) or a bare path, on this worker."""
    artifact = source if isinstance(source, DockerArchive) else None
    path = as_target(artifact.path if artifact else source)
    return FileSource(path, artifact, platform=platform, here=get_hostname())


def delete(path: str | ObjectStoragePath | Any) -> None:
    """Remove a tarball, local or remote; a missing one is fine."""
    storage.remove(as_target(path))


def delete_older_than(prefix: str | ObjectStoragePath | Any, days: float) -> list[str]:
    """Remove tarballs (and abandoned temp files) directly under ``prefix`` older than ``days``."""
    cutoff = time.time() - days * 86400
    return storage.remove_older_than(as_target(prefix), cutoff)
