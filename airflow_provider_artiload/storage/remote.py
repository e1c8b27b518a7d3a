"""Tarballs on an fsspec filesystem (what an Airflow ObjectStoragePath resolves to: ``sftp://``, ``s3://``...).

Streamed both ways in chunks, never buffered whole. On S3 (:data:`ATOMIC_UPLOADS`) the
object is written straight to its key as a streamed multipart upload of
``block_size`` parts (s3fs: 5 MiB, one part in memory at a time): S3 makes an
object visible only when its upload completes, so that is complete-or-absent
without a temp key and a full server-side copy; a failed write aborts the
upload (``discard``), and an older object at the key stays until the new one
is complete. A killed task leaves an invisible incomplete upload: a bucket
lifecycle rule ``AbortIncompleteMultipartUpload`` reclaims it. Elsewhere
(``sftp://``...) a temp sibling is moved into place.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from airflow_provider_artiload.exceptions import DestinationError
from airflow_provider_artiload.progress import human
from airflow_provider_artiload.storage.local import UNLOCKED_STALE_SECONDS, temp_pattern

ATOMIC_UPLOADS = ("s3", "s3a")  # an object appears only when its (multipart) upload completes
PART_SIZE = 5 << 20  # S3's smallest part; s3fs's own default block is 50 MiB, held in memory
MAX_PARTS = 9000  # S3 allows 10,000 parts per upload


@dataclass(frozen=True)
class RemotePath:
    """A path on an fsspec filesystem; ``uri`` is what logs and XCom show."""

    fs: Any
    path: str
    uri: str

    def __str__(self) -> str:
        return self.uri



class RemoteAtomicFile:
    """AtomicFile's contract on an fsspec filesystem.

    Object stores with atomic uploads (S3): a streamed multipart upload straight to the key, aborted
    on failure. Others (SFTP...): a temp sibling, moved into place when complete.
    """

    def __init__(self, target: RemotePath, *, expected_size: int | None = None) -> None:
        self.target = target
        self.path = target.uri
        self.expected_size = expected_size
        self.size = 0
        self._hash = hashlib.sha256()
        parent, _, name = target.path.rpartition("/")
        self.direct = _protocols(target.fs) & set(ATOMIC_UPLOADS) != set()
        self._temp = target.path if self.direct else f"{parent}/.{name}.artiload-{os.getpid()}-{secrets.token_hex(4)}.partial"
        self._file: Any = None
        self._committed = False

    @property
    def sha256(self) -> str:
        return "sha256:" + self._hash.hexdigest()

    def __enter__(self) -> RemoteAtomicFile:
        fs = self.target.fs
        try:
            if not self.direct:
                fs.makedirs(self._temp.rpartition("/")[0] or "/", exist_ok=True)
                _remove_stale_remote_temp_files(self.target)
            if fs.isdir(self.target.path) and not self.direct:
                _clear_remote_directory_at(self.target)
            options = {"block_size": part_size(self.expected_size)} if self.direct else {}
            self._file = fs.open(self._temp, "wb", **options)
        except DestinationError:
            raise
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
            self._file.close()  # S3: uploads the last part and completes the upload: now it is visible
            self._committed = True
            if self.direct:
                return
            if fs.exists(self.target.path):
                fs.rm(self.target.path)  # SFTP rename does not overwrite
            fs.mv(self._temp, self.target.path)
        except Exception as exc:  # noqa: BLE001
            raise DestinationError(f"cannot write {self.path}: {exc}") from exc

    def __exit__(self, *exc_info: object) -> None:
        if self._file is not None and not self._file.closed:
            if self.direct:
                _discard(self._file)  # never close() a failed upload: that would publish the partial object
            else:
                _quietly(self._file.close)
        if self.direct:
            return
        try:
            if self.target.fs.exists(self._temp):
                self.target.fs.rm(self._temp)
        except Exception:  # noqa: BLE001 - best effort; the original error matters more
            pass


def part_size(expected_size: int | None) -> int:
    """The multipart part size: S3's minimum, or larger for archives that would need too many parts."""
    return max(PART_SIZE, -(-(expected_size or 0) // MAX_PARTS))


def _clear_remote_directory_at(target: RemotePath) -> None:
    try:
        if target.fs.ls(target.path):
            raise DestinationError(
                f"cannot write {target.uri}: it is a directory with files in it; a tarball path names a file "
                f"(end it with / for a content-addressed name inside it)"
            )
        target.fs.rmdir(target.path)
    except DestinationError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise DestinationError(f"cannot write {target.uri}: a directory is in the way: {exc}") from exc


def _remove_stale_remote_temp_files(target: RemotePath) -> None:
    """No locks over SFTP: a temp file of this path unmodified for UNLOCKED_STALE_SECONDS is abandoned."""
    parent, _, name = target.path.rpartition("/")
    pattern, cutoff = temp_pattern(name), time.time() - UNLOCKED_STALE_SECONDS
    try:
        for entry in target.fs.ls(parent or "/", detail=True):
            base = entry["name"].rsplit("/", 1)[-1]
            if entry.get("type") == "file" and pattern.match(base) and _mtime(entry) < cutoff:
                target.fs.rm(entry["name"])
    except Exception:  # noqa: BLE001 - best effort: a leftover temp file is harmless
        pass


def _mtime(entry: dict[str, Any]) -> float:
    mtime = entry.get("mtime") or entry.get("LastModified") or entry.get("created")
    return mtime.timestamp() if hasattr(mtime, "timestamp") else float(mtime or 0)


def _protocols(fs: Any) -> set[str]:
    protocol = getattr(fs, "protocol", ())
    return {protocol} if isinstance(protocol, str) else set(protocol)


def _discard(handle: Any) -> None:
    """Drop a half-written upload without publishing it (s3fs aborts the multipart upload)."""
    _quietly(handle.discard)
    handle.closed = True  # else its __del__ would close(), i.e. complete the upload


def _quietly(action: Any) -> None:
    try:
        action()
    except Exception:  # noqa: BLE001 - best effort; the original error matters more
        pass


def open_for_read(path: RemotePath) -> Any:
    """A binary read handle; on S3 it reads ahead one part, not s3fs's 50 MiB block."""
    options = {"block_size": PART_SIZE} if _protocols(path.fs) & set(ATOMIC_UPLOADS) else {}
    return path.fs.open(path.path, "rb", **options)


def listing(directory: RemotePath) -> Iterator[tuple[str, float]]:
    """(path, mtime) of the files directly in ``directory``."""
    for entry in directory.fs.ls(directory.path, detail=True):
        if entry.get("type") == "file":
            yield entry["name"], _mtime(entry)
