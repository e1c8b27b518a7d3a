"""Where tarballs live: complete-or-absent writes, and streaming reads, on a local disk or an fsspec store.

:mod:`.local` writes local files atomically and cleans up what killed writers
left; :mod:`.remote` does the same on an fsspec filesystem (S3 multipart
uploads, SFTP temp siblings); :mod:`.target` picks the right one for a
:data:`Target` (a path or a :class:`RemotePath`). This file is the public
surface; import from here.
"""

from __future__ import annotations

from airflow_provider_artiload.storage.local import (
    UNLOCKED_STALE_SECONDS,
    AtomicFile,
    check_free_space,
    remove_stale_temp_files,
)
from airflow_provider_artiload.storage.remote import RemoteAtomicFile, RemotePath, part_size
from airflow_provider_artiload.storage.target import (
    CHUNK,
    Target,
    as_directory,
    atomic_file,
    child,
    exists,
    is_local_file,
    read_chunks,
    remove,
    remove_older_than,
)

__all__ = [
    "CHUNK",
    "UNLOCKED_STALE_SECONDS",
    "AtomicFile",
    "RemoteAtomicFile",
    "RemotePath",
    "Target",
    "as_directory",
    "atomic_file",
    "check_free_space",
    "child",
    "exists",
    "is_local_file",
    "part_size",
    "read_chunks",
    "remove",
    "remove_older_than",
    "remove_stale_temp_files",
]
