"""Where tarballs live: complete-or-absent writes, and streaming reads.

A tarball is written under a temporary sibling name (owner-only), hashed as
it goes, fsynced and renamed only when complete; on any failure the temp file
is removed, so the final path holds a whole archive or nothing. A temp file
left by a SIGKILLed task is removed by the next write to the same path.

Paths are local, or a :class:`RemotePath` on any fsspec filesystem (what an
Airflow ObjectStoragePath resolves to: ``sftp://``, ``s3://``...), streamed
both ways in chunks, never buffered whole.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from airflow_provider_artiload.exceptions import ArchiveError, DestinationError
from airflow_provider_artiload.progress import human

CHUNK = 1 << 20
FILE_MODE = 0o600


@dataclass(frozen=True)
class RemotePath:
    """A path on an fsspec filesystem; ``uri`` is what logs and XCom show."""

    fs: Any
    path: str
    uri: str

    def __str__(self) -> str:
        return self.uri


Target = str | RemotePath


class AtomicFile:
    """A file that appears at ``path`` only when :meth:`commit` is called."""

    def __init__(self, path: str, *, expected_size: int | None = None) -> None:
        self.path = os.path.abspath(path)
        self.directory = os.path.dirname(self.path)
        self.expected_size = expected_size
        self.size = 0
        self._hash = hashlib.sha256()
        self._temp = os.path.join(
            self.directory, f".{os.path.basename(self.path)}.artiload-{os.getpid()}-{secrets.token_hex(4)}.partial"
        )
        self._file: BinaryIO | None = None

    @property
    def sha256(self) -> str:
        return "sha256:" + self._hash.hexdigest()

    def __enter__(self) -> AtomicFile:
        try:
            os.makedirs(self.directory, exist_ok=True)  # per-DAG or per-date folders need not exist yet
        except OSError as exc:
            raise DestinationError(f"cannot write {self.path}: cannot create {self.directory}: {exc.strerror}") from exc
        remove_stale_temp_files(self.path)
        if self.expected_size:
            check_free_space(self.directory, self.expected_size, what=self.path)
        try:
            fd = os.open(self._temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        except OSError as exc:
            raise DestinationError(f"cannot write {self.path}: {exc.strerror}") from exc
        self._file = os.fdopen(fd, "wb", buffering=0)
        return self

    def write(self, chunk: bytes) -> None:
        assert self._file is not None
        try:
            self._file.write(chunk)
        except OSError as exc:
            raise self._write_error(exc) from exc
        self._hash.update(chunk)
        self.size += len(chunk)

    def commit(self) -> None:
        assert self._file is not None
        try:
            os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self._temp, self.path)
        except OSError as exc:
            raise self._write_error(exc) from exc

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if self._file is not None and not self._file.closed:
            self._file.close()
        if os.path.exists(self._temp):
            os.unlink(self._temp)

    def _write_error(self, exc: OSError) -> DestinationError:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            need = f"about {human(self.expected_size)}" if self.expected_size else "more"
            return DestinationError(
                f"disk full writing {self.path} after {human(self.size)}: the archive needs {need}; "
                f"free {human(shutil.disk_usage(self.directory).free)} in {self.directory}"
            )
        return DestinationError(f"cannot write {self.path}: {exc.strerror}")


class RemoteAtomicFile:
    """AtomicFile's contract on an fsspec filesystem: a temp sibling, moved into place when complete."""

    def __init__(self, target: RemotePath, *, expected_size: int | None = None) -> None:
        self.target = target
        self.path = target.uri
        self.expected_size = expected_size
        self.size = 0
        self._hash = hashlib.sha256()
        parent, _, name = target.path.rpartition("/")
        self._temp = f"{parent}/.{name}.artiload-{os.getpid()}-{secrets.token_hex(4)}.partial"
        self._file: Any = None

    @property
    def sha256(self) -> str:
        return "sha256:" + self._hash.hexdigest()

    def __enter__(self) -> RemoteAtomicFile:
        try:
            self.target.fs.makedirs(self._temp.rpartition("/")[0] or "/", exist_ok=True)
            self._file = self.target.fs.open(self._temp, "wb")
        except Exception as exc:  # noqa: BLE001 - any backend's error, named with the URI
            raise DestinationError(f"cannot write {self.path}: {exc}") from exc
        return self

    def write(self, chunk: bytes) -> None:
        try:
            self._file.write(chunk)
        except Exception as exc:  # noqa: BLE001
            raise DestinationError(f"cannot write {self.path} after {human(self.size)}: {exc}") from exc
        self._hash.update(chunk)
        self.size += len(chunk)

    def commit(self) -> None:
        fs = self.target.fs
        try:
            self._file.close()
            if fs.exists(self.target.path):
                fs.rm(self.target.path)  # SFTP rename does not overwrite
            fs.mv(self._temp, self.target.path)
        except Exception as exc:  # noqa: BLE001
            raise DestinationError(f"cannot write {self.path}: {exc}") from exc

    def __exit__(self, *exc_info: object) -> None:
        if self._file is not None and not self._file.closed:
            self._file.close()
        try:
            if self.target.fs.exists(self._temp):
                self.target.fs.rm(self._temp)
        except Exception:  # noqa: BLE001 - best effort; the original error matters more
            pass


