"""Where tarballs live: complete-or-absent writes, and verified streaming reads.

A tarball is written under a temporary sibling name (owner-only), hashed as
it goes, fsynced and renamed only when complete; on any failure the temp file
is removed, so the final path holds a whole archive or nothing. A temp file
left by a SIGKILLed task is removed by the next write to the same path.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import secrets
import shutil
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from airflow_provider_artiload.engine.archive import ArchiveIndex, ArchiveScanner
from airflow_provider_artiload.exceptions import ArchiveError, DestinationError, DigestMismatch
from airflow_provider_artiload.progress import human

CHUNK = 1 << 20
FILE_MODE = 0o600


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
        if not os.path.isdir(self.directory):
            raise DestinationError(f"cannot write {self.path}: directory {self.directory} does not exist")
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


def read_chunks(path: str, *, chunk_size: int = CHUNK) -> Iterator[bytes]:
    """The file at ``path`` in chunks; missing or unreadable files are ArchiveErrors naming the path."""
    try:
        handle = open(path, "rb", buffering=0)
    except FileNotFoundError:
        raise ArchiveError(f"archive {path} does not exist") from None
    except OSError as exc:
        raise ArchiveError(f"cannot read archive {path}: {exc.strerror}") from exc
    with handle:
        while chunk := handle.read(chunk_size):
            yield chunk


class VerifiedArchive:
    """Pass a docker-archive through, checking format and sha256 on the way.

    The last chunk is held back until everything is verified: if a check
    fails the engine never receives the archive's end, so it cannot finish
    loading a bad or truncated archive.
    """

    def __init__(self, chunks: Iterable[bytes], *, where: str, expected_sha256: str | None = None) -> None:
        self._chunks = chunks
        self.where = where
        self.expected_sha256 = expected_sha256
        self.scanner = ArchiveScanner()
        self.size = 0
        self._hash = hashlib.sha256()
        self.index: ArchiveIndex | None = None

    @property
    def sha256(self) -> str:
        return "sha256:" + self._hash.hexdigest()

    def __iter__(self) -> Iterator[bytes]:
        held: bytes | None = None
        for chunk in self._chunks:
            self._check(lambda: self.scanner.feed(chunk))
            self._hash.update(chunk)
            self.size += len(chunk)
            if held is not None:
                yield held
            held = chunk
        self._check(self._finish)
        if held is not None:
            yield held

    def _finish(self) -> None:
        index = self.scanner.finish()
        index.check_complete()
        if self.expected_sha256 and self.sha256 != self.expected_sha256:
            raise DigestMismatch(
                f"{self.where}: sha256 is {self.sha256}, the artifact says {self.expected_sha256}; "
                "the file changed or is corrupt, nothing was loaded"
            )
        self.index = index

    def _check(self, step) -> None:
        try:
            step()
        except ArchiveError as exc:
            if str(exc).startswith(self.where):
                raise
            raise type(exc)(f"{self.where}: {exc}") from None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
