"""Where tarballs live: complete-or-absent writes, and streaming reads.

A tarball is written under a temporary sibling name (owner-only), hashed as
it goes, fsynced and renamed only when complete; on any failure the temp file
is removed, so the final path holds a whole archive or nothing.

Temp files left by a SIGKILLed task are removed by the next write to the same
path, and never one a live writer is using: a writer holds an exclusive
``flock`` on its temp file from creation until it is renamed into place.
flock locks belong to the open file, not to a process id, so they hold across
PID namespaces (a worker in another container sharing the volume), where the
pid in the temp name means nothing. Cleanup removes only temp files it can lock
itself. A writer creates its temp file, locks it, and checks it is still there
(a cleaner may have locked or removed it in between: then it takes another
name), so no window is left where a live writer's file can go. Where the filesystem has no flock (some NFS or FUSE mounts), it
removes only temp files unmodified for :data:`UNLOCKED_STALE_SECONDS`: a live
writer touches its file with every chunk, and a transfer that stalls for
longer than the engines' stall timeout (300 s by default) has been abandoned.

Paths are local, or a :class:`RemotePath` on any fsspec filesystem (what an
Airflow ObjectStoragePath resolves to: ``sftp://``, ``s3://``...), streamed
both ways in chunks, never buffered whole. On S3 (:data:`ATOMIC_UPLOADS`) the
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

import errno
import fcntl
import hashlib
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from airflow_provider_artiload.exceptions import ArchiveError, DestinationError
from airflow_provider_artiload.progress import human

CHUNK = 1 << 20
WRITE_SLICE = 128 << 10  # measured: 1 MiB write()s to the page cache ran at 145 MiB/s here, 128 KiB ones at 210
FILE_MODE = 0o600
UNLOCKED_STALE_SECONDS = 3600.0  # without flock: a temp file unmodified this long is abandoned
ATOMIC_UPLOADS = ("s3", "s3a")  # an object appears only when its (multipart) upload completes
PART_SIZE = 5 << 20  # S3's smallest part; s3fs's own default block is 50 MiB, held in memory
MAX_PARTS = 9000  # S3 allows 10,000 parts per upload
NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


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
        self._temp = _temp_name(self.path)
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
        _clear_directory_at(self.path)
        if self.expected_size:
            check_free_space(self.directory, self.expected_size, what=self.path)
        self._file = os.fdopen(self._create_locked_temp(), "wb", buffering=0)
        return self

    def _create_locked_temp(self) -> int:
        """A new temp file, locked, and still linked: a cleaner may lock or remove it between create and lock."""
        for _ in range(5):
            try:
                fd = os.open(self._temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
            except OSError as exc:
                raise DestinationError(f"cannot write {self.path}: {exc.strerror}") from exc
            if _lock(fd) and os.fstat(fd).st_nlink > 0:
                return fd  # held until the temp name is gone: renamed into place or removed
            os.close(fd)  # a cleaner took it first: another name
            self._temp = _temp_name(self.path)
        raise DestinationError(f"cannot write {self.path}: could not lock a temp file in {self.directory}")

    def write(self, chunk: bytes) -> None:
        assert self._file is not None
        view = memoryview(chunk).cast("B")
        try:
            while view:  # an unbuffered write may be short: go on from where it stopped
                written = self._file.write(view[:WRITE_SLICE])
                if not written:
                    raise OSError(errno.EIO, "the file took no bytes")
                view = view[written:]
        except OSError as exc:
            raise self._write_error(exc) from exc
        self._hash.update(chunk)
        self.size += len(chunk)

    def commit(self) -> None:
        assert self._file is not None
        try:
            os.fsync(self._file.fileno())
            _clear_directory_at(self.path)
            os.replace(self._temp, self.path)  # still locked: no cleaner can take the temp name first
            self._file.close()
        except OSError as exc:
            raise self._write_error(exc) from exc

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if self._file is not None and not self._file.closed:
            try:
                os.unlink(self._temp)  # before closing, while the lock is ours
            except FileNotFoundError:
                pass
            self._file.close()

    def _write_error(self, exc: OSError) -> DestinationError:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            need = f"about {human(self.expected_size)}" if self.expected_size else "more"
            return DestinationError(
                f"disk full writing {self.path} after {human(self.size)}: the archive needs {need}; "
                f"free {human(shutil.disk_usage(self.directory).free)} in {self.directory}"
            )
        return DestinationError(f"cannot write {self.path}: {exc.strerror}")


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
                if _remove_if_unlocked(path, cutoff, now=time.time()):
                    removed.append(path)
                continue
            remove(child(directory, path.rsplit("/", 1)[-1]))
            removed.append(path)
    return removed


def _listing(directory: Target) -> Iterator[tuple[str, float]]:
    if isinstance(directory, RemotePath):
        for entry in directory.fs.ls(directory.path, detail=True):
            if entry.get("type") == "file":
                yield entry["name"], _mtime(entry)
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


def temp_pattern(name: str) -> re.Pattern[str]:
    """The temp names of writers to ``name`` (the pid in them is informational only)."""
    return re.compile(rf"^\.{re.escape(name)}\.artiload-\d+-[0-9a-f]+\.partial$")


def remove_stale_temp_files(path: str, *, now: float | None = None) -> list[str]:
    """Remove temp files of earlier writers to ``path`` that no live writer holds (see the module doc)."""
    directory, name = os.path.split(os.path.abspath(path))
    pattern = temp_pattern(name)
    now = time.time() if now is None else now
    removed = []
    for entry in os.listdir(directory):
        if pattern.match(entry) and _remove_if_unlocked(os.path.join(directory, entry), now, now=now):
            removed.append(entry)
    return removed


def _remove_if_unlocked(path: str, older_than: float, *, now: float) -> bool:
    """Remove ``path`` if it was last modified before ``older_than`` and nobody holds its lock."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False  # gone already, or not a file we may touch
    try:
        if os.fstat(fd).st_mtime > older_than:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a live writer holds it, in this PID namespace or another
        except OSError as exc:
            if exc.errno not in NO_LOCKS or os.fstat(fd).st_mtime >= now - UNLOCKED_STALE_SECONDS:
                return False
        try:
            os.unlink(path)
        except FileNotFoundError:
            return False
        return True
    finally:
        os.close(fd)