def atomic_file(target: Target, *, expected_size: int | None = None) -> AtomicFile | RemoteAtomicFile:
    if isinstance(target, RemotePath):
        return RemoteAtomicFile(target, expected_size=expected_size)
    return AtomicFile(target, expected_size=expected_size)


def exists(target: Target) -> bool:
    return target.fs.exists(target.path) if isinstance(target, RemotePath) else os.path.exists(target)


def child(directory: Target, name: str) -> Target:
    """``name`` inside ``directory`` (a path or URI ending in ``/``)."""
    if isinstance(directory, RemotePath):
        return RemotePath(directory.fs, directory.path.rstrip("/") + "/" + name, directory.uri.rstrip("/") + "/" + name)
    return os.path.join(directory, name)


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
            remove(child(directory, path.rsplit("/", 1)[-1]))
            removed.append(path)
    return removed


def _listing(directory: Target) -> Iterator[tuple[str, float]]:
    if isinstance(directory, RemotePath):
        for entry in directory.fs.ls(directory.path, detail=True):
            if entry.get("type") == "file":
                mtime = entry.get("mtime") or entry.get("LastModified") or entry.get("created")
                yield entry["name"], mtime.timestamp() if hasattr(mtime, "timestamp") else float(mtime or 0)
        return
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.is_file(follow_symlinks=False):
                yield entry.path, entry.stat(follow_symlinks=False).st_mtime


def is_local_file(target: Target) -> bool:
    """A regular local file: one that can be indexed by seeking (a pipe or a remote path cannot)."""
    return not isinstance(target, RemotePath) and os.path.isfile(target)


def check_free_space(directory: str, needed: int, *, what: str) -> None:
    """Fail before writing rather than after filling the disk."""
    free = shutil.disk_usage(directory).free
    if free < needed:
        raise DestinationError(
            f"not enough space for {what}: needs about {human(needed)}, {directory} has {human(free)} free"
        )


def remove_stale_temp_files(path: str) -> None:
    """Remove temp files of earlier writers to ``path`` whose process is gone."""
    directory, name = os.path.split(os.path.abspath(path))
    pattern = re.compile(rf"^\.{re.escape(name)}\.artiload-(\d+)-[0-9a-f]+\.partial$")
    for entry in os.listdir(directory):
        match = pattern.match(entry)
        if match and not _alive(int(match.group(1))):
            try:
                os.unlink(os.path.join(directory, entry))
            except FileNotFoundError:
                pass


def read_chunks(
    path: Target, *, ranges: list[tuple[int, int | None]] | None = None, chunk_size: int = CHUNK
) -> Iterator[bytes]:
    """The file at ``path`` in chunks, or only the byte ``ranges`` [start, end) given, in order.

    Missing or unreadable files are ArchiveErrors naming the path.
    """
    try:
        handle = path.fs.open(path.path, "rb") if isinstance(path, RemotePath) else open(path, "rb", buffering=0)
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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
