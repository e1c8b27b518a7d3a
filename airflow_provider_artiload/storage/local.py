"""Local tarballs: complete-or-absent writes, and cleanup of temp files no live writer holds.

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
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import hashlib
import os
import re
import secrets
import shutil
import sys
import time
from collections.abc import Callable
from typing import BinaryIO

from airflow_provider_artiload.exceptions import DestinationError
from airflow_provider_artiload.progress import human

WRITE_SLICE = 128 << 10  # measured: 1 MiB write()s to the page cache ran at 145 MiB/s here, 128 KiB ones at 210
WRITE_BEHIND = 16 << 20  # how often the written range is handed to the disk, so the commit's fsync finds little left
FILE_MODE = 0o600
SYNC_FILE_RANGE_WAIT_BEFORE, SYNC_FILE_RANGE_WRITE, SYNC_FILE_RANGE_WAIT_AFTER = 1, 2, 4  # <linux/fs.h>
UNLOCKED_STALE_SECONDS = 3600.0  # without flock: a temp file unmodified this long is abandoned
NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


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
        self._write_behind = WriteBehind()

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
        self._write_behind.wrote(self._file.fileno(), self.size)

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


class WriteBehind:
    """Hand a file's pages to the disk while it is still being written (Linux ``sync_file_range``).

    Without it the whole file sits dirty in the page cache until the
    commit's fsync, one long stall at the end of every save. Every
    :data:`WRITE_BEHIND` bytes the new range is started and the range
    before it waited for, so at most two ranges are in flight and the
    fsync (still the guarantee) has little left. Where the call is missing
    or refused (not Linux, some network filesystems) it quietly does
    nothing.
    """

    def __init__(self, step: int = WRITE_BEHIND) -> None:
        self.step = step
        self.started = 0  # bytes handed to the disk so far
        self.waited = 0  # bytes known to be on their way or written
        self._call = _sync_file_range()

    def wrote(self, fd: int, size: int) -> None:
        """The file now holds ``size`` bytes; start the next range once a step is due."""
        if self._call is None or size - self.started < self.step:
            return
        if not self._sync(fd, self.started, size - self.started, SYNC_FILE_RANGE_WRITE):
            return
        if self.started:  # the previous range: wait for it, so dirty pages stay bounded
            waited = SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER
            if not self._sync(fd, self.waited, self.started - self.waited, waited):
                return
            self.waited = self.started
        self.started = size

    def _sync(self, fd: int, offset: int, nbytes: int, flags: int) -> bool:
        assert self._call is not None
        if self._call(fd, offset, nbytes, flags) == 0:
            return True
        self._call = None  # refused here: the commit's fsync does it all, as without write-behind
        return False


def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """libc's ``sync_file_range`` (the os module has no binding), or None where there is none."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        call = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    call.restype = ctypes.c_int
    return call


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
        if pattern.match(entry) and remove_if_unlocked(os.path.join(directory, entry), now, now=now):
            removed.append(entry)
    return removed


def remove_if_unlocked(path: str, older_than: float, *, now: float) -> bool:
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