def _temp_name(path: str) -> str:
    directory, name = os.path.split(path)
    return os.path.join(directory, f".{name}.artiload-{os.getpid()}-{secrets.token_hex(4)}.partial")


def _lock(fd: int) -> bool:
    """The writer's lock on its temp file; False if a cleaner holds it. Without flock, the age rule protects it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno not in NO_LOCKS:
            raise
    return True


def _clear_directory_at(path: str) -> None:
    """A directory where the tarball goes (not ours): an empty one is replaced; one with files is refused."""
    if not os.path.isdir(path) or os.path.islink(path):
        return
    try:
        os.rmdir(path)
    except OSError as exc:
        raise DestinationError(
            f"cannot write {path}: it is a directory with files in it; a tarball path names a file "
            f"(end it with / for a content-addressed name inside it)"
        ) from exc


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


def read_chunks(
    path: Target, *, ranges: list[tuple[int, int | None]] | None = None, chunk_size: int = CHUNK
) -> Iterator[bytes]:
    """The file at ``path`` in chunks, or only the byte ``ranges`` [start, end) given, in order.

    Missing or unreadable files are ArchiveErrors naming the path.
    """
    try:
        if isinstance(path, RemotePath):
            options = {"block_size": PART_SIZE} if _protocols(path.fs) & set(ATOMIC_UPLOADS) else {}
            handle = path.fs.open(path.path, "rb", **options)  # s3fs reads ahead one block, not 50 MiB
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

