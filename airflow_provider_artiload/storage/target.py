"""A tarball's place, local or remote (a :data:`Target`): each operation here picks the right kind."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

from airflow_provider_artiload.exceptions import ArchiveError
from airflow_provider_artiload.storage import remote
from airflow_provider_artiload.storage.local import AtomicFile, remove_if_unlocked
from airflow_provider_artiload.storage.remote import RemoteAtomicFile, RemotePath

CHUNK = 1 << 20

Target = str | RemotePath


def atomic_file(target: Target, *, expected_size: int | None = None) -> AtomicFile | RemoteAtomicFile:
    if isinstance(target, RemotePath):
        return RemoteAtomicFile(target, expected_size=expected_size)
    return AtomicFile(target, expected_size=expected_size)


def exists(target: Target) -> bool:
    return target.fs.exists(target.path) if isinstance(target, RemotePath) else os.path.exists(target)


def child(directory: Target, name: str) -> Target:
    """``name`` inside ``directory`` (a path or URI, with or without its trailing ``/``)."""
    if isinstance(directory, RemotePath):
        return RemotePath(directory.fs, directory.path.rstrip("/") + "/" + name, directory.uri.rstrip("/") + "/" + name)
    return os.path.join(directory, name)


def as_directory(target: Target) -> Target:
    """The same place, marked as a directory: its ``str()`` ends in ``/`` (content-addressed names go inside)."""
    if isinstance(target, RemotePath):
        return RemotePath(target.fs, target.path.rstrip("/") + "/", target.uri.rstrip("/") + "/")
    return target.rstrip("/") + "/"


def remove(target: Target) -> None:
    """Delete a tarball (after a load that asked for it); a missing file is fine."""
    try:
        if isinstance(target, RemotePath):
            target.fs.rm(target.path)
        else:
            os.unlink(target)
    except FileNotFoundError:
        pass


def remove_older_than(directory: Target, cutoff: float, *, suffixes: tuple[str, ...] = (".tar", ".partial")) -> list[str]:
    """Delete the tarballs (and abandoned temp files) directly in ``directory`` last modified before ``cutoff``."""
    removed = []
    for path, mtime in _listing(directory):
        if path.endswith(suffixes) and mtime < cutoff:
            if path.endswith(".partial") and not isinstance(directory, RemotePath):
                if remove_if_unlocked(path, cutoff, now=time.time()):
                    removed.append(path)
                continue
            remove(child(directory, path.rsplit("/", 1)[-1]))
            removed.append(path)
    return removed


def _listing(directory: Target) -> Iterator[tuple[str, float]]:
    if isinstance(directory, RemotePath):
        yield from remote.listing(directory)
        return
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.is_file(follow_symlinks=False):
                yield entry.path, entry.stat(follow_symlinks=False).st_mtime


def is_local_file(target: Target) -> bool:
    """A regular local file: one that can be indexed by seeking (a pipe or a remote path cannot)."""
    return not isinstance(target, RemotePath) and os.path.isfile(target)



def read_chunks(
    path: Target, *, ranges: list[tuple[int, int | None]] | None = None, chunk_size: int = CHUNK
) -> Iterator[bytes]:
    """The file at ``path`` in chunks, or only the byte ``ranges`` [start, end) given, in order.

    Missing or unreadable files are ArchiveErrors naming the path.
    """
    try:
        if isinstance(path, RemotePath):
            handle = remote.open_for_read(path)
        else:
            handle = open(path, "rb", buffering=0)
    except FileNotFoundError:
        raise ArchiveError(f"archive {path} does not exist") from None
    except OSError as exc:
        raise ArchiveError(f"cannot read archive {path}: {exc.strerror or exc}") from exc
    with handle:
        for start, end in ranges or [(0, None)]:
            if start:
                handle.seek(start)
            left = None if end is None else end - start
            while left is None or left > 0:
                chunk = handle.read(chunk_size if left is None else min(chunk_size, left))
                if not chunk:
                    break
                if left is not None:
                    left -= len(chunk)
                yield chunk

